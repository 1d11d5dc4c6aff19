"""Backups on a 3-host lab with its S3 server, read back the way the runbook says:

back up with playbooks/backup.yml, encrypted to an age key made on the controller -> download the object with
boto3 -> `age -d -i identity` -> `zstd -d` -> the line's etcdutl (etcdctl on 3.4) prints the module's hash,
revision and key count; the resources object is separate and holds pki/ and manifests/; the listing shows the
backup; a wrong S3 endpoint fails clearly and lists nothing; 400 seeded backups over two years are pruned to
exactly what _retention.select keeps; the member serving a 200 MB snapshot is killed mid-stream and the backup
completes from another member (or fails clearly with nothing listed)."""

import calendar
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import boto3
import pytest

import lab as lablib  # pylint: disable=import-error
from ansible_run import ansible_env, run_module, run_playbook, VENV_BIN, AnsibleRun  # pylint: disable=import-error

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from ansible_collections.etcdops.etcd.plugins.module_utils._retention import select  # noqa: E402
from ansible_collections.etcdops.etcd.plugins.module_utils._store import (  # noqa: E402
    S3Store, etcd_location, new_backup_id)

pytestmark = pytest.mark.lab

LAB_WITH_S3 = True
CACHE = os.environ.get("ETCDOPS_CACHE", "/var/cache/etcdops")
ENCRYPTION_CONFIG = "/etc/kubernetes/enc/encryption-config.yaml"
CLUSTER = "lab"


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    path = tmp_path_factory.mktemp("age") / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    return path, public


def s3(lab):
    return lab.state["s3"]


def s3_vars(lab, cluster=CLUSTER):
    conf = s3(lab)
    return dict(cluster_name=cluster, store="s3", bucket=conf["bucket"], endpoint_url=conf["endpoint_url"],
                region=conf["region"], path_style=True, access_key=conf["access_key"], secret_key=conf["secret_key"])


def role_vars(lab, public):
    conf = s3(lab)
    return dict(backup_cluster_name=CLUSTER, backup_store="s3", backup_s3_bucket=conf["bucket"],
                backup_s3_endpoint_url=conf["endpoint_url"], backup_s3_region=conf["region"],
                backup_s3_path_style=True, backup_s3_access_key=conf["access_key"],
                backup_s3_secret_key=conf["secret_key"], backup_recipients=[public],
                backup_encryption_config=ENCRYPTION_CONFIG)


def boto(lab):
    conf = s3(lab)
    return boto3.client("s3", endpoint_url=conf["endpoint_url"], aws_access_key_id=conf["access_key"],
                        aws_secret_access_key=conf["secret_key"], region_name=conf["region"])


def download(lab, key, path):
    boto(lab).download_file(s3(lab)["bucket"], key, str(path))
    return path


def decrypt(identity_path, source, target):
    with open(target, "wb") as out:
        subprocess.run("age -d -i %s %s | zstd -d -q" % (identity_path, source), shell=True, check=True, stdout=out)
    return target


