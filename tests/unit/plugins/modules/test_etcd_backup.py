# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_backup with the client faked and a local store: back up from a follower, encrypted, and read it back
as `age -d` + `zstd -d` would; fail over when the member dies; a broken store or stream leaves nothing listed;
check mode writes nothing; no scratch copy of the snapshot is written (the status is read from the stream)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml


from ansible_collections.etcdops.etcd.plugins.module_utils import _backup, _snapshot
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt_stream import StreamStatus
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError
from ansible_collections.etcdops.etcd.plugins.module_utils._signing import generate, read_secret_key, verify
from ansible_collections.etcdops.etcd.plugins.module_utils._store import LocalStore, StoreError, etcd_location
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import age_decrypt, zstd_decompress
from ansible_collections.etcdops.etcd.plugins.modules import etcd_backup
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import ModuleExit, capture_exit, module_args

pyrage = pytest.importorskip('pyrage')

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'snapshots')
IDS = dict(m1='a1', m2='b2', m3='c3')


def fixture_bytes(name='etcd-3.6.db'):
    with open(os.path.join(FIXTURES, name), 'rb') as handle:
        return handle.read()


def etcdutl_said(name='etcd-3.6.db'):
    with open(os.path.join(FIXTURES, 'etcdutl-status.json')) as handle:
        return json.load(handle)[name]


@pytest.fixture(autouse=True)
def exit_capture(monkeypatch):
    return capture_exit(monkeypatch)


class FakeClient(object):
    """Three members, m1 the leader; `dies` break mid-stream."""

    def __init__(self, dies=(), corrupt=()):
        self.dies = set(dies)
        self.corrupt = set(corrupt)
        self.asked = []
        self.closed = False
        self.db = fixture_bytes()[:-32]

    @staticmethod
    def url(name):
        return 'https://10.0.0.%s:2379' % name[1]

    def member_list(self):
        return dict(cluster_id='cdf818194e3a8c32', members=[
            dict(id=IDS[n], name=n, peer_urls=[], client_urls=[self.url(n)], is_learner=False)
            for n in ('m1', 'm2', 'm3')])

    def status(self, url):
        name = 'm' + url.split('.')[3][0]
        return dict(endpoint=url, member_id=IDS[name], leader=IDS['m1'], errors=[], version='3.6.16',
                    raft_applied_index=dict(m1=10, m2=12, m3=11)[name])

    def snapshot(self, endpoint, timeout=None):
        name = 'm' + endpoint.split('.')[3][0]
        self.asked.append(name)
        db = self.db if name not in self.corrupt else b'\0' * len(self.db)
        data = db + hashlib.sha256(db).digest()
        yield data[:8192], len(db) - 8192
        if name in self.dies:
            raise EtcdClientError('%s: connection reset by peer' % endpoint, kind='unavailable')
        yield data[8192:], 0

    def close(self):
        self.closed = True


def identity():
    ident = pyrage.x25519.Identity.generate()
    return ident, str(ident.to_public())


def signing_key(tmp_path):
    """The path of a signing key in tmp_path (made once), mode 0600."""
    path = tmp_path / 'signing.key'
    if not path.exists():
        path.write_text(generate().text())
        path.chmod(0o600)
    return str(path)


def trusted(tmp_path):
    """{id: PublicKey} of the key signing_key made."""
    key = read_secret_key(signing_key(tmp_path))
    return {key.id: key.public}


def run(monkeypatch, client, tmp_path, check=False, **args):
    bounded = []

    def client_from_module(module, stream_window=None):
        # the allocator is bounded before the client starts its threads, and the snapshot stream's read-ahead is
        # bounded (gRPC's default window buffers 20-30 MiB): 512 KiB to S3, where the memory is at its bound
        expected = _backup.STREAM_WINDOW if args.get('store') == 's3' else _backup.LOCAL_STREAM_WINDOW
        assert bounded == [True] and stream_window == expected <= 8 * 1024 * 1024
        return client
    monkeypatch.setattr(etcd_backup, 'client_from_module', client_from_module)
    monkeypatch.setattr(etcd_backup, 'bound_allocator', lambda: bounded.append(True))
    resources = tmp_path / 'kubernetes'
    if not resources.exists():
        (resources / 'pki' / 'etcd').mkdir(parents=True)
        (resources / 'pki' / 'ca.key').write_bytes(b'SECRET KEY')
        os.chmod(str(resources / 'pki' / 'ca.key'), 0o600)
        (resources / 'manifests').mkdir()
        (resources / 'manifests' / 'etcd.yaml').write_text('kind: Pod\n')
    base = dict(cluster_name='lab', store='local', directory=str(tmp_path / 'store'), resources_root=str(resources))
    if not (args.get('recipients') or args.get('recipients_file')):
        base['encryption'] = 'none'  # what a test without recipients says it means
    base['signing_key'] = signing_key(tmp_path)
    base.update(args)
    if check:
        base['_ansible_check_mode'] = True
    with module_args(base):
        with pytest.raises(ModuleExit) as caught:
            etcd_backup.main()
    return caught.value


