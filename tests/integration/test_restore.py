"""The Kubernetes runbook "restoring an etcd cluster", on a 3-host lab, read back the way an operator would:

write 10,000 keys, take a snapshot, write 1,000 more, lose every member's data (each etcd stopped, its data dir
emptied, started again on nothing), then `playbooks/restore.yml` in check mode (no file changes on any host),
without the confirmation (refused), for real but killed (SIGKILL of ansible-playbook's process group) as soon as a
host has moved its data dir aside, run again: it converges (exactly the 10,000 keys with their values; 3 healthy
members, one leader, equal hashkv at one revision; every data dir moved aside still there; the API server
stand-ins running and holding their leases), and a third time (nothing changes)."""

import hashlib
import json
import os
import signal
import subprocess
import time
from datetime import datetime

import pytest

from ansible_run import ROOT, VENV_BIN, ansible_env, run_module, run_playbook  # pylint: disable=import-error

pytestmark = pytest.mark.lab

# Proved on one line in the suite; ETCDOPS_RESTORE_LINES="3.4 3.5 3.7" runs it on other lines by hand.
LAB_LINES = os.environ.get("ETCDOPS_RESTORE_LINES", "3.6").split()
PREFIX = "/restore-test/"
RESTORE_STEP = "Restore the snapshot into each member's data dir (all hosts at once; the old data dir is moved aside)"
KEYS = 10000
LATER = 1000
BATCH = 100  # puts per etcdctl txn (etcd's --max-txn-ops is 128)
SNAPSHOT_ON_HOST = "/root/restore-test-snapshot.db"

# Runs on a lab host: reads "key value" lines on stdin, writes them with one etcdctl txn per BATCH keys.
WRITER = r"""
import subprocess, sys
argv, batch = sys.argv[1:-1], int(sys.argv[-1])
lines = [l for l in sys.stdin.read().splitlines() if l]
for start in range(0, len(lines), batch):
    ops = "".join("put %s %s\n" % tuple(l.split(" ", 1)) for l in lines[start:start + batch])
    done = subprocess.run(argv + ["txn"], input="\n" + ops + "\n\n", capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.startswith("SUCCESS"):
        sys.exit("txn failed at %d: %s %s" % (start, done.stdout[:200], done.stderr[:500]))
print(len(lines))
"""


def value_of(index):
    return "v%05d-%s" % (index, hashlib.sha256(str(index).encode()).hexdigest()[:16])


def etcdctl_argv(lab):
    import lab as lablib  # pylint: disable=import-error,import-outside-toplevel
    return ["%s/etcdctl" % lab.state["etcd_bin_dir"], "--endpoints=https://127.0.0.1:2379"] + lablib.ETCDCTL_TLS


def write_keys(lab, host, pairs):
    script = "\n".join("%s %s" % pair for pair in pairs) + "\n"
    api = ["ETCDCTL_API=3"] if lab.state["etcd_line"] == "3.4" else []
    env_argv = ["env"] + api + ["/opt/etcdops/venv/bin/python", "-c", WRITER] + etcdctl_argv(lab) + [str(BATCH)]
    result = lab.exec(host, env_argv, input=script, timeout=180)
    assert int(result.stdout.strip()) == len(pairs)


def read_prefix(lab, host):
    """{key: value} of every key under PREFIX, through a member's client port."""
    out = lab.etcdctl(host, "get", "--prefix", PREFIX, timeout=120).stdout.splitlines()
    return dict(zip(out[0::2], out[1::2]))


def host_files(lab, host):
    """What check mode must not change: the names under /var/lib/etcd* (etcd itself writes inside its member
    dir while it runs) and the sha256 of every file under /etc/kubernetes and of the snapshot directory."""
    script = ("find /var/lib -maxdepth 1 -name 'etcd*' | sort; "
              "find /var/lib/etcd /var/lib/etcd.* /var/lib/etcd-restore -maxdepth 2 2>/dev/null | sort; "
              "find /etc/kubernetes /var/lib/etcd-restore -type f 2>/dev/null | sort | xargs -r sha256sum")
    return lab.exec(host, ["sh", "-c", script]).stdout


def hashkv_at_one_revision(lab, host):
    statuses = lab.endpoint_status()
    revision = min(s["Status"]["header"]["revision"] for s in statuses)
    out = lab.etcdctl(host, "endpoint", "hashkv", "--rev=%d" % revision, "-w", "json",
                      endpoints=lab.client_endpoints()).stdout
    return revision, {h["Endpoint"]: h["HashKV"]["hash"] for h in json.loads(out)}


