"""etcd_snapshot on a 3-host lab for each etcd line, with kubeadm's TLS files as the only configuration:
check mode names a follower and writes nothing; the real run saves from that follower; the file reads on the
host as `etcdutl snapshot status` (etcdctl on 3.4) says and restores with the line's own tool; a second run
without force keeps the file (changed false); state=status reports the same."""

import json

import pytest

from ansible_run import run_module  # pylint: disable=import-error

pytestmark = pytest.mark.lab
# Leaves the lab as up made it (the fixture checks): the next shared module of the line takes it over.
LAB_SHARED = True

MODULE = "etcdops.etcd.etcd_snapshot"
DIRECTORY = "/var/backups/etcd"
PATH = DIRECTORY + "/snapshot.db"


def host_tool_status(lab, host, path):
    """What the line's own tool on the host says of the file: etcdutl from 3.5, `etcdctl snapshot status` on 3.4."""
    bin_dir = lab.state["etcd_bin_dir"]
    if lab.state["etcd_line"] == "3.4":
        argv = ["env", "ETCDCTL_API=3", bin_dir + "/etcdctl", "snapshot", "status", path, "-w", "json"]
    else:
        argv = [bin_dir + "/etcdutl", "snapshot", "status", path, "-w", "json"]
    return json.loads(lab.exec(host, argv).stdout)


def host_restore(lab, host, path, data_dir):
    bin_dir = lab.state["etcd_bin_dir"]
    tool = bin_dir + ("/etcdctl" if lab.state["etcd_line"] == "3.4" else "/etcdutl")
    return lab.exec(host, ["env", "ETCDCTL_API=3", tool, "snapshot", "restore", path, "--data-dir", data_dir],
                    check=False)


def leader_name(lab):
    info = run_module(lab, "cp1", "etcdops.etcd.etcd_cluster_info")
    return [m["name"] for m in info["members"] if m["is_leader"]][0]


def test_check_mode_names_a_follower_and_writes_nothing(lab):
    lab.exec("cp1", ["mkdir", "-p", DIRECTORY])
    result = run_module(lab, "cp1", MODULE, {"path": PATH}, check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["saved"] is False
    assert result["member"]["name"] in ("cp2", "cp3", "cp1") and result["member"]["name"] != leader_name(lab)
    assert lab.exec("cp1", ["ls", "-A", DIRECTORY]).stdout.strip() == ""


def test_save_with_kubeadm_defaults_reads_as_the_lines_tool_says(lab):
    lab.exec("cp1", ["mkdir", "-p", DIRECTORY])
    result = run_module(lab, "cp1", MODULE, {"path": PATH})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["saved"] is True
    assert result["member"]["name"] != leader_name(lab)
    assert result["member"]["endpoint"] == "https://%s:2379" % lab.ip(result["member"]["name"])
    assert result["etcd_version"] == lab.state["etcd_version"]
    assert [t["error"] for t in result["tried"]] == [None]
    assert result["trailer"] == "valid" and result["size"] == result["total_size"] + 32

    tool = host_tool_status(lab, "cp1", PATH)
    assert (result["hash"], result["revision"], result["total_key"], result["total_size"]) == (
        tool["hash"], tool["revision"], tool["totalKey"], tool["totalSize"])
    assert result["version"] == tool.get("version", "")
    assert lab.exec("cp1", ["sha256sum", PATH]).stdout.split()[0] == result["sha256"]
    assert lab.exec("cp1", ["stat", "-c", "%a", PATH]).stdout.strip() == "600"
    assert lab.exec("cp1", ["ls", "-A", DIRECTORY]).stdout.split() == ["snapshot.db"]

    restored = host_restore(lab, "cp1", PATH, "/tmp/h6-restore-check")
    lab.exec("cp1", ["rm", "-rf", "/tmp/h6-restore-check"])
    assert restored.returncode == 0, restored.stderr


def test_a_second_run_without_force_keeps_the_file(lab):
    before = lab.exec("cp1", ["sha256sum", PATH]).stdout.split()[0]
    result = run_module(lab, "cp1", MODULE, {"path": PATH})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and result["saved"] is False
    assert result["sha256"] == before
    assert lab.exec("cp1", ["sha256sum", PATH]).stdout.split()[0] == before


def test_force_takes_a_new_snapshot_from_the_leader_when_asked(lab):
    lab.etcdctl("cp1", "put", "/etcdops/h6/after-first-snapshot", "x")
    result = run_module(lab, "cp1", MODULE, {"path": PATH, "force": True, "member": "leader"})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["member"]["name"] == leader_name(lab)
    tool = host_tool_status(lab, "cp1", PATH)
    assert result["revision"] == tool["revision"] and result["hash"] == tool["hash"]


def test_status_of_the_file_matches_the_tool(lab):
    result = run_module(lab, "cp1", MODULE, {"path": PATH, "state": "status"})
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    tool = host_tool_status(lab, "cp1", PATH)
    assert (result["hash"], result["revision"], result["total_key"], result["total_size"]) == (
        tool["hash"], tool["revision"], tool["totalKey"], tool["totalSize"])


def test_a_stopped_member_is_skipped_and_named(lab):
    lab.stop("cp3")
    try:
        result = run_module(lab, "cp1", MODULE, {"path": DIRECTORY + "/without-cp3.db", "member": "cp3"})
        assert not result.get("failed"), result.get("msg")
        assert result["member"]["name"] != "cp3"
        assert [s["name"] for s in result["unhealthy"]] == ["cp3"]
        assert lab.ip("cp3") in result["unhealthy"][0]["error"]
    finally:
        lab.start("cp3")
        lab.wait_healthy(timeout=90)
