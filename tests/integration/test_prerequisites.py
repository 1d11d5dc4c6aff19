"""prerequisites.yml on bare hosts: containers of the lab's base system (Debian bookworm: python3 3.11 and the
distribution's packages, no pip packages of the collection, no etcd tools) with no network at all, and a real
etcd member running from a directory that stands for its image. Before the role `import pyetcd` fails and there
is no etcdutl; after it the collection's modules run on the host with the interpreter the role installed, and
etcdutl of the member's version is staged. Check mode writes nothing on the host, a second run changes nothing,
a wheelhouse given on the controller is used without any download, and a host without python3 is told what to
install."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_run import AnsibleRun, VENV_BIN, ansible_env  # pylint: disable=import-error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab"))
import lab as lablib  # noqa: E402  pylint: disable=wrong-import-position,import-error
import lab_image  # noqa: E402  pylint: disable=wrong-import-position,import-error

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PREFIX = "itbare%d" % (os.getpid() % 100000)
ETCD_LINE = "3.6"
IMAGE_DIR = "/usr/local/lib/etcd-image"  # where the member's binaries are, as they are inside the etcd image
INTERPRETER = "/opt/etcdops/python/bin/python3"
MANIFEST = """apiVersion: v1
kind: Pod
metadata: {name: etcd, namespace: kube-system}
spec:
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:%(version)s-0
    command: [etcd, --name=%(name)s, --data-dir=/var/lib/etcd, --listen-client-urls=http://127.0.0.1:2379,
              --advertise-client-urls=http://127.0.0.1:2379]
"""


def docker(*argv, check=True):
    return subprocess.run(["docker"] + list(argv), capture_output=True, text=True, check=check)


def sh(container, script, check=True):
    return docker("exec", container, "sh", "-c", script, check=check)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """Two bare hosts (no network), the first running an etcd member; their inventory; the controller's cache."""
    lablib.ensure_docker()
    base = lab_image.ensure_base_image()
    etcd_dir = lab_image.etcd_line_dir(ETCD_LINE)
    version = lab_image.etcd_version(ETCD_LINE)
    names = ["%s-cp%d" % (PREFIX, index) for index in (1, 2)]
    for name in names:
        docker("rm", "-f", name, check=False)
        docker("run", "-d", "--name", name, "--network", "none", "--label", "etcdops.lab.prefix=%s" % PREFIX,
               "-v", "%s:%s:ro" % (etcd_dir, IMAGE_DIR), base, "sleep", "infinity")
    work = tmp_path_factory.mktemp("bare")
    try:
        sh(names[0], "mkdir -p /etc/kubernetes/manifests /var/lib/etcd")
        subprocess.run(["docker", "exec", "-i", names[0], "sh", "-c", "cat > /etc/kubernetes/manifests/etcd.yaml"],
                       input=MANIFEST % dict(version=version, name="cp1"), text=True, check=True)
        docker("exec", "-d", names[0], "sh", "-c", "exec %s/etcd --name=cp1 --data-dir=/var/lib/etcd "
               "--listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 "
               ">/var/log/etcd.log 2>&1" % IMAGE_DIR)
        inventory = work / "inventory.yml"
        hosts = {"cp%d" % (index + 1): {"ansible_host": name} for index, name in enumerate(names)}
        inventory.write_text(json.dumps({"all": {"children": {"control_plane": {
            "hosts": hosts, "vars": {"ansible_connection": "community.docker.docker"}}}}}))
        deadline = time.monotonic() + 30
        while sh(names[0], "%s/etcdctl endpoint health" % IMAGE_DIR, check=False).returncode != 0:
            assert time.monotonic() < deadline, sh(names[0], "cat /var/log/etcd.log", check=False).stdout
            time.sleep(0.5)
        yield dict(names=names, inventory=inventory, cache=work / "wheel-cache", version=version)
    finally:
        for name in names:
            docker("rm", "-f", name, check=False)


def playbook(bare, *extra, check=False, limit=None):
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(bare["inventory"]), str(ROOT / "playbooks/prerequisites.yml"),
           "-e", json.dumps({"prerequisites_wheel_cache": str(bare["cache"])})]
    for item in extra:
        cmd += ["-e", json.dumps(item)]
    if check:
        cmd.append("--check")
    if limit:
        cmd += ["--limit", limit]
    return AnsibleRun(subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False))


