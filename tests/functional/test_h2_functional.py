# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP/2 snapshot reader (_h2) against real etcd members of every line: TLS with client certificates,
etcd's user/password auth, cleartext; the same bytes as grpcio reads; and where it gets nothing, grpcio's
words for why (the fallback in EtcdClient.snapshot)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client, _h2
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient, EtcdClientError
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import TrailerCheck, database_status

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')]


def read(client, endpoint, reader):
    """The whole snapshot through one reader, its sha256 trailer checked; (bytes, chunk count)."""
    client.snapshot_reader = reader
    checked = TrailerCheck(client.snapshot(endpoint, timeout=60))
    chunks = [bytes(chunk) for chunk in checked]
    assert checked.done
    return b''.join(chunks), len(chunks)


def same_database(ours, theirs, tmp_path):
    """Two snapshots of one member hold the same keys at the same revision (etcd may write its meta bucket in
    between: the files need not be equal byte for byte)."""
    statuses = []
    for name, data in (('ours.db', ours), ('theirs.db', theirs)):
        (tmp_path / name).write_bytes(data[:-32])
        status = database_status(str(tmp_path / name))
        statuses.append((status['revision'], status['live_keys'], status['hashkv']))
    assert statuses[0] == statuses[1]


def test_the_reader_streams_what_grpc_streams_over_tls(line, cluster_factory, tmp_path):
    cluster = cluster_factory(line, size=1)
    endpoint = cluster.endpoints[0]
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(200):
            client.put('/etcdops/h2/k%03d' % index, 'v' * 4000)
        ours, chunks = read(client, endpoint, 'http2')
        assert client.snapshot_fallback is None
        theirs, messages = read(client, endpoint, 'grpc')
    same_database(ours, theirs, tmp_path)
    assert len(ours) > 800 * 1024
    assert chunks < messages  # gathered into larger chunks: fewer steps after it


def test_with_etcd_auth_the_token_is_sent_and_a_refusal_is_told_by_grpc(line, cluster_factory):
    cluster = cluster_factory(line, size=1)
    cluster.etcdctl('user', 'add', 'root:rootpw')
    cluster.etcdctl('user', 'add', 'reader:readpw')
    cluster.etcdctl('user', 'grant-role', 'root', 'root')
    cluster.etcdctl('auth', 'enable')
    endpoint = cluster.endpoints[0]
    with EtcdClient(cluster.endpoints, user='root', password='rootpw', **cluster.tls()) as client:
        data, dummy = read(client, endpoint, 'http2')
        assert client.snapshot_fallback is None and len(data) > 0
    with EtcdClient(cluster.endpoints, user='reader', password='readpw', **cluster.tls()) as client:
        with pytest.raises(EtcdClientError) as caught:
            read(client, endpoint, 'http2')
        assert 'without sending any of the snapshot' in client.snapshot_fallback
    assert caught.value.kind == 'permission_denied' and "user 'reader'" in caught.value.msg


def test_a_wrong_ca_is_named_by_grpc_after_the_reader(cluster):
    with EtcdClient(cluster.endpoints[:1], **cluster.tls(ca_cert=cluster.pki['other_ca'])) as client:
        with pytest.raises(EtcdClientError) as caught:
            read(client, cluster.endpoints[0], 'http2')
        assert 'CERTIFICATE_VERIFY_FAILED' in client.snapshot_fallback
    assert caught.value.kind == 'server_cert_untrusted'


def test_plain_http_to_a_tls_member_is_named_by_grpc_after_the_reader(cluster):
    plain = cluster.endpoints[0].replace('https://', 'http://')
    with EtcdClient([plain], **cluster.tls()) as client:
        with pytest.raises(EtcdClientError) as caught:
            read(client, plain, 'http2')
        assert client.snapshot_fallback
    assert caught.value.kind == 'not_tls'


@pytest.fixture
def cleartext_member(line, tmp_path):
    """One etcd member of the line serving cleartext gRPC (http://), as etcd without TLS does (cmux)."""
    conftest = [module for module in list(sys.modules.values())
                if (getattr(module, '__file__', None) or '').endswith(os.path.join('functional', 'conftest.py'))][0]
    tools = conftest.etcd_tools(line)
    client_url = 'http://127.0.0.1:%d' % conftest.free_port()
    peer = 'http://127.0.0.1:%d' % conftest.free_port()
    with open(str(tmp_path / 'etcd.log'), 'ab') as log:
        process = subprocess.Popen([tools['etcd'], '--name', 'c1', '--data-dir', str(tmp_path / 'data'),
                                    '--listen-client-urls', client_url, '--advertise-client-urls', client_url,
                                    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
                                    '--initial-cluster', 'c1=' + peer], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with EtcdClient([client_url], pki_dir='/nonexistent') as client:
                    client.put('/etcdops/h2/cleartext', 'x' * 100)
                break
            except EtcdClientError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.3)
        yield client_url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_cleartext_http2_with_prior_knowledge(cleartext_member, tmp_path):
    with EtcdClient([cleartext_member], pki_dir='/nonexistent') as client:
        ours, dummy = read(client, cleartext_member, 'http2')
        assert client.snapshot_fallback is None
        theirs, dummy = read(client, cleartext_member, 'grpc')
    same_database(ours, theirs, tmp_path)


def test_a_member_stopped_mid_stream_is_a_broken_stream_not_a_fallback(line, cluster_factory):
    cluster = cluster_factory(line, size=1)
    endpoint = cluster.endpoints[0]
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(300):
            client.put('/etcdops/h2/big%03d' % index, os.urandom(30000))
        received = 0
        with pytest.raises(EtcdClientError) as caught:
            for chunk, dummy in client.snapshot(endpoint, timeout=60):
                received += len(chunk)
                if received >= 1024 * 1024 and cluster.members[0]['process'].poll() is None:
                    cluster.stop_member(cluster.members[0])
        assert client.snapshot_fallback is None
    assert caught.value.kind == 'stream_broken' and 'broke after' in caught.value.msg


def test_the_reader_reads_in_large_pieces(line, cluster_factory):
    """What the reader is for: a few large reads per snapshot, not one per TLS record (see _h2.PlainPipe)."""
    cluster = cluster_factory(line, size=1)
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(100):
            client.put('/etcdops/h2/r%03d' % index, os.urandom(20000))
        call = client._h2_call(client._endpoint(cluster.endpoints[0]), 60)  # pylint: disable=protected-access
        size = sum(len(chunk) for chunk, dummy in call)
    assert size > 2 * 1024 * 1024 and call.frames > 0
    assert call.received == size
    assert isinstance(call, _h2.SnapshotCall)
