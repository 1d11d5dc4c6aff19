"""static_pod_manifest over real directories: park etcd, put it back, edit its flags, wait for it.

The waits meet real processes (a Python interpreter started under the name ``etcd`` with the member's flags)
and a fake ``crictl`` on PATH that answers in crictl's JSON shape from a state file.
"""

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible.module_utils import basic

from ansible_collections.etcdops.etcd.plugins.modules import static_pod_manifest

# kubeadm's etcd.yaml as kubeadm writes it (indentless lists); not named .yaml, so linters leave its style alone.
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "manifests" / "kubeadm-etcd-3.5.manifest"

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    @contextlib.contextmanager
    def patch_module_args(args):
        from unittest import mock
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield


def run_module(capsys, check=False, diff=False, **args):
    args = dict(args)
    args["_ansible_check_mode"] = check
    args["_ansible_diff"] = diff
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            static_pod_manifest.main()
    out = capsys.readouterr().out
    return json.loads(out)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A control-plane node's directories, a member name no other test or lab uses, and a PATH without crictl."""
    class Node(object):
        pass

    n = Node()
    n.root = tmp_path
    n.manifests = tmp_path / "etc" / "kubernetes" / "manifests"
    n.manifests.mkdir(parents=True)
    n.parking = tmp_path / "etc" / "kubernetes" / "manifests-parked"
    n.bin = tmp_path / "bin"
    n.bin.mkdir()
    n.member = "unit-%d-%d" % (os.getpid(), id(n) % 100000)
    n.data_dir = str(tmp_path / "var" / "lib" / "etcd")
    n.text = (FIXTURE.read_text().replace("--name=cp1", "--name=" + n.member)
              .replace("--data-dir=/var/lib/etcd", "--data-dir=" + n.data_dir))
    n.manifest = n.manifests / "etcd.yaml"
    n.manifest.write_text(n.text)
    n.manifest.chmod(0o600)
    n.parked = n.parking / "etcd.yaml"
    n.args = dict(name="etcd", manifests_dir=str(n.manifests), parking_dir=str(n.parking))
    monkeypatch.setenv("PATH", "%s:/usr/bin:/bin" % n.bin)
    return n


def warnings(result):
    """Warning texts: plain strings up to ansible-core 2.18, WarningSummary objects after."""
    texts = []
    for warning in result.get("warnings", []):
        while isinstance(warning, dict):
            warning = warning.get("event", warning).get("msg") if "event" in warning or "msg" in warning else str(warning)
        texts.append(str(warning))
    return texts


def tree(root):
    """Every file and directory under root with its mode and content: what 'nothing changed' means."""
    result = {}
    for path in sorted(Path(root).rglob("*")):
        st = path.lstat()
        result[str(path.relative_to(root))] = (stat.filemode(st.st_mode), st.st_uid,
                                               path.read_bytes() if path.is_file() else None)
    return result


# Park and put back


def test_absent_parks_the_manifest_and_present_puts_it_back_byte_identical(capsys, node):
    original = node.manifest.read_bytes()
    result = run_module(capsys, state="absent", **node.args)
    assert result["changed"] and result["state"] == "absent"
    assert result["manifest_path"] == str(node.manifest) and result["parked_path"] == str(node.parked)
    assert os.listdir(str(node.manifests)) == []
    assert node.parked.read_bytes() == original
    assert stat.S_IMODE(node.parked.stat().st_mode) == 0o600
    assert stat.S_IMODE(node.parking.stat().st_mode) == 0o700
    assert result["flags_before"] == result["flags_after"] and result["flags_before"][0] == "etcd"

    assert run_module(capsys, state="absent", **node.args)["changed"] is False

    result = run_module(capsys, state="present", **node.args)
    assert result["changed"] and result["state"] == "present"
    assert os.listdir(str(node.manifests)) == ["etcd.yaml"]
    assert node.manifest.read_bytes() == original
    assert stat.S_IMODE(node.manifest.stat().st_mode) == 0o600
    assert os.listdir(str(node.parking)) == []

    assert run_module(capsys, state="present", **node.args)["changed"] is False


def test_path_instead_of_name(capsys, node):
    result = run_module(capsys, path=str(node.manifest), parking_dir=str(node.parking), state="absent")
    assert result["changed"] and node.parked.exists() and not node.manifest.exists()
    result = run_module(capsys, path=str(node.manifest), parking_dir=str(node.parking), state="present")
    assert result["changed"] and node.manifest.read_text() == node.text