def assert_documented(result):
    doc = yaml.safe_load(etcd_backup.RETURN)
    extra = set(result) - set(doc) - set(['changed', 'msg', 'error_kind', 'failed', 'warnings', 'exception'])
    assert not extra, 'returned but not documented: %s' % sorted(extra)


def listed(tmp_path):
    return LocalStore(str(tmp_path / 'store')).list_backups(etcd_location('lab'))


def test_backup_encrypted_reads_back_as_the_snapshot_etcdutl_describes(monkeypatch, tmp_path):
    ident, public = identity()
    client = FakeClient()
    done = run(monkeypatch, client, tmp_path, recipients=[public])
    result = done.result
    assert not done.failed, result
    assert result['member']['name'] == 'm2' and result['encrypted'] is True
    said = etcdutl_said()
    assert (result['hash'], result['revision'], result['total_key'], result['total_size']) == (
        said['hash'], said['revision'], said['totalKey'], said['totalSize'])
    store = LocalStore(str(tmp_path / 'store'))
    location = etcd_location('lab')
    name = result['object_keys']['snapshot'].rsplit('/', 1)[1]
    assert name == 'snapshot.db.zst.age'
    plain = b''.join(zstd_decompress(age_decrypt(store.get_object(location, result['backup_id'], name), [ident])))
    assert plain == fixture_bytes()
    assert hashlib.sha256(plain).hexdigest() == result['snapshot_sha256']
    backups = listed(tmp_path)
    assert [b['id'] for b in backups] == [result['backup_id']]
    meta = backups[0]
    assert meta['verified'] is None and meta['hash'] == said['hash'] and meta['encryption']['recipients'] == [public]
    assert meta['member']['name'] == 'm2' and meta['cluster_id'] == 'cdf818194e3a8c32'
    assert 'SECRET' not in json.dumps(result) and 'AGE-SECRET' not in json.dumps(meta)
    assert [m['name'] for m in result['resources']['members']] == [
        'pki', 'pki/ca.key', 'pki/etcd', 'manifests', 'manifests/etcd.yaml']
    assert not os.path.exists(str(tmp_path / 'scratch'))
    assert client.closed and not result.get('warnings')
    assert_documented(result)


def test_resources_go_to_their_own_recipients(monkeypatch, tmp_path):
    ident, public = identity()
    other, other_public = identity()
    result = run(monkeypatch, FakeClient(), tmp_path, recipients=[public], resources_recipients=[other_public]).result
    store = LocalStore(str(tmp_path / 'store'))
    from ansible_collections.etcdops.etcd.plugins.module_utils._store import resources_location
    meta = store.read_metadata(resources_location('lab'), result['backup_id'])
    assert meta['encryption']['recipients'] == [other_public]
    chunks = store.get_object(resources_location('lab'), result['backup_id'], 'kubernetes.tar.zst.age')
    with pytest.raises(Exception):
        b''.join(age_decrypt(chunks, [ident]))


def test_without_recipients_nothing_is_stored_unless_encryption_none_says_so(monkeypatch, tmp_path):
    client = FakeClient()
    done = run(monkeypatch, client, tmp_path, encryption='age')
    assert done.failed and 'every Secret of the cluster' in done.result['msg'] and 'encryption=none' in done.result['msg']
    assert 'age-keygen -y' in done.result['msg'] and client.asked == [] and listed(tmp_path) == []
    # the resources need recipients as well: resources_recipients alone do not encrypt the snapshot
    ident, public = identity()
    done = run(monkeypatch, client, tmp_path, encryption='age', resources_recipients=[public])
    assert done.failed and 'snapshot object' in done.result['msg']
    done = run(monkeypatch, client, tmp_path, encryption='none', recipients=[public])
    assert done.failed and 'encryption=none and age recipients given' in done.result['msg']
    result = run(monkeypatch, FakeClient(), tmp_path, encryption='none').result
    assert result['encrypted'] is False and result['object_keys']['snapshot'].endswith('/snapshot.db.zst')


