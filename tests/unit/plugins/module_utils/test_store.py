"""Backup stores: a local directory and a real S3 API (moto_server on loopback, real boto3 calls).

A backup exists when its metadata exists; interrupted uploads leave nothing; pruning deletes from S3 exactly
what retention says; the /etc/kubernetes resources go through a tar stream with their modes."""

import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _retention, _streams
from ansible_collections.etcdops.etcd.plugins.module_utils._store import (
    LocalStore, ResourceArchive, S3Store, Store, StoreError, backup_time, etcd_location, extract_resources,
    new_backup_id, object_name, resources_location,
)

boto3 = pytest.importorskip('boto3')

MIB = 1024 * 1024
CLUSTER = 'prod.k8s.example.com'
MAIN = etcd_location(CLUSTER, 'main')
EVENTS = etcd_location(CLUSTER, 'events')
RESOURCES = resources_location(CLUSTER)
CREDENTIALS = dict(access_key='testing', secret_key='testing-secret-key', region='us-east-1')


def data_of(size, seed=0):
    block = hashlib.sha256(b'%d' % seed).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def chunks_of(data, size=MIB):
    return (data[i:i + size] for i in range(0, len(data), size))


def failing_after(data, fail_at, size=MIB):
    """The snapshot stream breaks after fail_at bytes, as a member dying mid-snapshot would."""
    for i in range(0, len(data), size):
        if i >= fail_at:
            raise ConnectionError('snapshot stream broke at %d bytes' % i)
        yield data[i:i + size]


def bid(minutes_ago, suffix='a0'):
    when = datetime.datetime(2026, 11, 23, 10, 50, 32, tzinfo=datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
    return new_backup_id(when, suffix=suffix)


# -- the S3 API server --------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def s3_endpoint(tmp_path_factory):
    """moto_server on 127.0.0.1 and a free port, for this module's tests."""
    server = shutil.which('moto_server') or os.path.join(os.path.dirname(sys.executable), 'moto_server')
    if not os.path.exists(server):
        pytest.skip('moto_server is not installed (pip install "moto[server]")')
    port = free_port()
    endpoint = 'http://127.0.0.1:%d' % port
    # Its request log goes to a file: an unread pipe would fill up and stall the server.
    log = tmp_path_factory.mktemp('moto') / 'moto_server.log'
    with open(str(log), 'wb') as output:
        proc = subprocess.Popen([server, '-H', '127.0.0.1', '-p', str(port)], stdout=output, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + '/moto-api/', timeout=1).read()
            break
        except Exception:  # not up yet
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail('moto_server did not start: %s' % log.read_text()[-2000:])
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client('s3', endpoint_url=s3_endpoint, region_name='us-east-1', aws_access_key_id='testing',
                        aws_secret_access_key='testing-secret-key')


@pytest.fixture
def bucket(s3):
    name = 'backups-%s' % uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=name)
    return name


def make_s3_store(endpoint, bucket, **options):
    settings = dict(CREDENTIALS, prefix='etcd-backups', path_style=True, part_size=5 * MIB)
    settings.update(options)
    return S3Store(bucket, endpoint_url=endpoint, **settings)


@pytest.fixture(params=['local', 's3'])
def store(request, tmp_path):
    if request.param == 'local':
        return LocalStore(str(tmp_path / 'backups'))
    endpoint = request.getfixturevalue('s3_endpoint')
    return make_s3_store(endpoint, request.getfixturevalue('bucket'))


def raw_keys(store_):
    return sorted(key for key, dummy in store_._list(''))


def complete_backup(store_, location, backup_id, data=b'snapshot', **metadata):
    info = store_.put_object(location, backup_id, 'snapshot.db', iter([data]))
    document = dict(verified=True, member='cp1', revision=42, size=len(data), objects=[info])
    document.update(metadata)
    store_.write_metadata(location, backup_id, document)
    return info


# -- names and layout -------------------------------------------------------------------------------------

def test_backup_ids_sort_by_time_and_do_not_collide():
    when = datetime.datetime(2026, 11, 23, 10, 50, 32, tzinfo=datetime.timezone.utc)
    first, second = new_backup_id(when), new_backup_id(when)
    assert first.startswith('2026-11-23T10-50-32Z-') and first != second
    assert backup_time(first) == '2026-11-23T10:50:32Z'
    assert sorted([bid(5), bid(60), bid(1)]) == [bid(60), bid(5), bid(1)]
    with pytest.raises(StoreError, match='not a backup id'):
        backup_time('latest')


def test_layout_keeps_clusters_etcd_clusters_and_resources_apart(store):
    backup_id = bid(0)
    for location in (MAIN, EVENTS, RESOURCES, etcd_location('staging', 'main')):
        complete_backup(store, location, backup_id)
    assert raw_keys(store) == sorted([
        'prod.k8s.example.com/backups/etcd/events/%s/metadata.json' % backup_id,
        'prod.k8s.example.com/backups/etcd/events/%s/snapshot.db' % backup_id,
        'prod.k8s.example.com/backups/etcd/main/%s/metadata.json' % backup_id,
        'prod.k8s.example.com/backups/etcd/main/%s/snapshot.db' % backup_id,
        'prod.k8s.example.com/resources/%s/metadata.json' % backup_id,
        'prod.k8s.example.com/resources/%s/snapshot.db' % backup_id,
        'staging/backups/etcd/main/%s/metadata.json' % backup_id,
        'staging/backups/etcd/main/%s/snapshot.db' % backup_id,
    ])
    assert [r['id'] for r in store.list_backups(EVENTS)] == [backup_id]
    assert object_name('snapshot.db') == 'snapshot.db.zst.age'
    assert object_name('kubernetes.tar', compressed=True, encrypted=False) == 'kubernetes.tar.zst'


def test_s3_keys_are_under_the_prefix(s3_endpoint, bucket, s3):
    store_ = make_s3_store(s3_endpoint, bucket, prefix='/team/etcd/')
    complete_backup(store_, MAIN, bid(0))
    keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket)['Contents'])
    assert keys == ['team/etcd/prod.k8s.example.com/backups/etcd/main/%s/%s' % (bid(0), n)
                    for n in ('metadata.json', 'snapshot.db')]
    assert store_.describe('x') == 's3://%s/team/etcd/x' % bucket


