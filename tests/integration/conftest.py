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
    """A prefix no other run on this machine uses at the same time (pid, and xdist worker if any)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").replace("gw", "w")
    return "it%s%s%d" % (tag, worker, os.getpid() % 100000)


def module_lines(module):
    """The lines a test module's lab runs on: its LAB_LINES (e.g. ["3.6"] for a slow scenario proved on one
    line in the suite) narrowed by ETCDOPS_LINES."""
    wanted = getattr(module, "LAB_LINES", None) or LINES
    return [line for line in wanted if line in LINES]


def pytest_generate_tests(metafunc):
    if "lab" in metafunc.fixturenames:
        lines = module_lines(metafunc.module)
        metafunc.parametrize("lab", lines, ids=["etcd-" + line for line in lines], indirect=True, scope="module")


@pytest.fixture(scope="module")
def lab(request):
    the_lab = lablib.Lab(lab_prefix(request.param.replace(".", "")))
    the_lab.down()
    try:
        the_lab.up(hosts=3, etcd_line=request.param, with_s3=getattr(request.module, "LAB_WITH_S3", False))
        yield the_lab
    finally:
        the_lab.down()
