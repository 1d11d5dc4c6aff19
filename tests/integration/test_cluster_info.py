"""etcd_cluster_info and status.yml on a 3-host lab, for each etcd line: what `etcdctl member list` and
`etcdctl endpoint status --cluster` show, a stopped member reported without failing, a wrong CA named."""

import re

import pytest

from ansible_run import run_module, run_playbook  # pylint: disable=import-error

pytestmark = pytest.mark.lab
# Leaves the lab as up made it (the fixture checks): the next shared module of the line takes it over.
LAB_SHARED = True

MODULE = "etcdops.etcd.etcd_cluster_info"


def test_three_started_members_one_leader_versions_of_the_line(lab):
    info = run_module(lab, "cp1", MODULE)
    assert not info.get("failed"), info.get("msg")
    assert info["changed"] is False
    assert info["member_count"] == 3
    members = {m["name"]: m for m in info["members"]}
    assert sorted(members) == ["cp1", "cp2", "cp3"]
    assert [m["is_leader"] for m in info["members"]].count(True) == 1
    leader = [m for m in info["members"] if m["is_leader"]][0]
    assert info["leader"] == leader["id"]
    for name, member in members.items():
        assert "error" not in member, member
        assert member["version"] == lab.state["etcd_version"]
        assert member["version"].startswith(lab.state["etcd_line"] + ".")
        assert member["db_size_in_use"] > 0
        assert member["db_size"] >= member["db_size_in_use"]
        assert member["is_learner"] is False
        assert member["raft_term"] >= 1 and member["raft_index"] >= member["raft_applied_index"] - 1
        assert member["client_urls"] == ["https://%s:2379" % lab.ip(name)]
        assert member["peer_urls"] == ["https://%s:2380" % lab.ip(name)]
        assert re.fullmatch(r"[0-9a-f]{1,16}", member["id"])
    assert info["alarms"] == []


def test_check_mode_reads_the_same(lab):
    info = run_module(lab, "cp2", MODULE, check=True)
    assert not info.get("failed"), info.get("msg")
    assert info["changed"] is False and info["member_count"] == 3


def test_status_playbook_prints_the_table_and_sets_the_fact(lab):
    run = run_playbook(lab, "playbooks/status.yml")
    assert run.rc == 0, run.stderr
    table = run.result("Show the members")["msg"]
    assert table[0].split()[:2] == ["NAME", "ID"]
    assert sorted(line.split()[0] for line in table[2:5]) == ["cp1", "cp2", "cp3"]
    assert table[-1] == "no active alarms"
    fact = run.result("Keep the cluster's status as a fact on every host")
    assert not fact.get("failed")


def test_a_stopped_member_is_reported_and_the_others_complete(lab):
    lab.stop("cp3")
    try:
        info = run_module(lab, "cp1", MODULE)
        assert not info.get("failed"), info.get("msg")
        members = {m["name"]: m for m in info["members"]}
        assert "error" in members["cp3"] and lab.ip("cp3") in members["cp3"]["error"]
        for name in ("cp1", "cp2"):
            assert "error" not in members[name] and members[name]["db_size_in_use"] > 0
        assert [m["is_leader"] for m in info["members"]].count(True) == 1

        asked = run_module(lab, "cp1", MODULE, {"fail_on_unhealthy": True})
        assert asked.get("failed") and "cp3" in asked["msg"], asked

        # The playbook skips the stopped host and still reports every member.
        run = run_playbook(lab, "playbooks/status.yml")
        assert run.rc == 0, run.stderr
        assert run.stats["cp3"]["failures"] == 0
        rows = {line.split()[0]: line for line in run.result("Show the members")["msg"][2:5]}
        assert lab.ip("cp3") in rows["cp3"] and "3." in rows["cp1"]
    finally:
        lab.start("cp3")
        lab.wait_healthy(timeout=90)


def test_a_wrong_ca_file_fails_naming_that_file(lab):
    # A CA that did not sign the lab's server certificates: the Kubernetes CA kubeadm also writes.
    info = run_module(lab, "cp1", MODULE, {"ca_cert": "/etc/kubernetes/pki/ca.crt"})
    assert info.get("failed"), info
    assert "/etc/kubernetes/pki/ca.crt" in info["msg"], info["msg"]


def test_a_missing_client_key_fails_naming_that_file(lab):
    info = run_module(lab, "cp1", MODULE, {"client_cert": "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                                           "client_key": "/nonexistent/client.key"})
    assert info.get("failed"), info
    assert "/nonexistent/client.key" in info["msg"], info["msg"]