def test_path_and_manifests_dir_together_are_refused(capsys, node):
    result = run_module(capsys, path=str(node.manifest), manifests_dir=str(node.manifests), parking_dir=str(node.parking))
    assert result["failed"] and "mutually exclusive" in result["msg"]


@pytest.mark.parametrize("where", ["same", "inside", "nested"])
def test_parking_dir_inside_the_manifests_dir_is_refused(capsys, node, where):
    parking = {"same": node.manifests, "inside": node.manifests / "parked", "nested": node.manifests / "a" / ".." / "b"}[where]
    before = tree(node.root)
    result = run_module(capsys, state="absent", name="etcd", manifests_dir=str(node.manifests), parking_dir=str(parking))
    assert result["failed"] and "inside the manifests directory" in result["msg"]
    assert tree(node.root) == before


def test_present_with_a_different_parked_copy_is_refused(capsys, node):
    node.parking.mkdir(mode=0o700)
    node.parked.write_text(node.text.replace("--snapshot-count=10000", "--snapshot-count=5000"))
    before = tree(node.root)
    result = run_module(capsys, state="present", **node.args)
    assert result["failed"] and "both exist and differ" in result["msg"] and "diff " in result["msg"]
    assert tree(node.root) == before
    result = run_module(capsys, state="absent", **node.args)
    assert result["failed"] and tree(node.root) == before


def test_present_removes_an_identical_parked_copy(capsys, node):
    node.parking.mkdir(mode=0o700)
    node.parked.write_text(node.text)
    result = run_module(capsys, state="present", diff=True, **node.args)
    assert result["changed"] and not node.parked.exists() and node.manifest.read_text() == node.text
    assert run_module(capsys, state="present", **node.args)["changed"] is False


def test_present_without_any_manifest_fails_and_absent_is_a_no_op(capsys, node):
    node.manifest.unlink()
    result = run_module(capsys, state="present", **node.args)
    assert result["failed"] and "nothing to put back" in result["msg"]
    result = run_module(capsys, state="absent", **node.args)
    assert result["changed"] is False and result["state"] == "absent"
    assert any("nothing to park" in w for w in warnings(result))
    result = run_module(capsys, state="absent", flags={"force-new-cluster": True}, **node.args)
    assert result["failed"]


def test_move_keeps_owner_and_mode_across_file_systems(capsys, node, monkeypatch):
    real_rename = os.rename

    def no_cross_device(src, dst):
        if str(src).startswith(str(node.manifests)) and not str(dst).startswith(str(node.manifests)):
            raise OSError(18, "Invalid cross-device link")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", no_cross_device)
    os.utime(str(node.manifest), (1000000000, 1000000000))
    result = run_module(capsys, state="absent", **node.args)
    assert result["changed"]
    assert os.listdir(str(node.manifests)) == []
    assert node.parked.read_text() == node.text
    st = node.parked.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_mtime == 1000000000
    assert os.listdir(str(node.parking)) == ["etcd.yaml"]


# Flags


def test_flags_edit_one_line_and_second_run_is_unchanged(capsys, node):
    result = run_module(capsys, flags={"force-new-cluster": True, "initial-cluster-state": "existing"},
                        remove_flags=["snapshot-count"], **node.args)
    assert result["changed"]
    after = node.manifest.read_text()
    assert "    - --force-new-cluster\n" in after and "    - --initial-cluster-state=existing\n" in after
    assert "snapshot-count" not in after
    assert result["flags_after"] == [line[6:] for line in after.splitlines() if line.startswith("    - ")][:len(result["flags_after"])]
    assert "--force-new-cluster" not in result["flags_before"] and "--force-new-cluster" in result["flags_after"]
    assert os.listdir(str(node.manifests)) == ["etcd.yaml"]
    assert stat.S_IMODE(node.manifest.stat().st_mode) == 0o600
    assert not node.parking.exists()

    again = run_module(capsys, flags={"--force-new-cluster": True, "initial-cluster-state": "existing"},
                       remove_flags=["snapshot-count"], **node.args)
    assert again["changed"] is False and again["flags_before"] == again["flags_after"] == result["flags_after"]


def test_put_back_with_flags_appears_in_one_step(capsys, node):
    run_module(capsys, state="absent", **node.args)
    seen = []
    real_rename = os.rename

    def watch(src, dst):
        real_rename(src, dst)
        if str(dst) == str(node.manifest):
            seen.append(node.manifest.read_text())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "rename", watch)
        result = run_module(capsys, state="present", flags={"force-new-cluster": True}, **node.args)
    assert result["changed"]
    # the kubelet never sees the manifest without the flag
    assert len(seen) == 1 and "--force-new-cluster" in seen[0]
    assert not node.parked.exists()
    assert stat.S_IMODE(node.manifest.stat().st_mode) == 0o600


