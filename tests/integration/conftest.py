"""Fixtures for end-to-end tests on the lab: one lab per etcd line, and ways to run Ansible against it."""

import json
import os
import subprocess
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


# A lab that a module with LAB_SHARED = True left as `up` made it, kept for the next such module of its line: the
# shared modules run line by line (see pytest_collection_modifyitems), so at most one lab waits here at a time.
_POOL = {}


def _drain_pool():
    while _POOL:
        _POOL.popitem()[1].down()


def lab_is_fresh(the_lab):
    """True when the lab looks as `up` left it: every host running, every member a healthy voter under its own
    name, one leader, no alarm, every API server holding its lease."""
    try:
        if the_lab.running_hosts() != the_lab.hosts or not the_lab.healthy():
            return False
        listing = json.loads(the_lab.etcdctl("cp1", "member", "list", "-w", "json").stdout)
        names = sorted((m.get("name"), bool(m.get("isLearner"))) for m in listing["members"])
        if names != [(host, False) for host in the_lab.members]:
            return False
        if the_lab.etcdctl("cp1", "alarm", "list").stdout.strip():
            return False
        the_lab.wait_leases(timeout=30)
        return True
    except (lablib.LabError, subprocess.SubprocessError, ValueError, KeyError):
        return False


@pytest.fixture(scope="session")
def _lab_pool():
    yield _POOL
    _drain_pool()


@pytest.fixture(scope="module")
def lab(request, _lab_pool):
    """The module's lab of one etcd line. A module with LAB_SHARED = True (it leaves the lab as it found it, or
    the check says so) takes the lab the previous shared module of that line left, and leaves it for the next one:
    one lab up instead of one per module."""
    line = request.param
    with_s3 = getattr(request.module, "LAB_WITH_S3", False)
    shared = getattr(request.module, "LAB_SHARED", False)
    key = (line, with_s3)
    the_lab = _lab_pool.pop(key, None) if shared else None
    _drain_pool()  # another line's lab is not needed again, and a new lab must not meet a kept one
    if the_lab is None:
        the_lab = lablib.Lab(lab_prefix(("s" if shared else "") + line.replace(".", "")))
        the_lab.down()
    keep = False
    try:
        if not the_lab.exists():
            the_lab.up(hosts=3, etcd_line=line, with_s3=with_s3)
        yield the_lab
        keep = shared and lab_is_fresh(the_lab)
    finally:
        if keep:
            _lab_pool[key] = the_lab
        else:
            the_lab.down()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    """The lab tests of LAB_SHARED modules run line by line (each module's order kept), where the first of them
    was: the modules of one line follow each other and share its lab."""
    shared = [item for item in items if getattr(item.module, "LAB_SHARED", False)
              and "lab" in getattr(getattr(item, "callspec", None), "params", {})]
    if not shared:
        return
    first = items.index(shared[0])
    chosen = set(shared)
    rest = [item for item in items if item not in chosen]
    shared.sort(key=lambda item: LINES.index(item.callspec.params["lab"]))
    items[:] = rest[:first] + shared + rest[first:]