@pytest.mark.parametrize('cluster, etcd_cluster', [('../other', 'main'), ('prod', 'main/../../x'), ('', 'main'),
                                                   ('prod', '.hidden')])
def test_names_that_would_leave_the_layout_are_refused(cluster, etcd_cluster):
    with pytest.raises(StoreError, match='not usable in a store path'):
        etcd_location(cluster, etcd_cluster)


# -- objects, metadata, listing ---------------------------------------------------------------------------

def test_put_get_round_trip_reports_size_and_sha256(store):
    data = data_of(3 * MIB + 7)
    info = store.put_object(MAIN, bid(0), 'snapshot.db.zst.age', chunks_of(data, 100000))
    assert info['size'] == len(data) and info['sha256'] == hashlib.sha256(data).hexdigest()
    assert info['key'] == 'prod.k8s.example.com/backups/etcd/main/%s/snapshot.db.zst.age' % bid(0)
    assert b''.join(store.get_object(MAIN, bid(0), 'snapshot.db.zst.age', chunk_size=65536)) == data


def test_a_backup_exists_once_its_metadata_is_written(store):
    store.put_object(MAIN, bid(0), 'snapshot.db', iter([b'data']))
    assert store.list_backups(MAIN) == []
    assert store.incomplete_backups(MAIN) == [bid(0)]
    written = store.write_metadata(MAIN, bid(0), {'verified': True, 'revision': 7})
    assert written['backup_id'] == bid(0) and written['layout'] == 1
    assert store.read_metadata(MAIN, bid(0))['revision'] == 7
    [record] = store.list_backups(MAIN)
    assert record['id'] == record['backup_id'] == bid(0)
    assert record['time'] == '2026-11-23T10:50:32Z'
    assert record['stored_objects'] == {'snapshot.db': 4} and record['stored_bytes'] == 4
    assert record['verified'] is True and record['revision'] == 7
    assert store.incomplete_backups(MAIN) == []


def test_listing_is_newest_first(store):
    for minutes in (300, 5, 60, 61, 0):
        complete_backup(store, MAIN, bid(minutes))
    complete_backup(store, MAIN, bid(5, suffix='ff'))
    assert [r['id'] for r in store.list_backups(MAIN)] == [bid(0), bid(5, 'ff'), bid(5), bid(60), bid(61), bid(300)]


def test_damaged_metadata_is_listed_as_failed_not_hidden(store):
    complete_backup(store, MAIN, bid(1))
    store._put(MAIN.key(bid(0), 'metadata.json'), iter([b'{"verified": tr']), metadata=True)
    records = store.list_backups(MAIN)
    assert [r['id'] for r in records] == [bid(0), bid(1)]
    assert records[0]['verified'] is False and 'not valid JSON' in records[0]['error']
    with pytest.raises(StoreError, match='not valid JSON'):
        store.read_metadata(MAIN, bid(0))


class MemoryStore(Store):
    """A store in a dict, its objects served in 64 KiB chunks; endless when the value is None."""

    def __init__(self):
        self.objects = {}
        self.served = 0
        self.closed = 0

    def describe(self, key=''):
        return 'memory://' + key

    def _put(self, key, chunks, metadata=False):
        self.objects[key] = b''.join(chunks)

    def _get(self, key, chunk_size):
        data = self.objects[key]
        try:
            offset = 0
            while data is None or offset < len(data):
                self.served += 1
                yield b'{' * chunk_size if data is None else data[offset:offset + chunk_size]
                offset += chunk_size
        finally:
            self.closed += 1

    def _list(self, prefix):
        return [(key, len(value or b'')) for key, value in self.objects.items() if key.startswith(prefix)]

    def _delete(self, keys):
        for key in keys:
            self.objects.pop(key, None)


def test_metadata_above_the_bound_is_refused_from_its_size_before_it_is_read(store, monkeypatch):
    complete_backup(store, MAIN, bid(1))
    key = MAIN.key(bid(0), 'metadata.json')
    store._put(key, iter([b'{"pad": "' + b'x' * (2 * MIB) + b'"}']), metadata=True)
    reads = []
    original = store._read
    monkeypatch.setattr(store, '_read', lambda *args: reads.append(args[-2]) or original(*args))
    records = store.list_backups(MAIN)
    assert [r['id'] for r in records] == [bid(0), bid(1)]
    assert records[0]['verified'] is False
    assert records[0]['error'].startswith('%s is %d bytes, more than the 1048576 a metadata object may have'
                                          % (store.describe(key), 2 * MIB + 11))
    assert records[1]['revision'] == 42
    with pytest.raises(StoreError, match='more than the 1048576 a metadata object may have'):
        store.read_metadata(MAIN, bid(0))
    assert key not in reads and store.describe(key) not in reads and len(reads) == 1  # only bid(1)'s was read


def test_a_local_metadata_of_2_gib_or_a_device_is_not_read(tmp_path):
    store_ = LocalStore(str(tmp_path / 'store'))
    complete_backup(store_, MAIN, bid(0))
    path = tmp_path / 'store' / MAIN.key(bid(0), 'metadata.json')
    with open(str(path), 'r+b') as handle:
        handle.truncate(2 * 1024 * MIB)  # sparse: no disk used
    with pytest.raises(StoreError, match=r'metadata.json is 2147483648 bytes, more than the 1048576'):
        store_.read_metadata(MAIN, bid(0))
    path.unlink()
    os.symlink('/dev/zero', str(path))
    with pytest.raises(StoreError, match='metadata.json is not a regular file'):
        store_.read_metadata(MAIN, bid(0))
    path.unlink()
    os.mkfifo(str(path))  # opening it to read would wait for a writer
    [record] = store_.list_backups(MAIN)
    assert 'not a regular file' in record['error']


def test_a_metadata_object_of_unknown_size_is_read_no_further_than_the_bound():
    store_ = MemoryStore()
    store_.objects[MAIN.key(bid(0), 'metadata.json')] = None  # endless
    with pytest.raises(StoreError, match='is more than 1048576 bytes, more than the 1048576'):
        store_.read_metadata(MAIN, bid(0))
    assert store_.served == MIB // (64 * 1024) + 1 and store_.closed == 1


