# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_backup_fetch on a local store filled by etcd_backup (client faked): an encrypted backup comes back as the
snapshot etcd_backup streamed (0600 file in a 0700 directory, its trailer right), a second run downloads nothing,
check mode writes nothing, and a wrong identity, an altered object or a missing backup fail with a clear message
and leave nothing behind."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import shutil
import stat

import pytest
import yaml

from ansible_collections.etcdops.etcd.plugins.module_utils._fetch import choose_backup
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import snapshot_status
from ansible_collections.etcdops.etcd.plugins.module_utils._store import LocalStore, etcd_location
from ansible_collections.etcdops.etcd.plugins.modules import etcd_backup_fetch
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import ModuleExit, capture_exit, module_args
from ansible_collections.etcdops.etcd.plugins.module_utils._signing import generate
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.test_etcd_backup import FakeClient, trusted
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.test_etcd_backup import run as backup_run

pyrage = pytest.importorskip('pyrage')


@pytest.fixture(autouse=True)
def exit_capture(monkeypatch):
    return capture_exit(monkeypatch)


@pytest.fixture
def taken(monkeypatch, tmp_path):
    ident = pyrage.x25519.Identity.generate()
    (tmp_path / 'identity.txt').write_text(str(ident) + '\n')
    done = backup_run(monkeypatch, FakeClient(), tmp_path, recipients=[str(ident.to_public())], resources=False)
    assert not done.failed, done.result
    return done.result


def fetch(tmp_path, check=False, diff=False, **args):
    base = dict(cluster_name='lab', store='local', directory=str(tmp_path / 'store'),
                identity_file=str(tmp_path / 'identity.txt'), path=str(tmp_path / 'restore' / 'snapshot.db'),
                trusted_keys=[key.line() for key in trusted(tmp_path).values()])
    base.update(args)
    base = dict((key, value) for key, value in base.items() if value is not None)
    if check:
        base['_ansible_check_mode'] = True
    if diff:
        base['_ansible_diff'] = True
    with module_args(base):
        with pytest.raises(ModuleExit) as caught:
            etcd_backup_fetch.main()
    return caught.value


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_documented(result):
    doc = yaml.safe_load(etcd_backup_fetch.RETURN)
    extra = set(result) - set(doc) - set(['changed', 'failed', 'warnings', 'exception', 'diff', 'invocation'])
    assert not extra, 'returned but not documented: %s' % sorted(extra)


def test_an_encrypted_backup_comes_back_as_the_snapshot_and_a_second_run_changes_nothing(tmp_path, taken):
    done = fetch(tmp_path)
    assert not done.failed, done.result['msg']
    assert_documented(done.result)
    target = tmp_path / 'restore' / 'snapshot.db'
    assert done.result['changed'] and done.result['fetched'] and done.result['backup_id'] == taken['backup_id']
    assert sha256(target) == done.result['snapshot_sha256'] == done.result['checks']['snapshot_sha256']
    status = snapshot_status(str(target))
    assert status['trailer'] == 'valid' and status['revision'] == taken['revision']
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(tmp_path / 'restore')).st_mode) == 0o700
    assert os.listdir(str(tmp_path / 'restore')) == ['snapshot.db']  # no temporary copy left

    again = fetch(tmp_path, backup_id=taken['backup_id'])
    assert not again.failed and not again.result['changed'] and not again.result['fetched']
    assert 'already holds' in again.result['msg']


def test_check_mode_writes_nothing_and_tells_what_would_change(tmp_path, taken):
    done = fetch(tmp_path, check=True, diff=True)
    assert not done.failed and done.result['changed'] and 'would fetch' in done.result['msg']
    assert done.result['diff']['before']['sha256'] is None
    assert done.result['diff']['after']['sha256'] == done.result['snapshot_sha256']
    assert not (tmp_path / 'restore').exists()
    assert not fetch(tmp_path).failed
    done = fetch(tmp_path, check=True)
    assert not done.failed and not done.result['changed']


