# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_backup_verify on a local store filled by etcd_backup (client faked): an altered object fails the drill
naming the backup and is recorded as failed; a drill that cannot judge (no tool, wrong identity) records
nothing; check mode records nothing. With the etcd 3.6 build of the cache (real etcdutl and etcd on loopback),
a backup restores and verifies (the restored etcd's own HashKV equals the one read from the snapshot at backup
time), and a HashKV that differs from the recorded one fails it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils._store import LocalStore, etcd_location
from ansible_collections.etcdops.etcd.plugins.modules import etcd_backup_verify
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import ModuleExit, capture_exit, module_args
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.test_etcd_backup import FakeClient
from ansible_collections.etcdops.etcd.plugins.module_utils._signing import read_secret_key
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.test_etcd_backup import run as backup_run
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.test_etcd_backup import signing_key, trusted

pyrage = pytest.importorskip('pyrage')
ETCD_36 = os.path.join(os.environ.get('ETCDOPS_CACHE', '/var/cache/etcdops'), 'etcd', '3.6')


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


def verify(tmp_path, check=False, **args):
    base = dict(cluster_name='lab', store='local', directory=str(tmp_path / 'store'),
                identity_file=str(tmp_path / 'identity.txt'), scratch_dir=str(tmp_path / 'drill'),
                trusted_keys=[key.line() for key in trusted(tmp_path).values()])
    base.update(args)
    if check:
        base['_ansible_check_mode'] = True
    with module_args(base):
        with pytest.raises(ModuleExit) as caught:
            etcd_backup_verify.main()
    return caught.value


def metadata(tmp_path, backup_id):
    """The backup as listed: its metadata and the drill's record."""
    listed = LocalStore(str(tmp_path / 'store')).list_backups(etcd_location('lab'))
    return [record for record in listed if record['id'] == backup_id][0]


def test_a_backup_that_is_not_trusted_fails_the_drill_and_is_recorded(monkeypatch, tmp_path):
    ident = pyrage.x25519.Identity.generate()
    (tmp_path / 'identity.txt').write_text(str(ident) + '\n')
    done = backup_run(monkeypatch, FakeClient(), tmp_path, recipients=[str(ident.to_public())], resources=False,
                      signing='none')
    failed = verify(tmp_path, tool='/nonexistent/etcdutl')
    assert failed.failed and failed.result['error_kind'] == 'unsigned' and failed.result['verified'] is False
    recorded = metadata(tmp_path, done.result['backup_id'])
    assert recorded['verified'] is False and 'not signed' in recorded['verification']['error']
    # the signed metadata is never rewritten by a drill
    assert not (tmp_path / 'store' / etcd_location('lab').key(done.result['backup_id'], 'metadata.json.minisig')).exists()
    none = verify(tmp_path, trusted_keys=[])
    assert none.failed and none.result['error_kind'] == 'unsigned' and 'trusted_keys' in none.result['msg']


def test_an_altered_object_fails_the_drill_naming_the_backup_and_is_recorded(tmp_path, taken):
    path = tmp_path / 'store' / taken['object_keys']['snapshot']
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    done = verify(tmp_path, tool='/nonexistent/etcdutl')  # never reached: the object fails first
    assert done.failed and done.result['verified'] is False and done.result['error_kind'] == 'decrypt'
    assert done.result['msg'].startswith('backup %s failed the restore drill' % taken['backup_id'])
    recorded = metadata(tmp_path, taken['backup_id'])
    assert recorded['verified'] is False and taken['backup_id'] in recorded['verification']['error']
    assert os.listdir(str(tmp_path / 'drill')) == []  # the scratch copy is gone


def test_a_drill_that_cannot_judge_records_nothing(tmp_path, taken):
    done = verify(tmp_path, tool='/nonexistent/etcdutl')
    assert done.failed and done.result['error_kind'] == 'missing_tool' and done.result['verified'] is None
    assert 'nothing was recorded' in done.result['msg']
    other = pyrage.x25519.Identity.generate()
    (tmp_path / 'other.txt').write_text(str(other) + '\n')
    done = verify(tmp_path, identity_file=str(tmp_path / 'other.txt'))
    assert done.failed and done.result['error_kind'] == 'identity', done.result['msg']
    assert metadata(tmp_path, taken['backup_id'])['verified'] is None
    assert 'AGE-SECRET-KEY' not in str(done.result)


def test_check_mode_names_the_backup_and_records_nothing(tmp_path, taken):
    done = verify(tmp_path, check=True)
    assert not done.failed and done.result['changed'] and taken['backup_id'] in done.result['msg']
    assert metadata(tmp_path, taken['backup_id'])['verified'] is None
    assert not (tmp_path / 'drill').exists()


@pytest.mark.functional  # real etcdutl and etcd of the 3.6 build (make etcd) on loopback
def test_with_real_etcd_a_backup_verifies_and_a_wrong_hashkv_fails(tmp_path, taken):
    done = verify(tmp_path, tool=ETCD_36)
    assert not done.failed, done.result.get('msg')
    assert done.result['verified'] is True and done.result['checks']['revision'] == taken['revision']
    # The HashKV the backup read from the snapshot is the one the restored etcd computes itself.
    assert done.result['checks']['hashkv_compared'] is True
    recorded = metadata(tmp_path, taken['backup_id'])
    assert recorded['verified'] is True and recorded['verification']['at'] == done.result['verified_at']

    store = LocalStore(str(tmp_path / 'store'))
    document = store.read_metadata(etcd_location('lab'), taken['backup_id'])
    document['hashkv'] = dict(hash=1, revision=taken['revision'], compact_revision=-1)
    store.write_metadata(etcd_location('lab'), taken['backup_id'], document,
                         signer=read_secret_key(signing_key(tmp_path)))
    done = verify(tmp_path, tool=ETCD_36)
    assert done.failed and done.result['error_kind'] == 'hashkv', done.result['msg']
    assert metadata(tmp_path, taken['backup_id'])['verified'] is False