@pytest.mark.parametrize('text, message', [
    ('[' * 100000, 'nests JSON more than 32 levels deep'),
    ('{"a": ' * 33 + '1' + '}' * 33, 'nests JSON more than 32 levels deep'),
    ('{"a": %s}' % ('[' * 40 + ']' * 40), 'nests JSON more than 32 levels deep'),
    ('{"revision": %s}' % ('9' * 5000), 'not valid JSON .*an integer of 5000 digits'),
    ('{"revision": NaN}', 'not valid JSON .*NaN is not a JSON number'),
    ('{"revision": -Infinity}', 'not valid JSON'),
    (b'{"a": "\xff"}', 'not valid JSON'),
])
def test_metadata_json_is_refused_when_deep_or_odd_without_recursion(text, message):
    store_ = MemoryStore()
    store_.objects[MAIN.key(bid(0), 'metadata.json')] = text if isinstance(text, bytes) else text.encode()
    with pytest.raises(StoreError, match=message):
        store_.read_metadata(MAIN, bid(0))


def test_brackets_in_strings_do_not_count_as_nesting():
    store_ = MemoryStore()
    inside = '[' * 500 + '\\"{{{' + '\\\\'
    document = '{"a": ' * 32 + json.dumps(inside) + '}' * 32
    store_.objects[MAIN.key(bid(0), 'metadata.json')] = document.encode()
    value = store_.read_metadata(MAIN, bid(0))
    for dummy in range(32):
        value = value['a']
    assert value == inside


def test_metadata_is_written_by_write_metadata_only(store):
    with pytest.raises(StoreError, match='write_metadata'):
        store.put_object(MAIN, bid(0), 'metadata.json', iter([b'{}']))


def test_delete_removes_metadata_first_then_the_objects(store):
    complete_backup(store, MAIN, bid(0))
    complete_backup(store, MAIN, bid(10))
    calls = []
    original = store._delete

    def recording(keys):
        keys = list(keys)
        calls.append(keys)
        return original(keys)
    store._delete = recording
    assert store.delete_backups(MAIN, [bid(0), bid(10)]) == [bid(0), bid(10)]
    assert calls[0] == [MAIN.key(bid(0), 'metadata.json'), MAIN.key(bid(10), 'metadata.json')]
    assert sorted(calls[1]) == sorted([MAIN.key(bid(0), 'snapshot.db'), MAIN.key(bid(10), 'snapshot.db')])
    assert store.list_backups(MAIN) == [] and raw_keys(store) == []


def test_a_delete_interrupted_after_the_metadata_leaves_no_listed_backup(store):
    complete_backup(store, MAIN, bid(0))
    original = store._delete
    calls = []

    def dying(keys):
        calls.append(1)
        if len(calls) == 2:
            raise StoreError('connection lost')
        return original(keys)
    store._delete = dying
    with pytest.raises(StoreError):
        store.delete_backup(MAIN, bid(0))
    store._delete = original
    assert store.list_backups(MAIN) == []
    assert store.incomplete_backups(MAIN) == [bid(0)]


def test_remove_incomplete_spares_recent_runs(store):
    now = _retention.timestamp('2026-11-23T10:50:32Z')
    store.put_object(MAIN, bid(60 * 30), 'snapshot.db', iter([b'old run']))
    store.put_object(MAIN, bid(5), 'snapshot.db', iter([b'run in progress']))
    complete_backup(store, MAIN, bid(60 * 48))
    assert store.remove_incomplete(MAIN, now=now) == [bid(60 * 30)]
    assert store.incomplete_backups(MAIN) == [bid(5)]
    assert [r['id'] for r in store.list_backups(MAIN)] == [bid(60 * 48)]


def test_a_stream_failing_midway_leaves_nothing(store):
    data = data_of(12 * MIB)
    with pytest.raises(ConnectionError, match='snapshot stream broke'):
        store.put_object(MAIN, bid(0), 'snapshot.db.zst.age', failing_after(data, 11 * MIB))
    assert raw_keys(store) == []
    assert store.list_backups(MAIN) == [] and store.incomplete_backups(MAIN) == []


# -- local specifics --------------------------------------------------------------------------------------

def test_local_files_are_private_and_no_temporary_file_remains(tmp_path):
    store_ = LocalStore(str(tmp_path / 'b'))
    complete_backup(store_, MAIN, bid(0))
    directory = tmp_path / 'b' / MAIN.path / bid(0)
    assert sorted(p.name for p in directory.iterdir()) == ['metadata.json', 'snapshot.db']
    assert stat.S_IMODE((directory / 'snapshot.db').stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert json.loads((directory / 'metadata.json').read_text())['member'] == 'cp1'


def test_local_failed_write_removes_its_temporary_file(tmp_path):
    store_ = LocalStore(str(tmp_path / 'b'))
    with pytest.raises(ConnectionError):
        store_.put_object(MAIN, bid(0), 'snapshot.db', failing_after(data_of(3 * MIB), 2 * MIB))
    leftovers = [p for p in (tmp_path / 'b').rglob('*') if p.is_file()]
    assert leftovers == []


def test_local_errors_name_the_path_and_what_to_check(tmp_path):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('x')
    store_ = LocalStore(str(blocker))
    with pytest.raises(StoreError) as err:
        store_.put_object(MAIN, bid(0), 'snapshot.db', iter([b'x']))
    assert str(blocker) in str(err.value)
    with pytest.raises(StoreError, match='does not exist'):
        b''.join(LocalStore(str(tmp_path)).get_object(MAIN, bid(0), 'snapshot.db'))
    assert LocalStore(str(tmp_path / 'missing')).list_backups(MAIN) == []


# -- S3 specifics -----------------------------------------------------------------------------------------

def test_s3_large_object_goes_up_in_parallel_parts(s3_endpoint, bucket, s3):
    store_ = make_s3_store(s3_endpoint, bucket, part_size=5 * MIB, concurrency=3)
    active, peak, lock = [0], [0], threading.Lock()
    upload_part = store_.client.upload_part

    def counting(**kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.2)  # a slow network: parts must overlap
            return upload_part(**kwargs)
        finally:
            with lock:
                active[0] -= 1
    store_.client.upload_part = counting
    data = data_of(23 * MIB + 11)
    info = store_.put_object(MAIN, bid(0), 'snapshot.db.zst', chunks_of(data))
    head = s3.head_object(Bucket=bucket, Key='etcd-backups/' + info['key'])
    assert head['ETag'].strip('"').endswith('-5')  # 4 parts of 5 MiB (+ < 1 MiB) and the rest
    assert head['ContentLength'] == len(data)
    assert peak[0] == 3
    assert b''.join(store_.get_object(MAIN, bid(0), 'snapshot.db.zst')) == data


def test_s3_stream_failure_after_parts_aborts_the_upload(s3_endpoint, bucket, s3):
    store_ = make_s3_store(s3_endpoint, bucket)
    uploaded = []
    upload_part = store_.client.upload_part

    def recording(**kwargs):
        uploaded.append(kwargs['PartNumber'])
        return upload_part(**kwargs)
    store_.client.upload_part = recording
    with pytest.raises(ConnectionError):
        store_.put_object(MAIN, bid(0), 'snapshot.db', failing_after(data_of(30 * MIB), 17 * MIB))
    assert len(uploaded) >= 2  # the multipart upload was under way
    assert s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []) == []
    assert s3.list_objects_v2(Bucket=bucket).get('KeyCount') == 0
    assert store_.list_backups(MAIN) == []


