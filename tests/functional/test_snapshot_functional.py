# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshots of real 3-member TLS clusters of etcd 3.4 to 3.7 on loopback, as the runbook goes: write keys,
save a snapshot from a follower, read its status (equal to what etcdutl, or etcdctl on 3.4, prints, with the
tools of every line), restore it with the line's own tool and read the keys back from the restored member;
kill the member that streams a few hundred MB in the middle: the snapshot comes from another member, or the
save fails clearly and leaves nothing."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils import _snapshot
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt_stream import StreamStatus
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (
    SnapshotError, candidates, save, snapshot_status,
)


def _conftest():
    """This directory's conftest as pytest loaded it (one port registry, one process list)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'conftest.py')
    for module in list(sys.modules.values()):
        if os.path.abspath(getattr(module, '__file__', None) or '') == path:
            return module
    spec = importlib.util.spec_from_file_location('etcdops_functional_conftest', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LINES, etcd_tools, free_port = _conftest().LINES, _conftest().etcd_tools, _conftest().free_port
pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')]

# The large snapshot: many small keys (a tenth deleted, history compacted away) and big values written twice.
SMALL_KEYS = 30000
BIG_VALUES = 160
BIG_VALUE_SIZE = 1024 * 1024


def tool_status(line, path):
    """`etcdutl snapshot status -w json` of that line's etcdutl, `etcdctl snapshot status` on 3.4."""
    tools = etcd_tools(line)
    tool = tools['etcdutl'] or tools['etcdctl']
    out = subprocess.run([tool, 'snapshot', 'status', str(path), '-w', 'json'], env=dict(os.environ, ETCDCTL_API='3'),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout
    return json.loads(out.decode())


def tool_lines():
    return [line for line in LINES if etcd_tools(line) is not None]


def assert_status_as_every_tool_says(path, own_line):
    """Ours equals the snapshot's own line's tool exactly; hash, revision and size equal every line's tool, and
    the key count equals each tool's own way of counting (every entry before 3.6, live keys from 3.6). The line
    is given as the serving member's version is to save(): a young 3.6+ cluster's snapshot may not hold a storage
    version yet, and etcdutl 3.6+ counts live keys all the same."""
    ours = snapshot_status(str(path), etcd_version=own_line)
    own = tool_status(own_line, path)
    assert (ours['hash'], ours['revision'], ours['total_key'], ours['total_size']) == (
        own['hash'], own['revision'], own['totalKey'], own['totalSize']), (ours, own)
    assert ours['version'] == own.get('version', '')
    for line in tool_lines():
        theirs = tool_status(line, path)
        assert (ours['hash'], ours['revision'], ours['total_size']) == (
            theirs['hash'], theirs['revision'], theirs['totalSize']), (line, ours, theirs)
        assert theirs['totalKey'] == (ours['live_keys'] if line >= '3.6' else ours['entries']), (line, ours, theirs)
    assert ours['trailer'] == 'valid' and ours['size'] == ours['total_size'] + 32
    return ours


def txn_put(client, items):
    """Put many keys in one transaction (the KV API the client wraps), so a fill takes seconds."""
    from pyetcd import etcdrpc

    ops = [etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(key=key, value=value)) for key, value in items]

    def call(connection, timeout, metadata):
        return connection.stub('KVStub').Txn(etcdrpc.TxnRequest(success=ops), timeout=timeout, metadata=metadata)
    return client._any(call, change=True)


def delete(client, key):
    from pyetcd import etcdrpc

    def call(connection, timeout, metadata):
        return connection.stub('KVStub').DeleteRange(etcdrpc.DeleteRangeRequest(key=key), timeout=timeout,
                                                     metadata=metadata)
    client._any(call, change=True)


