"""Benchmark of restore.yml against etcdutl, measured in one run on one lab (prefix hrsbench).

A three-host lab (etcd line ETCD_LINE, default 3.6) without S3. Each etcd gets --quota-backend-bytes=4 GiB
(static_pod_manifest, one member at a time) and the cluster about FILL_MB (default 1100) values of ~1 MB each
(the backup benchmark's fill: random base64 plus a repeated line), so the database is over 1 GiB. Then:

  etcdctl snapshot save on cp1 into restore.yml's default snapshot path, copied to cp2 and cp3;
  (a) one member's ``etcdutl snapshot restore`` by hand on cp1 (wall time on the host), with the command line
      etcd_snapshot would run (from its check mode: same name, initial cluster, token, peer URLs, revision bump
      and mark-compacted) into a scratch dir, measured before and after the playbook (the mean is the reference);
  (b) the restore step of ``playbooks/restore.yml`` on the 3 members at once (the wall time of the
      ``etcd_snapshot state=restored`` task, from the json callback's task start and end);
  (c) the whole playbook, with the snapshot already on the hosts, its time to recovery and a per-step breakdown;
  (a3) after the playbook, (a)'s restore by hand on the three hosts at once: what three restores take at best on
      one VM and disk, the floor of (b) here;

and prints (b)/(a) (goal <= 1.5). The hosts get 3 GiB of memory each for the run (etcd maps the whole
database). The lab is brought down at the end, on success or failure, unless --keep.

Ansible runs with pipelining (ANSIBLE_PIPELINING=True, as the README recommends): one connection per module
instead of four or five (temporary dir, file transfer, chmod, run, clean-up). BENCH_PIPELINING=0 measures without
it; the report says which.

    make bench-restore            # or: .venv/bin/python benchmarks/restore/bench_restore.py [--keep]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "benchmarks" / "backup"))

import lab as lablib  # noqa: E402  pylint: disable=wrong-import-position,import-error
from ansible_run import run_module, run_playbook  # noqa: E402  pylint: disable=wrong-import-position,import-error
from bench_backup import fill  # noqa: E402  pylint: disable=wrong-import-position,import-error

PREFIX = os.environ.get("BENCH_PREFIX", "hrsbench")
LINE = os.environ.get("ETCD_LINE", "3.6")
FILL_MB = int(os.environ.get("FILL_MB", "1100"))
MIB = 1024 * 1024
SNAPSHOT = "/var/lib/etcd-restore/snapshot.db"  # restore.yml's default restore_snapshot_path
SCRATCH = "/var/lib/etcd-bench-a"
PIPELINING = os.environ.get("BENCH_PIPELINING", "1") not in ("0", "false", "False", "no")
RESTORE_TASK = "Restore the snapshot into each member's data dir (all hosts at once; the old data dir is moved aside)"


def sh(lab, host, script, timeout=1800):
    return lab.exec(host, ["sh", "-c", script], timeout=timeout).stdout


def timed(lab, host, script, timeout=1800):
    """Seconds the script takes on the host, measured there (no docker exec overhead)."""
    out = sh(lab, host, "s=$(date +%%s.%%N); %s >/dev/null 2>&1 || exit 1; e=$(date +%%s.%%N); echo $s $e"
             % script, timeout)
    start, end = out.split()[-2:]
    return float(end) - float(start)


def quoted(argv):
    return " ".join("'%s'" % a.replace("'", "'\\''") for a in argv)


def steps(run):
    """[(task name, seconds)] from the json callback: each task's first start to its last host's end."""
    found = []
    for play in run.data.get("plays", []):
        for task in play.get("tasks", []):
            span = task["task"].get("duration") or {}
            if span.get("start") and span.get("end"):
                begin, end = (datetime.fromisoformat(span[k].replace("Z", "+00:00")) for k in ("start", "end"))
                found.append((task["task"]["name"], round((end - begin).total_seconds(), 2)))
    return found


def by_hand(lab, argv):
    """(a): etcdutl snapshot restore with etcd_snapshot's command line, into a scratch dir on cp1."""
    argv = list(argv)
    argv[argv.index("--data-dir") + 1] = SCRATCH
    sh(lab, "cp1", "rm -rf %s" % SCRATCH)
    seconds = timed(lab, "cp1", quoted(argv))
    sh(lab, "cp1", "rm -rf %s" % SCRATCH)  # the benchmark's own scratch copy, not a member's data
    return seconds