def test_the_metadata_is_signed_and_the_signature_verifies_with_the_public_key(monkeypatch, tmp_path):
    ident, public = identity()
    result = run(monkeypatch, FakeClient(), tmp_path, recipients=[public]).result
    store = LocalStore(str(tmp_path / 'store'))
    location = etcd_location('lab')
    data, signature = store.read_signed(location, result['backup_id'])
    keys = trusted(tmp_path)
    signer, comment = verify(keys, data, signature)
    assert signer == result['signed_by'] and result['backup_id'] in comment
    assert json.loads(data.decode())['objects'][0]['sha256'] == result['stored_sha256']
    assert listed(tmp_path)[0]['signed'] is True
    from ansible_collections.etcdops.etcd.plugins.module_utils._store import resources_location
    data, signature = store.read_signed(resources_location('lab'), result['backup_id'])
    assert verify(keys, data, signature)[0] == signer
    assert 'SECRET' not in signature and open(signing_key(tmp_path)).read() not in json.dumps(result)


def test_without_a_signing_key_nothing_is_stored_unless_signing_none_says_so(monkeypatch, tmp_path):
    client = FakeClient()
    done = run(monkeypatch, client, tmp_path, signing_key=str(tmp_path / 'missing.key'))
    assert done.failed and done.result['error_kind'] == 'signing' and 'signing=none' in done.result['msg']
    assert 'etcd_signing_key' in done.result['msg'] and client.asked == [] and listed(tmp_path) == []
    os.chmod(signing_key(tmp_path), 0o644)
    done = run(monkeypatch, client, tmp_path)
    assert done.failed and 'chmod 600' in done.result['msg'] and client.asked == []
    result = run(monkeypatch, FakeClient(), tmp_path, signing='none').result
    assert result['signed_by'] is None and listed(tmp_path)[0]['signed'] is False


def test_the_chosen_member_dies_and_the_next_one_serves(monkeypatch, tmp_path):
    client = FakeClient(dies=['m2'])
    result = run(monkeypatch, client, tmp_path).result
    assert client.asked == ['m2', 'm3'] and result['member']['name'] == 'm3'
    assert [t['name'] for t in result['tried']] == ['m2', 'm3'] and 'reset' in result['tried'][0]['error']
    assert len(listed(tmp_path)) == 1


def test_a_member_with_an_unreadable_database_is_passed_over(monkeypatch, tmp_path):
    client = FakeClient(corrupt=['m2'])
    result = run(monkeypatch, client, tmp_path).result
    assert result['member']['name'] == 'm3' and 'm2' in [t['name'] for t in result['tried']]
    assert result['hash'] == etcdutl_said()['hash']


def test_every_member_dies_fails_and_leaves_nothing(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(dies=['m1', 'm2', 'm3']), tmp_path)
    assert done.failed and 'no backup taken' in done.result['msg']
    assert listed(tmp_path) == []
    store_dir = tmp_path / 'store'
    assert not store_dir.exists() or not [f for dummy, dummy2, files in os.walk(str(store_dir)) for f in files]
    assert not os.path.exists(str(tmp_path / 'scratch'))


def test_a_failing_store_fails_clearly_and_nothing_is_listed(monkeypatch, tmp_path):
    original = LocalStore._put
    calls = []

    def failing(self, key, chunks, metadata=False):
        calls.append(key)
        if key.endswith('metadata.json') and '/backups/' in key:
            raise StoreError('cannot write %s: no space left on the device' % key)
        return original(self, key, chunks, metadata)
    monkeypatch.setattr(LocalStore, '_put', failing)
    done = run(monkeypatch, FakeClient(), tmp_path)
    assert done.failed and 'no space left' in done.result['msg'] and 'nothing was listed' in done.result['msg']
    monkeypatch.setattr(LocalStore, '_put', original)
    assert listed(tmp_path) == []