def lose_every_member(lab):
    """Stop etcd on every host (manifest out of the kubelet's sight), empty its data dir, start it again."""
    for host in lab.members:
        lab.exec(host, ["mv", "/etc/kubernetes/manifests/etcd.yaml", "/root/etcd.yaml.stopped"])
    for host in lab.members:
        deadline = time.monotonic() + 60
        while lab.exec(host, ["pgrep", "-x", "etcd"], check=False).stdout.strip():
            assert time.monotonic() < deadline, "etcd did not stop on %s" % host
            time.sleep(0.5)
        lab.wipe_data(host)
    for host in lab.members:
        lab.exec(host, ["mv", "/root/etcd.yaml.stopped", "/etc/kubernetes/manifests/etcd.yaml"])
    lab.wait_healthy(timeout=120)


def step_times(run):
    """[(task name, seconds)] of a playbook run, from the json callback's task durations."""
    steps = []
    for play in run.data.get("plays", []):
        for task in play.get("tasks", []):
            span = task["task"].get("duration") or {}
            if span.get("start") and span.get("end"):
                begin, end = (datetime.fromisoformat(span[k].replace("Z", "+00:00")) for k in ("start", "end"))
                steps.append((task["task"]["name"], (end - begin).total_seconds()))
    return steps


def print_steps(title, run):
    print("%s, per step:" % title)
    for name, seconds in step_times(run):
        if seconds >= 1.0:
            print("  %6.1fs  %s" % (seconds, name))


MOVED_GLOB = "ls -d /var/lib/etcd.moved-* /var/lib/etcd/moved-* 2>/dev/null"


def moved_dirs(lab, host):
    return lab.exec(host, ["sh", "-c", MOVED_GLOB], check=False).stdout.split()


