"""Two runbook procedures on one 3-host lab, read back the way an operator would.

Deckhouse "eliminating infinite restart": write keys; the other masters are lost (cp3's data wiped, cp2's etcd
stopped with its manifest parked); cp1's WAL is damaged while its etcd is stopped, so that etcd fails at every start
(a restart loop). `playbooks/repair_member.yml` for cp1: in check mode (no file changes on any host), without the
confirmation (refused), for real (cp1 rebuilt from its own member/snap/db with the hash check skipped, the old data
dir moved aside with the damaged WAL in it, cp2 and cp3 joined back: 3 healthy voting members, every key on each),
and again (nothing changes).

kops "stale master leases": two keys under /registry/masterleases/ of API servers that do not exist, one without a
lease and one with a live etcd lease; `playbooks/lease_cleanup.yml` in check mode (nothing deleted), for real (the
two removed, the three live API servers' leases kept) and again (nothing changes).
"""

import json
import os
import time

import pytest

from ansible_run import run_playbook  # pylint: disable=import-error
from test_restore import host_files, write_keys  # pylint: disable=import-error

pytestmark = pytest.mark.lab

# One line in the suite (the restart loop needs the lab's real kubelet back-off); ETCDOPS_REPAIR_LINES="3.4 3.7"
# runs it on other lines by hand.
LAB_LINES = os.environ.get("ETCDOPS_REPAIR_LINES", "3.6").split()
PREFIX = "/repair-test/"
KEYS = 1500
EXTRA = {"repair_member_host": "cp1", "backup_store": "local", "backup_local_directory": "/var/backups/etcd",
         "backup_resources": False}
PARKED = "/etc/kubernetes/manifests-parked/etcd.yaml"
IN_PLACE = "/etc/kubernetes/manifests/etcd.yaml"


def value_of(index):
    return "value-%05d" % index


def read_prefix(lab, host, endpoints=None):
    out = lab.etcdctl(host, "get", "--prefix", PREFIX, endpoints=endpoints, timeout=120).stdout.splitlines()
    return dict(zip(out[0::2], out[1::2]))


def wait_until(what, check, timeout=90):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting until %s" % what
        time.sleep(0.5)


def etcd_stopped(lab, host):
    return not lab.exec(host, ["pgrep", "-x", "etcd"], check=False).stdout.strip()


def park(lab, host):
    lab.exec(host, ["sh", "-c", "mkdir -p /etc/kubernetes/manifests-parked && mv %s %s" % (IN_PLACE, PARKED)])
    wait_until("etcd stopped on %s" % host, lambda: etcd_stopped(lab, host))


def etcd_attempts(lab, host):
    listing = json.loads(lab.exec(host, ["crictl", "ps", "-a", "--name", "^etcd$", "-o", "json"]).stdout)
    return max([c["metadata"]["attempt"] for c in listing["containers"]] + [-1])


def files_everywhere(lab):
    script = "find /var/lib -maxdepth 1 -name 'etcd*' | sort; find /etc/kubernetes -type f | sort | xargs -r sha256sum"
    return {h: host_files(lab, h) + lab.exec(h, ["sh", "-c", script]).stdout for h in lab.members}