def test_a_bare_host_gets_the_packages_and_the_tools_and_a_second_run_changes_nothing(bare):
    cp1 = bare["names"][0]
    assert sh(cp1, "python3 -c 'import pyetcd'", check=False).returncode != 0
    assert sh(cp1, "command -v etcdutl || command -v etcdctl", check=False).returncode != 0
    assert sh(cp1, "ip -o link | grep -v ' lo:'", check=False).stdout == ""  # no network but loopback

    planned = playbook(bare, check=True, limit="cp1")
    assert planned.rc == 0, planned.stderr + json.dumps(planned.results(), indent=1)[-4000:]
    assert planned.result("Copy the wheels to the host", "cp1")["changed"] is True
    assert planned.result("Install the collection's Python packages from them", "cp1").get("skipped")
    assert sh(cp1, "test -e /opt/etcdops || test -e /var/cache/etcdops", check=False).returncode == 1

    done = playbook(bare, limit="cp1")
    assert done.rc == 0, done.stderr + json.dumps(done.results(), indent=1)[-4000:]
    wheels = done.result("Install the collection's Python packages from them", "cp1")
    assert wheels["changed"] and wheels["interpreter"] == INTERPRETER and "Python 3.11" in wheels["host"]
    tools = done.result("Stage etcdctl and etcdutl of the cluster's etcd version", "cp1")
    assert tools["changed"] and tools["source"] == "running" and tools["version"] == bare["version"]
    assert sh(cp1, "%s version" % tools["etcdutl"]).stdout.startswith("etcdutl version: %s" % bare["version"])
    assert sh(cp1, "python3 -c 'import pyetcd'", check=False).returncode != 0  # the system Python as it was

    # a module of the collection runs on the host with the interpreter the role installed
    info = subprocess.run([str(VENV_BIN / "ansible"), "-i", str(bare["inventory"]), "cp1", "-m",
                           "etcdops.etcd.etcd_cluster_info", "-a", json.dumps({"endpoints": ["http://127.0.0.1:2379"]}),
                           "-e", "ansible_python_interpreter=%s" % INTERPRETER],
                          env=ansible_env(), capture_output=True, text=True, check=False)
    result = AnsibleRun(info).result(host="cp1")
    assert not result.get("failed"), result
    assert result["member_count"] == 1 and result["members"][0]["version"] == bare["version"]

    again = playbook(bare, limit="cp1")
    assert again.rc == 0 and again.stats["cp1"]["changed"] == 0, json.dumps(again.stats)


def test_a_wheelhouse_from_the_controller_is_used_without_a_download(bare, tmp_path):
    cached = sorted(bare["cache"].iterdir()) if bare["cache"].exists() else []
    if not cached:
        pytest.skip("the first test made no wheel cache")
    nowhere = tmp_path / "no-cache"
    run = playbook(bare, {"prerequisites_wheelhouse": str(cached[0]), "prerequisites_wheel_cache": str(nowhere),
                          "prerequisites_etcd_tools": False}, limit="cp2")
    assert run.rc == 0, run.stderr + json.dumps(run.results(), indent=1)[-4000:]
    assert not nowhere.exists()  # nothing downloaded
    assert sh(bare["names"][1], "%s -c 'import pyetcd, grpc, boto3, pyrage, zstandard'" % INTERPRETER).returncode == 0


def test_a_host_without_python3_is_told_what_to_install(bare):
    cp2 = bare["names"][1]
    sh(cp2, "mv /usr/bin/python3 /usr/bin/python3.hidden")
    try:
        run = playbook(bare, {"prerequisites_etcd_tools": False}, limit="cp2")
        assert run.rc != 0
        failed = run.result("Refuse a host the collection cannot run on, saying what to install", "cp2")
        assert "there is no python3 on the host" in failed["msg"] and "apt-get install python3" in failed["msg"]
    finally:
        sh(cp2, "mv /usr/bin/python3.hidden /usr/bin/python3")