def run_playbook_killed_when(lab, playbook, extra_vars, log_path, condition, timeout=300):
    """ansible-playbook in its own process group, SIGKILLed (with its connections) as soon as condition() returns
    something true; returns that."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory), str(ROOT / playbook),
           "-e", json.dumps(extra_vars)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=ansible_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            seen = condition()
            if seen:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return seen
            assert proc.poll() is None, "the playbook ended (rc %s) before the kill point: %s" % (
                proc.returncode, open(log_path).read()[-3000:])
            assert time.monotonic() < deadline, "the kill point was not reached after %ds" % timeout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_playbook_killed_once_moved(lab, playbook, extra_vars, log_path, timeout=300):
    """The playbook SIGKILLed as soon as a host has a data dir moved aside; returns that host."""
    def first_moved():
        return next((host for host in lab.members if moved_dirs(lab, host)), None)
    return run_playbook_killed_when(lab, playbook, extra_vars, log_path, first_moved, timeout)


def host_state(lab, host):
    """What a killed run left on a host: data dir entries, moved-aside and restoring dirs, manifests, modules."""
    script = ("echo data: $(ls -A /var/lib/etcd 2>/dev/null); echo moved: $(%s); "
              "echo restoring: $(ls -d /var/lib/etcd.restoring /var/lib/etcd/.etcdops-restore.restoring 2>/dev/null); "
              "echo manifests: $(ls /etc/kubernetes/manifests); echo modules: $(pgrep -f AnsiballZ | wc -l)" % MOVED_GLOB)
    return lab.exec(host, ["sh", "-c", script], check=False).stdout.strip().replace("\n", "; ")


def test_restore_every_member_from_one_snapshot(lab, tmp_path):
    begun = time.monotonic()
    first = lab.members[0]
    write_keys(lab, first, [(PREFIX + "k%05d" % i, value_of(i)) for i in range(KEYS)])

    saved = run_module(lab, first, "etcdops.etcd.etcd_snapshot", {"path": SNAPSHOT_ON_HOST})
    assert saved.get("saved"), saved
    snapshot = tmp_path / "snapshot.db"
    subprocess.run(["docker", "cp", "%s:%s" % (lab.container(first), SNAPSHOT_ON_HOST), str(snapshot)], check=True)

    write_keys(lab, first, [(PREFIX + "later%04d" % i, "later") for i in range(LATER)])
    assert len(read_prefix(lab, first)) == KEYS + LATER

    lose_every_member(lab)
    assert read_prefix(lab, first) == {}
    print("keys written, snapshot taken, every member lost: %.1fs" % (time.monotonic() - begun))

    extra = {"restore_snapshot_controller_path": str(snapshot), "backup_store": "local",
             "backup_local_directory": "/var/backups/etcd", "backup_resources": False}

    # check mode: the plan host by host, and no file changes on any host
    before = {h: host_files(lab, h) for h in lab.members}
    check = run_playbook(lab, "playbooks/restore.yml", extra, check=True)
    assert check.rc == 0, check.stderr[-3000:] + json.dumps(check.stats)
    plans = [r["msg"] for n, h, r in check.results("Show the plan host by host")]
    assert len(plans) == 3 and all("would copy the snapshot" in p or "would restore" in p for p in plans), plans
    assert {h: host_files(lab, h) for h in lab.members} == before
    print("check mode: %.1fs" % (time.monotonic() - begun))
    print_steps("check mode", check)

    # without the confirmation: refused, nothing changed
    refused = run_playbook(lab, "playbooks/restore.yml", extra)
    assert refused.rc != 0 and "restore_confirm" in json.dumps(refused.data)
    assert {h: host_files(lab, h) for h in lab.members} == before

    # killed (the controller's ansible-playbook and its connections) once a host has moved its data dir aside
    started = time.monotonic()
    first_moved = run_playbook_killed_once_moved(lab, "playbooks/restore.yml", dict(extra, restore_confirm=True),
                                                 str(tmp_path / "killed-run.log"))
    print("restore.yml killed after %.1fs, when %s had moved its data dir aside" % (
        time.monotonic() - started, first_moved))
    for host in lab.members:
        print("  %s: %s" % (host, host_state(lab, host)))
    kept = {h: moved_dirs(lab, h) for h in lab.members}

    # run again: it converges
    started = time.monotonic()
    done = run_playbook(lab, "playbooks/restore.yml", dict(extra, restore_confirm=True))
    took = time.monotonic() - started
    assert done.rc == 0, done.stderr[-3000:] + json.dumps([r for n, h, r in done.results() if r.get("failed")])[:5000]
    print("restore.yml run again took %.1fs" % took)
    print_steps("the run after the kill", done)
    for host in lab.members:
        now = moved_dirs(lab, host)
        assert set(kept[host]) <= set(now), (host, kept[host], now)  # nothing moved aside was lost
        # the data dir etcd had before (the empty cluster's) is kept aside, not deleted: beside the data dir, or
        # inside it where /var/lib/etcd is a mount point
        assert any(lab.exec(host, ["test", "-d", d + "/member"], check=False).returncode == 0 for d in now), now
        assert not lab.exec(host, ["sh", "-c", "ls -d /var/lib/etcd.restoring /var/lib/etcd/.etcdops-restore.restoring "
                                   "2>/dev/null"], check=False).stdout.strip()
    assert done.result("Wait until every member agrees (hashkv at one revision)")["agree"]
    # where the restore step ran again (not where the killed run had finished every member: then only etcd is
    # started), it took the plan's status of the same file (verified_status): the plan alone read the database
    restored = [r for n, h, r in done.results(RESTORE_STEP) if not r.get("skipped")]
    assert all(r["database_walked"] is False for r in restored), restored
    print("restore step ran again on %d host(s), database walked on none" % len(restored))

    # exactly the keys of the snapshot, with their values
    lab.wait_healthy(timeout=60)
    got = read_prefix(lab, first)
    assert len(got) == KEYS and got == {PREFIX + "k%05d" % i: value_of(i) for i in range(KEYS)}
    statuses = lab.endpoint_status()
    assert len(statuses) == 3 and len({s["Status"]["leader"] for s in statuses}) == 1
    assert sum(1 for s in statuses if s["Status"]["leader"] == s["Status"]["header"]["member_id"]) == 1
    revision, hashes = hashkv_at_one_revision(lab, first)
    assert len(hashes) == 3 and len(set(hashes.values())) == 1, (revision, hashes)
    lab.wait_leases(timeout=90)

    # the second run with the same snapshot changes nothing
    started = time.monotonic()
    again = run_playbook(lab, "playbooks/restore.yml", dict(extra, restore_confirm=True))
    print("second run: %.1fs; whole test %.1fs" % (time.monotonic() - started, time.monotonic() - begun))
    assert again.rc == 0, again.stderr[-3000:]
    print_steps("the run that changes nothing", again)
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert len(read_prefix(lab, first)) == KEYS