def test_repair_a_member_in_a_restart_loop_from_its_own_db(lab):
    begun = time.monotonic()
    target, stale, wiped = lab.members
    expected = {PREFIX + "k%05d" % i: value_of(i) for i in range(KEYS)}
    write_keys(lab, target, sorted(expected.items()))

    # the other masters are lost: cp3's data wiped, cp2's etcd stopped (its data stays)
    park(lab, wiped)
    lab.wipe_data(wiped)
    park(lab, stale)
    # cp1's WAL damaged while its etcd is stopped: one byte inside the written records, so every start fails
    park(lab, target)
    wal = lab.exec(target, ["sh", "-c", "ls /var/lib/etcd/member/wal/*.wal | head -n1"]).stdout.strip()
    before_attempts = etcd_attempts(lab, target)
    lab.corrupt(target, wal, offset=4096)
    lab.exec(target, ["mv", PARKED, IN_PLACE])
    wait_until("etcd on %s restarting" % target, lambda: etcd_attempts(lab, target) >= before_attempts + 2, timeout=120)
    log = lab.logs(target, "etcd", tail=30)
    assert lab.etcdctl(target, "endpoint", "health", check=False, timeout=20).returncode != 0
    print("keys written, 2 masters lost, cp1 in a restart loop: %.1fs; its log ends: %s" % (
        time.monotonic() - begun, log[-600:]))

    # check mode: the plan, and no file changes on any host
    before = files_everywhere(lab)
    check = run_playbook(lab, "playbooks/repair_member.yml", EXTRA, check=True)
    assert check.rc == 0, check.stderr[-3000:] + json.dumps([r for n, h, r in check.results() if r.get("failed")])[:5000]
    plan = check.result("Show the plan")["msg"]
    assert "restore it with the hash check skipped" in plan and "cp1=https://%s:2380" % lab.ip(target) in plan, plan
    assert "then add back as learners, then promote: cp2, cp3" in plan, plan
    restore_plan = check.result("Restore the db with the hash check skipped into a new data directory (the old one is "
                                "moved aside)")
    assert "--skip-hash-check" in restore_plan["command"], restore_plan
    assert files_everywhere(lab) == before

    # without the confirmation: refused, nothing changed
    refused = run_playbook(lab, "playbooks/repair_member.yml", EXTRA)
    assert refused.rc != 0 and "repair_member_confirm" in json.dumps(refused.data)
    assert files_everywhere(lab) == before

    started = time.monotonic()
    done = run_playbook(lab, "playbooks/repair_member.yml", dict(EXTRA, repair_member_confirm=True))
    print("repair_member.yml took %.1fs" % (time.monotonic() - started))
    with open(os.environ.get("ETCDOPS_REPAIR_DUMP", os.devnull), "w") as dump:
        json.dump(list(done.results()), dump, indent=1, default=str)
    assert done.rc == 0, done.stderr[-3000:] + json.dumps([r for n, h, r in done.results() if r.get("failed")])[:5000]

    # rebuilt from its own db (copied out first, kept), the old data dir moved aside with the damaged WAL in it
    restored = done.result("Restore the db with the hash check skipped into a new data directory (the old one is "
                           "moved aside)")
    assert restored["restored"] and "--skip-hash-check" in restored["command"], restored
    assert restored["initial_cluster"] == "cp1=https://%s:2380" % lab.ip(target)
    moved = restored["moved_to"]
    assert moved.startswith(("/var/lib/etcd.moved-", "/var/lib/etcd/moved-")), moved
    assert lab.exec(target, ["test", "-f", moved + wal[len("/var/lib/etcd"):]], check=False).returncode == 0
    copy = done.result("Copy the member's db out of the data directory that is moved aside")
    assert lab.exec(target, ["test", "-s", copy["dest"]], check=False).returncode == 0
    removed = done.result("Remove them, so that the kubelet starts etcd afresh")
    assert removed["changed"], removed

    # every key on every member; 3 voting members, one leader
    lab.wait_healthy(timeout=60)
    for host in lab.members:
        assert read_prefix(lab, host, endpoints="https://%s:2379" % lab.ip(host)) == expected, host
    members = json.loads(lab.etcdctl(target, "member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == ["cp1", "cp2", "cp3"]
    assert not any(m.get("isLearner") for m in members)
    statuses = lab.endpoint_status()
    assert len(statuses) == 3 and len({s["Status"]["leader"] for s in statuses}) == 1

    # the second run with the same inputs changes nothing
    started = time.monotonic()
    again = run_playbook(lab, "playbooks/repair_member.yml", dict(EXTRA, repair_member_confirm=True))
    print("second run: %.1fs; whole test %.1fs" % (time.monotonic() - started, time.monotonic() - begun))
    assert again.rc == 0, again.stderr[-3000:]
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert "nothing to do" in again.result("Show the plan")["msg"]


def test_lease_cleanup_removes_stale_master_leases_and_keeps_the_live_ones(lab):
    begun = time.monotonic()
    lab.wait_healthy(timeout=90)
    lab.wait_leases(timeout=150)
    live = lab.master_leases()
    host = lab.members[0]
    without_lease = "/registry/masterleases/10.254.0.99"
    with_lease = "/registry/masterleases/10.254.0.98"
    lab.etcdctl(host, "put", without_lease, '{"kind":"Endpoints","subsets":[]}')
    granted = lab.etcdctl(host, "lease", "grant", "600").stdout.split()  # lease <id> granted with TTL(600s)
    lab.etcdctl(host, "put", "--lease=" + granted[1], with_lease, '{"kind":"Endpoints","subsets":[]}')
    assert lab.master_leases() == sorted(live + [without_lease, with_lease])
    task = "Remove the stale master leases, keep those of the API servers that run"

    check = run_playbook(lab, "playbooks/lease_cleanup.yml", {}, check=True)
    assert check.rc == 0, check.stderr[-3000:] + json.dumps([r for n, h, r in check.results() if r.get("failed")])[:5000]
    planned = check.result(task)
    assert sorted(e["key"] for e in planned["removed"]) == [with_lease, without_lease], planned
    assert sorted(planned["kept"]) == live, planned
    assert lab.master_leases() == sorted(live + [without_lease, with_lease])

    refused = run_playbook(lab, "playbooks/lease_cleanup.yml", {})
    assert refused.rc != 0 and "lease_cleanup_confirm" in json.dumps(refused.data)
    assert lab.master_leases() == sorted(live + [without_lease, with_lease])

    done = run_playbook(lab, "playbooks/lease_cleanup.yml", {"lease_cleanup_confirm": True})
    assert done.rc == 0, done.stderr[-3000:] + json.dumps([r for n, h, r in done.results() if r.get("failed")])[:5000]
    result = done.result(task)
    by_key = {e["key"]: e for e in result["removed"]}
    assert sorted(by_key) == [with_lease, without_lease], result
    assert by_key[without_lease]["lease_id"] is None and by_key[with_lease]["ttl"] > 0
    assert lab.master_leases() == live
    print(done.result("Report the master leases")["msg"])

    again = run_playbook(lab, "playbooks/lease_cleanup.yml", {"lease_cleanup_confirm": True})
    assert again.rc == 0, again.stderr[-3000:]
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert again.result(task)["removed"] == [] and lab.master_leases() == live
    print("lease cleanup test: %.1fs" % (time.monotonic() - begun))
