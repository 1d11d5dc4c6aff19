"""Fixtures for end-to-end tests on the lab: one lab per etcd line, and ways to run Ansible against it."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab as lablib  # noqa: E402  pylint: disable=wrong-import-position

# The etcd lines every lab test runs on; ETCDOPS_LINES="3.6" narrows a local run.
LINES = os.environ.get("ETCDOPS_LINES", "3.4 3.5 3.6 3.7").split()


def lab_prefix(tag):
    """A prefix no other run on this machine uses at the same time."""
    return "it%s%d" % (tag, os.getpid() % 100000)


@pytest.fixture(scope="module", params=LINES, ids=["etcd-" + line for line in LINES])
def lab(request):
    the_lab = lablib.Lab(lab_prefix(request.param.replace(".", "")))
    the_lab.down()
    try:
        the_lab.up(hosts=3, etcd_line=request.param, with_s3=getattr(request.module, "LAB_WITH_S3", False))
        yield the_lab
    finally:
        the_lab.down()