def test_s3_part_upload_failure_aborts_and_says_which_part(s3_endpoint, bucket, s3):
    store_ = make_s3_store(s3_endpoint, bucket, concurrency=2)
    upload_part = store_.client.upload_part

    def third_fails(**kwargs):
        if kwargs['PartNumber'] == 3:
            raise boto3.exceptions.botocore.exceptions.EndpointConnectionError(endpoint_url=s3_endpoint)
        return upload_part(**kwargs)
    store_.client.upload_part = third_fails
    with pytest.raises(StoreError) as err:
        store_.put_object(MAIN, bid(0), 'snapshot.db', chunks_of(data_of(26 * MIB)))
    assert 'upload part 3 of' in str(err.value) and s3_endpoint in str(err.value)
    assert s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []) == []
    assert s3.list_objects_v2(Bucket=bucket).get('KeyCount') == 0


def test_a_failed_upload_stops_the_snapshot_stream_and_the_age_worker(s3_endpoint, bucket):
    pyrage = pytest.importorskip('pyrage')
    store_ = make_s3_store(s3_endpoint, bucket)
    upload_part = store_.client.upload_part
    snapshot_closed = []

    def refusing(**kwargs):
        if kwargs['PartNumber'] == 2:
            raise boto3.exceptions.botocore.exceptions.ConnectTimeoutError(endpoint_url=s3_endpoint)
        return upload_part(**kwargs)
    store_.client.upload_part = refusing

    def snapshot():  # endless, like a member streaming a huge database
        try:
            while True:
                yield os.urandom(MIB)
        finally:
            snapshot_closed.append(True)
    threads_before = threading.active_count()
    stream = _streams.age_encrypt(_streams.Meter(_streams.Sha256(snapshot())),
                                  [str(pyrage.x25519.Identity.generate().to_public())])
    with pytest.raises(StoreError, match='upload part 2 of'):
        store_.put_object(MAIN, bid(0), 'snapshot.db.age', stream)
    assert snapshot_closed == [True]
    assert threading.active_count() == threads_before


@pytest.mark.parametrize('size', [MIB, 12 * MIB], ids=['single-put', 'multipart'])
def test_s3_sse_s3_and_storage_class_are_applied(s3_endpoint, bucket, s3, size):
    store_ = make_s3_store(s3_endpoint, bucket, sse='AES256', storage_class='STANDARD_IA')
    info = complete_backup(store_, MAIN, bid(0), data=data_of(size))
    head = s3.head_object(Bucket=bucket, Key='etcd-backups/' + info['key'])
    assert head['ServerSideEncryption'] == 'AES256'
    assert head['StorageClass'] == 'STANDARD_IA'
    meta = s3.head_object(Bucket=bucket, Key='etcd-backups/' + MAIN.key(bid(0), 'metadata.json'))
    assert meta['ServerSideEncryption'] == 'AES256'
    assert meta.get('StorageClass', 'STANDARD') == 'STANDARD'  # listing must be able to read it
    assert meta['ContentType'] == 'application/json'


@pytest.mark.parametrize('size', [MIB, 12 * MIB], ids=['single-put', 'multipart'])
def test_s3_sse_kms_with_a_key_id(s3_endpoint, bucket, s3, size):
    kms = boto3.client('kms', endpoint_url=s3_endpoint, region_name='us-east-1', aws_access_key_id='testing',
                       aws_secret_access_key='testing-secret-key')
    key_id = kms.create_key(Description='etcd backups')['KeyMetadata']['Arn']
    store_ = make_s3_store(s3_endpoint, bucket, sse='aws:kms', kms_key_id=key_id)
    info = store_.put_object(MAIN, bid(0), 'snapshot.db', chunks_of(data_of(size)))
    head = s3.head_object(Bucket=bucket, Key='etcd-backups/' + info['key'])
    assert head['ServerSideEncryption'] == 'aws:kms'
    assert head['SSEKMSKeyId'] == key_id


@pytest.mark.parametrize('options, message', [
    (dict(sse='aes'), 'use AES256'),
    (dict(sse='AES256', kms_key_id='k'), 'only used with server-side encryption aws:kms'),
    (dict(part_size=MIB), '5 MiB to 5 GiB'),
    (dict(concurrency=0), 'at least 1'),
])
def test_s3_settings_are_checked(options, message):
    with pytest.raises(StoreError, match=message):
        S3Store('b', endpoint_url='http://127.0.0.1:9', **options)


def test_s3_path_style_is_configured(s3_endpoint, bucket):
    assert make_s3_store(s3_endpoint, bucket, path_style=True).client.meta.config.s3['addressing_style'] == 'path'
    assert make_s3_store(s3_endpoint, bucket, path_style=False).client.meta.config.s3['addressing_style'] == 'auto'


