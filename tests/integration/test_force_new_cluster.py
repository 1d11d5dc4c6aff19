"""The Deckhouse / OpenShift "one survivor" procedure on a 3-host lab, read back the way an operator would:

write keys; lose cp3 (etcd stopped, its manifest gone, its data wiped); write more keys (cp1 and cp2 still have
quorum); lose cp2 (etcd stopped by parking its manifest; its data, now stale, stays). cp1 alone has no quorum. Then
`playbooks/force_new_cluster.yml` with survivor cp1: in check mode (no file changes on any host), without the
confirmation (refused, nothing changed), for real (every key cp1 had; 3 voting members, one leader, equal hashkv;
cp2's old data moved aside, not deleted; cp1 runs without --force-new-cluster), and a second time (nothing
changes)."""

import json
import os
import time

import pytest

from ansible_run import run_playbook  # pylint: disable=import-error
from test_restore import host_files, write_keys  # pylint: disable=import-error

pytestmark = pytest.mark.lab

# One line in the suite (about 3 minutes); ETCDOPS_RESTORE_LINES="3.4 3.5 3.7" runs it on other lines by hand.
LAB_LINES = os.environ.get("ETCDOPS_RESTORE_LINES", "3.6").split()
PREFIX = "/force-new-cluster-test/"
FIRST = 2000
LATER = 500
EXTRA = {"force_new_cluster_survivor": "cp1", "backup_store": "local",
         "backup_local_directory": "/var/backups/etcd", "backup_resources": False}


def read_prefix(lab, host, endpoints=None):
    out = lab.etcdctl(host, "get", "--prefix", PREFIX, endpoints=endpoints, timeout=120).stdout.splitlines()
    return dict(zip(out[0::2], out[1::2]))


def wait_etcd_stopped(lab, host):
    deadline = time.monotonic() + 60
    while lab.exec(host, ["pgrep", "-x", "etcd"], check=False).stdout.strip():
        assert time.monotonic() < deadline, "etcd did not stop on %s" % host
        time.sleep(0.5)


def files_everywhere(lab):
    script = "find /var/lib -maxdepth 1 -name 'etcd*' | sort; find /etc/kubernetes -type f | sort | xargs -r sha256sum"
    return {h: host_files(lab, h) + lab.exec(h, ["sh", "-c", script]).stdout for h in lab.members}


def test_force_new_cluster_from_one_survivor(lab):
    begun = time.monotonic()
    survivor, stale, wiped = lab.members
    write_keys(lab, survivor, [(PREFIX + "k%05d" % i, "v%05d" % i) for i in range(FIRST)])

    # cp3 lost: manifest gone (the host was rebuilt), data wiped
    lab.exec(wiped, ["mv", "/etc/kubernetes/manifests/etcd.yaml", "/root/etcd.yaml.lost"])
    wait_etcd_stopped(lab, wiped)
    lab.wipe_data(wiped)
    write_keys(lab, survivor, [(PREFIX + "later%04d" % i, "later") for i in range(LATER)])
    # cp2 lost too: etcd stopped the documented way (manifest parked), its data stays and is now stale
    lab.exec(stale, ["sh", "-c", "mkdir -p /etc/kubernetes/manifests-parked && "
                                 "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests-parked/etcd.yaml"])
    wait_etcd_stopped(lab, stale)
    assert lab.exec(stale, ["test", "-d", "/var/lib/etcd/member"], check=False).returncode == 0
    no_quorum = lab.etcdctl(survivor, "get", PREFIX + "k00000", check=False, timeout=30)
    assert no_quorum.returncode != 0, "the survivor still has quorum"
    print("keys written, 2 of 3 members lost: %.1fs" % (time.monotonic() - begun))

    # check mode: the plan, and no file changes on any host
    before = files_everywhere(lab)
    check = run_playbook(lab, "playbooks/force_new_cluster.yml", EXTRA, check=True)
    assert check.rc == 0, check.stderr[-3000:] + json.dumps(check.stats)
    plan = check.result("Show the plan")["msg"]
    assert "--force-new-cluster" in plan and "cp2 at https://" in plan and "cp3 at https://" in plan, plan
    assert files_everywhere(lab) == before
    print("check mode: %.1fs" % (time.monotonic() - begun))

    # without the confirmation: refused, nothing changed
    refused = run_playbook(lab, "playbooks/force_new_cluster.yml", EXTRA)
    assert refused.rc != 0 and "force_new_cluster_confirm" in json.dumps(refused.data)
    assert files_everywhere(lab) == before

    started = time.monotonic()
    done = run_playbook(lab, "playbooks/force_new_cluster.yml", dict(EXTRA, force_new_cluster_confirm=True))
    print("force_new_cluster.yml took %.1fs" % (time.monotonic() - started))
    assert done.rc == 0, done.stderr[-3000:] + json.dumps([r for n, h, r in done.results() if r.get("failed")])[:5000]

    # the stale member's data moved aside (beside the data dir, or inside it where it is a mount point), not deleted
    moved = done.result("Move their data directories aside (timestamped, never deleted) and leave them empty", stale)
    assert moved["changed"] and moved["moved_to"].startswith(("/var/lib/etcd.moved-", "/var/lib/etcd/moved-")), moved
    assert lab.exec(stale, ["test", "-f", moved["moved_to"] + "/member/snap/db"], check=False).returncode == 0
    assert not done.result("Move their data directories aside (timestamped, never deleted) and leave them empty",
                           wiped)["changed"]  # wiped: nothing to move
    # the survivor's db, copied while it was stopped (no backup can be taken without quorum)
    copy = done.result("Copy the survivor's db beside its data directory (no backup could be taken without quorum)")
    assert lab.exec(survivor, ["test", "-s", copy["dest"]], check=False).returncode == 0

    # every key the survivor had, on every member; 3 voting members, one leader, equal hashkv
    lab.wait_healthy(timeout=60)
    expected = dict({PREFIX + "k%05d" % i: "v%05d" % i for i in range(FIRST)},
                    **{PREFIX + "later%04d" % i: "later" for i in range(LATER)})
    for host in lab.members:
        assert read_prefix(lab, host, endpoints="https://%s:2379" % lab.ip(host)) == expected, host
    members = json.loads(lab.etcdctl(survivor, "member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == ["cp1", "cp2", "cp3"]
    assert not any(m.get("isLearner") for m in members)
    statuses = lab.endpoint_status()
    assert len(statuses) == 3 and len({s["Status"]["leader"] for s in statuses}) == 1
    hashkv = done.result("Check that every member holds the same data (hashkv at one revision)")
    assert hashkv["agree"] and len(hashkv["hashes"]) == 3 and len({h["hash"] for h in hashkv["hashes"]}) == 1
    manifest = lab.exec(survivor, ["cat", "/etc/kubernetes/manifests/etcd.yaml"]).stdout
    assert "--force-new-cluster" not in manifest
    for host in (stale, wiped):
        joined = lab.exec(host, ["cat", "/etc/kubernetes/manifests/etcd.yaml"]).stdout
        assert "--initial-cluster-state=existing" in joined, host

    # the second run with the same inputs changes nothing
    started = time.monotonic()
    again = run_playbook(lab, "playbooks/force_new_cluster.yml", dict(EXTRA, force_new_cluster_confirm=True))
    print("second run: %.1fs; whole test %.1fs" % (time.monotonic() - started, time.monotonic() - begun))
    assert again.rc == 0, again.stderr[-3000:]
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert "nothing to do" in again.result("Show the plan")["msg"]
    assert len(read_prefix(lab, survivor)) == FIRST + LATER