def three_by_hand(lab, argv):
    """(a3): the same etcdutl restore by hand on the three hosts at once: what the shared VM and disk allow three
    restores at best (first start to last end, the hosts share one clock)."""
    import threading
    argv = list(argv)
    argv[argv.index("--data-dir") + 1] = SCRATCH
    spans = {}

    def one(host):
        sh(lab, host, "rm -rf %s" % SCRATCH)
        out = sh(lab, host, "s=$(date +%%s.%%N); %s >/dev/null 2>&1 || exit 1; e=$(date +%%s.%%N); echo $s $e"
                 % quoted(argv))
        spans[host] = [float(x) for x in out.split()[-2:]]
        sh(lab, host, "rm -rf %s" % SCRATCH)
    threads = [threading.Thread(target=one, args=(host,)) for host in lab.members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spans) == len(lab.members), spans
    return max(end for start, end in spans.values()) - min(start for start, end in spans.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    options = parser.parse_args()
    os.environ["ANSIBLE_PIPELINING"] = str(PIPELINING)  # ansible_run passes the environment on to every run
    lab = lablib.Lab(PREFIX)
    lab.down()
    try:
        report = run(lab)
    finally:
        if not options.keep:
            lab.down()
    print(json.dumps(report, indent=2))


def prepare(lab):
    """The lab with a > 1 GiB database and its snapshot on every host; (database bytes, snapshot bytes)."""
    lab.up(hosts=3, etcd_line=LINE, with_s3=False)
    for host in lab.members:
        subprocess.run(["docker", "update", "--memory", "3g", "--memory-swap", "3g", lab.container(host)], check=True,
                       capture_output=True)
    for host in lab.members:  # one member at a time, as an operator raises the quota
        raised = run_module(lab, host, "etcdops.etcd.static_pod_manifest", dict(
            name="etcd", flags={"quota-backend-bytes": 4 * 1024 * MIB}, wait="running", wait_timeout=180))
        assert not raised.get("failed"), raised.get("msg")
        lab.wait_healthy(timeout=180)
    started = time.monotonic()
    fill(lab, FILL_MB)
    size = int(sh(lab, "cp1", "du -b /var/lib/etcd/member/snap/db | cut -f1"))
    print("filled in %.0f s: database %d bytes (%.2f GiB)" % (time.monotonic() - started, size, size / 1024.0 / MIB),
          file=sys.stderr)
    assert size >= int(os.environ.get("BENCH_MIN_BYTES", 1024 * MIB)), "the database is under 1 GiB: raise FILL_MB"
    etcdctl = "%s/etcdctl --endpoints=https://127.0.0.1:2379 %s" % (lab.state["etcd_bin_dir"],
                                                                    " ".join(lablib.ETCDCTL_TLS))
    sh(lab, "cp1", "mkdir -p %s && ETCDCTL_API=3 %s snapshot save %s" % (os.path.dirname(SNAPSHOT), etcdctl, SNAPSHOT))
    for host in lab.members[1:]:  # the same file on every host, streamed through this machine
        sender = subprocess.Popen(["docker", "exec", lab.container("cp1"), "cat", SNAPSHOT], stdout=subprocess.PIPE)
        subprocess.run(["docker", "exec", "-i", lab.container(host), "sh", "-c", "mkdir -p %s && cat > %s" % (
            os.path.dirname(SNAPSHOT), SNAPSHOT)], stdin=sender.stdout, check=True)
        sender.stdout.close()
        assert sender.wait() == 0
    sums = set(sh(lab, h, "sha256sum %s | cut -d' ' -f1" % SNAPSHOT).strip() for h in lab.members)
    assert len(sums) == 1, sums
    return size, int(sh(lab, "cp1", "stat -c %%s %s" % SNAPSHOT))


def run(lab):
    t0 = time.monotonic()
    size, snapshot_size = prepare(lab)

    # the command etcd_snapshot runs on cp1 (its check mode reads the identity from the manifest)
    plan = run_module(lab, "cp1", "etcdops.etcd.etcd_snapshot", dict(state="restored", path=SNAPSHOT), check=True)
    assert plan.get("command"), plan
    a_before = by_hand(lab, plan["command"])
    print("(a) etcdutl snapshot restore by hand on cp1: %.2f s" % a_before, file=sys.stderr)

    # (b) and (c): the playbook, the snapshot already on every host
    started = time.monotonic()
    done = run_playbook(lab, "playbooks/restore.yml", dict(
        restore_confirm=True, restore_snapshot_source="host", restore_wait_timeout=600, backup_store="local",
        backup_local_directory="/var/backups/etcd", backup_resources=False))
    wall = time.monotonic() - started
    if done.rc != 0:
        raise SystemExit("restore.yml failed (rc %d): %s" % (done.rc, json.dumps(
            [r for n, h, r in done.results() if r.get("failed")])[:3000] or done.stderr[-3000:]))
    breakdown = steps(done)
    b = sum(seconds for name, seconds in breakdown if name.endswith(RESTORE_TASK))
    per_host = {h: done.result(RESTORE_TASK, h) for h in lab.members}
    assert all(r.get("restored") for r in per_host.values()), per_host
    lab.wait_healthy(timeout=120)
    a_after = by_hand(lab, plan["command"])
    a = (a_before + a_after) / 2
    a3 = three_by_hand(lab, plan["command"])
    print("(a3) the same etcdutl restore by hand on the 3 hosts at once: %.2f s" % a3, file=sys.stderr)
    print("(b) restore step %.2f s; (a) again %.2f s; whole playbook %.1f s" % (b, a_after, wall), file=sys.stderr)

    cpu = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return dict(
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine="%s, %d CPUs (%s), %.1f GiB RAM, kernel %s" % (
            platform.node(), os.cpu_count(), cpu,
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024.0 ** 3, platform.release()),
        load_average_at_end=os.getloadavg(),
        etcd_line=LINE, etcd_version=lab.state.get("etcd_version"), ansible_pipelining=PIPELINING,
        database_bytes=size, snapshot_bytes=snapshot_size,
        a_etcdutl_restore_by_hand_s=dict(before=round(a_before, 2), after=round(a_after, 2), mean=round(a, 2)),
        b_restore_step_3_members_s=round(b, 2),
        b_per_host=dict((h, dict(module_seconds=r.get("duration_seconds"), etcdutl_seconds=r.get("restore_seconds"),
                                 database_walked=r.get("database_walked")))
                        for h, r in per_host.items()),
        ratio_b_over_a=round(b / a, 3), goal_b="<= 1.5",
        a3_three_etcdutl_by_hand_at_once_s=round(a3, 2), ratio_b_over_a3=round(b / a3, 3),
        c_playbook_time_to_recovery_s=round(wall, 1),
        c_steps=[dict(step=name, seconds=seconds) for name, seconds in breakdown if seconds >= 0.5],
        total_seconds=round(time.monotonic() - t0, 1),
    )


if __name__ == "__main__":
    main()
