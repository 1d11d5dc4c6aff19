"""The lab itself, proved on a real lab: what the collection's tests rely on must hold here first.

One lab per run (prefix tl<pid>, etcd line from ETCDOPS_LAB_TEST_LINE, default 3.5), torn down at the end.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab as lablib  # noqa: E402

pytestmark = pytest.mark.lab

LINE = os.environ.get("ETCDOPS_LAB_TEST_LINE", "3.5")
ETCD_CERTS = ["--cacert", "/etc/kubernetes/pki/etcd/ca.crt", "--cert", "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
              "--key", "/etc/kubernetes/pki/etcd/healthcheck-client.key"]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


@pytest.fixture(scope="module")
def lab():
    if not shutil.which("docker") and not lablib.ENSURE_DOCKER.exists():
        pytest.skip("no Docker engine and no scripts/ensure-docker.sh")
    the_lab = lablib.Lab("tl%d" % os.getpid())
    the_lab.down()
    the_lab.up(hosts=3, etcd_line=LINE, with_s3=True)
    yield the_lab
    the_lab.down()


def sh(lab, host, command, check=True):
    return lab.exec(host, ["sh", "-c", command], check=check).stdout


def etcd_pids(lab, host):
    return sh(lab, host, "pgrep -x etcd || true").split()


def running_etcd_ids(lab, host):
    return sh(lab, host, "crictl ps --name '^etcd$' -q").split()


def test_members_use_tls_and_agree_on_one_leader(lab):
    members = json.loads(lab.etcdctl("cp1", "member", "list", "-w", "json").stdout)["members"]
    assert sorted(m["name"] for m in members) == ["cp1", "cp2", "cp3"]
    for member in members:
        assert all(u.startswith("https://") for u in member["peerURLs"] + member["clientURLs"])
    statuses = lab.endpoint_status()
    assert len(statuses) == 3
    assert len({s["Status"]["leader"] for s in statuses}) == 1
    assert {s["Status"]["version"] for s in statuses} == {lab.state["etcd_version"]}
    # Client certificate auth is on: no certificate, no answer.
    anonymous = lab.exec("cp1", ["etcdctl", "--endpoints=https://127.0.0.1:2379", "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
                                 "--command-timeout=3s", "endpoint", "health"], check=False)
    assert anonymous.returncode != 0


def test_kubeadm_files_are_where_kubeadm_puts_them(lab):
    listing = sh(lab, "cp2", "cd /etc/kubernetes && find . -type f | sort").split()
    for path in ["./admin.conf", "./manifests/etcd.yaml", "./manifests/kube-apiserver.yaml", "./pki/ca.crt", "./pki/ca.key",
                 "./pki/sa.key", "./pki/sa.pub", "./pki/front-proxy-ca.crt", "./pki/apiserver.crt",
                 "./pki/apiserver-etcd-client.crt", "./pki/etcd/ca.crt", "./pki/etcd/server.crt", "./pki/etcd/peer.crt",
                 "./pki/etcd/healthcheck-client.crt"]:
        assert path in listing
    sans = sh(lab, "cp2", "openssl x509 -in /etc/kubernetes/pki/etcd/server.crt -noout -ext subjectAltName")
    assert "DNS:cp2" in sans and "DNS:localhost" in sans and "IP Address:127.0.0.1" in sans
    assert "IP Address:%s" % lab.ip("cp2") in sans
    manifest = sh(lab, "cp2", "cat /etc/kubernetes/manifests/etcd.yaml")
    assert "image: registry.k8s.io/etcd:%s-0" % lab.state["etcd_version"] in manifest
    assert "- --initial-cluster=cp1=https://%s:2380,cp2=" % lab.ip("cp1") in manifest


def test_crictl_reports_the_static_pods(lab):
    listing = json.loads(sh(lab, "cp1", "crictl ps -o json"))["containers"]
    names = sorted(c["metadata"]["name"] for c in listing)
    assert names == ["etcd", "kube-apiserver"]
    etcd = next(c for c in listing if c["metadata"]["name"] == "etcd")
    assert etcd["state"] == "CONTAINER_RUNNING"
    assert etcd["labels"]["io.kubernetes.pod.name"] == "etcd-cp1"
    inspect = json.loads(sh(lab, "cp1", "crictl inspect %s" % etcd["id"]))
    assert inspect["status"]["state"] == "CONTAINER_RUNNING"
    assert str(inspect["info"]["pid"]) in etcd_pids(lab, "cp1")
    pods = sh(lab, "cp1", "crictl pods --name etcd-cp1 -q").split()
    assert pods == [etcd["podSandboxId"]]
    assert "serving client" in sh(lab, "cp1", "crictl logs %s 2>&1" % etcd["id"])


def test_manifest_moved_out_stops_etcd_and_moved_back_starts_it(lab):
    sh(lab, "cp3", "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml")
    wait_for(lambda: not running_etcd_ids(lab, "cp3") and not etcd_pids(lab, "cp3"), 40, "etcd to stop on cp3")
    sh(lab, "cp3", "mv /etc/kubernetes/etcd.yaml /etc/kubernetes/manifests/etcd.yaml")
    wait_for(lambda: running_etcd_ids(lab, "cp3") and etcd_pids(lab, "cp3"), 10, "etcd to start on cp3")
    lab.wait_healthy(timeout=60)


def test_changed_manifest_restarts_the_pod(lab):
    before = etcd_pids(lab, "cp2")
    sh(lab, "cp2", "sed -i 's/--snapshot-count=10000/--snapshot-count=10001/' /etc/kubernetes/manifests/etcd.yaml")
    after = wait_for(lambda: [p for p in etcd_pids(lab, "cp2") if p not in before], 40, "a new etcd on cp2")
    cmdline = sh(lab, "cp2", "tr '\\0' ' ' < /proc/%s/cmdline" % after[0])
    assert cmdline.startswith("etcd ") and "--snapshot-count=10001" in cmdline
    lab.wait_healthy(timeout=60)


def test_malformed_and_hidden_manifests_are_ignored_but_a_stray_copy_is_a_pod(lab):
    sh(lab, "cp1", "echo '{not: [valid' > /etc/kubernetes/manifests/broken.yaml;"
                   "cp /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/.etcd.yaml.swp;"
                   "cp /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/etcd.yaml.bak")
    try:
        wait_for(lambda: "broken.yaml" in lab.logs("cp1"), 10, "the kubelet to report broken.yaml")
        assert len(running_etcd_ids(lab, "cp1")) == 1  # the .bak names the same pod: ignored while etcd.yaml exists
        # Park etcd.yaml but forget the .bak: the .bak becomes etcd (the trap DESIGN.md warns about).
        sh(lab, "cp1", "mv /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml")
        wait_for(lambda: "from /etc/kubernetes/manifests/etcd.yaml.bak" in lab.logs("cp1"), 40, "the .bak to become the etcd pod")
        assert len(wait_for(lambda: running_etcd_ids(lab, "cp1"), 10, "etcd from the .bak")) == 1
    finally:
        sh(lab, "cp1", "rm -f /etc/kubernetes/manifests/broken.yaml /etc/kubernetes/manifests/.etcd.yaml.swp "
                       "/etc/kubernetes/manifests/etcd.yaml.bak; "
                       "[ -f /etc/kubernetes/etcd.yaml ] && mv /etc/kubernetes/etcd.yaml /etc/kubernetes/manifests/; true")
    lab.wait_healthy(timeout=60)


def test_killed_etcd_is_restarted_with_back_off(lab):
    first = etcd_pids(lab, "cp3")[0]
    sh(lab, "cp3", "kill -9 %s" % first)
    # The first restart is immediate, as kubelet's.
    second = wait_for(lambda: [p for p in etcd_pids(lab, "cp3") if p != first], 10, "the first restart")[0]
    killed_at = time.monotonic()
    sh(lab, "cp3", "kill -9 %s" % second)
    third = wait_for(lambda: [p for p in etcd_pids(lab, "cp3") if p not in (first, second)], 30, "the second restart")
    assert third and time.monotonic() - killed_at >= 9  # kubelet's 10 s back-off
    records = json.loads(sh(lab, "cp3", "crictl ps -a --name '^etcd$' -o json"))["containers"]
    assert max(r["metadata"]["attempt"] for r in records) >= 2
    assert "back-off 10s restarting failed container etcd" in lab.logs("cp3")
    lab.wait_healthy(timeout=60)


def test_crictl_stop_makes_the_kubelet_restart_and_rm_forgets(lab):
    old = running_etcd_ids(lab, "cp2")[0]
    sh(lab, "cp2", "crictl stop %s" % old)
    new = wait_for(lambda: [i for i in running_etcd_ids(lab, "cp2") if i != old], 30, "a restarted etcd container")
    assert json.loads(sh(lab, "cp2", "crictl inspect %s" % old))["status"]["state"] == "CONTAINER_EXITED"
    sh(lab, "cp2", "crictl rm %s" % old)
    assert old not in sh(lab, "cp2", "crictl ps -a -q").split()
    assert lab.exec("cp2", ["crictl", "rm", new[0]], check=False).returncode != 0  # running: refused
    lab.wait_healthy(timeout=60)


def test_api_servers_hold_master_leases_with_a_ttl(lab):
    def leases_live():
        # An API server stand-in restarted by an earlier test renews a fresh lease a moment later: retry.
        lab.wait_leases(timeout=60)
        kvs = json.loads(lab.etcdctl("cp1", "get", "--prefix", "/registry/masterleases/", "-w", "json").stdout)["kvs"]
        if len(kvs) != 3:
            return False
        for kv in kvs:
            if kv.get("lease", 0) == 0:
                return False
            ttl = lab.etcdctl("cp1", "lease", "timetolive", "%x" % kv["lease"], check=False).stdout
            match = re.search(r"granted with TTL\((\d+)s\), remaining\((-?\d+)s\)", ttl)
            if not (match and match.group(1) == "15" and 0 < int(match.group(2)) <= 15):
                return False
        return True
    wait_for(leases_live, 60, "three master leases with a live 15 s TTL")
    samples = lab.etcdctl("cp1", "get", "--prefix", "/registry/configmaps/default/", "--keys-only").stdout.split()
    assert "/registry/configmaps/default/lab-sample-1" in samples


def test_fault_stop_takes_a_member_away_and_start_brings_it_back(lab):
    lab.stop("cp3")
    assert len(lab.endpoint_status()) == 2
    assert lab.healthy(hosts=["cp1", "cp2"])
    lab.start("cp3")
    lab.wait_healthy(timeout=60)


def test_fault_disconnect_isolates_a_member(lab):
    lab.disconnect("cp2")
    try:
        assert "0 received" in lab.exec("cp1", ["ping", "-c1", "-W1", lab.ip("cp2")], check=False).stdout
        lab.wait_healthy(timeout=30, hosts=["cp1", "cp3"])
        assert lab.ip("cp2") not in sh(lab, "cp2", "ip -br addr")
    finally:
        lab.connect("cp2")
    lab.wait_healthy(timeout=60)


def test_s3_server_answers_from_a_lab_host(lab):
    s3 = lab.state["s3"]
    script = (
        "import boto3\n"
        "s3 = boto3.client('s3', endpoint_url=%r, aws_access_key_id=%r, aws_secret_access_key=%r, region_name=%r)\n"
        "s3.put_object(Bucket=%r, Key='probe/hello.txt', Body=b'hello')\n"
        "print(' '.join(o['Key'] for o in s3.list_objects_v2(Bucket=%r)['Contents']))\n"
    ) % (s3["endpoint_url"], s3["access_key"], s3["secret_key"], s3["region"], s3["bucket"], s3["bucket"])
    out = lab.exec("cp1", [lablib.VENV_PYTHON, "-"], input=script).stdout
    assert "probe/hello.txt" in out


def test_collection_dependencies_import_in_the_host_python(lab):
    lab.exec("cp1", [lablib.VENV_PYTHON, "-c", "import pyetcd, grpc, boto3, zstandard, pyrage, yaml"])
    assert "age" in sh(lab, "cp1", "command -v age")


def test_corrupt_flips_one_byte(lab):
    sh(lab, "cp1", "printf abcdef > /tmp/corrupt-me")
    changed = lab.corrupt("cp1", "/tmp/corrupt-me", offset=2)
    assert changed["old"] == ord("c") and changed["new"] == ord("c") ^ 0xFF
    assert sh(lab, "cp1", "od -An -c /tmp/corrupt-me").split()[2] != "c"


def test_inventory_reaches_every_host_through_ansible(lab):
    ansible = Path(sys.executable).parent / "ansible"
    if not ansible.exists():
        pytest.skip("ansible is not installed next to this Python")
    result = subprocess.run([str(ansible), "-i", str(lab.inventory), "control_plane", "-m", "ping"], check=False,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 3


def test_another_lab_runs_beside_and_leaves_this_one_alone(lab):
    """A second lab (one host, with its own small /var/lib/etcd disk to fill) beside the first."""
    other = lablib.Lab(lab.prefix + "b")
    other.down()
    try:
        other.up(hosts=1, etcd_line=LINE, with_s3=False, data_disk_mb=200)
        assert other.healthy() and lab.healthy()
        assert other.state["subnet"] != lab.state["subnet"]
        assert other.fill_disk("cp1") < 1024 * 1024
        failed = other.etcdctl("cp1", "snapshot", "save", "/var/lib/etcd/snapshot.db", check=False)
        assert failed.returncode != 0 and "no space left on device" in failed.stderr + failed.stdout
        other.free_disk("cp1")
        other.etcdctl("cp1", "snapshot", "save", "/var/lib/etcd/snapshot.db")
    finally:
        other.down()
    assert lab.healthy()
    leftovers = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                               check=False).stdout.split()
    assert not [n for n in leftovers if n.startswith(other.prefix + "-")]
    assert other.prefix not in subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
