"""Benchmark of etcd_backup against the tools it replaces, measured in one run on one lab (prefix hbkbench).

A one-host lab (etcd line ETCD_LINE, default 3.6) with the lab's S3 server. Its etcd gets
--quota-backend-bytes=4 GiB (static_pod_manifest) and about FILL_MB (default 1100) values of ~1 MB each, each
a random part (base64 of /dev/urandom) and a repetitive part, so the database is over 1 GiB and compresses about
3x, roughly like Kubernetes objects. Then, on the member's host:

  (a) etcdctl snapshot save to local disk (after a discarded one that warms the page cache; measured again
      after (d), the ratios use the mean);
  (b) a plain boto3 upload_file (default TransferConfig) of the file (a) wrote, same size, to the lab's S3;
  (c) etcd_backup: snapshot -> zstd -> age -> S3 multipart (the module's duration_seconds, and its wall time);
  (d) etcd_backup to a local directory on the same host;

Before each measured step the benchmark waits until the host and the S3 server are idle (`docker stats`), so
that no step pays for work the one before left running. It prints (c)/max(a,b) (goal <= 1.25), (d)/(a) (goal
<= 1.1) and the peak RSS (VmHWM) of the module process, polled from /proc every 0.2 s with the highest anonymous
RSS seen (RssAnon: what is not file pages) (goal <= 100 MiB). The lab is brought down at the end, on success or
failure.

The S3 server (moto) joins a multipart upload in memory: its container gets 4 GiB here (docker update) so that
(b)'s 1 GiB upload fits; the host gets 4 GiB too (etcd maps the whole database). Nothing else is changed.

    make bench-backup            # or: .venv/bin/python benchmarks/backup/bench_backup.py [--keep] [--smaps DIR]

--smaps DIR also saves, for (c) and (d), /proc/<pid>/smaps of the module process at its highest resident size
(sampled every 0.2 s on the host) into DIR, with a summary by mapping (what takes the memory).
BENCH_MIN_BYTES (default 1 GiB) is the smallest database accepted: set it to 0 for a small FILL_MB.
"""

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import lab as lablib  # noqa: E402  pylint: disable=wrong-import-position,import-error
from ansible_run import (  # noqa: E402  pylint: disable=wrong-import-position,import-error
    VENV_BIN, AnsibleRun, ansible_env, run_module)

PREFIX = os.environ.get("BENCH_PREFIX", "hbkbench")
LINE = os.environ.get("ETCD_LINE", "3.6")
FILL_MB = int(os.environ.get("FILL_MB", "1100"))
MIB = 1024 * 1024
HOST = "cp1"
WORK = "/var/lib/etcd-bench"
PY = "/opt/etcdops/venv/bin/python"


def sh(lab, script, timeout=1800):
    return lab.exec(HOST, ["sh", "-c", script], timeout=timeout).stdout


def timed(lab, script, timeout=1800):
    """Seconds the script takes on the host, measured there (no docker exec overhead)."""
    out = sh(lab, "s=$(date +%%s.%%N); %s >/dev/null || exit 1; e=$(date +%%s.%%N); echo $s $e" % script, timeout)
    start, end = out.split()[-2:]
    return float(end) - float(start)


def settle(lab, limit=5.0, timeout=60):
    """Wait (at most timeout s) until the host and the S3 server are idle, each under limit % of a CPU in one
    `docker stats` sample, so that no step pays for the work the one before left running (moto keeps joining a
    multipart upload after it has answered; etcd and the kernel write back what a step wrote)."""
    names = [lab.container(HOST), lab.state["s3"]["container"]]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.CPUPerc}}"] + names,
                             capture_output=True, text=True, check=False).stdout.split()
        if len(out) == len(names) and all(float(value.rstrip("%")) < limit for value in out):
            return
        time.sleep(1)
    print("the lab was still busy after %d s; measuring anyway" % timeout, file=sys.stderr)


def etcdctl_cmd(lab):
    return "%s/etcdctl --endpoints=https://127.0.0.1:2379 %s" % (lab.state["etcd_bin_dir"], " ".join(lablib.ETCDCTL_TLS))


