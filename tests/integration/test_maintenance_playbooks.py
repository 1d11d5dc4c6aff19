"""The maintenance playbooks on one lab of 5 hosts of which 3 are etcd members (cp4, cp5 spare), read like the
runbooks: defrag.yml defragments a fragmented cluster followers first, the leader last, one at a time with pauses;
a small backend quota filled until NOSPACE is recovered by nospace_recovery.yml; a member killed with its data
wiped is replaced by replace_member.yml; scale.yml grows 3 -> 5 and shrinks back to 3, and refuses a removal that
would lose quorum; a lost host's member is replaced on a spare host, and moved back when the host returns. NOSPACE
comes last: on etcd 3.4 a member that joins replays the whole history, and with the small quota the replay of the 1
MB values alone raises NOSPACE on the new member. Each: check mode first (nothing changes), then for real (checked
with etcdctl), then again (nothing changes).

Runs on etcd 3.6 in the suite; ETCDOPS_MAINT_LINES="3.4 3.5 3.7" runs it on other lines by hand."""

import json
import os
import re
import time

import pytest

import lab as lablib  # pylint: disable=import-error
from ansible_run import run_module, run_playbook  # pylint: disable=import-error
from conftest import LINES, lab_prefix  # pylint: disable=import-error

pytestmark = pytest.mark.lab

LAB_LINES = [line for line in os.environ.get("ETCDOPS_MAINT_LINES", "3.6").split() if line in LINES]
MIB = 1024 * 1024
QUOTA = 24 * MIB
BACKUP = {"backup_store": "local", "backup_local_directory": "/var/backups/etcd", "backup_resources": False}
LOWERED = {"defrag_min_fragmentation_bytes": "4M", "defrag_min_fragmentation_ratio": 0.3}


@pytest.fixture(scope="module", params=LAB_LINES, ids=["etcd-" + line for line in LAB_LINES])
def maint_lab(request):
    the_lab = lablib.Lab(lab_prefix("m" + request.param.replace(".", "")))
    the_lab.down()
    try:
        the_lab.up(hosts=5, members=3, etcd_line=request.param, with_s3=False)
        for host in the_lab.members:  # a small backend quota, set as an operator would edit the manifest
            the_lab.exec(host, ["sh", "-c", "sed 's|^    - --snapshot-count=|    - --quota-backend-bytes=%d\\n"
                                "    - --snapshot-count=|' /etc/kubernetes/manifests/etcd.yaml > /etc/kubernetes/.etcd"
                                " && mv /etc/kubernetes/.etcd /etc/kubernetes/manifests/etcd.yaml" % QUOTA])
        time.sleep(3)
        the_lab.wait_healthy(timeout=120)
        yield the_lab
    finally:
        the_lab.down()


def etcdctl_path(lab):
    return "%s/etcdctl %s" % (lab.state["etcd_bin_dir"], " ".join(lablib.ETCDCTL_TLS))


def members(lab, host="cp1"):
    """{name or peer URL: (id, is_learner)} from `etcdctl member list -w json`."""
    listing = json.loads(lab.etcdctl(host, "member", "list", "-w", "json").stdout)
    return {(m.get("name") or m["peerURLs"][0]): ("%x" % m["ID"], bool(m.get("isLearner")))
            for m in listing["members"]}


def statuses(lab, hosts):
    """{host: etcdctl endpoint status of that member}."""
    by_ip = {lab.ip(h): h for h in hosts}
    return {by_ip[s["Endpoint"].split("//")[1].split(":")[0]]: s["Status"]
            for s in lab.endpoint_status(hosts)}


def leader_of(lab, hosts):
    found = statuses(lab, hosts)
    ids = {h: s["header"]["member_id"] for h, s in found.items()}
    return [h for h, i in ids.items() if i == list(found.values())[0]["leader"]][0]


def changed_hosts(run):
    return {h: s["changed"] for h, s in run.stats.items() if s.get("changed")}


def ok(run):
    assert run.rc == 0, "%s\n%s" % (json.dumps([(n, h, r.get("msg")) for n, h, r in run.results() if r.get("failed")]),
                                    run.stderr[-3000:])
    return run