def test_s3_unreachable_endpoint_names_the_endpoint_and_never_the_secret():
    endpoint = 'http://127.0.0.1:%d' % free_port()
    store_ = S3Store('backups', endpoint_url=endpoint, access_key='AKIAEXAMPLE', secret_key='s3cr3t-do-not-log',
                     session_token='token-do-not-log', region='us-east-1', max_attempts=2, connect_timeout=2)
    started = time.time()
    with pytest.raises(StoreError) as err:
        store_.list_backups(MAIN)
    message = str(err.value)
    assert 'cannot reach the S3 endpoint %s' % endpoint in message
    assert 's3://backups/prod.k8s.example.com/backups/etcd/main/' in message
    assert 'do-not-log' not in message
    assert time.time() - started < 20
    with pytest.raises(StoreError) as err:
        store_.put_object(MAIN, bid(0), 'snapshot.db', iter([b'x']))
    assert endpoint in str(err.value) and 'do-not-log' not in str(err.value)


def test_s3_missing_bucket_says_so(s3_endpoint):
    store_ = make_s3_store(s3_endpoint, 'no-such-bucket-%s' % uuid.uuid4().hex[:8])
    with pytest.raises(StoreError, match='bucket no-such-bucket-.* does not exist at %s' % s3_endpoint):
        store_.list_backups(MAIN)
    with pytest.raises(StoreError, match='does not exist'):
        store_.put_object(MAIN, bid(0), 'snapshot.db', iter([b'x']))


def test_s3_missing_object_says_which(s3_endpoint, bucket):
    store_ = make_s3_store(s3_endpoint, bucket)
    with pytest.raises(StoreError, match=r's3://%s/etcd-backups/.*/snapshot.db does not exist' % bucket):
        b''.join(store_.get_object(MAIN, bid(0), 'snapshot.db'))


def test_s3_remove_incomplete_aborts_stale_multipart_uploads(s3_endpoint, bucket, s3):
    store_ = make_s3_store(s3_endpoint, bucket)
    stale = s3.create_multipart_upload(Bucket=bucket, Key='etcd-backups/' + MAIN.key(bid(0), 'snapshot.db'))
    [upload] = store_.incomplete_uploads(MAIN)
    assert upload['upload_id'] == stale['UploadId']
    started = upload['initiated']  # moto reports a fixed time in 2010: count from it
    store_.remove_incomplete(MAIN, older_than=3600, now=started + 600)  # may still be running: spared
    assert len(store_.incomplete_uploads(MAIN)) == 1
    store_.remove_incomplete(MAIN, older_than=3600, now=started + 7200)
    assert store_.incomplete_uploads(MAIN) == []


# -- retention against S3 ---------------------------------------------------------------------------------

def load_retention_tests():
    path = Path(__file__).with_name('test_retention.py')
    spec = importlib.util.spec_from_file_location('retention_cases', str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pruning_400_backups_deletes_from_s3_exactly_what_retention_selects(s3_endpoint, bucket, s3):
    cases = load_retention_tests()
    store_ = make_s3_store(s3_endpoint, bucket)
    synthetic = cases.two_years_of_backups()
    expected = set()
    for n, record in enumerate(synthetic):
        backup_id = new_backup_id(record['time'], suffix='%04d' % n)
        store_.put_object(MAIN, backup_id, 'snapshot.db.zst.age', iter([b'%d' % n]))
        store_.write_metadata(MAIN, backup_id, {'verified': record['verified'], 'member': 'cp%d' % (n % 3 + 1)})
        if record['expect']:
            expected.add(backup_id)
    store_.put_object(MAIN, new_backup_id(cases.NOW, suffix='zzzz'), 'snapshot.db.zst.age', iter([b'in progress']))

    listed = store_.list_backups(MAIN)
    assert len(listed) == 400
    keep, prune = _retention.select(listed, cases.NOW)
    assert set(r['id'] for r in keep) == expected and len(prune) == 215
    store_.delete_backups(MAIN, [r['id'] for r in prune])

    after = store_.list_backups(MAIN)
    assert [r['id'] for r in after] == [r['id'] for r in keep]
    assert _retention.select(after, cases.NOW)[1] == []
    keys = [o['Key'] for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket) for o in page.get('Contents', [])]
    backups_in_bucket = set(key.split('/')[-2] for key in keys)
    assert backups_in_bucket == expected | {new_backup_id(cases.NOW, suffix='zzzz')}  # the run in progress stays
    assert len(keys) == 2 * 185 + 1


# -- the whole backup chain into S3 -----------------------------------------------------------------------

def test_snapshot_chain_into_s3_and_back(s3_endpoint, bucket, tmp_path):
    pyrage = pytest.importorskip('pyrage')
    identity = pyrage.x25519.Identity.generate()
    store_ = make_s3_store(s3_endpoint, bucket, sse='AES256')
    snapshot = data_of(14 * MIB + 3, seed=3)
    backup_id = new_backup_id()
    plain = _streams.Sha256(chunks_of(snapshot, 256 * 1024))
    encrypted = _streams.age_encrypt(_streams.zstd_compress(plain, threads=1), [str(identity.to_public())])
    name = object_name('snapshot.db')
    info = store_.put_object(MAIN, backup_id, name, encrypted)
    store_.write_metadata(MAIN, backup_id, {'sha256': plain.hexdigest(), 'size': plain.size, 'objects': [info],
                                            'encrypted': True, 'verified': True})
    [record] = store_.list_backups(MAIN)
    restored = _streams.Sha256(_streams.zstd_decompress(_streams.age_decrypt(
        store_.get_object(MAIN, backup_id, name), [identity])))
    assert b''.join(restored) == snapshot and restored.hexdigest() == record['sha256']
    assert record['stored_objects'] == {name: info['size']} and record['objects'] == [info]