def test_a_wrong_identity_fails_clearly_and_leaves_the_file_there_as_it_was(tmp_path, taken):
    other = pyrage.x25519.Identity.generate()
    done = fetch(tmp_path, identity_file=None, identity=str(other))
    assert done.failed and done.result['error_kind'] == 'identity', done.result['msg']
    assert 'AGE-SECRET-KEY' not in str(done.result)
    assert not (tmp_path / 'restore').exists()  # the directory it made is gone again

    (tmp_path / 'restore').mkdir()
    (tmp_path / 'restore' / 'snapshot.db').write_bytes(b'an older snapshot')
    done = fetch(tmp_path, identity_file=None, identity=str(other))
    assert done.failed and not done.result.get('changed')
    assert os.listdir(str(tmp_path / 'restore')) == ['snapshot.db']
    assert (tmp_path / 'restore' / 'snapshot.db').read_bytes() == b'an older snapshot'

    done = fetch(tmp_path, identity_file=None)
    assert done.failed and done.result['error_kind'] == 'identity' and 'give identity_file' in done.result['msg']


def test_an_altered_object_fails_and_leaves_nothing(tmp_path, taken):
    path = tmp_path / 'store' / taken['object_keys']['snapshot']
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    done = fetch(tmp_path)
    assert done.failed and done.result['error_kind'] in ('decrypt', 'sha256'), done.result['msg']
    assert taken['backup_id'] in done.result['msg'] and 'left as it was' in done.result['msg']
    assert not (tmp_path / 'restore').exists()


def test_an_unencrypted_object_altered_fails_on_sha256(monkeypatch, tmp_path):
    done = backup_run(monkeypatch, FakeClient(), tmp_path, resources=False, signing='none')
    assert not done.failed, done.result
    store = LocalStore(str(tmp_path / 'store'))
    document = store.read_metadata(etcd_location('lab'), done.result['backup_id'])
    document['snapshot']['sha256'] = '0' * 64
    store.write_metadata(etcd_location('lab'), done.result['backup_id'], document)
    (tmp_path / 'restore').mkdir(mode=0o700)
    failed = fetch(tmp_path, identity_file=None, accept_unsigned=True)
    assert failed.failed and failed.result['error_kind'] == 'sha256', failed.result['msg']
    assert os.listdir(str(tmp_path / 'restore')) == []


def test_metadata_rewritten_in_the_store_is_refused_before_a_byte_is_used(monkeypatch, tmp_path):
    # whoever can write to the store swaps the snapshot and its digests: the signature no longer matches
    done = backup_run(monkeypatch, FakeClient(), tmp_path, resources=False, encryption='none')
    store = LocalStore(str(tmp_path / 'store'))
    document = store.read_metadata(etcd_location('lab'), done.result['backup_id'])
    document['snapshot']['sha256'] = '0' * 64
    store._put(etcd_location('lab').key(done.result['backup_id'], 'metadata.json'),
               iter([json.dumps(document).encode()]), metadata=True)
    for accept in (False, True):
        failed = fetch(tmp_path, identity_file=None, backup_id=done.result['backup_id'], accept_unsigned=accept)
        assert failed.failed and failed.result['error_kind'] == 'bad_signature', failed.result['msg']
        assert 'altered after it was signed' in failed.result['msg'] and not (tmp_path / 'restore').exists()
    # latest passes over it, and there is nothing else
    failed = fetch(tmp_path, identity_file=None)
    assert failed.failed and failed.result['error_kind'] == 'no_backup' and 'passed over' in failed.result['msg']


def forge_newer(tmp_path, source_id, signed=False):
    """A newer backup planted in the store: the objects of source_id copied under a newer id, its metadata claiming
    that id, unsigned (or with the source's signature, which covers the old id)."""
    base = tmp_path / 'store' / 'lab' / 'backups' / 'etcd' / 'main'
    newer = '2099-01-01T00-00-00Z-f0f0'
    shutil.copytree(str(base / source_id), str(base / newer))
    document = json.loads((base / newer / 'metadata.json').read_text())
    if not signed:
        document['backup_id'] = newer
        (base / newer / 'metadata.json').write_text(json.dumps(document))
        (base / newer / 'metadata.json.minisig').unlink()
    return newer


