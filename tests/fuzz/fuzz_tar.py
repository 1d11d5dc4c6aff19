# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz target: ``_store.extract_resources`` of a tar stream (what a restore unpacks of a backup's resources
object, after decryption), the input cut into chunks by its first bytes, into a fresh directory each time, on
tmpfs when there is one. After each input, whether refused or not: nothing was written beside the destination
(it sits alone in a sandbox directory), nothing in it is anything but a directory, a file or a symlink, and no
symlink in it resolves outside it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import os
import shutil
import stat
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), '.build', 'collections'))

from harness import Target, chunks_of  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.etcdops.etcd.plugins.module_utils._store import (  # noqa: E402
    StoreError, extract_resources)

_ROOT = []


def sandbox_root():
    if not _ROOT:
        base = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None
        _ROOT.append(tempfile.mkdtemp(prefix='etcdops-fuzz-tar-', dir=base))
    return _ROOT[0]


def _inside(path, directory):
    return path == directory or path.startswith(directory + os.sep)


def check_sandbox(sandbox, dest):
    """Only dest in the sandbox; under dest only directories, files and symlinks that resolve inside it."""
    assert os.listdir(sandbox) == ['dest'], 'written beside the destination: %r' % os.listdir(sandbox)
    real_dest = os.path.realpath(dest)
    for directory, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            assert stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode), '%s: mode %o' % (path, mode)
            if stat.S_ISLNK(mode):
                assert _inside(os.path.realpath(path), real_dest), '%s -> %s leaves dest' % (path, os.readlink(path))
            elif stat.S_ISREG(mode):
                assert not mode & (stat.S_ISUID | stat.S_ISGID | 0o022), '%s: mode %o' % (path, mode)


def one_input(data):
    sandbox = tempfile.mkdtemp(dir=sandbox_root())
    dest = os.path.join(sandbox, 'dest')
    try:
        sizes = [1 + b for b in data[:3]] or [1]  # the first three bytes cut the rest into chunks
        try:
            extract_resources(iter(chunks_of(data[3:], sizes)), dest,
                              restore_owner=False, max_files=200, max_bytes=1024 * 1024)
        finally:
            check_sandbox(sandbox, dest)
    finally:
        _remove(sandbox)


def _remove(path):
    # a restored directory can be read-only (its mode is restored last)
    for directory, dirs, dummy in os.walk(path):
        for name in dirs:
            full = os.path.join(directory, name)
            if not os.path.islink(full):
                os.chmod(full, 0o700)
    shutil.rmtree(path)


def _archive(build, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as tar:
        build(tar)
    return buf.getvalue()


def _add(tar, name, kind=tarfile.REGTYPE, data=b'', link='', mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1700000000
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _kubernetes(tar):
    _add(tar, 'pki', tarfile.DIRTYPE, mode=0o755)
    _add(tar, 'pki/etcd', tarfile.DIRTYPE, mode=0o755)
    _add(tar, 'pki/etcd/ca.crt', data=b'-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
    _add(tar, 'pki/etcd/ca.key', data=b'-----BEGIN EC PRIVATE KEY-----\nMHc\n', mode=0o600)
    _add(tar, 'pki/ca.crt', tarfile.LNKTYPE, link='pki/etcd/ca.crt')
    _add(tar, 'manifests', tarfile.DIRTYPE, mode=0o700)
    _add(tar, 'manifests/etcd.yaml', data=b'apiVersion: v1\nkind: Pod\n')
    _add(tar, 'current', tarfile.SYMTYPE, link='pki/etcd')
    _add(tar, 'pki/etcd/up', tarfile.SYMTYPE, link='../ca.crt')


def _hostile(tar):
    _add(tar, 'a', tarfile.SYMTYPE, link='.')
    _add(tar, 'a/b', tarfile.SYMTYPE, link='..')
    _add(tar, 'd', tarfile.DIRTYPE, mode=0o555)
    _add(tar, 'd/f', data=b'x' * 600, mode=0o6777)
    _add(tar, 'l', tarfile.SYMTYPE, link='d/../../x')


def seeds():
    for prefix in (b'\xff\xff\xff', b'\x00\x07\x40'):  # chunk sizes: 256 bytes; 1, 8 and 65 bytes
        yield prefix + _archive(_kubernetes)
    for archive in (_archive(_kubernetes, tarfile.GNU_FORMAT), _archive(_kubernetes, tarfile.USTAR_FORMAT),
                    _archive(_hostile), _archive(lambda tar: _add(tar, 'x' * 150 + '/' + 'y' * 120, data=b'long')),
                    _archive(lambda tar: _add(tar, 'x' * 200, tarfile.SYMTYPE, link='z' * 200), tarfile.GNU_FORMAT),
                    _archive(lambda tar: [_add(tar, 'f', data=b'1'), _add(tar, 'f', tarfile.SYMTYPE, link='g'),
                                          _add(tar, 'g', tarfile.LNKTYPE, link='f')])):
        yield b'\x7f\x7f\x7f' + archive


TARGET = Target('tar', one_input, seeds, allowed=(StoreError,), max_len=64 * 1024)
