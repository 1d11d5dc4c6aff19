"""etcd_data_dir over real directories: old member data moved aside (never deleted), check mode changes nothing,
idempotent, refuses while a process has a file open under the data dir."""

import os
import subprocess
import sys


from ansible_collections.etcdops.etcd.plugins.module_utils import _restore
from ansible_collections.etcdops.etcd.plugins.modules import etcd_data_dir

from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import call_main


def member_data(data_dir):
    os.makedirs(os.path.join(data_dir, "member", "snap"))
    with open(os.path.join(data_dir, "member", "snap", "db"), "w") as handle:
        handle.write("bbolt")


def run(args, check=False, diff=False):
    return call_main(etcd_data_dir, dict(args, _ansible_check_mode=check, _ansible_diff=diff))


def test_moves_member_data_aside_then_nothing_to_do(tmp_path):
    data_dir = str(tmp_path / "etcd")
    member_data(data_dir)

    check = run({"path": data_dir}, check=True, diff=True)
    assert not check.failed and check.result["changed"]
    assert check.result["moved_to"].startswith(data_dir + ".moved-")
    assert check.result["diff"]["before"]["entries"] == ["member"]
    assert sorted(os.listdir(str(tmp_path))) == ["etcd"] and os.listdir(data_dir) == ["member"]

    done = run({"path": data_dir})
    assert not done.failed and done.result["changed"] and done.result["had_data"]
    moved = done.result["moved_to"]
    assert moved.startswith(data_dir + ".moved-")
    with open(os.path.join(moved, "member", "snap", "db")) as handle:
        assert handle.read() == "bbolt"
    assert os.listdir(data_dir) == []
    assert os.stat(data_dir).st_mode & 0o777 == 0o700

    again = run({"path": data_dir})
    assert not again.failed and not again.result["changed"] and again.result["moved_to"] is None


def test_mount_point_content_moves_inside(tmp_path, monkeypatch):
    data_dir = str(tmp_path / "etcd")
    member_data(data_dir)
    real = _restore.is_mount_point
    monkeypatch.setattr(_restore, "is_mount_point", lambda path, *a: path.rstrip("/") == data_dir or real(path))
    done = run({"path": data_dir})
    assert not done.failed and done.result["moved_to"].startswith(data_dir + "/moved-")
    assert os.listdir(data_dir) == [os.path.basename(done.result["moved_to"])]
    assert os.path.isfile(os.path.join(done.result["moved_to"], "member", "snap", "db"))


def test_missing_dir_is_created_and_check_mode_does_not(tmp_path):
    data_dir = str(tmp_path / "etcd")
    check = run({"path": data_dir}, check=True)
    assert check.result["changed"] and not os.path.exists(data_dir)
    done = run({"path": data_dir})
    assert done.result["changed"] and os.path.isdir(data_dir)


def test_refuses_while_a_process_has_a_file_open(tmp_path):
    data_dir = str(tmp_path / "etcd")
    member_data(data_dir)
    holder = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1]); print('open', flush=True); "
                               "time.sleep(60)", os.path.join(data_dir, "member", "snap", "db")],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"open"
        refused = run({"path": data_dir})
        assert refused.failed and "stop the member first" in refused.result["msg"]
        assert [u["pid"] for u in refused.result["users"]] == [holder.pid]
        assert os.listdir(data_dir) == ["member"] and sorted(os.listdir(str(tmp_path))) == ["etcd"]
    finally:
        holder.kill()
        holder.wait()


def test_not_a_directory_refused(tmp_path):
    path = tmp_path / "etcd"
    path.write_text("x")
    refused = run({"path": str(path)})
    assert refused.failed and "not a directory" in refused.result["msg"]
