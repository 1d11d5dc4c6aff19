"""The demo: lab up -> keys written -> encrypted backup to S3 -> disaster -> restore.yml from S3 -> verified.

Run by `make demo` through scripts/demo.sh (which installs what it needs first). Every step is a playbook of the
collection, shown as an operator would see it; the checks between them read etcd directly. The lab is taken
down at the end, also when a step fails (keep it with DEMO_KEEP_LAB=1).
Usage: demo.py [PREFIX] [ETCD_LINE]   (defaults: demo 3.6)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "lab"), str(ROOT / "tests" / "integration")]

from lab import Lab  # noqa: E402 pylint: disable=import-error,wrong-import-position
from ansible_run import ansible_env, run_module  # noqa: E402 pylint: disable=import-error,wrong-import-position
from test_restore import hashkv_at_one_revision, lose_every_member, write_keys  # noqa: E402 pylint: disable=import-error,wrong-import-position

KEYS = 1000
LATER = 100
KEY_PREFIX = "/demo/"
CLUSTER = "demo"
IDENTITY_ON_HOSTS = "/root/etcd-backup-identity.txt"


def step(text):
    print("\n\033[1m==> %s\033[0m" % text, flush=True)


def value(index):
    return "value-%04d" % index


def show_playbook(lab, playbook, extra_vars):
    """Run a playbook with Ansible's usual output on the terminal; fail the demo when it fails."""
    env = ansible_env()
    env.update(ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_DISPLAY_SKIPPED_HOSTS="false", ANSIBLE_DISPLAY_OK_HOSTS="true")
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(lab.inventory), str(ROOT / playbook),
            "-e", json.dumps(extra_vars)]
    started = time.monotonic()
    done = subprocess.run(argv, env=env, check=False)
    if done.returncode != 0:
        sys.exit("demo failed: %s exited %d" % (playbook, done.returncode))
    return time.monotonic() - started


def demo_keys(lab, host):
    out = lab.etcdctl(host, "get", "--prefix", KEY_PREFIX, timeout=120).stdout.splitlines()
    return dict(zip(out[0::2], out[1::2]))


def main(prefix="demo", line="3.6"):
    lab = Lab(prefix)
    begun = time.monotonic()
    try:
        step("1/7 lab up: 3 control-plane hosts (Docker containers), etcd %s as a static pod, TLS everywhere, "
             "an S3 API server" % line)
        lab.up(hosts=3, etcd_line=line, with_s3=True)
        conf = lab.state["s3"]
        store = dict(backup_cluster_name=CLUSTER, backup_s3_bucket=conf["bucket"],
                     backup_s3_endpoint_url=conf["endpoint_url"], backup_s3_region=conf["region"],
                     backup_s3_path_style=True, backup_s3_access_key=conf["access_key"],
                     backup_s3_secret_key=conf["secret_key"])
        show_playbook(lab, "playbooks/status.yml", {})

        step("2/7 write %d keys under %s" % (KEYS, KEY_PREFIX))
        write_keys(lab, "cp1", [(KEY_PREFIX + "k%04d" % i, value(i)) for i in range(KEYS)])
        print("%d keys under %s" % (len(demo_keys(lab, "cp1")), KEY_PREFIX))

        step("3/7 backup.yml: snapshot from a follower -> zstd -> age -> S3, the /etc/kubernetes resources apart")
        with tempfile.TemporaryDirectory() as scratch:
            key_file = Path(scratch) / "identity.txt"
            subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
            public = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True,
                                    text=True).stdout.strip()
            identity = key_file.read_text(encoding="utf-8")
        print("age recipient %s (the identity goes only to the hosts that restore)" % public)
        seconds = show_playbook(lab, "playbooks/backup.yml", dict(store, backup_recipients=[public], backup_prune=False))
        listing = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_info", dict(
            cluster_name=CLUSTER, store="s3", bucket=conf["bucket"], endpoint_url=conf["endpoint_url"],
            region=conf["region"], path_style=True, access_key=conf["access_key"], secret_key=conf["secret_key"]))
        backup = listing["backups"][0]
        print("backup %s: revision %d, %d keys, encrypted=%s (%.0f s)" % (
            backup["backup_id"], backup["revision"], backup["total_key"], backup["encrypted"], seconds))
        show_playbook(lab, "playbooks/list_backups.yml", store)

        step("4/7 write %d more keys after the backup (a restore to the backup loses them, as it must)" % LATER)
        write_keys(lab, "cp1", [(KEY_PREFIX + "later%03d" % i, "later") for i in range(LATER)])
        print("%d keys under %s" % (len(demo_keys(lab, "cp1")), KEY_PREFIX))

        step("5/7 disaster: every member's data dir wiped (etcd comes back as a new, empty cluster)")
        lose_every_member(lab)
        print("%d keys under %s" % (len(demo_keys(lab, "cp1")), KEY_PREFIX))

        step("6/7 restore.yml: backup %s fetched from S3 on every host, decrypted, checked, restored on all "
             "members (a pre-change backup of what is there first; the old data dirs moved aside)" % backup["backup_id"])
        for host in lab.members:
            lab.exec(host, ["sh", "-c", "umask 077 && cat > %s" % IDENTITY_ON_HOSTS], input=identity)
        seconds = show_playbook(lab, "playbooks/restore.yml", dict(
            store, backup_recipients=[public], backup_resources=False, restore_snapshot_source="store",
            restore_backup_id=backup["backup_id"], restore_identity_file=IDENTITY_ON_HOSTS, restore_confirm=True))
        print("restore.yml took %.0f s" % seconds)

        step("7/7 verify: exactly the backed-up keys, 3 healthy voting members, one leader, equal hashkv")
        lab.wait_healthy(timeout=90)
        got = demo_keys(lab, "cp2")
        expected = {KEY_PREFIX + "k%04d" % i: value(i) for i in range(KEYS)}
        revision, hashes = hashkv_at_one_revision(lab, "cp1")
        statuses = lab.endpoint_status()
        leaders = {s["Status"]["leader"] for s in statuses}
        moved = {h: lab.exec(h, ["sh", "-c", "ls -d /var/lib/etcd.moved-* /var/lib/etcd/moved-* 2>/dev/null"],
                             check=False).stdout.split() for h in lab.members}
        show_playbook(lab, "playbooks/status.yml", {})
        checks = [
            ("the %d backed-up keys with their values, none of the %d later ones" % (KEYS, LATER), got == expected),
            ("3 members answer, one leader", len(statuses) == 3 and len(leaders) == 1),
            ("equal hashkv at revision %d: %s" % (revision, sorted(set(hashes.values()))), len(set(hashes.values())) == 1),
            ("old data dirs moved aside, not deleted: %s" % moved, all(moved.values())),
        ]
        for text, ok in checks:
            print("  [%s] %s" % ("ok" if ok else "FAILED", text))
        if not all(check[1] for check in checks):
            sys.exit("demo failed: a check did not hold (keys found: %d)" % len(got))
        print("\ndemo passed in %.0f s" % (time.monotonic() - begun))
    finally:
        if os.environ.get("DEMO_KEEP_LAB") == "1":
            print("lab %s kept (DEMO_KEEP_LAB=1): tests/lab/lab.py down --prefix %s" % (prefix, prefix))
        else:
            lab.down()


if __name__ == "__main__":
    main(*sys.argv[1:3])