def fill(lab, megabytes, writers=2):
    """megabytes values of ~1 MB (300 kB of random bytes as base64, 400 kB, + 600 kB of a repeated line), written
    from this machine over one gRPC connection per writer with the collection's client (an etcdctl process per
    put is far slower on a loaded machine)."""
    sys.path.insert(0, str(ROOT / ".build" / "collections"))
    from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient  # noqa: E402
    pki = Path(lab.state["hosts"][0]["pki_dir"]) / "etcd"
    filler = (b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"namespace":"bench"}}\n' * 9000)[:600000]
    errors = []

    def writer(first):
        client = EtcdClient(endpoints=["https://%s:2379" % lab.ip(HOST)], ca_cert=str(pki / "ca.crt"),
                            client_cert=str(pki / "healthcheck-client.crt"),
                            client_key=str(pki / "healthcheck-client.key"), command_timeout=120)
        try:
            for number in range(first, megabytes + 1, writers):
                client.put("/bench/%05d" % number, base64.b64encode(os.urandom(300000)) + filler)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)
        finally:
            client.close()
    threads = [threading.Thread(target=writer, args=(first,)) for first in range(1, writers + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit("filling etcd failed: %s" % errors[0])


class PeakRss(object):
    """Polls VmHWM of every process on the host whose command line names the module, every 0.2 s."""

    def __init__(self, lab, pattern):
        self.lab = lab
        self.pattern = pattern
        self.proc = None

    def __enter__(self):
        sh(self.lab, "rm -f /tmp/bench-rss-stop")
        script = ("while [ ! -e /tmp/bench-rss-stop ]; do for p in $(pgrep -f %s); do [ $p != $$ ] && "
                  "grep -hE '^(VmHWM|RssAnon)' /proc/$p/status 2>/dev/null; done; sleep 0.2; done" % self.pattern)
        self.proc = subprocess.Popen(["docker", "exec", self.lab.container(HOST), "sh", "-c", script],
                                     stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()
        return self

    def __exit__(self, *exc):
        sh(self.lab, "touch /tmp/bench-rss-stop")  # the polling loop ends by itself
        self.proc.wait(30)
        self.reader.join(5)

    def peak(self, field):
        values = [int(line.split()[1]) for line in self.lines if line.startswith(field)]
        return round(max(values) / 1024.0, 1) if values else None

    @property
    def mib(self):
        """(VmHWM: peak resident, mapped file pages included; the highest RssAnon seen: heap, stacks, buffers)."""
        if not self.lines:
            raise SystemExit("the RSS poller found no module process: nothing to report")
        return self.peak("VmHWM"), self.peak("RssAnon")


# Runs on the host beside the poller: keeps the smaps of the module process at its highest VmRSS.
SMAPS_SAMPLER = r"""
import os, sys, time
stop, out = sys.argv[1], sys.argv[2]
best = 0
while not os.path.exists(stop):
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                if b'AnsiballZ_etcd_backup' not in handle.read():
                    continue
            with open('/proc/%s/status' % pid) as handle:
                rss = [int(line.split()[1]) for line in handle if line.startswith('VmRSS')][0]
            if rss > best:
                with open('/proc/%s/smaps' % pid) as handle:
                    smaps = handle.read()
                best = rss
                with open(out, 'w') as handle:
                    handle.write(smaps)
        except (IOError, OSError, IndexError):
            continue
    time.sleep(0.2)
"""


def smaps_summary(text, top=25):
    """Rss, Anonymous and file pages by mapping name (kB), largest first, from the text of /proc/<pid>/smaps."""
    totals = {}
    name = None
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if "-" in fields[0] and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else "[anon]"
            totals.setdefault(name, dict(rss=0, anonymous=0))
        elif fields[0] == "Rss:" and name is not None:
            totals[name]["rss"] += int(fields[1])
        elif fields[0] == "Anonymous:" and name is not None:
            totals[name]["anonymous"] += int(fields[1])
    rows = sorted(totals.items(), key=lambda item: -item[1]["rss"])
    lines = ["%8s %8s  %s" % ("rss kB", "anon kB", "mapping"),
             "%8d %8d  %s" % (sum(v["rss"] for v in totals.values()), sum(v["anonymous"] for v in totals.values()),
                              "(total)")]
    lines += ["%8d %8d  %s" % (v["rss"], v["anonymous"], k) for k, v in rows[:top]]
    return "\n".join(lines) + "\n"


class PeakSmaps(object):
    """With --smaps DIR: the smaps of the module process at its highest VmRSS, saved as DIR/<step>.smaps and
    summarised by mapping in DIR/<step>.txt."""

    def __init__(self, lab, directory, step):
        self.lab = lab
        self.directory = directory
        self.step = step
        self.proc = None

    def __enter__(self):
        if self.directory:
            sh(self.lab, "rm -f /tmp/bench-smaps-stop /tmp/bench-smaps-peak")
            self.proc = subprocess.Popen(["docker", "exec", "-i", self.lab.container(HOST), PY, "-",
                                          "/tmp/bench-smaps-stop", "/tmp/bench-smaps-peak"],
                                         stdin=subprocess.PIPE, text=True)
            self.proc.stdin.write(SMAPS_SAMPLER)
            self.proc.stdin.close()
        return self

    def __exit__(self, *exc):
        if self.proc is None:
            return
        sh(self.lab, "touch /tmp/bench-smaps-stop")
        self.proc.wait(30)
        text = sh(self.lab, "cat /tmp/bench-smaps-peak 2>/dev/null || true")
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, self.step + ".smaps"), "w") as handle:
            handle.write(text)
        with open(os.path.join(self.directory, self.step + ".txt"), "w") as handle:
            handle.write(smaps_summary(text))


def module(lab, args, smaps=None, step="module"):
    with PeakRss(lab, "AnsiballZ_etcd_backup") as rss, PeakSmaps(lab, smaps, step):
        started = time.monotonic()
        # No pipelining: the module then runs from a file named AnsiballZ_etcd_backup.py, which the poller finds.
        env = dict(ansible_env(), ANSIBLE_PIPELINING="False")
        cmd = [str(VENV_BIN / "ansible"), "-i", str(lab.inventory), HOST, "-m", "etcdops.etcd.etcd_backup",
               "-a", json.dumps(args)]
        result = AnsibleRun(subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)).result(host=HOST)
        wall = time.monotonic() - started
    if result.get("failed"):
        raise SystemExit("etcd_backup failed: %s" % result.get("msg"))
    return result, wall, rss.mib


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    parser.add_argument("--smaps", metavar="DIR", help="save the module process's smaps at its peak RSS into DIR")
    options = parser.parse_args()
    lab = lablib.Lab(PREFIX)
    lab.down()
    try:
        report = run(lab, options.smaps)
    finally:
        if not options.keep:
            lab.down()
    print(json.dumps(report, indent=2))