@pytest.mark.parametrize('signed', [False, True])
def test_latest_passes_over_a_forged_newer_backup(tmp_path, taken, signed, exit_capture):
    newer = forge_newer(tmp_path, taken['backup_id'], signed=signed)
    done = fetch(tmp_path)
    assert not done.failed, done.result['msg']
    assert done.result['backup_id'] == taken['backup_id'] and done.result['signed_by']
    assert [s['backup_id'] for s in done.result['passed_over']] == [newer]
    assert any(newer in w for w in exit_capture)
    named = fetch(tmp_path, backup_id=newer, path=str(tmp_path / 'other' / 'snapshot.db'))
    assert named.failed and named.result['error_kind'] == ('mismatch' if signed else 'unsigned'), named.result['msg']
    assert not (tmp_path / 'other').exists()


def test_unsigned_and_unknown_signers_need_accept_unsigned(monkeypatch, tmp_path, exit_capture):
    done = backup_run(monkeypatch, FakeClient(), tmp_path, resources=False, signing='none')
    assert not done.failed, done.result
    refused = fetch(tmp_path, identity_file=None, backup_id=done.result['backup_id'])
    assert refused.failed and refused.result['error_kind'] == 'unsigned' and 'accept_unsigned' in refused.result['msg']
    accepted = fetch(tmp_path, identity_file=None, backup_id=done.result['backup_id'], accept_unsigned=True)
    assert not accepted.failed and accepted.result['signed_by'] is None
    assert any('not signed' in w for w in exit_capture)
    # signed with a key the restore does not trust
    other = generate()
    refused = fetch(tmp_path, identity_file=None, trusted_keys=[other.public.line()], path=str(tmp_path / 'x.db'))
    assert refused.failed and refused.result['error_kind'] == 'no_backup'
    none = fetch(tmp_path, identity_file=None, trusted_keys=[], path=str(tmp_path / 'y.db'))
    assert none.failed and none.result['error_kind'] == 'unsigned' and 'trusted_keys' in none.result['msg']


def test_a_missing_backup_is_a_clear_error(tmp_path, taken):
    done = fetch(tmp_path, backup_id='2020-01-01T00-00-00Z-dead')
    assert done.failed and done.result['error_kind'] == 'no_backup'
    assert 'etcd_backup_info' in done.result['msg'] and not (tmp_path / 'restore').exists()
    empty = fetch(tmp_path, directory=str(tmp_path / 'nothing-here'))
    assert empty.failed and empty.result['error_kind'] == 'no_backup' and 'no backup' in empty.result['msg']


def test_latest_is_the_newest_readable_backup_whatever_a_drill_record_says():
    # verification.json is not signed: a store writer could mark an old backup drilled to have it chosen
    listed = [dict(id='c', verified=None), dict(id='b', verified=True), dict(id='a', verified=True),
              dict(id='z', error='damaged')]
    assert choose_backup(listed)['id'] == 'c'
    assert choose_backup([dict(id='c', verified=False), dict(id='b', verified=True)])['id'] == 'c'
    assert choose_backup([dict(id='z', error='damaged'), dict(id='y')])['id'] == 'y'
    assert choose_backup(listed, 'a')['id'] == 'a' and choose_backup(listed, 'q') is None
    assert choose_backup([]) is None


def test_unsigned_metadata_is_parsed_with_the_store_bounds(monkeypatch, tmp_path):
    # accept_unsigned lets unverified bytes reach the JSON parser: nesting that would exhaust Python's recursion is
    # a clear refusal, not a traceback
    done = backup_run(monkeypatch, FakeClient(), tmp_path, resources=False, signing='none')
    assert not done.failed, done.result
    base = tmp_path / 'store' / 'lab' / 'backups' / 'etcd' / 'main' / done.result['backup_id']
    (base / 'metadata.json').write_text('{"a": ' + '[' * 200000 + ']' * 200000 + '}')
    refused = fetch(tmp_path, identity_file=None, backup_id=done.result['backup_id'], accept_unsigned=True)
    assert refused.failed and 'levels deep' in refused.result['msg'], refused.result