S3_MEMORY_PROBE = textwrap.dedent('''
    import json, os, sys

    def peak_kib():  # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
        with open('/proc/self/status') as status:
            return int([line for line in status if line.startswith('VmHWM:')][0].split()[1])
    import ansible.module_utils.basic  # what a module process holds before any data
    try:
        from ansible_collections.etcdops.etcd.plugins.module_utils import _client  # gRPC, as the snapshot source
    except ImportError:
        pass
    from ansible_collections.etcdops.etcd.plugins.module_utils import _store, _streams
    import pyrage
    endpoint, bucket, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = (b'/registry/pods/default/web-0 {"phase":"Running","node":"cp1"} ' * 20000)[:1 << 19]

    def snapshot():  # 1 MiB chunks, half random (incompressible), half text: about half goes up to S3
        for dummy in range(mib):
            yield os.urandom(1 << 19) + text
    store = _store.S3Store(bucket, endpoint_url=endpoint, access_key='testing', secret_key='testing-secret-key',
                           region='us-east-1', path_style=True)
    identity = pyrage.x25519.Identity.generate()
    before = peak_kib()
    meter = _streams.Meter(_streams.Sha256(snapshot()))
    location = _store.etcd_location('probe')
    info = store.put_object(location, _store.new_backup_id(), 'snapshot.db.zst.age',
                            _streams.age_encrypt(_streams.zstd_compress(meter), [identity.to_public()]))
    print(json.dumps({'before_kib': before, 'peak_kib': peak_kib(),
                      'stored': info['size'], 'seconds': meter.seconds}))
''')


def test_module_process_memory_for_a_512_mib_snapshot_into_s3(s3_endpoint, bucket):
    """A module-like process (ansible, gRPC, boto3 loaded) streams snapshot -> sha256 -> zstd -> age
    -> S3 parts with the store's defaults (5 MiB, 2 at a time): its peak RSS stays under 100 MiB."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, '-c', S3_MEMORY_PROBE, s3_endpoint, bucket, '512'], env=env,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    peak = result['peak_kib'] / 1024.0
    print('S3 upload of 512 MiB: RSS before %.1f MiB, peak %.1f MiB, %.1f s'
          % (result['before_kib'] / 1024.0, peak, result['seconds']))
    assert peak < 100


# -- /etc/kubernetes resources ----------------------------------------------------------------------------

@pytest.fixture
def kubernetes_dir(tmp_path):
    """A kubeadm-like /etc/kubernetes with keys, certificates, manifests and an encryption configuration."""
    root = tmp_path / 'etc-kubernetes'
    files = {
        'pki/ca.crt': (0o644, b'-----BEGIN CERTIFICATE-----\nca\n'),
        'pki/ca.key': (0o600, b'-----BEGIN RSA PRIVATE KEY-----\nsecret\n'),
        'pki/sa.key': (0o600, b'-----BEGIN RSA PRIVATE KEY-----\nsa\n'),
        'pki/etcd/ca.crt': (0o644, b'etcd ca\n'),
        'pki/etcd/server.key': (0o600, b'etcd server key\n'),
        'manifests/etcd.yaml': (0o600, b'apiVersion: v1\nkind: Pod\n'),
        'manifests/kube-apiserver.yaml': (0o600, b'apiVersion: v1\nkind: Pod\n'),
        'enc/encryption-config.yaml': (0o600, b'kind: EncryptionConfiguration\nsecret: aescbc-key\n'),
        'admin.conf': (0o600, b'kubeconfig with a client key\n'),
    }
    for name, (mode, content) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
        os.utime(str(path), (1700000000, 1700000000))
    (root / 'pki' / 'etcd').chmod(0o750)
    os.symlink('ca.crt', str(root / 'pki' / 'ca-current.crt'))
    return root, files


def test_resources_archive_round_trip_keeps_modes_and_only_what_was_asked(kubernetes_dir, tmp_path):
    root, files = kubernetes_dir
    archive = ResourceArchive(str(root), ['pki', 'manifests', str(root / 'enc/encryption-config.yaml')])
    stream = b''.join(archive)
    names = [m['name'] for m in archive.members]
    assert 'admin.conf' not in names
    assert names.index('pki') < names.index('pki/etcd') < names.index('pki/etcd/server.key')
    assert {'name': 'pki/ca.key', 'type': 'file', 'mode': '0600', 'size': len(files['pki/ca.key'][1])} in archive.members
    assert 'secret' not in json.dumps(archive.members)

    dest = tmp_path / 'restored'
    restored = extract_resources(chunks_of(stream, 1000), str(dest))
    assert [m['name'] for m in restored] == names
    for name, (mode, content) in files.items():
        path = dest / name
        if name == 'admin.conf':
            assert not path.exists()
            continue
        assert path.read_bytes() == content
        assert stat.S_IMODE(path.stat().st_mode) == mode, name
        assert path.stat().st_mtime == 1700000000
    assert stat.S_IMODE((dest / 'pki' / 'etcd').stat().st_mode) == 0o750
    assert os.readlink(str(dest / 'pki' / 'ca-current.crt')) == 'ca.crt'
    assert not list(dest.rglob('.*.tmp'))


@pytest.mark.skipif(shutil.which('tar') is None, reason='no tar command')
def test_resources_archive_is_a_tar_the_tar_command_reads(kubernetes_dir, tmp_path):
    root, dummy = kubernetes_dir
    path = tmp_path / 'kubernetes.tar'
    path.write_bytes(b''.join(ResourceArchive(str(root), ['pki'])))
    listing = subprocess.run(['tar', '-tvf', str(path)], capture_output=True, check=True, text=True).stdout
    assert 'pki/etcd/server.key' in listing and '-rw-------' in listing


def test_resources_paths_outside_the_root_or_missing_are_refused(kubernetes_dir, tmp_path):
    root, dummy = kubernetes_dir
    with pytest.raises(StoreError, match='is not under'):
        ResourceArchive(str(root), ['pki', str(tmp_path)])
    with pytest.raises(StoreError, match='is not under'):
        ResourceArchive(str(root), ['../etc'])
    with pytest.raises(StoreError, match='does not exist'):
        ResourceArchive(str(root), ['pki', 'encryption.yaml'])


def evil_tar(*adds):
    import io
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        for add in adds:
            add(tar)
    return buffer.getvalue()


def regular(name, data=b'x', mode=0o644):
    import io

    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))
    return add


def link(name, target, kind=tarfile.SYMTYPE):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)
    return add


def directory(name):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    return add


def raw_header(name, kind, data=b''):
    """One header block (ustar) and its data blocks, whatever the type: pax headers written by hand."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    padding = (-len(data)) % tarfile.BLOCKSIZE
    return info.tobuf(tarfile.USTAR_FORMAT) + data + b'\0' * padding