def run(lab, smaps=None):
    t0 = time.monotonic()
    lab.up(hosts=1, etcd_line=LINE, with_s3=True)
    for name in (lab.state["s3"]["container"], lab.container(HOST)):
        subprocess.run(["docker", "update", "--memory", "4g", "--memory-swap", "4g", name], check=True,
                       capture_output=True)
    raised = run_module(lab, HOST, "etcdops.etcd.static_pod_manifest", dict(
        name="etcd", flags={"quota-backend-bytes": 4 * 1024 * MIB}, wait="running", wait_timeout=180))
    assert not raised.get("failed"), raised.get("msg")
    lab.wait_healthy(timeout=120)
    fill(lab, FILL_MB)
    size = int(sh(lab, "du -b /var/lib/etcd/member/snap/db | cut -f1"))
    print("filled in %.0f s: database %d bytes (%.2f GiB)" % (time.monotonic() - t0, size, size / 1024.0 / MIB),
          file=sys.stderr)
    assert size >= int(os.environ.get("BENCH_MIN_BYTES", 1024 * MIB)), "the database is under 1 GiB: raise FILL_MB"

    with tempfile.TemporaryDirectory() as tmp:
        identity = Path(tmp) / "identity.txt"
        subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
        public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                                text=True).stdout.strip()
    s3 = lab.state["s3"]

    # (a) etcdctl snapshot save to local disk. A first snapshot, discarded, warms the page cache with the database
    # the fill just wrote: the first read of it is slower for whatever reads it (etcdctl 6.0-7.3 s, then 4.4-5.5 s on
    # a settled lab), and every step must meet the same cache. (a) is measured again after (d); the ratios use the
    # mean of the two, as benchmarks/restore does.
    sh(lab, "mkdir -p %s" % WORK)
    save = "ETCDCTL_API=3 %s snapshot save %s/a.db" % (etcdctl_cmd(lab), WORK)
    warm = timed(lab, save)
    sh(lab, "rm -f %s/a.db" % WORK)
    settle(lab)
    a_before = timed(lab, save)
    snapshot_size = int(sh(lab, "stat -c %%s %s/a.db" % WORK))

    # (b) a plain boto3 upload of that file to the same S3 endpoint
    upload = ("import boto3,time\n"
              "c=boto3.client('s3',endpoint_url=%r,aws_access_key_id=%r,aws_secret_access_key=%r,region_name=%r)\n"
              "s=time.monotonic(); c.upload_file(%r,%r,'bench/plain-upload.db'); print(time.monotonic()-s)\n"
              "c.delete_object(Bucket=%r,Key='bench/plain-upload.db')\n"
              % (s3["endpoint_url"], s3["access_key"], s3["secret_key"], s3["region"], WORK + "/a.db", s3["bucket"],
                 s3["bucket"]))
    settle(lab)
    b = float(lab.exec(HOST, [PY, "-"], input=upload, timeout=1800).stdout.split()[-1])
    sh(lab, "rm -f %s/a.db" % WORK)

    print("(a) etcdctl snapshot save %.2f s (warm-up %.2f s), %d bytes; (b) boto3 upload %.2f s" % (
        a_before, warm, snapshot_size, b), file=sys.stderr)
    # A loaded machine can keep a status call over the 5 s default: the benchmark measures the pipeline, not that.
    common = dict(cluster_name="bench", recipients=[public], resources=True, member="leader", timeout=1800,
                  command_timeout=60.0, dial_timeout=30.0)
    # (c) the full pipeline to S3
    settle(lab)
    c_result, c_wall, c_rss = module(lab, dict(common, store="s3", bucket=s3["bucket"], endpoint_url=s3["endpoint_url"],
                                               region=s3["region"], path_style=True, access_key=s3["access_key"],
                                               secret_key=s3["secret_key"]), smaps, "c-s3")
    print("(c) pipeline to S3 %.2f s, peak RSS / anonymous %s MiB" % (c_result["duration_seconds"], c_rss),
          file=sys.stderr)
    # (d) the pipeline to a local file on the same disk as (a)
    settle(lab)
    d_result, d_wall, d_rss = module(lab, dict(common, store="local", directory=WORK + "/store"), smaps, "d-local")
    sh(lab, "rm -rf %s/store" % WORK)
    settle(lab)
    a_after = timed(lab, save)
    sh(lab, "rm -f %s/a.db" % WORK)
    a = (a_before + a_after) / 2

    c = c_result["duration_seconds"]
    d = d_result["duration_seconds"]
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
        etcd_line=LINE, etcd_version=lab.state.get("etcd_version"),
        database_bytes=size, snapshot_bytes=snapshot_size,
        stored_bytes_s3=c_result["stored_size"], stored_bytes_local=d_result["stored_size"],
        a_etcdctl_snapshot_save_s=round(a, 2), a_before_s=round(a_before, 2), a_after_s=round(a_after, 2),
        a_warm_up_s=round(warm, 2),
        b_boto3_upload_s=round(b, 2),
        c_pipeline_s3_s=c, c_pipeline_s3_wall_s=round(c_wall, 2), c_mb_per_second=c_result["mb_per_second"],
        d_pipeline_local_s=d, d_pipeline_local_wall_s=round(d_wall, 2), d_mb_per_second=d_result["mb_per_second"],
        ratio_c_over_max_a_b=round(c / max(a, b), 3), goal_c="<= 1.25",
        ratio_d_over_a=round(d / a, 3), goal_d="<= 1.1",
        peak_rss_mib_s3=c_rss[0], peak_rss_anon_mib_s3=c_rss[1], peak_rss_mib_local=d_rss[0],
        peak_rss_anon_mib_local=d_rss[1], goal_rss="<= 100 MiB",
        c_timings=c_result.get("timings"), d_timings=d_result.get("timings"),
        member=c_result["member"]["name"], total_key=c_result["total_key"], revision=c_result["revision"],
        total_seconds=round(time.monotonic() - t0, 1),
    )


if __name__ == "__main__":
    main()