def test_a_failed_write_leaves_the_manifest_and_no_temp_file(capsys, node, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    result = run_module(capsys, flags={"force-new-cluster": True}, **node.args)
    assert result["failed"] and "No space left on device" in result["msg"]
    assert os.listdir(str(node.manifests)) == ["etcd.yaml"]
    assert node.manifest.read_text() == node.text


def test_backup_goes_to_the_parking_dir_never_next_to_the_manifest(capsys, node):
    result = run_module(capsys, flags={"force-new-cluster": True}, backup=True, **node.args)
    assert result["changed"]
    assert os.listdir(str(node.manifests)) == ["etcd.yaml"]
    backup = Path(result["backup_file"])
    assert backup.parent == node.parking and backup.name.startswith("etcd.yaml.") and backup.name.endswith(".bak")
    assert backup.read_text() == node.text
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(node.parking.stat().st_mode) == 0o700
    # a backup is not a parked manifest: present still finds none parked
    assert run_module(capsys, state="present", **node.args)["changed"] is False


def test_malformed_manifest_is_refused_and_left_alone(capsys, node):
    for broken in ("kind: Pod\nspec: [\n", node.text.replace("kind: Pod", "kind: Deployment"),
                   node.text[:node.text.index("  - command:\n")] + "  - command: [etcd, --name=x]\n"
                   + node.text[node.text.index("    image:"):]):
        node.manifest.write_text(broken)
        before = tree(node.root)
        result = run_module(capsys, flags={"force-new-cluster": True}, **node.args)
        assert result["failed"] and str(node.manifest) in result["msg"] and "nothing was changed" in result["msg"]
        assert tree(node.root) == before


def test_a_crafted_or_huge_manifest_fails_with_what_to_do_and_is_left_alone(capsys, node):
    lols = ['l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]']
    lols += ['l%d: &l%d [%s]' % (i, i, ', '.join(['*l%d' % (i - 1)] * 10)) for i in range(1, 10)]
    for broken, match in ((node.text + '\n'.join(lols) + '\n', 'YAML nodes'),
                          (node.text + '#' * (2 * 1024 * 1024), 'bytes, more than the 1048576')):
        node.manifest.write_text(broken)
        before = tree(node.root)
        started = time.monotonic()
        result = run_module(capsys, flags={"force-new-cluster": True}, **node.args)
        assert time.monotonic() - started < 5
        assert result["failed"] and match in result["msg"] and str(node.manifest) in result["msg"]
        assert "kubeadm init phase etcd local" in result["msg"] and "nothing was changed" in result["msg"]
        assert tree(node.root) == before


def test_missing_container_is_refused(capsys, node):
    result = run_module(capsys, container="etcd-main", flags={"force-new-cluster": True}, **node.args)
    assert result["failed"] and "no container named 'etcd-main'" in result["msg"]


@pytest.mark.parametrize("flags, message", [({"force-new-cluster": None}, "remove_flags"),
                                            ({"bad name": "x"}, "not a flag name")])
def test_bad_flags_are_refused_before_anything_is_read(capsys, node, flags, message):
    result = run_module(capsys, flags=flags, **node.args)
    assert result["failed"] and message in result["msg"]


# Check and diff mode


def test_check_mode_changes_nothing(capsys, node):
    before = tree(node.root)
    for args in (dict(state="absent"), dict(flags={"force-new-cluster": True}, backup=True),
                 dict(state="absent", remove_flags=["snapshot-count"])):
        result = run_module(capsys, check=True, diff=True, **dict(node.args, **args))
        assert result["changed"] is True
        assert tree(node.root) == before
    result = run_module(capsys, check=True, state="absent", **node.args)
    assert result["state"] == "absent" and result["flags_after"] == result["flags_before"]
    run_module(capsys, state="absent", **node.args)
    before = tree(node.root)
    result = run_module(capsys, check=True, state="present", flags={"force-new-cluster": True}, **node.args)
    assert result["changed"] and "--force-new-cluster" in result["flags_after"]
    assert tree(node.root) == before


def test_diff_of_a_flag_edit(capsys, node):
    result = run_module(capsys, diff=True, flags={"force-new-cluster": True}, **node.args)
    diff = result["diff"]
    assert diff["before_header"] == diff["after_header"] == str(node.manifest)
    assert diff["before"] == node.text and diff["after"] == node.manifest.read_text()
    assert diff["after"].replace("    - --force-new-cluster\n", "") == diff["before"]


def test_diff_of_a_move(capsys, node):
    result = run_module(capsys, diff=True, check=True, state="absent", **node.args)
    leave, arrive = result["diff"]
    assert leave["before_header"] == str(node.manifest) and leave["before"] == node.text and leave["after"] == ""
    assert arrive["after_header"] == str(node.parked) and arrive["before"] == "" and arrive["after"] == node.text


# Waiting: process table and crictl


@pytest.fixture
def fake_etcd(node):
    """Start a process that looks like the node's etcd in the process table (argv[0] etcd, same flags)."""
    link = node.bin / "etcd"
    os.symlink(sys.executable, str(link))
    started = []

    def start(delay=0.0, lifetime=60, extra=()):
        def run():
            time.sleep(delay)
            proc = subprocess.Popen([str(link), "-c", "import time; time.sleep(%s)" % lifetime,
                                     "--data-dir=" + node.data_dir, "--name=" + node.member] + list(extra))
            started.append(proc)
        if delay:
            threading.Thread(target=run, daemon=True).start()
        else:
            run()
            time.sleep(0.2)
        return started

    yield start
    time.sleep(0.1)
    for proc in started:
        proc.kill()
        proc.wait()


def later(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


def test_wait_stopped_waits_for_the_process_to_end(capsys, node, fake_etcd):
    procs = fake_etcd()
    later(1.5, procs[0].kill)
    result = run_module(capsys, state="absent", wait="stopped", wait_timeout=20, **node.args)
    assert result["changed"] and not result.get("failed"), result
    assert result["runtime"] == "process table"
    assert result["pids"] == [] and result["container_ids"] == [] and result["restarts"] is None
    assert 1.0 <= result["waited"] < 10


def test_wait_stopped_times_out_with_what_still_runs(capsys, node, fake_etcd):
    procs = fake_etcd()
    result = run_module(capsys, state="absent", wait="stopped", wait_timeout=2, **node.args)
    assert result["failed"] and result["changed"]
    assert result["pids"] == [procs[0].pid] and "pid %d" % procs[0].pid in result["msg"]
    assert "journalctl -u kubelet" in result["msg"]
    assert node.parked.exists() and not node.manifest.exists()


def test_wait_running_sees_the_process_the_kubelet_starts_after_the_change(capsys, node, fake_etcd):
    old = fake_etcd()
    later(1.0, old[0].kill)
    fake_etcd(delay=2.0, extra=["--force-new-cluster"])
    result = run_module(capsys, flags={"force-new-cluster": True}, wait="running", wait_settle=1, wait_timeout=20,
                        **node.args)
    assert not result.get("failed"), result
    assert result["runtime"] == "process table" and len(result["pids"]) == 1
    assert result["pids"][0] != old[0].pid
    assert result["waited"] >= 2


def test_wait_running_without_a_change_accepts_what_runs(capsys, node, fake_etcd):
    procs = fake_etcd()
    result = run_module(capsys, wait="running", wait_settle=1, **node.args)
    assert result["changed"] is False and result["pids"] == [procs[0].pid] and result["restarts"] == 0


def test_check_mode_with_a_pending_change_does_not_wait(capsys, node):
    result = run_module(capsys, check=True, state="absent", wait="stopped", wait_timeout=1, **node.args)
    assert result["changed"] and "runtime" not in result and not result.get("failed")


def test_wait_that_contradicts_the_state_is_refused(capsys, node):
    assert "does not go with" in run_module(capsys, state="absent", wait="running", **node.args)["msg"]
    assert "does not go with" in run_module(capsys, state="present", wait="stopped", **node.args)["msg"]


FAKE_CRICTL = r'''#!%(python)s
import json, re, sys, time
state_file = %(state)r
with open(state_file) as handle:
    state = json.load(handle)
with open(state_file + ".calls", "a") as handle:
    handle.write(json.dumps(sys.argv[1:]) + "\n")
if state.get("fail"):
    sys.stderr.write('time="2025-01-01T00:00:00Z" level=fatal msg="validate service connection: '
                     'validate CRI v1 runtime API for endpoint \\"unix:///run/containerd/containerd.sock\\": '
                     'rpc error: code = Unavailable"\n')
    sys.exit(1)
args = sys.argv[1:]
assert args[:3] == ["ps", "-o", "json"], args
name = args[args.index("--name") + 1] if "--name" in args else ""
for container in state["containers"]:
    if container["createdAt"] == "NOW":
        container["createdAt"] = str(int(time.time() * 1e9))
with open(state_file, "w") as handle:
    json.dump(state, handle)
listed = [c for c in state["containers"] if re.search(name, c["metadata"]["name"])]
print(json.dumps({"containers": listed}, indent=2))
'''


@pytest.fixture
def crictl(node):
    """A crictl on PATH answering `ps -o json` from a state file the test changes."""
    state = node.root / "crictl-state.json"

    def set_state(containers=(), fail=False):
        state.write_text(json.dumps({"containers": list(containers), "fail": fail}))

    set_state()
    script = node.bin / "crictl"
    script.write_text(FAKE_CRICTL % {"python": sys.executable, "state": str(state)})
    script.chmod(0o755)
    set_state.calls = lambda: [json.loads(line) for line in Path(str(state) + ".calls").read_text().splitlines()]
    return set_state


def container(cid, pod="etcd-cp1", state="CONTAINER_RUNNING", created="NOW", restarts=0):
    return {
        "id": cid * (64 // len(cid)),
        "podSandboxId": "9f3e" * 16,
        "metadata": {"name": "etcd", "attempt": restarts},
        "image": {"image": "sha256:2e96e5913fc06e3d26915af3d0f2ca5048cc4b6327e661e80da792cbf8d8d9d4",
                  "annotations": {}, "userSpecifiedImage": ""},
        "imageRef": "sha256:2e96e5913fc06e3d26915af3d0f2ca5048cc4b6327e661e80da792cbf8d8d9d4",
        "state": state,
        "createdAt": created,
        "labels": {"io.kubernetes.container.name": "etcd", "io.kubernetes.pod.name": pod,
                   "io.kubernetes.pod.namespace": "kube-system", "io.kubernetes.pod.uid": "5a6f1f0e7d3c9b8a"},
        "annotations": {"io.kubernetes.container.hash": "1d2e3f4a", "io.kubernetes.container.restartCount": str(restarts),
                        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                        "io.kubernetes.container.terminationMessagePolicy": "File",
                        "io.kubernetes.pod.terminationGracePeriod": "30"},
    }


def test_wait_stopped_asks_crictl(capsys, node, crictl):
    crictl([container("a1"), container("b2", pod="etcdbackup-5d8f"), container("c3", state="CONTAINER_EXITED")])
    later(1.5, lambda: crictl([container("b2", pod="etcdbackup-5d8f"), container("c3", state="CONTAINER_EXITED")]))
    result = run_module(capsys, state="absent", wait="stopped", wait_timeout=20, **node.args)
    assert not result.get("failed"), result
    assert result["runtime"] == "crictl" and result["container_ids"] == [] and result["waited"] >= 1
    assert crictl.calls()[0] == ["ps", "-o", "json", "--name", "^etcd$"]


def test_wait_running_asks_crictl_and_reports_restarts(capsys, node, crictl):
    old = container("01d", created=str(int((time.time() - 600) * 1e9)))
    crictl([old])
    later(1.5, lambda: crictl([container("e7e", restarts=3)]))
    result = run_module(capsys, flags={"force-new-cluster": True}, wait="running", wait_settle=1, wait_timeout=20,
                        **node.args)
    assert not result.get("failed"), result
    assert result["runtime"] == "crictl" and result["container_ids"] == ["e7e" * 21]
    assert result["restarts"] == 3 and result["waited"] >= 1.5


def test_wait_running_fails_on_a_crash_loop(capsys, node, crictl):
    stop = threading.Event()
    restarts = iter(range(1, 100))

    def restart():
        if not stop.is_set():
            count = next(restarts)
            crictl([container("%04x" % count, restarts=count)])
            later(0.5, restart)

    restart()
    try:
        result = run_module(capsys, wait="running", wait_settle=2, wait_timeout=4, **node.args)
    finally:
        stop.set()
        time.sleep(0.6)
    assert result["failed"] and "crash loop" in result["msg"] and "crictl ps -a --name etcd" in result["msg"]
    assert result["restarts"] >= 5


def test_crictl_failing_falls_back_to_the_process_table(capsys, node, crictl, fake_etcd):
    crictl(fail=True)
    procs = fake_etcd()
    result = run_module(capsys, wait="running", wait_settle=1, **node.args)
    assert not result.get("failed"), result
    assert result["runtime"] == "process table" and result["pids"] == [procs[0].pid]
    assert any("instead of crictl" in w and "Unavailable" in w for w in warnings(result))


def test_missing_pyyaml_is_reported(capsys, node, monkeypatch):
    monkeypatch.setattr(static_pod_manifest, "HAS_YAML", False)
    monkeypatch.setattr(static_pod_manifest, "YAML_IMPORT_ERROR", "ImportError: No module named 'yaml'")
    result = run_module(capsys, **node.args)
    assert result["failed"] and "PyYAML" in result["msg"]