def pax_record(keyword, value):
    body = b' %s=%s\n' % (keyword, value)
    size = len(body) + 1
    while len(b'%d' % size) + len(body) != size:
        size += 1
    return b'%d' % size + body


def snapshot_of(tmp_path):
    """Every path under tmp_path with what it is (type, target or content): what an extraction may change."""
    found = {}
    for current, directories, files in os.walk(str(tmp_path)):
        for name in directories + files:
            path = os.path.join(current, name)
            if os.path.islink(path):
                found[path] = ('link', os.readlink(path))
            elif os.path.isfile(path):
                found[path] = ('file', Path(path).read_bytes())
            else:
                found[path] = ('dir', None)
    return found


def changed_outside(before, after, dest):
    changed = set(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return sorted(path for path in changed if not path.startswith(str(dest) + os.sep))


@pytest.mark.parametrize('adds, message', [
    ([regular('../escape')], 'outside its root'),
    ([regular('/etc/passwd')], 'outside its root'),
    ([regular('pki/../../escape')], 'outside its root'),
    ([regular('pki/../ca.crt')], 'outside its root'),
    ([link('pki/evil', '/etc/shadow')], 'leaves'),
    ([link('pki/evil', '../../x')], 'leaves'),
    # a symlink to a place inside, then a member written through it
    ([link('loop', '.'), regular('loop/escape')], 'write through the symlink .*/dest/loop'),
    ([directory('pki'), link('pki/up', '..'), link('pki/up2', 'up/..')], 'leaves'),
    # a chain: each link resolves inside dest when it is made, the first leaves once the second exists
    ([link('x', 'y/..'), link('y', '.')], r'lead out of .*x -> y/\.\.'),
    ([link('pki/hard', 'pki/ca.key', tarfile.LNKTYPE)], 'not a file this archive restored before it'),
    ([link('pki/passwd', '/etc/passwd', tarfile.LNKTYPE)], "'/etc/passwd', a path outside its root"),
    ([link('pki/passwd', '../../../../etc/passwd', tarfile.LNKTYPE)], 'outside its root'),
    ([regular('a'), link('pki/hard', 'pki/../a', tarfile.LNKTYPE)], 'outside its root'),
    ([link('dev/null', '', tarfile.CHRTYPE)], 'neither a file, a directory, a symlink nor a hard link'),
    ([link('dev/sda', '', tarfile.BLKTYPE)], 'neither a file'),
    ([link('fifo', '', tarfile.FIFOTYPE)], 'neither a file'),
    ([link('contiguous', '', tarfile.CONTTYPE)], 'neither a file'),
])
def test_extract_refuses_archives_that_leave_their_root(tmp_path, adds, message):
    dest = tmp_path / 'dest'
    (tmp_path / 'outside').mkdir()
    (tmp_path / 'outside' / 'victim').write_bytes(b'untouched')
    before = snapshot_of(tmp_path)
    with pytest.raises(StoreError, match=message):
        extract_resources([evil_tar(*adds)], str(dest))
    assert changed_outside(before, snapshot_of(tmp_path), dest) == [str(dest)]  # dest itself was created
    assert not [p for p in dest.rglob('*') if p.is_symlink() and not str(p.resolve()).startswith(str(dest))]


def test_extract_never_writes_through_a_symlink_already_in_dest(tmp_path):
    dest = tmp_path / 'dest'
    dest.mkdir()
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'ca.crt').write_bytes(b'outside')
    os.symlink(str(outside), str(dest / 'pki'))
    before = snapshot_of(tmp_path)
    with pytest.raises(StoreError, match='write through the symlink %s' % (dest / 'pki')):
        extract_resources([evil_tar(regular('pki/ca.crt', b'evil'))], str(dest))
    with pytest.raises(StoreError, match='write through the symlink'):
        extract_resources([evil_tar(regular('pki/sub/ca.crt', b'evil'))], str(dest))
    with pytest.raises(StoreError, match='write through the symlink'):
        extract_resources([evil_tar(directory('pki'))], str(dest))
    (dest / 'manifests').write_bytes(b'a file')
    with pytest.raises(StoreError, match='needs .*dest/manifests to be a directory'):
        extract_resources([evil_tar(regular('manifests/etcd.yaml'))], str(dest))
    assert changed_outside(before, snapshot_of(tmp_path), dest) == []
    # a symlink where a file goes is replaced by the file, not written through
    os.symlink(str(outside / 'ca.crt'), str(dest / 'ca.crt'))
    extract_resources([evil_tar(regular('ca.crt', b'restored'))], str(dest))
    assert (outside / 'ca.crt').read_bytes() == b'outside'
    assert not (dest / 'ca.crt').is_symlink() and (dest / 'ca.crt').read_bytes() == b'restored'


def test_extract_limits_the_number_of_members_and_the_bytes(tmp_path):
    many = evil_tar(*[regular('f%d' % i) for i in range(6)])
    with pytest.raises(StoreError, match='more than 5 members'):
        extract_resources([many], str(tmp_path / 'a'), max_files=5)
    assert len(extract_resources([many], str(tmp_path / 'b'), max_files=6)) == 6

    big = evil_tar(regular('small', b'x' * 600), regular('big', b'y' * 500))
    with pytest.raises(StoreError, match='more than 1000 bytes of files .*, big among them'):
        extract_resources([big], str(tmp_path / 'c'), max_bytes=1000)
    assert (tmp_path / 'c' / 'small').exists() and not list((tmp_path / 'c').glob('*big*'))

    # 2 GiB announced by a header: refused by the default bound before any of it is read
    info = tarfile.TarInfo('huge')
    info.size = 2 * 1024 * MIB
    claim = info.tobuf(tarfile.GNU_FORMAT) + b'\0' * 4096
    with pytest.raises(StoreError, match='more than 1073741824 bytes of files'):
        extract_resources([claim], str(tmp_path / 'd'))
    assert not os.listdir(str(tmp_path / 'd'))


