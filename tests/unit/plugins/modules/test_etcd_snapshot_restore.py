# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_snapshot state=restored with etcdutl faked (it writes a member dir as the real one would): the member's
identity from its parked manifest, the old data dir moved aside, the second run that changes nothing, check mode
that touches nothing, and every refusal (etcd running, bad snapshot, tool failing, wrong line) leaving the data
dir as it was."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest

from ansible.module_utils import basic

from ansible_collections.etcdops.etcd.plugins.module_utils._restore import MARKER
from ansible_collections.etcdops.etcd.plugins.modules import etcd_snapshot
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
    ModuleExit, capture_exit, listing, module_args,
)

HERE = os.path.dirname(__file__)
SNAPSHOT = os.path.join(HERE, '..', '..', 'fixtures', 'snapshots', 'etcd-3.5.db')
MANIFEST = os.path.join(HERE, '..', '..', 'fixtures', 'manifests', 'kubeadm-etcd-3.5.manifest')


@pytest.fixture(autouse=True)
def warnings(monkeypatch):
    return capture_exit(monkeypatch)


class FakeTool(object):
    """etcdutl (or etcdctl) as run_command sees it: version, --help, and a restore that writes a member dir."""

    def __init__(self, version='3.5.16', bump=True, fail=None):
        self.version = version
        self.bump = bump
        self.fail = fail
        self.restores = []
        self.started = threading.Event()  # set when a restore starts: what the status read beside it waits for

    def __call__(self, module, argv, environ_update=None, **kwargs):
        kind = os.path.basename(argv[0])
        if argv[1:] == ['version']:
            return 0, '%s version: %s\nAPI version: %s\n' % (kind, self.version, self.version[:3]), ''
        if argv[1:] == ['snapshot', 'restore', '--help']:
            return 0, '--data-dir\n' + ('--bump-revision\n--mark-compacted\n' if self.bump else ''), ''
        if argv[1:3] == ['snapshot', 'restore']:
            self.restores.append((list(argv), dict(environ_update or {})))
            self.started.set()
            target = argv[argv.index('--data-dir') + 1]
            if os.path.exists(target):
                return 1, '', 'Error: data-dir %r exists' % target
            os.makedirs(os.path.join(target, 'member', 'snap'))
            os.makedirs(os.path.join(target, 'member', 'wal'))
            if self.fail:
                return 1, '', self.fail
            db = os.path.join(target, 'member', 'snap', 'db')
            shutil.copy(argv[3], db)
            with open(db, 'rb') as handle:
                body = handle.read()
            if len(body) % 512 == 32 and '--skip-hash-check' not in argv:  # etcdutl checks the trailer it copied
                import hashlib
                if hashlib.sha256(body[:-32]).digest() != body[-32:]:
                    return 1, '', 'Error: expected sha256 %r, got %r' % (body[-32:], hashlib.sha256(body[:-32]).digest())
            return 0, '', 'restored snapshot'
        return 127, '', 'unexpected %s' % argv

    def as_method(self):
        """A plain function, so that AnsibleModule.run_command binds the module to it."""
        def run_command(module, argv, **kwargs):
            return self(module, argv, **kwargs)
        return run_command


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A control-plane host in a directory: manifests dir, parked etcd manifest, old data dir, fake etcdutl."""
    root = tmp_path
    (root / 'manifests').mkdir()
    (root / 'parked').mkdir()
    shutil.copy(MANIFEST, str(root / 'parked' / 'etcd.yaml'))
    data = root / 'lib' / 'etcd'
    (data / 'member' / 'snap').mkdir(parents=True)
    (data / 'member' / 'snap' / 'db').write_bytes(b'old data')
    bindir = root / 'bin'
    bindir.mkdir()
    for name in ('etcdutl', 'etcdctl'):
        path = bindir / name
        path.write_text('#!/bin/sh\nexit 0\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    shutil.copy(SNAPSHOT, str(root / 'snapshot.db'))
    tool = FakeTool()
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', tool.as_method())
    return dict(root=root, data=str(data), tool=tool, bin=str(bindir))


def restore(host, check=False, diff=False, **over):
    args = dict(state='restored', path=str(host['root'] / 'snapshot.db'), data_dir=host['data'],
                manifests_dir=str(host['root'] / 'manifests'), parking_dir=str(host['root'] / 'parked'),
                etcdutl=host['bin'] + '/etcdutl', _ansible_check_mode=check, _ansible_diff=diff)
    args.update(over)
    with module_args(args):
        with pytest.raises(ModuleExit) as caught:
            etcd_snapshot.main()
    return caught.value


def old_data_at(path):
    with open(os.path.join(path, 'member', 'snap', 'db'), 'rb') as handle:
        return handle.read() == b'old data'


def test_restore_takes_the_identity_from_the_parked_manifest_and_moves_the_old_data_dir_aside(host):
    result = restore(host)
    assert not result.failed, result.result
    out = result.result
    assert out['changed'] and out['restored']
    assert out['manifest'] == str(host['root'] / 'parked' / 'etcd.yaml')
    argv, env = host['tool'].restores[0]
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert flags['--name'] == 'cp1' and flags['--initial-cluster'] == 'cp1=https://10.0.0.11:2380'
    assert flags['--initial-cluster-token'] == 'etcd-cluster'
    assert flags['--initial-advertise-peer-urls'] == 'https://10.0.0.11:2380'
    assert flags['--data-dir'] == host['data'] + '.restoring'
    assert argv[-3:] == ['--bump-revision', '1000000000', '--mark-compacted'] and env == {}
    # the old data dir is kept, aside, with its content; the restored one is in place with its marker
    assert out['moved_to'].startswith(host['data'] + '.moved-') and old_data_at(out['moved_to'])
    with open(SNAPSHOT, 'rb') as handle:
        assert open(os.path.join(host['data'], 'member', 'snap', 'db'), 'rb').read() == handle.read()
    assert os.path.exists(os.path.join(host['data'], MARKER))
    assert not os.path.exists(host['data'] + '.restoring')
    assert stat.S_IMODE(os.stat(host['data']).st_mode) == 0o700
    assert out['revision'] > 0 and out['trailer'] == 'valid' and out['tool']['kind'] == 'etcdutl'


def test_the_second_run_with_the_same_snapshot_changes_nothing_even_while_etcd_runs(host):
    first = restore(host).result
    shutil.copy(str(host['root'] / 'parked' / 'etcd.yaml'), str(host['root'] / 'manifests' / 'etcd.yaml'))
    before = listing(host['root'])
    second = restore(host)
    assert not second.failed and not second.result['changed'] and not second.result['restored']
    assert second.result['moved_to'] == first['moved_to'] and 'already restored' in second.result['msg']
    assert len(host['tool'].restores) == 1 and listing(host['root']) == before


def test_force_restores_again(host):
    restore(host)
    again = restore(host, force=True)
    assert again.result['restored'] and len(host['tool'].restores) == 2


def test_check_mode_reports_the_plan_and_touches_nothing(host):
    before = listing(host['root'])
    result = restore(host, check=True, diff=True)
    out = result.result
    assert not result.failed and out['changed'] and not out['restored']
    assert out['moved_to'].startswith(host['data'] + '.moved-') and out['command'][1:3] == ['snapshot', 'restore']
    assert out['diff']['after']['old_data_dir_moved_to'] == out['moved_to']
    assert host['tool'].restores == [] and listing(host['root']) == before


def test_check_mode_while_etcd_runs_warns_instead_of_failing(host, warnings):
    shutil.copy(str(host['root'] / 'parked' / 'etcd.yaml'), str(host['root'] / 'manifests' / 'etcd.yaml'))
    result = restore(host, check=True)
    assert not result.failed and result.result['etcd_running']
    assert any('a real run refuses' in w for w in warnings)


def test_refused_while_the_manifest_is_in_the_manifests_dir(host):
    shutil.copy(str(host['root'] / 'parked' / 'etcd.yaml'), str(host['root'] / 'manifests' / 'etcd.yaml'))
    before = listing(host['root'])
    result = restore(host)
    assert result.failed and result.result['error_kind'] == 'etcd_running'
    assert 'static_pod_manifest' in result.result['msg'] and listing(host['root']) == before


def test_refused_while_a_process_has_a_file_open_in_the_data_dir(host):
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; f = open(sys.argv[1], "rb"); '
                               'print("open", flush=True); time.sleep(60)',
                               os.path.join(host['data'], 'member', 'snap', 'db')], stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        result = restore(host)
    finally:
        holder.kill()
        holder.wait()
    assert result.failed and result.result['error_kind'] == 'etcd_running'
    assert 'process %d' % holder.pid in result.result['msg'] and old_data_at(host['data'])


def damage(host):
    path = host['root'] / 'snapshot.db'
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupted_snapshot_found_beside_etcdutl_removes_the_restoring_dir_and_leaves_the_data_dir(host):
    damage(host)  # the fake etcdutl restores it anyway: only the check beside it can refuse it
    before = listing(host['root'])
    result = restore(host)
    out = result.result
    assert result.failed and out['error_kind'] == 'sha256_mismatch' and out['trailer'] == 'mismatch'
    assert 'nothing was changed' in out['msg'] and 'was removed' in out['msg']
    assert len(host['tool'].restores) == 1 and listing(host['root']) == before and old_data_at(host['data'])


def test_check_mode_refuses_a_corrupted_snapshot_before_anything_runs(host):
    damage(host)
    before = listing(host['root'])
    result = restore(host, check=True)
    assert result.failed and result.result['error_kind'] == 'sha256_mismatch'
    assert host['tool'].restores == [] and listing(host['root']) == before


def test_a_snapshot_whose_database_cannot_be_walked_is_refused_after_etcdutl_and_nothing_changes(host):
    import hashlib
    body = b'\x00' * 8192  # 512-byte sectors, a right trailer, but no bbolt database in it
    (host['root'] / 'snapshot.db').write_bytes(body + hashlib.sha256(body).digest())
    before = listing(host['root'])
    result = restore(host)
    assert result.failed and result.result['error_kind'] == 'corrupted', result.result
    assert 'nothing was changed' in result.result['msg'] and listing(host['root']) == before


def test_a_missing_snapshot(host):
    result = restore(host, path=str(host['root'] / 'nope.db'))
    assert result.failed and 'does not exist' in result.result['msg'] and old_data_at(host['data'])


def test_a_snapshot_without_trailer_needs_skip_hash_check(host):
    path = host['root'] / 'snapshot.db'
    path.write_bytes(path.read_bytes()[:-32])
    before = listing(host['root'])
    result = restore(host)
    assert result.failed and result.result['error_kind'] == 'no_trailer' and result.result['trailer'] == 'absent'
    assert host['tool'].restores == [] and listing(host['root']) == before
    result = restore(host, skip_hash_check=True)
    assert not result.failed and '--skip-hash-check' in host['tool'].restores[0][0]


def test_the_tool_failing_leaves_the_data_dir_and_nothing_beside_it(host):
    host['tool'].fail = 'Error: snapshot file integrity check failed'
    before = listing(host['root'])
    result = restore(host)
    assert result.failed and 'integrity check failed' in result.result['msg'] and 'not touched' in result.result['msg']
    assert listing(host['root']) == before


def test_a_leftover_restoring_dir_from_an_interrupted_run_is_replaced(host):
    os.makedirs(host['data'] + '.restoring/member')
    result = restore(host)
    assert not result.failed and result.result['restored']


def test_a_data_dir_already_moved_aside_by_an_interrupted_run(host):
    os.rename(host['data'], host['data'] + '.moved-20200101T000000Z')
    result = restore(host)
    assert not result.failed and result.result['restored'] and result.result['moved_to'] is None
    assert os.path.isdir(os.path.join(host['data'], 'member'))


def test_a_tool_of_another_line_is_refused(host):
    host['tool'].version = '3.6.4'
    result = restore(host)
    assert result.failed and result.result['error_kind'] == 'version_mismatch' and '3.5.16' in result.result['msg']
    assert not restore(host, allow_version_mismatch=True).failed


def test_etcdctl_34_restores_without_a_bump_and_warns(host, warnings):
    os.unlink(host['bin'] + '/etcdutl')
    host['tool'].version, host['tool'].bump = '3.4.23', False
    result = restore(host, etcdutl=host['bin'], allow_version_mismatch=True)
    assert not result.failed, result.result
    argv, env = host['tool'].restores[0]
    assert os.path.basename(argv[0]) == 'etcdctl' and env == {'ETCDCTL_API': '3'}
    assert '--bump-revision' not in argv and result.result['bump_revision'] == 0
    assert any('no --bump-revision' in w for w in warnings)


def test_no_tool(host):
    result = restore(host, etcdutl=str(host['root'] / 'none'))
    assert result.failed and result.result['error_kind'] == 'missing_tool' and old_data_at(host['data'])


def test_options_override_the_manifest(host):
    result = restore(host, name='cp9', initial_cluster='cp9=https://10.0.0.9:2380,cp1=https://10.0.0.11:2380',
                     initial_advertise_peer_urls='https://10.0.0.9:2380', initial_cluster_token='tok',
                     bump_revision=0)
    assert not result.failed, result.result
    argv = host['tool'].restores[0][0]
    assert argv[argv.index('--name') + 1] == 'cp9' and argv[argv.index('--initial-cluster-token') + 1] == 'tok'
    assert '--bump-revision' not in argv and '--mark-compacted' not in argv


def test_without_a_manifest_every_identity_option_is_needed(host):
    os.unlink(str(host['root'] / 'parked' / 'etcd.yaml'))
    result = restore(host)
    assert result.failed and 'name, initial_cluster, initial_advertise_peer_urls' in result.result['msg']


def test_the_moved_aside_name_is_a_utc_timestamp(host):
    before = time.strftime('%Y%m%d', time.gmtime())
    out = restore(host).result
    assert out['moved_to'].split('.moved-')[1].startswith(before) and out['moved_to'].endswith('Z')


def test_a_data_dir_that_is_a_mount_point_keeps_its_place_and_the_old_content_moves_inside(host, monkeypatch):
    from ansible_collections.etcdops.etcd.plugins.module_utils import _restore
    real = _restore.is_mount_point
    monkeypatch.setattr(_restore, 'is_mount_point', lambda path, *a: path.rstrip('/') == host['data'] or real(path))
    inode = os.stat(host['data']).st_ino
    out = restore(host).result
    assert out['restored'] and out['moved_to'].startswith(host['data'] + '/moved-')
    assert os.stat(host['data']).st_ino == inode  # the mount point itself never moves
    assert old_data_at(out['moved_to']) and os.path.isdir(os.path.join(host['data'], 'member', 'wal'))
    assert sorted(os.listdir(host['data'])) == sorted([MARKER, 'member', os.path.basename(out['moved_to'])])
    assert not restore(host).result['changed']


def test_mountinfo_names_bind_mounts(tmp_path):
    from ansible_collections.etcdops.etcd.plugins.module_utils._restore import is_mount_point
    info = tmp_path / 'mountinfo'
    target = tmp_path / 'etcd data'
    target.mkdir()
    info.write_text('1200 1100 0:52 /volumes/x /%s rw,relatime - ext4 /dev/sda1 rw\n'
                    % str(target).lstrip('/').replace(' ', '\\040'))
    assert is_mount_point(str(target), str(info))
    assert not is_mount_point(str(tmp_path), str(info))


def test_a_data_dir_that_overlayfs_will_not_rename_is_emptied_into_the_moved_dir(host, monkeypatch):
    import errno
    from ansible_collections.etcdops.etcd.plugins.module_utils import _restore
    real_rename = os.rename

    def rename(src, dst):
        if src == host['data']:
            raise OSError(errno.EXDEV, 'Invalid cross-device link')
        return real_rename(src, dst)
    monkeypatch.setattr(_restore.os, 'rename', rename)
    inode = os.stat(host['data']).st_ino
    out = restore(host).result
    assert out['restored'] and out['moved_to'].startswith(host['data'] + '.moved-') and old_data_at(out['moved_to'])
    assert os.stat(host['data']).st_ino == inode and os.path.isdir(os.path.join(host['data'], 'member', 'wal'))
    assert not os.path.exists(host['data'] + '.restoring')


# -- the snapshot's status read beside etcdutl, and when it must be read before ----------------------------------

OTHER_SNAPSHOT = os.path.join(HERE, '..', '..', 'fixtures', 'snapshots', 'etcd-3.6.db')


@pytest.fixture
def status_reads(host, monkeypatch):
    """Each file_status() of the module: whether etcdutl had started when it began (it waits up to 2 s for that
    when it runs in another thread, as it does beside etcdutl), and whether it ran in the main thread."""
    reads = []
    real = etcd_snapshot.file_status

    def file_status(path):
        main = threading.current_thread() is threading.main_thread()
        started = host['tool'].started.is_set() if main else host['tool'].started.wait(2)
        reads.append(dict(main=main, etcdutl_started=started))
        return real(path)
    monkeypatch.setattr(etcd_snapshot, 'file_status', file_status)
    return reads


def marker_of(path):
    import json
    with open(os.path.join(path, MARKER)) as handle:
        return json.load(handle)


def test_a_real_restore_reads_the_status_beside_etcdutl_not_before_it(host, status_reads):
    out = restore(host).result
    assert out['restored'] and status_reads == [dict(main=False, etcdutl_started=True)]
    with open(SNAPSHOT, 'rb') as handle:
        import hashlib
        assert out['sha256'] == hashlib.sha256(handle.read()).hexdigest() and out['trailer'] == 'valid'
    assert out['revision'] > 0 and out['total_key'] > 0 and out['hash'] is not None
    recorded = marker_of(host['data'])
    assert recorded['snapshot_sha256'] == out['sha256'] and recorded['snapshot_fingerprint'].startswith('v1:65568:')


def test_check_mode_reads_the_status_first_as_before(host, status_reads):
    out = restore(host, check=True).result
    assert out['changed'] and 'revision' in out['msg'] and status_reads == [dict(main=True, etcdutl_started=False)]


def test_a_marker_of_another_snapshot_by_its_fingerprint_needs_no_read_before_etcdutl(host, status_reads):
    restore(host)
    shutil.copy(OTHER_SNAPSHOT, str(host['root'] / 'snapshot.db'))
    host['tool'].started.clear()
    del status_reads[:]
    out = restore(host).result
    assert out['restored'] and len(host['tool'].restores) == 2
    assert status_reads == [dict(main=False, etcdutl_started=True)]
    assert marker_of(host['data'])['snapshot_sha256'] == out['sha256']


def test_a_marker_whose_fingerprint_matches_is_checked_by_the_full_sha256_first(host, status_reads):
    restore(host)
    host['tool'].started.clear()
    del status_reads[:]
    again = restore(host).result  # the same snapshot: read in full before anything, found done
    assert not again['changed'] and 'already restored' in again['msg']
    assert status_reads == [dict(main=True, etcdutl_started=False)] and len(host['tool'].restores) == 1
    # same fingerprint, another sha256 (what a snapshot differing only in its middle gives): restored again,
    # its status read before etcdutl and not a second time beside it
    recorded = marker_of(host['data'])
    recorded['snapshot_sha256'] = '0' * 64
    os.chmod(os.path.join(host['data'], MARKER), 0o600)
    from ansible_collections.etcdops.etcd.plugins.module_utils._restore import write_marker
    write_marker(host['data'], recorded)
    host['tool'].started.clear()
    del status_reads[:]
    out = restore(host).result
    assert out['restored'] and len(host['tool'].restores) == 2
    assert status_reads == [dict(main=True, etcdutl_started=False)]  # once, before the lock: not again beside


def test_a_marker_without_a_fingerprint_still_makes_the_same_snapshot_a_no_op(host, status_reads):
    from ansible_collections.etcdops.etcd.plugins.module_utils._restore import write_marker
    restore(host)
    recorded = marker_of(host['data'])
    del recorded['snapshot_fingerprint']  # written by a release before fingerprints
    write_marker(host['data'], recorded)
    host['tool'].started.clear()
    del status_reads[:]
    out = restore(host).result
    assert not out['changed'] and status_reads == [dict(main=True, etcdutl_started=False)]


def test_an_interrupted_swap_is_found_by_the_fingerprint_and_sha256_of_the_restoring_marker(host, monkeypatch):
    from ansible_collections.etcdops.etcd.plugins.module_utils._restore import write_marker
    kill_at(monkeypatch, host, lambda src, dst: dst == host['data'])
    killed_restore(host)
    restoring = host['data'] + '.restoring'
    recorded = marker_of(restoring)
    assert recorded['snapshot_fingerprint'].startswith('v1:')
    del recorded['snapshot_fingerprint']  # a marker without one (an older release) is checked by sha256 alone
    write_marker(restoring, recorded)
    out = restore(host).result
    assert 'finished an interrupted restore' in out['msg'] and len(host['tool'].restores) == 1, out


def test_an_interrupted_swap_of_another_snapshot_is_restored_anew(host, monkeypatch, status_reads):
    kill_at(monkeypatch, host, lambda src, dst: dst == host['data'])
    killed_restore(host)
    shutil.copy(OTHER_SNAPSHOT, str(host['root'] / 'snapshot.db'))
    host['tool'].started.clear()
    del status_reads[:]
    out = restore(host).result
    assert out['restored'] and 'finished' not in out['msg'] and len(host['tool'].restores) == 2
    assert status_reads == [dict(main=False, etcdutl_started=True)]  # the restoring dir's marker is of another
    assert marker_of(host['data'])['snapshot_sha256'] == out['sha256']


def test_a_snapshot_that_changes_while_it_is_restored_is_refused_and_nothing_changes(host, monkeypatch):
    real = etcd_snapshot.file_status

    def file_status(path):
        status = real(path)
        shutil.copy(OTHER_SNAPSHOT, path)  # replaced while etcdutl reads it
        return status
    monkeypatch.setattr(etcd_snapshot, 'file_status', file_status)
    before = listing(host['root'])
    result = restore(host)
    assert result.failed and result.result['error_kind'] == 'snapshot_changed', result.result
    before['snapshot.db'] = os.path.getsize(OTHER_SNAPSHOT)
    assert listing(host['root']) == before and old_data_at(host['data'])


def plan_of(host):
    """What restore.yml passes as verified_status: the status fields of the check-mode plan's result."""
    out = restore(host, check=True).result
    return dict((k, out[k]) for k in etcd_snapshot.STATUS_FIELDS + ('fingerprint',))