def controller_tool_status(lab, path):
    """What the lab line's own tool says of the file, run on the controller from the etcd cache."""
    line = lab.state["etcd_line"]
    bin_dir = os.path.join(CACHE, "etcd", line)
    if line == "3.4":
        argv = [bin_dir + "/etcdctl", "snapshot", "status", str(path), "-w", "json"]
    else:
        argv = [bin_dir + "/etcdutl", "snapshot", "status", str(path), "-w", "json"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"))
    return json.loads(out.stdout)


def listing(lab, cluster=CLUSTER):
    result = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_info", s3_vars(lab, cluster))
    assert not result.get("failed"), result.get("msg")
    return result


def test_backup_playbook_to_s3_reads_back_with_age_zstd_and_etcdutl(lab, identity, tmp_path):
    identity_path, public = identity
    run = run_playbook(lab, "playbooks/backup.yml", role_vars(lab, public))
    taken = run.result("Back up etcd and the Kubernetes resources to the store")
    assert run.rc == 0 and not taken.get("failed"), (taken.get("msg"), run.stderr[-3000:])
    assert taken["encrypted"] is True and taken["recipients"] == [public]
    assert taken["object_keys"]["snapshot"].endswith("/snapshot.db.zst.age")
    assert [t["error"] for t in taken["tried"]] == [None]

    snapshot = decrypt(identity_path, download(lab, taken["object_keys"]["snapshot"], tmp_path / "snap.age"),
                       tmp_path / "snapshot.db")
    tool = controller_tool_status(lab, snapshot)
    assert (taken["hash"], taken["revision"], taken["total_key"], taken["total_size"]) == (
        tool["hash"], tool["revision"], tool["totalKey"], tool["totalSize"])
    assert snapshot.stat().st_size == taken["snapshot_size"]

    resources = decrypt(identity_path, download(lab, taken["object_keys"]["resources"], tmp_path / "res.age"),
                        tmp_path / "resources.tar")
    assert taken["object_keys"]["resources"].startswith(CLUSTER + "/resources/")
    with tarfile.open(str(resources)) as tar:
        names = tar.getnames()
        modes = dict((m.name, m.mode) for m in tar.getmembers())
    assert "pki/ca.key" in names and "manifests/etcd.yaml" in names and "enc/encryption-config.yaml" in names
    assert modes["pki/ca.key"] == 0o600
    assert "BEGIN" not in json.dumps(taken)  # no key material in the result

    found = listing(lab)
    assert found["backups"][0]["backup_id"] == taken["backup_id"]
    assert found["backups"][0]["encrypted"] is True and found["backups"][0]["verified"] is None
    assert found["backups"][0]["member"] == taken["member"]["name"] and found["incomplete"] == []
    assert lab.exec("cp1", ["ls", "-A", "/var/lib/"]).stdout.count("etcd-backup-scratch") == 0
    summary = run.result("Summarize the backup")
    assert taken["backup_id"] in summary["msg"][0]


def test_check_mode_names_member_and_store_and_writes_nothing(lab, identity):
    before = listing(lab)["backups"]
    result = run_module(lab, "cp1", "etcdops.etcd.etcd_backup", dict(s3_vars(lab), recipients=[identity[1]]),
                        check=True)
    assert not result.get("failed"), result.get("msg")
    assert result["member"]["name"] in ("cp1", "cp2", "cp3") and result["store"]["url"].startswith("s3://")
    assert listing(lab)["backups"] == before


def test_unreachable_s3_fails_clearly_and_nothing_is_listed(lab, identity):
    before = listing(lab)
    args = dict(s3_vars(lab), endpoint_url="http://%s:1" % s3(lab)["ip"], recipients=[identity[1]])
    started = time.monotonic()
    result = run_module(lab, "cp1", "etcdops.etcd.etcd_backup", args)
    assert result.get("failed") and "no backup taken" in result["msg"] and "S3 endpoint" in result["msg"], result
    assert time.monotonic() - started < 120
    after = listing(lab)
    assert after["backups"] == before["backups"] and after["incomplete"] == []


def test_prune_deletes_what_retention_selects_from_400_backups_over_two_years(lab):
    cluster = "seeded"
    conf = s3(lab)
    store = S3Store(conf["bucket"], endpoint_url=conf["endpoint_url"], region=conf["region"], path_style=True,
                    access_key=conf["access_key"], secret_key=conf["secret_key"])
    location = etcd_location(cluster)
    now = time.time()
    for number in range(400):
        when = now - 120 - number * (730 * 86400.0 / 400)
        verified = True if number % 9 == 4 else (False if number == 2 else None)
        store.write_metadata(location, new_backup_id(when, suffix="%04x" % number),
                             dict(member=dict(name="cp2"), revision=number, encrypted=True, verified=verified))
    before = store.list_backups(location)
    assert len(before) == 400

    preview = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_prune", dict(s3_vars(lab, cluster)), check=True)
    assert not preview.get("failed"), preview.get("msg")
    assert len(store.list_backups(location)) == 400

    done = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_prune", dict(s3_vars(lab, cluster)))
    assert not done.get("failed"), done.get("msg")
    at = calendar.timegm(time.strptime(done["now"], "%Y-%m-%dT%H:%M:%SZ"))
    keep, prune = select(before, at)
    assert done["pruned"] == [r["id"] for r in prune] and done["kept"] == [r["id"] for r in keep]
    assert [r["id"] for r in store.list_backups(location)] == [r["id"] for r in keep]
    assert [r["id"] for r in before if r.get("verified") is True][0] in done["kept"]
    remaining = boto(lab).list_objects_v2(Bucket=conf["bucket"], Prefix=cluster + "/").get("KeyCount", 0)
    assert remaining == len(keep)
    print("prune: %d seeded, %d pruned, %d kept" % (len(before), len(prune), len(keep)))


PRE_CHANGE_PLAY = """---
- name: A change that backs up first
  hosts: control_plane
  gather_facts: false
  tasks:
    - name: Back up before the change
      ansible.builtin.include_role:
        name: etcdops.etcd.backup
        tasks_from: pre_change
    - name: The change
      ansible.builtin.debug:
        msg: "changing, backup {{ backup_pre_change.backup_id }}"
      run_once: true
"""


def test_pre_change_backs_up_or_stops_unless_allowed(lab, identity, tmp_path):
    play = tmp_path / "change.yml"
    play.write_text(PRE_CHANGE_PLAY)
    extra = role_vars(lab, identity[1])
    run = run_playbook(lab, str(play), extra)
    change = run.result("The change")
    assert run.rc == 0 and change["msg"].startswith("changing, backup 20"), run.stderr[-2000:]
    assert change["msg"].split()[-1] == listing(lab)["backups"][0]["backup_id"]

    extra["backup_s3_endpoint_url"] = "http://%s:1" % s3(lab)["ip"]
    stopped = run_playbook(lab, str(play), extra)
    assert stopped.rc != 0 and not stopped.results("The change")
    assert "No backup could be taken" in stopped.result("Stop the change when no backup could be taken")["msg"]

    extra["backup_pre_change_allow_without_backup"] = True
    allowed = run_playbook(lab, str(play), extra)
    assert allowed.rc == 0 and allowed.result("The change")["msg"] == "changing, backup "


def fill(lab, megabytes=300, writers=3):
    """About megabytes of values under /big/ (1 MB each: under etcd's 1.5 MiB request limit), from a few writers at
    once. They compress to almost nothing: the database is big (its stream takes seconds) while the lab's S3 server
    (512 MiB, in memory) stores little."""
    tool = "%s/etcdctl --endpoints=https://127.0.0.1:2379 %s" % (lab.state["etcd_bin_dir"], " ".join(lablib.ETCDCTL_TLS))
    loop = ("for i in $(seq %%d %d %d); do head -c 1000000 /dev/zero | tr '\\0' x | %s put /big/$i >/dev/null "
            "|| exit 1; done" % (writers, megabytes, tool))
    script = " & ".join(loop % first for first in range(1, writers + 1)) + " & wait"
    lab.exec("cp1", ["sh", "-c", script], timeout=900)


STREAMING_BYTES = 40 * 1000 * 1000


def backup_killing(lab, args, victim="cp2"):
    """etcd_backup on cp1 with args; victim (the serving member) is killed once cp1's network namespace has
    received STREAMING_BYTES more than when the module was started (InOctets of /proc/net/netstat: the snapshot
    stream; raft's traffic on an idle cluster is a few KB/s). (streaming: whether it was killed mid-stream, the
    module's result)."""
    cmd = [str(VENV_BIN / "ansible"), "-i", str(lab.inventory), "cp1", "-m", "etcdops.etcd.etcd_backup",
           "-a", json.dumps(args)]
    octets = "awk '/^IpExt:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == \"InOctets\") c = i } else print $c }' /proc/net/netstat"
    wait = ("base=$(%s); for i in $(seq 1 2400); do [ $(( $(%s) - base )) -gt %d ] && exit 0; sleep 0.02; done; exit 1"
            % (octets, octets, STREAMING_BYTES))
    waiting = subprocess.Popen(["docker", "exec", lab.container("cp1"), "sh", "-c", wait])
    time.sleep(0.5)  # the base is read before the module starts
    proc = subprocess.Popen(cmd, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    streaming = waiting.wait(timeout=180) == 0
    if streaming:
        lab.kill(victim)
    stdout, stderr = proc.communicate(timeout=900)
    run = AnsibleRun(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
    result = run.result(host="cp1")
    outcome = "failed: %s" % result.get("msg") if result.get("failed") else "served by " + result["member"]["name"]
    tried = [(t["name"], (t["error"] or "")[:100]) for t in result.get("tried", [])]
    print("kill: %s; tried %s; %s s, %s MB/s, total_size %s, timings %s" % (
        outcome, tried, result.get("duration_seconds"), result.get("mb_per_second"), result.get("total_size"),
        result.get("timings")))
    assert streaming, "cp1 did not receive %d bytes during the backup: %s" % (STREAMING_BYTES, result.get("msg"))
    return result


def assert_served_by_another_or_nothing_listed(result, before, after, victim="cp2"):
    if result.get("failed"):
        assert "no backup taken" in result["msg"] and victim in result["msg"]
        assert after["backups"] == before
    else:
        assert result["member"]["name"] != victim
        assert [t["name"] for t in result["tried"]][0] == victim and result["tried"][0]["error"]
        assert "certificate" not in result["tried"][0]["error"]  # a member killed mid-stream is not a TLS problem
        assert after["backups"][0]["backup_id"] == result["backup_id"]
        assert result["total_size"] > 250 * 1000 * 1000
    assert after["incomplete"] == []


def test_the_serving_member_killed_mid_backup(lab, identity):
    fill(lab)
    before = listing(lab)["backups"]
    result = backup_killing(lab, dict(s3_vars(lab), recipients=[identity[1]], member="cp2", timeout=120))
    after = listing(lab)
    assert_served_by_another_or_nothing_listed(result, before, after)
    assert not boto(lab).list_multipart_uploads(Bucket=s3(lab)["bucket"]).get("Uploads")


LOCAL_STORE = "/var/lib/etcd-backups-local"


def test_the_serving_member_killed_mid_backup_to_a_local_directory(lab, identity, tmp_path):
    """To a local directory: a stream that breaks leaves nothing listed, and the next member's backup holds the
    status the line's own tool prints of the stored snapshot (read from the stream, no scratch copy written)."""
    if "cp2" not in lab.running_hosts():
        lab.start("cp2")  # the S3 case above kills it
        lab.wait_healthy(timeout=180)
    if not lab.etcdctl("cp1", "get", "/big/300", "--keys-only").stdout.strip():
        fill(lab)
    store = dict(cluster_name=CLUSTER, store="local", directory=LOCAL_STORE)
    before = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_info", store)["backups"]
    result = backup_killing(lab, dict(store, recipients=[identity[1]], member="cp2", timeout=120))
    after = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_info", store)
    assert_served_by_another_or_nothing_listed(result, before, after)
    assert lab.exec("cp1", ["sh", "-c", "ls -A /var/lib/ | grep -c etcd-backup-scratch || true"]).stdout.strip() == "0"
    if result.get("failed"):
        return
    stored = tmp_path / "snapshot.db.zst.age"
    subprocess.run(["docker", "cp", "%s:%s/%s" % (lab.container("cp1"), LOCAL_STORE, result["object_keys"]["snapshot"]),
                    str(stored)], check=True, capture_output=True)
    tool = controller_tool_status(lab, decrypt(identity[0], stored, tmp_path / "snapshot.db"))
    assert (result["hash"], result["revision"], result["total_key"], result["total_size"]) == (
        tool["hash"], tool["revision"], tool["totalKey"], tool["totalSize"])
