"""Wheels on a bare host: which fit, crafted archives refused before anything is written, the tree switched."""

import os
import stat
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _wheels
from ansible_collections.etcdops.etcd.plugins.module_utils._wheels import Host, WheelError

HOST = Host((3, 11), "x86_64", (2, 36))


class Runner(object):
    """AnsibleModule.run_command's signature, run for real."""

    @staticmethod
    def run_command(argv, environ_update=None):
        env = dict(os.environ, **(environ_update or {}))
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("name, fits", [
    ("grpcio-1.76.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("cryptography-46.0.1-cp311-abi3-manylinux_2_34_x86_64.whl", True),
    ("protobuf-6.33.0-cp39-abi3-manylinux2014_x86_64.whl", True),
    ("six-1.17.0-py2.py3-none-any.whl", True),
    ("grpcio-1.76.0-cp312-cp312-manylinux_2_17_x86_64.whl", False),    # another Python
    ("grpcio-1.76.0-cp311-cp311-manylinux_2_17_aarch64.whl", False),   # another architecture
    ("cryptography-46.0.1-cp311-abi3-manylinux_2_39_x86_64.whl", False),  # a newer glibc than the host's
    ("cryptography-46.0.1-cp312-abi3-manylinux_2_17_x86_64.whl", False),  # abi3 from a newer Python
    ("zstandard-0.25.0-cp311-cp311-musllinux_1_2_x86_64.whl", False),
    ("pyrage-1.4.0-cp311-cp311-win_amd64.whl", False),
])
def test_which_wheels_fit_the_host(name, fits):
    assert _wheels.fits(_wheels.parse_wheel_name(name), HOST) is fits


def test_a_host_without_glibc_takes_only_pure_wheels():
    host = Host((3, 11), "x86_64", None)
    assert _wheels.fits(_wheels.parse_wheel_name("six-1.17.0-py3-none-any.whl"), host)
    assert not _wheels.fits(_wheels.parse_wheel_name("grpcio-1-cp311-cp311-manylinux2014_x86_64.whl"), host)


def test_an_old_python_is_told_what_to_install():
    with pytest.raises(WheelError) as caught:
        _wheels.check_python(Host((3, 8), "x86_64", (2, 31)))
    assert caught.value.kind == "python" and "3.8" in caught.value.msg and "3.9 or newer" in caught.value.msg


def wheel(directory, name, members):
    path = os.path.join(str(directory), name)
    with zipfile.ZipFile(path, "w") as archive:
        for member, data, mode in members:
            info = zipfile.ZipInfo(member)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


def test_a_wheelhouse_with_misfits_or_doubles_is_refused_naming_them(tmp_path):
    wheel(tmp_path, "six-1.17.0-py3-none-any.whl", [("six.py", b"", 0o100644)])
    wheel(tmp_path, "grpcio-1.76.0-cp312-cp312-manylinux2014_x86_64.whl", [("grpc/__init__.py", b"", 0o100644)])
    with pytest.raises(WheelError) as caught:
        _wheels.choose_wheels(str(tmp_path), HOST)
    assert caught.value.kind == "wheel" and "grpcio-1.76.0-cp312" in caught.value.msg and "Python 3.11" in caught.value.msg
    os.unlink(str(tmp_path / "grpcio-1.76.0-cp312-cp312-manylinux2014_x86_64.whl"))
    wheel(tmp_path, "six-1.16.0-py2.py3-none-any.whl", [("six.py", b"", 0o100644)])
    with pytest.raises(WheelError) as caught:
        _wheels.choose_wheels(str(tmp_path), HOST)
    assert "two wheels of six" in caught.value.msg
    with pytest.raises(WheelError) as caught:
        _wheels.choose_wheels(str(tmp_path / "absent"), HOST)
    assert caught.value.kind == "bad_input"


@pytest.mark.parametrize("member, mode, message", [
    ("../evil.py", 0o100644, "outside the install directory"),
    ("/etc/evil.py", 0o100644, "outside the install directory"),
    ("pkg/./x.py", 0o100644, "outside the install directory"),
    ("pkg\\..\\x.py", 0o100644, "outside the install directory"),
    ("pkg/link", stat.S_IFLNK | 0o777, "is not a regular file"),
])
def test_crafted_members_are_refused_before_anything_is_written(tmp_path, member, mode, message):
    wheel(tmp_path, "bad-1.0-py3-none-any.whl", [("bad/__init__.py", b"", 0o100644), (member, b"x", mode)])
    with pytest.raises(WheelError) as caught:
        _wheels.plan_members(_wheels.choose_wheels(str(tmp_path), HOST))
    assert message in caught.value.msg


def test_too_many_bytes_or_members_are_refused_from_the_directory_alone(tmp_path, monkeypatch):
    wheel(tmp_path, "big-1.0-py3-none-any.whl", [("big/a%d" % i, b"x" * 10, 0o100644) for i in range(5)])
    wheels = _wheels.choose_wheels(str(tmp_path), HOST)
    monkeypatch.setattr(_wheels, "MAX_TOTAL_BYTES", 40)
    with pytest.raises(WheelError) as caught:
        _wheels.plan_members(wheels)
    assert "more than 40 bytes" in caught.value.msg
    monkeypatch.setattr(_wheels, "MAX_TOTAL_BYTES", 1000)
    monkeypatch.setattr(_wheels, "MAX_MEMBERS", 4)
    with pytest.raises(WheelError) as caught:
        _wheels.plan_members(wheels)
    assert "more than 4 files" in caught.value.msg


def test_purelib_and_platlib_go_to_the_top_scripts_do_not(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    wheel(house, "pkg-2.0-py3-none-any.whl", [
        ("pkg/__init__.py", b"VALUE = 2\n", 0o100644),
        ("pkg-2.0.data/purelib/pkg_extra.py", b"X = 1\n", 0o100644),
        ("pkg-2.0.data/platlib/pkg_native.py", b"Y = 1\n", 0),
        ("pkg-2.0.data/scripts/pkg-cli", b"#!python\n", 0o100755),
        ("pkg-2.0.dist-info/METADATA", b"Name: pkg\n", 0o100644),
    ])
    plans, size = _wheels.plan_members(_wheels.choose_wheels(str(house), HOST))
    into = tmp_path / "tree"
    into.mkdir()
    _wheels.unpack(plans, str(into))
    assert sorted(os.listdir(str(into))) == ["pkg", "pkg-2.0.dist-info", "pkg_extra.py", "pkg_native.py"]
    assert size == len(b"VALUE = 2\n") + 6 + 6 + len(b"Name: pkg\n")
    assert _wheels.import_check(Runner(), sys.executable, str(into), ["pkg", "pkg_extra"]) is None
    problem = _wheels.import_check(Runner(), sys.executable, str(into), ["pkg_missing"])
    assert "No module named 'pkg_missing'" in problem


def test_the_wrapper_puts_the_tree_first_and_runs_the_hosts_python(tmp_path):
    text = _wheels.wrapper_text("/usr/bin/python3.11", "/opt/etcdops/python/current")
    assert text.startswith("#!/bin/sh\n") and 'exec /usr/bin/python3.11 "$@"' in text
    assert "PYTHONPATH=/opt/etcdops/python/current${PYTHONPATH:+:$PYTHONPATH}" in text


def test_the_link_is_switched_by_one_rename(tmp_path):
    link = str(tmp_path / "current")
    _wheels.switch_link(link, "trees/a")
    _wheels.switch_link(link, "trees/b")
    assert os.readlink(link) == "trees/b" and sorted(os.listdir(str(tmp_path))) == ["current"]