def counted_digests(monkeypatch):
    digests = []
    real_digest = etcd_snapshot.file_digest
    monkeypatch.setattr(etcd_snapshot, 'file_digest', lambda path: digests.append(path) or real_digest(path))
    return digests


def test_a_verified_status_of_this_file_spares_reading_it_while_etcdutl_checks_its_trailer(host, status_reads,
                                                                                           monkeypatch):
    plan = plan_of(host)
    del status_reads[:]
    digests = counted_digests(monkeypatch)
    out = restore(host, verified_status=plan).result
    assert out['restored'] and not out['database_walked'] and status_reads == [] and digests == []
    assert '--skip-hash-check' not in host['tool'].restores[0][0]
    assert dict((k, out[k]) for k in plan) == plan
    assert marker_of(host['data'])['revision'] == plan['revision']
    assert marker_of(host['data'])['snapshot_sha256'] == plan['sha256']
    # the second run, with the same plan: nothing to do, and still no walk
    again = restore(host, verified_status=plan).result
    assert not again['changed'] and status_reads == [] and len(host['tool'].restores) == 1


def test_with_skip_hash_check_a_verified_status_spares_the_walk_but_not_the_sha256(host, status_reads, monkeypatch):
    plan = plan_of(host)
    del status_reads[:]
    digests = counted_digests(monkeypatch)
    out = restore(host, verified_status=plan, skip_hash_check=True).result
    assert out['restored'] and not out['database_walked'] and status_reads == [] and len(digests) == 1


