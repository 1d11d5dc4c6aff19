"""Staging etcd's tools: versions, the tarball read with bounds, and the directory switched by one rename."""

import io
import os
import tarfile

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _tools
from ansible_collections.etcdops.etcd.plugins.module_utils._tools import ToolsError


@pytest.mark.parametrize("given, wanted", [("3.6.16", "3.6.16"), ("v3.5.0", "3.5.0"), (" 3.4.23 ", "3.4.23")])
def test_versions_as_users_write_them(given, wanted):
    assert _tools.normalize_version(given) == wanted


@pytest.mark.parametrize("given", ["3.6", "3.6.16-0", "latest", "", None, "3.6.1; rm -rf /"])
def test_what_is_not_a_version_is_refused(given):
    with pytest.raises(ToolsError) as caught:
        _tools.normalize_version(given)
    assert caught.value.kind == "bad_input"


def test_etcd_34_needs_only_etcdctl():
    assert _tools.tool_names("3.4.23") == ("etcdctl",)
    assert _tools.tool_names("3.5.0") == ("etcdctl", "etcdutl")
    assert _tools.tool_names("4.0.0") == ("etcdctl", "etcdutl")


def tarball(path, members):
    with tarfile.open(str(path), "w:gz") as archive:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = "/usr/bin/etcdutl"
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return str(path)


def test_only_the_tools_at_the_top_directory_are_written(tmp_path):
    into = tmp_path / "into"
    into.mkdir()
    path = tarball(tmp_path / "a.tar.gz", [
        ("etcd-v3.6.1-linux-amd64/README.md", b"x", "file"),
        ("etcd-v3.6.1-linux-amd64/Documentation/etcdctl", b"not this", "file"),
        ("etcd-v3.6.1-linux-amd64/etcdctl", b"ctl", "file"),
        ("etcd-v3.6.1-linux-amd64/etcdutl", b"utl", "file"),
        ("etcd-v3.6.1-linux-amd64/etcdutl", b"second copy ignored", "file"),
    ])
    out = _tools.extract_tools(path, ("etcdctl", "etcdutl"), str(into))
    assert sorted(os.listdir(str(into))) == ["etcdctl", "etcdutl"]
    assert (into / "etcdctl").read_bytes() == b"ctl" and (into / "etcdutl").read_bytes() == b"utl"
    assert out["etcdutl"] == str(into / "etcdutl") and os.stat(out["etcdutl"]).st_mode & 0o777 == 0o755


@pytest.mark.parametrize("members, message", [
    ([("etcd-v3.6.1-linux-amd64/etcdutl", b"", "symlink")], "is not a regular file"),
    ([("etcd-v3.6.1-linux-amd64/etcdctl", b"ctl", "file")], "has no etcdutl"),
    ([("etcd-v3.6.1-linux-amd64/f%d" % i, b"", "file") for i in range(1001)], "more than 1000 members"),
])
def test_a_tarball_that_is_not_etcds_release_is_refused(tmp_path, members, message):
    path = tarball(tmp_path / "a.tar.gz", members)
    with pytest.raises(ToolsError) as caught:
        _tools.extract_tools(path, ("etcdctl", "etcdutl"), str(tmp_path))
    assert message in caught.value.msg


def test_sizes_are_checked_before_a_member_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(_tools, "MAX_TOOL_BYTES", 10)
    path = tarball(tmp_path / "a.tar.gz", [("etcd-v3.6.1-linux-amd64/etcdutl", b"x" * 11, "file")])
    with pytest.raises(ToolsError) as caught:
        _tools.extract_tools(path, ("etcdutl",), str(tmp_path))
    assert "more than an etcd tool has" in caught.value.msg
    monkeypatch.setattr(_tools, "MAX_ARCHIVE_READ", 5)
    with pytest.raises(ToolsError) as caught:
        _tools.extract_tools(path, ("etcdutl",), str(tmp_path))
    assert "holds more than 5 bytes" in caught.value.msg


def test_the_checksum_is_checked_before_anything_else(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert _tools.check_archive(str(path), "SHA256:" + digest.upper()) == digest
    for wrong, kind in (("0" * 64, "checksum"), ("xyz", "bad_input")):
        with pytest.raises(ToolsError) as caught:
            _tools.check_archive(str(path), wrong)
        assert caught.value.kind == kind
    with pytest.raises(ToolsError) as caught:
        _tools.check_archive(str(tmp_path / "absent.tar.gz"), digest)
    assert "copy etcd's release tarball there first" in caught.value.msg


def test_the_new_directory_takes_the_place_of_the_old_which_is_kept(tmp_path):
    dest = str(tmp_path)
    for round_ in range(3):
        staging = _tools.make_staging(dest, "3.6.1")
        with open(os.path.join(staging, "etcdctl"), "w") as handle:
            handle.write(str(round_))
        moved = _tools.put_in_place(staging, dest, "3.6.1", now=0)
        assert (moved is None) == (round_ == 0)
    names = sorted(os.listdir(dest))
    assert names == ["3.6.1", "3.6.1.moved-1970-01-01T00-00-00Z", "3.6.1.moved-1970-01-01T00-00-00Z-2"]
    assert open(os.path.join(dest, "3.6.1", "etcdctl")).read() == "2"


def test_only_our_staging_directories_are_ever_removed(tmp_path):
    other = tmp_path / "3.6.1"
    other.mkdir()
    _tools.remove_staging(str(other))
    assert other.exists()
    staging = _tools.make_staging(str(tmp_path), "3.6.1")
    _tools.remove_staging(staging)
    assert not os.path.exists(staging)


def test_not_enough_space_says_how_much_is_needed(tmp_path, monkeypatch):
    from ansible_collections.etcdops.etcd.plugins.module_utils import _disk
    monkeypatch.setattr(_disk, "free_bytes", lambda directory: 5 * 1024 * 1024)
    with pytest.raises(ToolsError) as caught:
        _tools.need_space(str(tmp_path), [30 * 1024 * 1024])
    assert caught.value.kind == "no_space" and "5 MiB free; the etcd tools need 47 MiB" in caught.value.msg


def test_running_sources_are_the_executables_directory_inside_the_container(tmp_path):
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    os.symlink("/usr/local/bin/etcd", str(proc / "42" / "exe"))
    (proc / "43").mkdir()
    os.symlink("/usr/local/bin/etcd (deleted)", str(proc / "43" / "exe"))
    found = _tools.running_sources([{"pid": 42}, {"pid": 43}, {"pid": 44}], proc_root=str(proc))
    assert found == [(42, str(proc / "42" / "root") + "/usr/local/bin")]
