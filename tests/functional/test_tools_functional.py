# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_tools with real etcd binaries: from a tarball laid out as etcd's release is (the machine's builds of each
line packed as etcd-v<version>-linux-amd64.tar.gz), and copied out of a real running member found by its
manifest; checksums, versions and broken installs as a user meets them."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import io
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.modules import etcd_tools
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import call_main

pytestmark = [pytest.mark.functional]


def _conftest():
    """The functional conftest pytest loaded (its port bookkeeping is shared with the other tests)."""
    return [module for module in list(sys.modules.values())
            if (getattr(module, '__file__', None) or '').endswith(os.path.join('functional', 'conftest.py'))][0]


def line_tools(line):
    return _conftest().etcd_tools(line)


def free_port():
    return _conftest().free_port()


def missing_line(line):
    _conftest().missing_line(line)


def version_of(line):
    tools = line_tools(line)
    if tools is None:
        missing_line(line)
    out = subprocess.run([tools['etcd'], '--version'], stdout=subprocess.PIPE, check=True).stdout.decode()
    return tools, out.split('etcd Version:')[1].split()[0]


def release_tarball(directory, line, tools=None, version=None):
    """(path, sha256) of a tarball in etcd's release layout holding the line's etcdctl (and etcdutl)."""
    found, real_version = version_of(line)
    version = version or real_version
    top = 'etcd-v%s-linux-amd64' % version
    path = os.path.join(str(directory), '%s-%s.tar.gz' % (top, line))
    with tarfile.open(path, 'w:gz', compresslevel=1) as archive:
        readme = tarfile.TarInfo(top + '/README.md')
        text = b'# etcd\n'
        readme.size = len(text)
        archive.addfile(readme, io.BytesIO(text))
        for name in tools or ('etcdctl', 'etcdutl'):
            if found.get(name):
                archive.add(found[name], arcname='%s/%s' % (top, name))
    with open(path, 'rb') as handle:
        return path, hashlib.sha256(handle.read()).hexdigest()


def run(check=False, **args):
    args = dict(args, _ansible_check_mode=check)
    args.setdefault('manifest_path', '/nonexistent/etcd.yaml')
    return call_main(etcd_tools, args)


def test_from_the_release_tarball_checked_idempotent_and_truthful_in_check_mode(tmp_path):
    dummy, version = version_of('3.6')
    archive, sha256 = release_tarball(tmp_path, '3.6')
    dest = str(tmp_path / 'tools')
    wrong = run(version=version, archive=archive, archive_sha256='0' * 64, dest=dest)
    assert wrong.failed and wrong.result['kind'] == 'checksum' and 'nothing was installed' in wrong.result['msg']
    assert not os.path.exists(dest)
    planned = run(check=True, version=version, archive=archive, archive_sha256=sha256, dest=dest)
    assert not planned.failed and planned.result['changed'] and planned.result['source'] == 'archive'
    assert not os.path.exists(os.path.join(dest, version))
    done = run(version=version, archive=archive, archive_sha256='sha256:' + sha256.upper(), dest=dest)
    assert not done.failed and done.result['changed'], done.result
    for name in ('etcdctl', 'etcdutl'):
        path = done.result[name]
        assert path == os.path.join(dest, version, name) and os.access(path, os.X_OK)
        answer = subprocess.run([path, 'version'], stdout=subprocess.PIPE, check=False).stdout.decode()
        assert ('version: %s' % version) in answer
    assert sorted(os.listdir(dest)) == [version]  # no staging left behind
    again = run(version=version, archive=archive, archive_sha256=sha256, dest=dest)
    assert not again.failed and not again.result['changed'] and again.result['source'] == 'installed'
    again = run(check=True, version=version, dest=dest)
    assert not again.result['changed']


def test_tools_of_another_version_are_refused_and_nothing_is_left(tmp_path):
    dummy, version = version_of('3.6')
    # a tarball named for 3.6 that holds the 3.5 line's tools
    archive, sha256 = release_tarball(tmp_path, '3.5', version=version)
    dest = str(tmp_path / 'tools')
    refused = run(version=version, archive=archive, archive_sha256=sha256, dest=dest, source='archive')
    assert refused.failed and refused.result['kind'] == 'version', refused.result
    assert 'not %s' % version in refused.result['msg'] and platform.machine() in refused.result['msg']
    assert os.listdir(dest) == []