def fill(client, small=SMALL_KEYS, big=BIG_VALUES, big_size=BIG_VALUE_SIZE):
    """Keys a Kubernetes cluster might hold, with deletions and a compaction; returns the live key count."""
    rng = random.Random(5)
    blob = bytes(bytearray(rng.getrandbits(8) for dummy in range(1024)))
    batch = []
    for index in range(small):
        batch.append((b'/registry/pods/ns/p%06d' % index, blob[:100 + index % 900]))
        if len(batch) == 100:
            txn_put(client, batch)
            batch = []
    if batch:
        txn_put(client, batch)
    for index in range(0, small, 10):
        delete(client, b'/registry/pods/ns/p%06d' % index)
    compact_at = client.put('/registry/marker', 'x')
    payload = os.urandom(big_size)
    for index in range(big):
        client.put(b'/registry/configmaps/big%04d' % (index % max(1, big // 2)), payload[index:] + payload[:index])
    client.compact(compact_at, physical=True)
    return client.count()['count']


def restore_and_count(line, path, workdir):
    """Restore the snapshot with the line's tool into a new data dir, start one etcd on it, count its keys."""
    tools = etcd_tools(line)
    tool = tools['etcdutl'] or tools['etcdctl']
    data_dir = os.path.join(workdir, 'restored')
    client_port, peer_port = free_port(), free_port()
    peer = 'http://127.0.0.1:%d' % peer_port
    subprocess.run([tool, 'snapshot', 'restore', str(path), '--data-dir', data_dir, '--name', 'r1',
                    '--initial-cluster', 'r1=' + peer, '--initial-advertise-peer-urls', peer],
                   env=dict(os.environ, ETCDCTL_API='3'), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True)
    client_url = 'http://127.0.0.1:%d' % client_port
    with open(os.path.join(workdir, 'restored.log'), 'ab') as log:
        process = subprocess.Popen([tools['etcd'], '--name', 'r1', '--data-dir', data_dir, '--listen-client-urls',
                                    client_url, '--advertise-client-urls', client_url, '--listen-peer-urls', peer,
                                    '--initial-advertise-peer-urls', peer, '--initial-cluster', 'r1=' + peer],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with EtcdClient([client_url], pki_dir='/nonexistent') as client:
                    return client.count(), client.get('/etcdops/snapshot/marker')
            except _client.EtcdClientError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- a small snapshot on every line ----------------------------------------------------------------------

def test_save_from_a_follower_status_as_etcdutl_restore_and_read_back(cluster, tmp_path):
    path = tmp_path / 'snapshot.db'
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(50):
            client.put('/etcdops/snapshot/k%02d' % index, 'v%d' % index)
        client.put('/etcdops/snapshot/marker', 'written before the snapshot')
        delete(client, b'/etcdops/snapshot/k00')
        cluster_id, order, unhealthy = candidates(client, 'follower')
        saved = save(client, order, str(path), timeout=60)
        count = client.count()
    assert unhealthy == [] and len(order) == 3
    assert not order[0].is_leader and order[-1].is_leader
    assert saved['member'].name == order[0].name and saved['tried'][-1]['error'] is None
    assert cluster_id == order[0].status['cluster_id']
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot.db']

    status = assert_status_as_every_tool_says(path, cluster.line)
    assert status['sha256'] == saved['sha256'] and status['size'] == saved['size']
    assert status['live_keys'] == count['count']
    assert saved['status']['hash'] == status['hash'] and saved['status']['total_key'] == status['total_key']
    assert_the_stream_has_the_files_status(path, status)

    restored_count, marker = restore_and_count(cluster.line, path, str(tmp_path))
    assert restored_count['count'] == count['count']
    assert marker == b'written before the snapshot'


def run_etcd_snapshot(monkeypatch, args):
    """etcd_snapshot.main() in this process with these args: (failed, result)."""
    from ansible_collections.etcdops.etcd.plugins.modules import etcd_snapshot
    from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
        ModuleExit, capture_exit, module_args,
    )
    capture_exit(monkeypatch)
    with module_args(args):
        with pytest.raises(ModuleExit) as caught:
            etcd_snapshot.main()
    return caught.value.failed, caught.value.result


def test_restore_with_the_plans_status_leaves_the_trailer_check_to_the_lines_tool(
        line, cluster_factory, tmp_path, monkeypatch):
    """restore.yml gives the restore step its plan's status (verified_status), so the module does not read the
    snapshot again and relies on the line's own tool checking the sha256 trailer (part of the fingerprint). With
    the real tool: a file changed in its middle since the plan (same size and ends, so the same fingerprint) is
    refused with nothing changed; the file as planned restores with the plan's status, unread."""
    from ansible_collections.etcdops.etcd.plugins.modules.etcd_snapshot import STATUS_FIELDS
    from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import file_fingerprint
    from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import listing
    cluster = cluster_factory(line, size=1)
    path = tmp_path / 'snapshot.db'
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(400):
            client.put('/etcdops/plan/k%03d' % index, 'v' * 1000)
        save(client, candidates(client, 'follower')[1], str(path), timeout=60)
    size = path.stat().st_size
    assert size > 4 * 65536, size  # the flipped byte below lies outside the fingerprint's first 64 KiB
    tools = etcd_tools(cluster.line)
    host = tmp_path / 'host'
    (host / 'manifests').mkdir(parents=True)
    (host / 'parked').mkdir()
    data_dir = host / 'etcd'
    (data_dir / 'member').mkdir(parents=True)
    (data_dir / 'member' / 'old').write_bytes(b'old data')
    peer = 'http://127.0.0.1:%d' % free_port()
    args = dict(state='restored', path=str(path), data_dir=str(data_dir), manifests_dir=str(host / 'manifests'),
                parking_dir=str(host / 'parked'), etcdutl=tools['etcdutl'] or tools['etcdctl'], name='r1',
                initial_cluster='r1=' + peer, initial_advertise_peer_urls=peer, initial_cluster_token='plan')
    failed, plan = run_etcd_snapshot(monkeypatch, dict(args, _ansible_check_mode=True))
    assert not failed and plan['changed'] and plan['database_walked'], plan
    verified = dict((field, plan[field]) for field in STATUS_FIELDS + ('fingerprint',))

    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[size // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert file_fingerprint(str(path)) == plan['fingerprint']
    before = listing(host)
    failed, refused = run_etcd_snapshot(monkeypatch, dict(args, verified_status=verified))
    assert failed and refused['error_kind'] == 'snapshot_changed', refused
    assert 'was not touched' in refused['msg'] and listing(host) == before

    path.write_bytes(original)
    failed, done = run_etcd_snapshot(monkeypatch, dict(args, verified_status=verified))
    assert not failed and done['restored'] and not done['database_walked'], done
    assert done['sha256'] == plan['sha256'] and done['revision'] == plan['revision'], done
    assert os.path.getsize(str(data_dir / 'member' / 'snap' / 'db')) > 0
    with open(os.path.join(done['moved_to'], 'member', 'old'), 'rb') as handle:
        assert handle.read() == b'old data'
    failed, again = run_etcd_snapshot(monkeypatch, dict(args, verified_status=verified))
    assert not failed and not again['changed'], again


def test_the_leader_and_a_named_member_serve_when_asked(cluster, tmp_path):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        dummy, order, dummy = candidates(client, 'leader')
        assert order[0].is_leader
        saved = save(client, order[:1], str(tmp_path / 'leader.db'), timeout=60)
        assert saved['member'].is_leader
        dummy, order, dummy = candidates(client, 'm3')
        saved = save(client, order, str(tmp_path / 'm3.db'), timeout=60)
    assert saved['member'].name == 'm3' and saved['member'].endpoint == cluster.endpoints[2]
    assert snapshot_status(str(tmp_path / 'm3.db'))['trailer'] == 'valid'


# -- a large snapshot, and a member killed while it streams ---------------------------------------------

class KillWhileStreaming(EtcdClient):
    """The real client; once `after` bytes of a snapshot have arrived from a member in `victims`, that member's
    etcd process gets SIGKILL (from the reading thread, so the moment is known)."""

    def __init__(self, cluster, victims, after, **kwargs):
        super(KillWhileStreaming, self).__init__(cluster.endpoints, **kwargs)
        self.cluster = cluster
        self.victims = set(victims)
        self.after = after
        self.killed = []

    def snapshot(self, endpoint, timeout=None):
        member = [m for m in self.cluster.members if self.cluster.client_url(m) == endpoint][0]
        received = 0
        for blob, remaining in super(KillWhileStreaming, self).snapshot(endpoint, timeout=timeout):
            yield blob, remaining
            received += len(blob)
            if member['name'] in self.victims and member['name'] not in self.killed and received >= self.after:
                self.killed.append(member['name'])
                self.cluster.stop_member(member, signal.SIGKILL)


@pytest.fixture(scope='module', params=LINES)
def big_cluster(request, module_cluster_factory):
    """A cluster of one line holding a few hundred MB; shared by the tests below, which kill its members."""
    if etcd_tools(request.param) is None:
        pytest.skip('no etcd %s binary on this machine' % request.param)
    cluster = module_cluster_factory(request.param, extra_args=['--quota-backend-bytes', str(4 * 1024 ** 3)])
    with EtcdClient(cluster.endpoints, command_timeout=60, **cluster.tls()) as client:
        started = time.time()
        cluster.live_keys = fill(client)
        cluster.fill_seconds = time.time() - started
    yield cluster
    cluster.close()  # before the next line's cluster fills: one big cluster at a time


def test_a_large_snapshot_reads_as_every_tool_says(big_cluster, tmp_path):
    path = tmp_path / 'big.db'
    with EtcdClient(big_cluster.endpoints, **big_cluster.tls()) as client:
        dummy, order, dummy = candidates(client, 'follower')
        saved = save(client, order, str(path), timeout=300)
    assert saved['size'] > 200 * 1000 * 1000
    started = time.time()
    status = assert_status_as_every_tool_says(path, big_cluster.line)
    print('etcd %s: %d MB snapshot streamed in %.1f s (%.0f MB/s), in place with its status after %.1f s; ours and '
          'every line\'s tool agreed in %.1f s (crc32c: %s)' % (
              big_cluster.line, saved['size'] / 1e6, saved['stream_seconds'], saved['size'] / 1e6 /
              saved['stream_seconds'], saved['seconds'], time.time() - started, _snapshot.CRC32C_IMPLEMENTATION))
    assert status['live_keys'] == big_cluster.live_keys
    assert status['entries'] > status['live_keys']  # revisions of overwritten values and tombstones remain
    assert_the_stream_has_the_files_status(path, status)


def assert_the_stream_has_the_files_status(path, status):
    """What a backup reads: the status of the snapshot's bytes as they stream (here in pieces that are not
    aligned to its pages), without a file: the same as the file's, field by field."""
    with open(str(path), 'rb') as handle:
        tee = StreamStatus(iter(lambda: handle.read(32 * 1024 + 7), b''), source=str(path))
        for dummy in tee:
            pass
    streamed = tee.status()
    for field in ('hash', 'hashkv', 'revision', 'total_key', 'live_keys', 'entries', 'total_size', 'version'):
        assert streamed[field] == status[field], field


def test_the_member_killed_mid_stream_hands_over_to_the_next(big_cluster, tmp_path):
    path = tmp_path / 'snapshot.db'
    with KillWhileStreaming(big_cluster, victims=['m1', 'm2', 'm3'], after=8 * 1024 * 1024,
                            **big_cluster.tls()) as client:
        dummy, order, dummy = candidates(client, 'follower')
        client.victims = set([order[0].name])  # only the member chosen first dies
        saved = save(client, order, str(path), timeout=300)
    assert client.killed == [order[0].name]
    assert [t['name'] for t in saved['tried']] == [order[0].name, order[1].name]
    assert saved['tried'][0]['error'] and order[0].endpoint in saved['tried'][0]['error']
    assert 'certificate' not in saved['tried'][0]['error']  # a member killed mid-stream is not a TLS problem
    assert saved['member'].name == order[1].name
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot.db']  # no temporary file left beside it
    status = snapshot_status(str(path))
    assert status['trailer'] == 'valid' and status['live_keys'] == big_cluster.live_keys
    own = tool_status(big_cluster.line, path)
    assert (status['hash'], status['revision'], status['total_key']) == (own['hash'], own['revision'],
                                                                         own['totalKey'])


def test_the_last_member_killed_mid_stream_fails_clearly_and_leaves_nothing(big_cluster, tmp_path):
    path = tmp_path / 'snapshot.db'
    path.write_bytes(b'the previous snapshot')
    alive = [m for m in big_cluster.members if m['process'].poll() is None]
    assert len(alive) >= 2, 'the test before left two members running'
    with KillWhileStreaming(big_cluster, victims=[alive[0]['name']], after=8 * 1024 * 1024,
                            **big_cluster.tls()) as client:
        dummy, order, dummy = candidates(client, alive[0]['name'])
        with pytest.raises(SnapshotError) as caught:
            save(client, order[:1], str(path), timeout=300)  # only that member may serve
    assert caught.value.kind == 'all_failed' and alive[0]['name'] in caught.value.msg
    assert big_cluster.client_url(alive[0]) in caught.value.msg
    assert sorted(os.listdir(str(tmp_path))) == ['snapshot.db']
    assert path.read_bytes() == b'the previous snapshot'
