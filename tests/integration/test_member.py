"""etcd_member on a 3-host lab for each etcd line, with kubeadm's TLS files as the only configuration, read like
the Kubernetes runbook "Replacing a failed etcd member": cp3's etcd fails; removing a healthy member is refused;
the failed one is removed (check mode first, then for real, then again without change); cp3 comes back with an
empty data directory as a learner, its static pod manifest joining the existing cluster with what the module
returned; it is promoted once it has caught up and holds the API server's objects. etcdctl checks each step."""

import json

import pytest

from ansible_run import run_module  # pylint: disable=import-error

pytestmark = pytest.mark.lab
# Leaves the lab as up made it (the fixture checks): the next shared module of the line takes it over.
LAB_SHARED = True

MODULE = "etcdops.etcd.etcd_member"
MANIFEST = "etcdops.etcd.static_pod_manifest"


def etcdctl_members(lab, host="cp1"):
    """`etcdctl member list -w json` on a host: {name or peer URL: is_learner}."""
    listing = json.loads(lab.etcdctl(host, "member", "list", "-w", "json").stdout)
    return {(m.get("name") or m["peerURLs"][0]): bool(m.get("isLearner")) for m in listing["members"]}


def test_replace_a_failed_member_as_the_runbook_does(lab):
    peer3 = "https://%s:2380" % lab.ip("cp3")

    # cp3's etcd fails (its manifest parked: the kubelet stops it)
    stopped = run_module(lab, "cp3", MANIFEST, {"name": "etcd", "state": "absent", "wait": "stopped"})
    assert not stopped.get("failed"), stopped.get("msg")
    assert etcdctl_members(lab) == {"cp1": False, "cp2": False, "cp3": False}

    # removing a healthy member now would leave cp1 alone with the failed cp3: refused, nothing sent
    refused = run_module(lab, "cp1", MODULE, {"name": "cp2", "state": "absent"})
    assert refused.get("failed") and "would leave 2 voting members of which 1 are healthy" in refused["msg"], refused
    assert "member cp3 (" in refused["msg"] and refused["changed"] is False

    # check mode, then the removal of the failed member, then again: no change
    checked = run_module(lab, "cp1", MODULE, {"name": "cp3", "state": "absent"}, check=True)
    assert not checked.get("failed"), checked.get("msg")
    assert checked["changed"] is True and checked["actions"] == ["remove"]
    assert etcdctl_members(lab) == {"cp1": False, "cp2": False, "cp3": False}
    removed = run_module(lab, "cp1", MODULE, {"name": "cp3", "state": "absent"})
    assert not removed.get("failed"), removed.get("msg")
    assert removed["changed"] is True and etcdctl_members(lab) == {"cp1": False, "cp2": False}
    assert run_module(lab, "cp2", MODULE, {"name": "cp3", "state": "absent"})["changed"] is False

    # the new cp3: an empty data directory, added as a learner
    lab.wipe_data("cp3")
    added = run_module(lab, "cp1", MODULE, {"name": "cp3", "peer_urls": [peer3], "promote": False})
    assert not added.get("failed"), added.get("msg")
    assert added["actions"] == ["add as learner"] and added["initial_cluster_state"] == "existing"
    assert sorted(added["initial_cluster"].split(",")) == sorted(
        "%s=https://%s:2380" % (host, lab.ip(host)) for host in ("cp1", "cp2", "cp3"))
    assert etcdctl_members(lab) == {"cp1": False, "cp2": False, peer3: True}

    # its manifest joins the existing cluster with what the module returned, and the kubelet starts it
    joined = run_module(lab, "cp3", MANIFEST, {
        "name": "etcd", "state": "present", "wait": "running",
        "flags": {"initial-cluster": added["initial_cluster"], "initial-cluster-state": "existing"}})
    assert not joined.get("failed"), joined.get("msg")

    # promoted once it has caught up; then nothing left to do
    promoted = run_module(lab, "cp1", MODULE, {"name": "cp3", "peer_urls": [peer3], "promote_timeout": 120})
    assert not promoted.get("failed"), promoted.get("msg")
    assert promoted["actions"] == ["promote to voting member"] and promoted["member"]["is_learner"] is False
    assert etcdctl_members(lab) == {"cp1": False, "cp2": False, "cp3": False}
    again = run_module(lab, "cp3", MODULE, {"name": "cp3", "peer_urls": [peer3]})
    assert again["changed"] is False, again
    lab.wait_healthy(timeout=90)

    # cp3 holds the API server's objects, read from its own copy once it has applied the leader's commit index
    # (linearizable: a serializable read on a member that just joined can come before its apply catches up)
    keys = lab.etcdctl("cp3", "get", "--prefix", "/registry/configmaps/default/", "--keys-only",
                       "--consistency=l").stdout.split()
    assert len(keys) == 5, keys