def test_check_mode_names_member_and_store_and_writes_nothing(monkeypatch, tmp_path):
    client = FakeClient()
    result = run(monkeypatch, client, tmp_path, check=True).result
    assert result['changed'] is True and result['member']['name'] == 'm2'
    assert result['store']['type'] == 'local' and 'lab/backups/etcd/main' in result['store']['url']
    assert client.asked == [] and not (tmp_path / 'store').exists() and not (tmp_path / 'scratch').exists()


def test_a_secret_key_given_as_recipient_is_refused_without_repeating_it(monkeypatch, tmp_path):
    ident, dummy = identity()
    done = run(monkeypatch, FakeClient(), tmp_path, recipients=[str(ident)])
    assert done.failed and str(ident) not in json.dumps(done.result)


def test_a_missing_resource_path_fails_before_streaming(monkeypatch, tmp_path):
    client = FakeClient()
    done = run(monkeypatch, client, tmp_path, encryption_config=str(tmp_path / 'kubernetes' / 'enc' / 'x.yaml'))
    assert done.failed and 'does not exist' in done.result['msg'] and client.asked == []


def test_the_status_comes_from_the_stream_once_it_has_ended():
    data = fixture_bytes()
    tee = StreamStatus(iter([data[:4096], data[4096:]]))
    with pytest.raises(_snapshot.SnapshotError):
        tee.status()
    assert b''.join(tee) == data
    assert tee.status()['hash'] == etcdutl_said()['hash']


def test_no_scratch_copy_is_written_and_the_timings_say_how_long_the_walk_took(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(), tmp_path, scratch_dir=str(tmp_path / 'scratch'))
    assert not done.failed, done.result
    assert done.result['hash'] == etcdutl_said()['hash']
    assert not (tmp_path / 'scratch').exists()
    assert set(done.result['timings']) == {'stream_seconds', 'resources_seconds', 'status_walk_seconds'}
    assert 0 <= done.result['timings']['status_walk_seconds'] <= done.result['timings']['stream_seconds']
    assert _backup.stream_window('local') == _backup.LOCAL_STREAM_WINDOW
    assert _backup.stream_window('s3') == _backup.STREAM_WINDOW == 512 * 1024


def test_metadata_records_the_hashkv_read_from_the_snapshot_without_asking_the_member(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(), tmp_path)
    assert not done.failed, done.result
    document = json.loads((tmp_path / 'store' / done.result['object_keys']['metadata']).read_text())
    expected = _snapshot.database_status(os.path.join(FIXTURES, 'etcd-3.6.db'))['hashkv']
    assert expected is not None
    assert document['hashkv'] == dict(hash=expected, revision=done.result['revision'], source='snapshot')


BOUND_ALLOCATOR_PROBE = r"""
import ctypes, sys
from ansible_collections.etcdops.etcd.plugins.module_utils._backup import bound_allocator


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == 'bound':
    print(bound_allocator())
big = bytearray(16 * 1024 * 1024)  # mapped; freeing it makes glibc raise its mmap threshold to 16 MiB
del big
before = libc.mallinfo2().hblkhd
part = bytearray(5 * 1024 * 1024)  # an upload part
print(libc.mallinfo2().hblkhd - before >= 5 * 1024 * 1024)  # mapped (given back when freed) or from the heap
"""


def test_bound_allocator_keeps_large_blocks_mapped_after_a_larger_one_was_freed(tmp_path):
    """Without it, glibc carves the next blocks under 16 MiB (the 5 MiB upload parts) out of its heaps, which keep
    the space once they are freed; with it they stay mapped and go back to the system. A fresh interpreter each."""
    pytest.importorskip('ctypes')
    try:
        import ctypes
        ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        pytest.skip('not glibc 2.33 or later')
    collections = _backup.__file__.split(os.sep + 'ansible_collections' + os.sep, maxsplit=1)[0]
    env = dict((name, value) for name, value in os.environ.items()
               if not name.startswith(('MALLOC_', 'GLIBC_TUNABLES')))  # those would set the threshold themselves
    env['PYTHONPATH'] = collections
    outputs = {}
    for mode in ('default', 'bound'):
        outputs[mode] = subprocess.run([sys.executable, '-c', BOUND_ALLOCATOR_PROBE, mode], capture_output=True,
                                       text=True, check=True, env=env).stdout.split()
    assert outputs == dict(default=['False'], bound=['True', 'True'])