def test_a_broken_install_is_moved_aside_and_staged_again(tmp_path):
    dummy, version = version_of('3.7')
    archive, sha256 = release_tarball(tmp_path, '3.7')
    dest = str(tmp_path / 'tools')
    assert not run(version=version, archive=archive, archive_sha256=sha256, dest=dest).failed
    os.remove(os.path.join(dest, version, 'etcdutl'))
    again = run(version=version, archive=archive, archive_sha256=sha256, dest=dest)
    assert not again.failed and again.result['changed']
    moved = again.result['moved_aside']
    assert os.path.basename(moved).startswith(version + '.moved-') and os.listdir(moved) == ['etcdctl']
    assert sorted(os.listdir(os.path.join(dest, version))) == ['etcdctl', 'etcdutl']


def test_etcd_34_has_only_etcdctl(tmp_path):
    dummy, version = version_of('3.4')
    archive, sha256 = release_tarball(tmp_path, '3.4')
    done = run(version=version, archive=archive, archive_sha256=sha256, dest=str(tmp_path / 'tools'))
    assert not done.failed and done.result['etcdutl'] is None, done.result
    assert os.listdir(done.result['path']) == ['etcdctl']


def test_without_a_source_the_error_says_what_to_give(tmp_path):
    failed = run(version='3.6.16', dest=str(tmp_path / 'tools'))
    assert failed.failed and failed.result['kind'] == 'no_source'
    assert 'archive_sha256' in failed.result['msg'] and 'release tarball' in failed.result['msg']
    failed = run(dest=str(tmp_path / 'tools'))
    assert failed.failed and failed.result['kind'] == 'bad_input' and 'give version' in failed.result['msg']
    failed = run(version='3.6.16-0', dest=str(tmp_path / 'tools'))
    assert failed.failed and 'not an etcd version' in failed.result['msg']


def test_a_tarball_without_the_tools_or_not_a_tarball_is_refused(tmp_path):
    dummy, version = version_of('3.6')
    archive, sha256 = release_tarball(tmp_path, '3.6', tools=('etcdctl',))
    failed = run(version=version, archive=archive, archive_sha256=sha256, dest=str(tmp_path / 'tools'))
    assert failed.failed and 'has no etcdutl' in failed.result['msg']
    junk = tmp_path / 'junk.tar.gz'
    junk.write_bytes(b'\x1f\x8b' + b'\x00' * 100)
    failed = run(version=version, archive=str(junk), archive_sha256=hashlib.sha256(junk.read_bytes()).hexdigest(),
                 dest=str(tmp_path / 'tools'))
    assert failed.failed and 'cannot read %s as a tarball' % junk in failed.result['msg']
    assert os.listdir(str(tmp_path / 'tools')) == []


MANIFEST = '''apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --name=%(name)s
    - --data-dir=%(data)s
    - --listen-client-urls=http://127.0.0.1:%(client)d
    - --advertise-client-urls=http://127.0.0.1:%(client)d
    - --listen-peer-urls=http://127.0.0.1:%(peer)d
    - --initial-advertise-peer-urls=http://127.0.0.1:%(peer)d
    - --initial-cluster=%(name)s=http://127.0.0.1:%(peer)d
    image: registry.k8s.io/etcd:%(version)s-0
    name: etcd
'''


def test_from_the_running_member_found_by_its_manifest(tmp_path):
    tools, version = version_of('3.7')
    name = 'tools-%d' % os.getpid()
    values = dict(name=name, data=str(tmp_path / 'data'), client=free_port(), peer=free_port(), version=version)
    manifest = tmp_path / 'etcd.yaml'
    manifest.write_text(MANIFEST % values)
    argv = [tools['etcd']] + [line.strip()[2:] for line in (MANIFEST % values).splitlines()
                              if line.strip().startswith('- --')]
    member = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        dest = str(tmp_path / 'tools')
        planned = run(check=True, manifest_path=str(manifest), dest=dest)
        assert not planned.failed and planned.result['source'] == 'running', planned.result
        assert planned.result['pid'] == member.pid and not os.path.exists(dest)
        done = run(manifest_path=str(manifest), dest=dest)
        assert not done.failed and done.result['version'] == version and done.result['pid'] == member.pid
        with open(tools['etcdutl'], 'rb') as original, open(done.result['etcdutl'], 'rb') as copy:
            assert original.read() == copy.read()
        assert not run(manifest_path=str(manifest), dest=dest).result['changed']
        # asked for another version, the running member's tools are not taken
        refused = run(manifest_path=str(manifest), dest=dest, version='3.7.0', source='running')
        assert refused.failed and 'is version %s, not 3.7.0' % version in refused.result['msg'], refused.result
    finally:
        member.send_signal(signal.SIGKILL)
        member.wait()
