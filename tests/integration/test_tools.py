"""etcd_tools on a lab host: the running member's etcdctl and etcdutl (etcdctl alone on 3.4) staged where a restore
finds them after a disaster, the version read from the manifest's image tag; check mode writes nothing, a second
run changes nothing."""

import pytest

from ansible_run import run_module  # pylint: disable=import-error

pytestmark = pytest.mark.lab
LAB_SHARED = True  # reads the member and writes only below DEST, which it removes
LAB_LINES = ["3.4", "3.6"]  # the two layouts (etcdctl alone, etcdctl and etcdutl); the functional test has every line

MODULE = "etcdops.etcd.etcd_tools"
DEST = "/var/lib/etcdops-lab-tools-test"


def test_the_running_members_tools_are_staged_and_found_again(lab):
    version = lab.state["etcd_version"]
    try:
        planned = run_module(lab, "cp2", MODULE, {"dest": DEST}, check=True)
        assert not planned.get("failed"), planned.get("msg")
        assert planned["changed"] and planned["source"] == "running" and planned["version"] == version
        assert lab.exec("cp2", ["test", "-e", DEST], check=False).returncode == 1  # nothing written
        done = run_module(lab, "cp2", MODULE, {"dest": DEST})
        assert not done.get("failed"), done.get("msg")
        assert done["changed"] and done["path"] == "%s/%s" % (DEST, version)
        assert (done["etcdutl"] is None) == (lab.state["etcd_line"] == "3.4")
        for tool in ("etcdctl", "etcdutl"):
            if done[tool]:
                out = lab.exec("cp2", ["env", "ETCDCTL_API=3", done[tool], "version"]).stdout
                assert "version: %s" % version in out
        again = run_module(lab, "cp2", MODULE, {"dest": DEST})
        assert not again.get("failed") and again["changed"] is False and again["source"] == "installed"
    finally:
        lab.exec("cp2", ["rm", "-rf", DEST], check=False)