def test_extract_refuses_extended_header_bombs_and_names_with_nul(tmp_path):
    member = raw_header('file', tarfile.REGTYPE, b'data')
    end = b'\0' * 1024
    chain = b''.join(raw_header('././@PaxHeader', tarfile.XHDTYPE, pax_record(b'comment', b'x')) for dummy in range(400))
    with pytest.raises(StoreError, match='more than 3 extended tar headers in a row'):
        extract_resources([chain + member + end], str(tmp_path / 'a'))
    large = raw_header('././@PaxHeader', tarfile.XHDTYPE, pax_record(b'comment', b'x' * (70 * 1024)))
    with pytest.raises(StoreError, match='an extended tar header of 71'):
        extract_resources([large + member + end], str(tmp_path / 'b'))
    nul = raw_header('././@PaxHeader', tarfile.XHDTYPE, pax_record(b'path', b'pki/a\0b'))
    with pytest.raises(StoreError, match='which is not a path'):
        extract_resources([nul + member + end], str(tmp_path / 'c'))
    # the ordinary case of one extended header before the member extracts
    one = raw_header('././@PaxHeader', tarfile.XHDTYPE, pax_record(b'path', b'pki/' + b'n' * 150))
    assert [m['name'] for m in extract_resources([one + member + end], str(tmp_path / 'e'))] == ['pki/' + 'n' * 150]


def test_extract_drops_setuid_and_group_write_and_refuses_impossible_owners_and_times(tmp_path):
    extract_resources([evil_tar(regular('tool', b'#!/bin/sh\n', mode=0o6777))], str(tmp_path / 'a'),
                      restore_owner=False)
    assert stat.S_IMODE((tmp_path / 'a' / 'tool').stat().st_mode) == 0o755

    def odd(**fields):
        import io

        def add(tar):
            info = tarfile.TarInfo('f')
            info.size = 1
            for key, value in fields.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(b'x'))
        return add
    with pytest.raises(StoreError, match='with the modification time'):
        extract_resources([evil_tar(odd(mtime=2 ** 60))], str(tmp_path / 'b'))
    with pytest.raises(StoreError, match=r'owned by 4294967295:0'):
        extract_resources([evil_tar(odd(uid=2 ** 32 - 1))], str(tmp_path / 'c'), restore_owner=True)


def test_extract_restores_the_hard_links_a_resources_archive_holds(kubernetes_dir, tmp_path):
    root, files = kubernetes_dir
    os.link(str(root / 'pki' / 'ca.key'), str(root / 'pki' / 'ca-hard.key'))
    archive = ResourceArchive(str(root), ['pki'])
    stream = b''.join(archive)
    dest = tmp_path / 'restored'
    restored = extract_resources([stream], str(dest))
    # the first of the two names in the archive's order is the file, the second the hard link
    assert {'name': 'pki/ca.key', 'type': 'hardlink', 'mode': '0600', 'size': 0} in restored
    assert (dest / 'pki' / 'ca-hard.key').stat().st_ino == (dest / 'pki' / 'ca.key').stat().st_ino
    assert (dest / 'pki' / 'ca-hard.key').read_bytes() == files['pki/ca.key'][1]


def test_extract_of_a_damaged_archive_fails_clearly(tmp_path):
    with pytest.raises(StoreError, match='damaged or not a tar stream'):
        extract_resources([b'not a tar at all' * 100], str(tmp_path / 'dest'))


def test_resources_backup_with_their_own_recipients(kubernetes_dir, tmp_path):
    """The resources go to their own prefix, encrypted to another key than the etcd snapshots."""
    pyrage = pytest.importorskip('pyrage')
    root, files = kubernetes_dir
    resources_key = pyrage.x25519.Identity.generate()
    store_ = LocalStore(str(tmp_path / 'store'))
    backup_id = new_backup_id()
    archive = ResourceArchive(str(root), ['pki', 'manifests', 'enc/encryption-config.yaml'])
    name = object_name('kubernetes.tar')
    info = store_.put_object(RESOURCES, backup_id, name, _streams.age_encrypt(
        _streams.zstd_compress(archive), [str(resources_key.to_public())]))
    store_.write_metadata(RESOURCES, backup_id, {'members': archive.members, 'objects': [info], 'verified': True})
    assert store_.list_backups(MAIN) == []
    [record] = store_.list_backups(RESOURCES)
    dest = tmp_path / 'restore'
    extract_resources(_streams.zstd_decompress(_streams.age_decrypt(
        store_.get_object(RESOURCES, record['id'], name), [resources_key])), str(dest))
    assert (dest / 'enc/encryption-config.yaml').read_bytes() == files['enc/encryption-config.yaml'][1]
    assert stat.S_IMODE((dest / 'pki/ca.key').stat().st_mode) == 0o600


def test_a_local_store_does_not_import_boto3(tmp_path):
    """boto3 and botocore are imported with the first S3 store only: a backup to a directory does not carry their
    memory (~13 MiB imported, ~28 MiB with a client) against its 100 MiB bound. Checked in a fresh interpreter,
    as this one has imported them already."""
    collections = _streams.__file__.split(os.sep + 'ansible_collections' + os.sep, maxsplit=1)[0]
    script = textwrap.dedent('''
        import sys
        from ansible_collections.etcdops.etcd.plugins.module_utils import _backup, _store
        store = _store.LocalStore(sys.argv[1])
        store.put_object(_store.etcd_location('c'), _store.new_backup_id(), 'snapshot.db', iter([b'data']))
        assert store.list_backups(_store.etcd_location('c')) == []  # no metadata yet: not a backup
        print(sorted(name for name in sys.modules if name.split('.')[0] in ('boto3', 'botocore')))
        _store.S3Store('bucket', endpoint_url='http://127.0.0.1:9', region='us-east-1')
        print('boto3' in sys.modules, _store.botocore.exceptions.ClientError.__name__)
    ''')
    out = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'store')], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=collections), check=True).stdout.splitlines()
    assert out == ['[]', 'True ClientError']