def fragment(lab, host="cp1"):
    """120 values of 100 KB over one key, compacted: the old values become free pages in every member's file."""
    script = ("head -c 102400 /dev/zero | tr '\\0' x > /tmp/value && "
              "for i in $(seq 120); do %s put /etcdops/fragment < /tmp/value >/dev/null || exit 1; done" % etcdctl_path(lab))
    lab.exec(host, ["sh", "-c", script], timeout=300)
    revision = json.loads(lab.etcdctl(host, "get", "/etcdops/fragment", "-w", "json", "--keys-only").stdout)
    lab.etcdctl(host, "compact", "--physical", str(revision["header"]["revision"]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bbolt counts freed pages once a later write has begun
        lab.etcdctl(host, "put", "/etcdops/fragment-done", "x")
        time.sleep(0.5)
        if all(s["dbSizeInUse"] * 2 < s["dbSize"] for s in statuses(lab, lab.members).values()):
            return
    raise AssertionError("compaction freed nothing: %s" % statuses(lab, lab.members))


def defrag_log_times(lab, host):
    """Timestamps of the lines of a member's etcd log about defragmentation."""
    ids = lab.exec(host, ["crictl", "ps", "-a", "--name", "^etcd$", "-q"]).stdout.split()
    text = ""
    for cid in ids:
        # An exited container listed a moment ago may be gone by now: the kubelet's container GC keeps only the
        # last exited attempt. Its log holds nothing of the defragmentation this test runs on live members.
        shown = lab.exec(host, ["sh", "-c", "crictl logs -t %s 2>&1" % cid], check=False)
        if shown.returncode == 0:
            text += shown.stdout
        elif "not found" not in shown.stdout:
            raise AssertionError("crictl logs %s on %s: %s" % (cid, host, shown.stdout))
    return [line.split()[0] for line in text.splitlines() if "defrag" in line.lower() and line[:4].isdigit()]


def test_defrag_followers_then_the_leader_one_at_a_time_with_pauses(maint_lab):
    lab = maint_lab
    fragment(lab)
    before = statuses(lab, lab.members)
    leader = leader_of(lab, lab.members)

    checked = ok(run_playbook(lab, "playbooks/defrag.yml", dict(BACKUP, **LOWERED), check=True))
    assert {h: s["dbSize"] for h, s in statuses(lab, lab.members).items()} == {
        h: s["dbSize"] for h, s in before.items()}
    assert checked.result("Show what was defragmented, in order")["defrag_members"][-1]["name"] == leader

    pause = 4
    done = ok(run_playbook(lab, "playbooks/defrag.yml", dict(BACKUP, defrag_pause_seconds=pause, **LOWERED)))
    order = done.result("Show what was defragmented, in order")["defrag_members"]
    assert [m["name"] for m in order][-1] == leader and not any(m["was_leader"] for m in order[:-1]), order
    assert all(m["defragmented"] for m in order) and len(order) == 3
    for first, second in zip(order, order[1:]):  # never two at once, and the pause kept between them
        gap = _seconds(second["started"]) - _seconds(first["finished"])
        assert gap >= pause, (first, second)
    after = statuses(lab, lab.members)
    for host in lab.members:
        assert after[host]["dbSize"] < before[host]["dbSize"] - 8 * MIB, (host, before[host], after[host])
    # the members' own logs: the leader's defragmentation is the last
    last = {h: max(defrag_log_times(lab, h)) for h in lab.members}
    assert max(last, key=last.get) == leader, last

    again = ok(run_playbook(lab, "playbooks/defrag.yml", dict(BACKUP, **LOWERED)))
    assert changed_hosts(again) == {}, again.stats


def _seconds(stamp):
    from datetime import datetime  # pylint: disable=import-outside-toplevel
    return datetime.fromisoformat(stamp).timestamp()


def test_replace_a_member_killed_with_its_data_wiped(maint_lab):
    lab = maint_lab
    for i in range(50):
        lab.etcdctl("cp1", "put", "/etcdops/keys/%02d" % i, "value-%d" % i)
    old = members(lab)
    # cp3's etcd dies and its data is lost; the kubelet keeps restarting it on an empty data directory
    lab.exec("cp3", ["mv", "/etc/kubernetes/manifests/etcd.yaml", "/root/etcd.yaml"])
    deadline = time.monotonic() + 60
    while lab.exec("cp3", ["pgrep", "-x", "etcd"], check=False).stdout.strip():
        assert time.monotonic() < deadline, "etcd did not stop on cp3"
        time.sleep(1)
    lab.wipe_data("cp3")
    lab.exec("cp3", ["mv", "/root/etcd.yaml", "/etc/kubernetes/manifests/etcd.yaml"])
    time.sleep(5)

    args = dict(BACKUP, replace_member_name="cp3", replace_member_confirm=True, replace_member_promote_timeout=120)
    checked = ok(run_playbook(lab, "playbooks/replace_member.yml", args, check=True))
    assert members(lab) == old and checked.result("Remove the failed member from the cluster")["changed"] is True
    assert "etcd.yaml" in lab.exec("cp3", ["ls", "/etc/kubernetes/manifests"]).stdout

    done = ok(run_playbook(lab, "playbooks/replace_member.yml", args))
    assert done.result("Promote the learner once it has caught up with the leader")["actions"] == [
        "promote to voting member"]
    assert done.result("Add the new member as a learner")["actions"] == ["add as learner"]
    now = members(lab)
    assert sorted(now) == ["cp1", "cp2", "cp3"] and not any(entry[1] for entry in now.values()), now
    assert now["cp3"][0] != old["cp3"][0] and now["cp1"] == old["cp1"]
    lab.wait_healthy(timeout=90, hosts=lab.members)
    keys = lab.etcdctl("cp3", "get", "--prefix", "/etcdops/keys/", "--consistency=l", "--print-value-only").stdout
    assert keys.split() == ["value-%d" % i for i in range(50)]
    assert re.search(r"etcd\.replaced-\d{8}T\d{6}Z", lab.exec("cp3", ["ls", "/var/lib"]).stdout)
    flags = lab.exec("cp3", ["cat", "/etc/kubernetes/manifests/etcd.yaml"]).stdout
    assert "--initial-cluster-state=existing" in flags

    again = ok(run_playbook(lab, "playbooks/replace_member.yml", args))
    assert changed_hosts(again) == {}, again.stats


def test_scale_three_to_five_and_back_refusing_a_quorum_loss(maint_lab):
    lab = maint_lab
    # with cp3 stopped, removing cp2 would leave cp1 alone of two voters: refused, nothing sent
    lab.exec("cp3", ["mv", "/etc/kubernetes/manifests/etcd.yaml", "/root/etcd.yaml"])
    try:
        time.sleep(3)
        refused = run_module(lab, "cp1", "etcdops.etcd.etcd_member", {"name": "cp2", "state": "absent"})
        assert refused.get("failed") and "would leave 2 voting members of which 1 are healthy" in refused["msg"]
        by_play = run_playbook(lab, "playbooks/scale.yml", dict(BACKUP, scale_action="remove", scale_host="cp2",
                                                                scale_confirm=True, backup_pre_change_allow_without_backup=True))
        assert by_play.rc != 0 and "would leave 2 voting members" in json.dumps(by_play.data)
        assert sorted(members(lab)) == ["cp1", "cp2", "cp3"]
    finally:
        lab.exec("cp3", ["mv", "/root/etcd.yaml", "/etc/kubernetes/manifests/etcd.yaml"])
    lab.wait_healthy(timeout=90, hosts=lab.members)

    add4 = dict(BACKUP, scale_action="add", scale_host="cp4", scale_address=lab.ip("cp4"), scale_confirm=True,
                scale_promote_timeout=120)
    ok(run_playbook(lab, "playbooks/scale.yml", add4, check=True))
    assert sorted(members(lab)) == ["cp1", "cp2", "cp3"]
    assert lab.exec("cp4", ["ls", "/etc/kubernetes/manifests"]).stdout.strip() == ""
    ok(run_playbook(lab, "playbooks/scale.yml", add4))
    ok(run_playbook(lab, "playbooks/scale.yml", dict(add4, scale_host="cp5", scale_address=lab.ip("cp5"))))
    five = ["cp1", "cp2", "cp3", "cp4", "cp5"]
    now = members(lab)
    assert sorted(now) == five and not any(entry[1] for entry in now.values()), now
    lab.wait_healthy(timeout=90, hosts=five)
    assert lab.etcdctl("cp5", "get", "/etcdops/keys/07", "--consistency=l", "--print-value-only").stdout.strip() == "value-7"
    assert changed_hosts(run_playbook(lab, "playbooks/scale.yml", add4)) == {}

    remove5 = dict(BACKUP, scale_action="remove", scale_host="cp5", scale_confirm=True)
    ok(run_playbook(lab, "playbooks/scale.yml", remove5, check=True))
    assert sorted(members(lab)) == five
    ok(run_playbook(lab, "playbooks/scale.yml", remove5))
    ok(run_playbook(lab, "playbooks/scale.yml", dict(remove5, scale_host="cp4")))
    assert sorted(members(lab)) == ["cp1", "cp2", "cp3"]
    lab.wait_healthy(timeout=90, hosts=lab.members)
    for host in ("cp4", "cp5"):
        assert not lab.exec(host, ["pgrep", "-x", "etcd"], check=False).stdout.strip()
        assert re.search(r"etcd\.replaced-\d{8}T\d{6}Z", lab.exec(host, ["ls", "/var/lib"]).stdout)
    assert changed_hosts(run_playbook(lab, "playbooks/scale.yml", remove5)) == {}


def test_replace_a_lost_host_on_a_spare_host_and_back(maint_lab):
    lab = maint_lab
    old = members(lab)
    lab.stop("cp3")  # the host is gone, with its container and data
    lab.wait_healthy(timeout=60, hosts=["cp1", "cp2"])
    onto4 = dict(BACKUP, replace_member_name="cp3", replace_member_host="cp4", replace_member_address=lab.ip("cp4"),
                 replace_member_confirm=True, replace_member_promote_timeout=120)
    ok(run_playbook(lab, "playbooks/replace_member.yml", onto4, check=True))
    assert members(lab) == old
    assert lab.exec("cp4", ["ls", "/etc/kubernetes/manifests"]).stdout.strip() == ""

    done = ok(run_playbook(lab, "playbooks/replace_member.yml", onto4))
    assert done.result("Add the new member as a learner")["actions"] == ["add as learner"]
    assert done.result("Promote the learner once it has caught up with the leader")["actions"] == [
        "promote to voting member"]
    now = members(lab)
    assert sorted(now) == ["cp1", "cp2", "cp4"] and not any(entry[1] for entry in now.values()), now
    lab.wait_healthy(timeout=90, hosts=["cp1", "cp2", "cp4"])
    keys = lab.etcdctl("cp4", "get", "--prefix", "/etcdops/keys/", "--consistency=l", "--print-value-only").stdout
    assert keys.split() == ["value-%d" % i for i in range(50)]
    assert "--name=cp4" in lab.exec("cp4", ["cat", "/etc/kubernetes/manifests/etcd.yaml"]).stdout
    assert changed_hosts(run_playbook(lab, "playbooks/replace_member.yml", onto4)) == {}

    # the old host comes back running a removed member; the member moves back onto it over its stale data
    lab.start("cp3")
    back = dict(onto4, replace_member_name="cp4", replace_member_host="cp3", replace_member_address=lab.ip("cp3"))
    ok(run_playbook(lab, "playbooks/replace_member.yml", back))
    now = members(lab)
    assert sorted(now) == ["cp1", "cp2", "cp3"] and not any(entry[1] for entry in now.values()), now
    lab.exec("cp4", ["mv", "/etc/kubernetes/manifests/etcd.yaml", "/root/etcd.yaml"])  # cp4 decommissioned
    lab.wait_healthy(timeout=90, hosts=lab.members)
    keys = lab.etcdctl("cp3", "get", "--prefix", "/etcdops/keys/", "--consistency=l", "--print-value-only").stdout
    assert keys.split() == ["value-%d" % i for i in range(50)]
    assert len(re.findall(r"etcd\.replaced-\d{8}T\d{6}Z", lab.exec("cp3", ["ls", "/var/lib"]).stdout)) == 2


def test_nospace_recovery_compacts_defragments_disarms_and_writes_work(maint_lab):
    lab = maint_lab
    script = ("head -c 1000000 /dev/zero | tr '\\0' y > /tmp/big && for i in $(seq 200); do "
              "%s put /etcdops/big < /tmp/big >/dev/null 2>/tmp/err || { cat /tmp/err; exit 0; }; done; echo none"
              % etcdctl_path(lab))
    filled = lab.exec("cp1", ["sh", "-c", script], timeout=300).stdout
    assert "database space exceeded" in filled, filled
    refused = lab.etcdctl("cp2", "put", "/etcdops/after", "x", check=False)
    assert refused.returncode != 0 and "database space exceeded" in refused.stderr
    assert "NOSPACE" in lab.etcdctl("cp1", "alarm", "list").stdout
    before = statuses(lab, lab.members)
    leader = leader_of(lab, lab.members)

    unconfirmed = run_playbook(lab, "playbooks/nospace_recovery.yml", BACKUP)
    assert unconfirmed.rc != 0 and "nospace_recovery_confirm=true" in json.dumps(unconfirmed.data)
    checked = ok(run_playbook(lab, "playbooks/nospace_recovery.yml", dict(BACKUP, nospace_recovery_confirm=True),
                              check=True))
    assert checked.result("Compact the history to the current revision")["changed"] is True
    assert "NOSPACE" in lab.etcdctl("cp1", "alarm", "list").stdout

    done = ok(run_playbook(lab, "playbooks/nospace_recovery.yml",
                           dict(BACKUP, nospace_recovery_confirm=True, nospace_recovery_pause_seconds=2)))
    order = done.result("Show what was defragmented, in order")["defrag_members"]
    assert [m["name"] for m in order][-1] == leader and all(m["defragmented"] for m in order), order
    assert done.result("Prove that writes work again (put, get and delete of a probe key)")["writable"] is True
    assert lab.etcdctl("cp1", "alarm", "list").stdout.strip() == ""
    lab.etcdctl("cp2", "put", "/etcdops/after", "x")
    assert lab.etcdctl("cp3", "get", "/etcdops/after", "--print-value-only").stdout.strip() == "x"
    after = statuses(lab, lab.members)
    for host in lab.members:
        assert after[host]["dbSize"] < before[host]["dbSize"], (host, before[host], after[host])
    last = {h: max(defrag_log_times(lab, h)) for h in lab.members}
    assert max(last, key=last.get) == leader, last

    again = ok(run_playbook(lab, "playbooks/nospace_recovery.yml", dict(BACKUP, nospace_recovery_confirm=True)))
    assert changed_hosts(again) == {}, again.stats