def test_with_skip_hash_check_a_verified_status_whose_sha256_is_not_the_files_fails_and_nothing_changes(host):
    plan = dict(plan_of(host), sha256='0' * 64)  # same ends, another middle: the file changed since the plan
    before = listing(host['root'])
    result = restore(host, verified_status=plan, skip_hash_check=True)
    assert result.failed and result.result['error_kind'] == 'snapshot_changed', result.result
    assert 'verified_status' in result.result['msg'] and listing(host['root']) == before and old_data_at(host['data'])


def test_a_file_changed_in_its_middle_since_the_plan_is_refused_by_the_trailer_check_and_nothing_changes(
        host, monkeypatch):
    plan = plan_of(host)
    path = host['root'] / 'snapshot.db'
    body = bytearray(path.read_bytes())
    body[len(body) // 2] ^= 0xFF  # one flipped byte; the fingerprint below stands for "same size and same ends"
    path.write_bytes(bytes(body))
    monkeypatch.setattr(etcd_snapshot, 'file_fingerprint', lambda p: plan['fingerprint'])
    before = listing(host['root'])
    result = restore(host, verified_status=plan)
    assert result.failed and result.result['error_kind'] == 'snapshot_changed', result.result
    assert 'verified_status' in result.result['msg'] and 'was not touched' in result.result['msg']
    assert len(host['tool'].restores) == 1 and listing(host['root']) == before and old_data_at(host['data'])


def test_a_verified_status_of_another_file_is_ignored_and_the_file_read_whole(host, status_reads):
    plan = plan_of(host)
    shutil.copy(OTHER_SNAPSHOT, str(host['root'] / 'snapshot.db'))  # replaced after the plan
    del status_reads[:]
    out = restore(host, verified_status=plan).result
    assert out['restored'] and out['database_walked'] and status_reads == [dict(main=False, etcdutl_started=True)]
    assert out['sha256'] != plan['sha256'] and marker_of(host['data'])['snapshot_sha256'] == out['sha256']


def test_a_verified_status_without_the_status_fields_is_refused(host):
    before = listing(host['root'])
    result = restore(host, verified_status=dict(sha256='0' * 64))
    assert result.failed and result.result['error_kind'] == 'bad_input' and 'fingerprint' in result.result['msg']
    assert listing(host['root']) == before and not host['tool'].restores


# -- killed half-way and run again (restore.yml killed after the old data dirs were moved aside) --------------

class Killed(BaseException):
    """The module's process killed at this point (nothing after it runs, no handler sees it)."""


def kill_at(monkeypatch, host, when):
    """Make os.rename in _restore raise Killed on the first call for which when(src, dst) is true."""
    from ansible_collections.etcdops.etcd.plugins.module_utils import _restore
    real_rename = os.rename

    def rename(src, dst):
        if when(src, dst):
            monkeypatch.setattr(_restore.os, 'rename', real_rename)
            raise Killed()
        return real_rename(src, dst)
    monkeypatch.setattr(_restore.os, 'rename', rename)


def killed_restore(host, **over):
    args = dict(state='restored', path=str(host['root'] / 'snapshot.db'), data_dir=host['data'],
                manifests_dir=str(host['root'] / 'manifests'), parking_dir=str(host['root'] / 'parked'),
                etcdutl=host['bin'] + '/etcdutl')
    args.update(over)
    with module_args(args):
        with pytest.raises(Killed):
            etcd_snapshot.main()


def moved_dirs(host):
    lib = os.path.dirname(host['data'])
    return sorted(os.path.join(lib, e) for e in os.listdir(lib) if '.moved-' in e)


def test_killed_between_moving_the_old_data_aside_and_the_swap_the_next_run_only_swaps(host, monkeypatch):
    kill_at(monkeypatch, host, lambda src, dst: dst == host['data'])  # the old dir moved aside, the new not in
    killed_restore(host)
    assert not os.path.exists(host['data']) and old_data_at(moved_dirs(host)[0])
    assert os.path.exists(os.path.join(host['data'] + '.restoring', MARKER))
    check = restore(host, check=True).result
    assert check['changed'] and 'would finish an interrupted restore' in check['msg']
    out = restore(host).result
    assert out['changed'] and out['restored'] and 'finished an interrupted restore' in out['msg'], out
    assert len(host['tool'].restores) == 1  # etcdutl ran once: its complete output was used, not redone
    assert out['moved_to'] == moved_dirs(host)[0] and old_data_at(out['moved_to']) and len(moved_dirs(host)) == 1
    assert os.path.isdir(os.path.join(host['data'], 'member', 'wal')) and not os.path.exists(host['data'] + '.restoring')
    again = restore(host).result
    assert not again['changed'] and again['moved_to'] == out['moved_to']


def test_killed_while_the_restored_entries_move_in_the_marker_moves_last_and_the_next_run_restores_again(
        host, monkeypatch):
    import errno
    from ansible_collections.etcdops.etcd.plugins.module_utils import _restore
    real_rename = os.rename
    moves = []

    def rename(src, dst):
        if src == host['data']:
            raise OSError(errno.EXDEV, 'Invalid cross-device link')  # overlayfs: entries move one by one
        if src.startswith(host['data'] + '.restoring/'):
            moves.append(os.path.basename(src))
            if os.path.basename(src) == MARKER:
                monkeypatch.setattr(_restore.os, 'rename', real_rename)
                raise Killed()  # 'member' is in, the marker not yet
        return real_rename(src, dst)
    monkeypatch.setattr(_restore.os, 'rename', rename)
    killed_restore(host)
    assert moves == ['member', MARKER]
    assert not os.path.exists(os.path.join(host['data'], MARKER))  # never "restored" while half of it is missing
    first_moved = moved_dirs(host)[0]
    out = restore(host).result
    assert out['restored'] and len(host['tool'].restores) == 2
    assert old_data_at(first_moved)  # the data dir that was there before the first run is still kept
    assert os.path.exists(os.path.join(host['data'], MARKER)) and not restore(host).result['changed']


def test_killed_in_a_mount_point_after_the_old_content_moved_inside_the_next_run_only_swaps(host, monkeypatch):
    from ansible_collections.etcdops.etcd.plugins.module_utils import _restore
    real = _restore.is_mount_point
    monkeypatch.setattr(_restore, 'is_mount_point', lambda path, *a: path.rstrip('/') == host['data'] or real(path))
    restoring = os.path.join(host['data'], '.etcdops-restore.restoring')
    kill_at(monkeypatch, host, lambda src, dst: src.startswith(restoring + '/'))
    killed_restore(host)
    inside = sorted(os.listdir(host['data']))
    assert inside[0] == '.etcdops-restore.restoring' and inside[1].startswith('moved-') and len(inside) == 2
    out = restore(host).result
    assert 'finished an interrupted restore' in out['msg'] and len(host['tool'].restores) == 1, out
    assert out['moved_to'] == os.path.join(host['data'], inside[1]) and old_data_at(out['moved_to'])
    assert sorted(os.listdir(host['data'])) == sorted([MARKER, 'member', inside[1]])
    # a later restore of another snapshot leaves the earlier moved-aside dir where it is, beside the new one
    second = restore(host, force=True).result
    assert second['restored'] and old_data_at(out['moved_to'])
    assert os.path.isdir(os.path.join(second['moved_to'], 'member')) and not os.path.exists(
        os.path.join(second['moved_to'], inside[1]))


def test_a_restore_still_running_from_a_killed_run_holds_the_lock(host):
    from ansible_collections.etcdops.etcd.plugins.module_utils._restore import RestoreError, RestoreLock
    with RestoreLock(host['data']) as held:
        assert os.path.exists(held.path)
        with pytest.raises(RestoreError) as refused:
            RestoreLock(host['data'], wait_seconds=0.3, poll=0.1).__enter__()
        assert refused.value.kind == 'locked' and str(os.getpid()) in refused.value.msg
    assert not os.path.exists(held.path)
    with RestoreLock(host['data'], wait_seconds=0.3) as again:
        assert again.waited < 0.3


def test_a_restore_waits_for_the_one_still_running_and_then_finds_it_done(host):
    import threading
    from ansible_collections.etcdops.etcd.plugins.module_utils._restore import RestoreLock
    restore(host)
    marker = os.path.join(host['data'], MARKER)
    with open(marker) as handle:
        written = handle.read()
    os.unlink(marker)  # the run still going has not written it yet when this one looks
    lock = RestoreLock(host['data']).__enter__()

    def finish():
        time.sleep(0.5)
        with open(marker, 'w') as handle:
            handle.write(written)
        lock.__exit__()
    threading.Thread(target=finish).start()
    started = time.monotonic()
    out = restore(host).result
    assert time.monotonic() - started >= 0.4 and not out['changed'] and 'by another run' in out['msg'], out
    assert len(host['tool'].restores) == 1


def test_the_tools_etcd_tools_staged_for_the_members_version_are_taken_first(host, monkeypatch):
    staged = host['root'] / 'tools'
    monkeypatch.setattr(etcd_snapshot, 'STAGED_TOOLS', str(staged))
    (staged / '3.6.1').mkdir(parents=True)  # another version than the manifest's 3.5.16: never taken
    shutil.copy(host['bin'] + '/etcdutl', str(staged / '3.6.1' / 'etcdutl'))
    result = restore(host, etcdutl=None, _ansible_check_mode=True)
    assert str(staged) not in str(result.result.get('tool'))
    (staged / '3.5.16').mkdir()
    shutil.copy(host['bin'] + '/etcdutl', str(staged / '3.5.16' / 'etcdutl'))
    result = restore(host, etcdutl=None)
    assert not result.failed, result.result
    assert result.result['tool']['path'] == str(staged / '3.5.16' / 'etcdutl')
    assert host['tool'].restores[0][0][0] == str(staged / '3.5.16' / 'etcdutl')
    # a path given wins
    assert restore(host, force=True).result['tool']['path'] == host['bin'] + '/etcdutl'
