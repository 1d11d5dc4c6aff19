# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection layer against real etcd members (3.4 to 3.7) on loopback with TLS: what an operator sees."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient, EtcdClientError
from ansible_collections.etcdops.etcd.plugins.modules.etcd_cluster_info import cluster_info

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')]


def wait_for(check, timeout=20, interval=0.3):
    deadline = time.time() + timeout
    while True:
        try:
            return check()
        except (AssertionError, EtcdClientError):
            if time.time() > deadline:
                raise
        time.sleep(interval)


def dead_endpoint():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return 'https://127.0.0.1:%d' % probe.getsockname()[1]


# -- a healthy cluster ------------------------------------------------------------------------------

def test_member_list_shows_three_voting_members(cluster):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        listing = client.member_list()
    assert sorted(m['name'] for m in listing['members']) == ['m1', 'm2', 'm3']
    assert [m['is_learner'] for m in listing['members']] == [False] * 3
    assert sorted(u for m in listing['members'] for u in m['client_urls']) == sorted(cluster.endpoints)
    assert all(int(m['id'], 16) for m in listing['members'])


def test_status_of_each_member(cluster):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        client.put('/etcdops/status', 'x')
        statuses = client.statuses()
        members = dict((m['id'], m['name']) for m in client.member_list()['members'])
    assert [s['endpoint'] for s in statuses] == cluster.endpoints
    assert len(set(s['leader'] for s in statuses)) == 1
    assert statuses[0]['leader'] in members
    assert sum(s['member_id'] == s['leader'] for s in statuses) == 1
    for status in statuses:
        assert status['version'].startswith(cluster.line + '.')
        assert 0 < status['db_size_in_use'] <= status['db_size']
        assert status['raft_applied_index'] > 0 and status['raft_term'] > 0 and status['raft_index'] > 0
        assert status['is_learner'] is False and status['errors'] == []
        assert len(set(s['cluster_id'] for s in statuses)) == 1
    if cluster.line >= '3.6':
        assert statuses[0]['storage_version'] and statuses[0]['db_size_quota'] > 0


def test_no_alarms(cluster):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        assert client.alarm_list() == []


def test_unreachable_member_is_reported_with_its_error(cluster):
    dead = dead_endpoint()
    with EtcdClient(cluster.endpoints + [dead], **cluster.tls()) as client:
        statuses = client.statuses()
    assert all('version' in s for s in statuses[:3])
    assert statuses[3]['endpoint'] == dead and statuses[3]['error_kind'] == 'connection_refused'
    assert statuses[3]['error'].startswith(dead + ': connection refused')


def test_failover_goes_to_the_next_endpoint_and_stays(cluster):
    dead = dead_endpoint()
    with EtcdClient([dead] + cluster.endpoints[1:], **cluster.tls()) as client:
        assert len(client.member_list()['members']) == 3
        assert client.answered == cluster.endpoints[1]
        assert client.count('/')['count'] >= 0
        assert client.answered == cluster.endpoints[1]


def test_wrong_ca_names_the_ca_file(cluster):
    with EtcdClient(cluster.endpoints[:1], **cluster.tls(ca_cert=cluster.pki['other_ca'])) as client:
        with pytest.raises(EtcdClientError) as caught:
            client.member_list()
    assert caught.value.kind == 'server_cert_untrusted'
    assert 'not signed by the CA in %s (ca_cert)' % cluster.pki['other_ca'] in str(caught.value)
    assert str(caught.value).startswith(cluster.endpoints[0])


def test_client_certificate_of_another_ca_is_named(cluster):
    tls = cluster.tls(client_cert=cluster.pki['rogue_cert'], client_key=cluster.pki['rogue_key'])
    with EtcdClient(cluster.endpoints[:1], **tls) as client:
        with pytest.raises(EtcdClientError) as caught:
            client.status(cluster.endpoints[0])
    assert caught.value.kind == 'client_cert_rejected'
    assert 'rejected the client certificate %s (client_cert)' % cluster.pki['rogue_cert'] in str(caught.value)


def test_no_client_certificate(cluster):
    with EtcdClient(cluster.endpoints[:1], ca_cert=cluster.pki['ca'], pki_dir='/nonexistent') as client:
        with pytest.raises(EtcdClientError) as caught:
            client.member_list()
    assert caught.value.kind == 'client_cert_rejected'
    assert 'requires a client certificate: set client_cert and client_key' in str(caught.value)


def test_plain_http_to_a_tls_member(cluster):
    plain = cluster.endpoints[0].replace('https://', 'http://')
    with EtcdClient([plain], **cluster.tls()) as client:
        with pytest.raises(EtcdClientError) as caught:
            client.member_list()
    assert caught.value.kind == 'not_tls'
    assert 'use %s' % cluster.endpoints[0] in str(caught.value)


def test_missing_ca_file_is_named(cluster, tmp_path):
    with pytest.raises(EtcdClientError) as caught:
        EtcdClient(cluster.endpoints, **cluster.tls(ca_cert=str(tmp_path / 'ca.crt')))
    assert str(caught.value) == '%s (ca_cert) does not exist' % (tmp_path / 'ca.crt')


def test_kubeadm_files_are_the_defaults(cluster):
    with EtcdClient(cluster.endpoints[:1], pki_dir=cluster.pki['dir']) as client:
        assert client.tls.client_cert == os.path.join(cluster.pki['dir'], 'healthcheck-client.crt')
        assert len(client.member_list()['members']) == 3


def test_keys_and_hashes_agree_on_every_member(cluster):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(50):
            revision = client.put('/etcdops/hash/%03d' % index, 'value-%d' % index)
        assert client.get('/etcdops/hash/007') == b'value-7'
        assert client.count('/etcdops/hash/')['count'] == 50
        hashes = []

        def every_member_hashed():
            # A follower may not have applied the last put yet ("required revision is a future revision").
            hashes[:] = [client.hashkv(endpoint, revision) for endpoint in cluster.endpoints]
            return True
        wait_for(every_member_hashed)
    assert len(set(h['hash'] for h in hashes)) == 1
    assert len(set(h['member_id'] for h in hashes)) == 3
    if cluster.line >= '3.6':
        assert hashes[0]['hash_revision'] == revision


def test_compaction_keeps_the_keys(cluster):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        revision = client.put('/etcdops/compact', 'x')
        client.compact(revision, physical=True)
        assert client.get('/etcdops/compact') == b'x'

        def compacted_everywhere():
            for endpoint in cluster.endpoints:
                assert client.hashkv(endpoint)['compact_revision'] >= revision
        wait_for(compacted_everywhere)


def test_snapshot_streams_a_database_that_etcd_tools_read(cluster, tmp_path):
    path = tmp_path / 'snapshot.db'
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        client.put('/etcdops/snapshot', 'x')
        remaining = []
        with open(str(path), 'wb') as handle:
            for blob, left in client.snapshot(cluster.endpoints[1], timeout=60):
                handle.write(blob)
                remaining.append(left)
    assert remaining[-1] == 0 and path.stat().st_size > 0
    tool = cluster.tools['etcdutl'] or cluster.tools['etcdctl']
    out = subprocess.run([tool, 'snapshot', 'status', str(path), '-w', 'json'], env=dict(os.environ, ETCDCTL_API='3'),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout
    assert b'"totalKey"' in out


def test_defragment_one_member(cluster):
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        client.defragment(cluster.endpoints[2], timeout=60)
        status = client.status(cluster.endpoints[2])
    assert status['db_size_in_use'] <= status['db_size']


def test_cluster_info_of_a_healthy_cluster(cluster):
    with EtcdClient(cluster.endpoints[:1], **cluster.tls()) as client:
        info = cluster_info(client)
    assert info['healthy'] is True, info['problems']
    assert info['member_count'] == 3 and sum(m['is_leader'] for m in info['members']) == 1
    assert all(m['version'].startswith(cluster.line) for m in info['members'])


# -- a silent endpoint: the dial timeout, named ----------------------------------------------------

def test_silent_endpoint_hits_the_dial_timeout():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()) for dummy in range(8)], daemon=True).start()
    url = 'https://127.0.0.1:%d' % listener.getsockname()[1]
    started = time.time()
    try:
        with EtcdClient([url], dial_timeout=0.5, pki_dir='/nonexistent') as client:
            with pytest.raises(EtcdClientError) as caught:
                client.member_list()
    finally:
        listener.close()
    assert caught.value.kind == 'dial_timeout'
    assert str(caught.value).startswith('%s: no connection within 0.5s (dial_timeout)' % url)
    assert time.time() - started < 3


# -- failures that change the cluster: each test has its own ---------------------------------------

def test_members_down_then_quorum_lost(line, cluster_factory):
    cluster = cluster_factory(line)
    m1, m2, m3 = cluster.members
    cluster.stop_member(m3)
    with EtcdClient([cluster.endpoints[0]], **cluster.tls()) as client:
        info = cluster_info(client)
        down = [m for m in info['members'] if m['name'] == 'm3'][0]
        assert down['error'].startswith(cluster.endpoints[2] + ': connection refused')
        assert info['healthy'] is False and info['leader'] is not None
        assert [m['name'] for m in info['members'] if 'version' in m] != []

        cluster.stop_member(m2)

        def leaderless():
            with pytest.raises(EtcdClientError) as caught:
                client.alarm_list()
            assert caught.value.kind == 'no_leader', caught.value
            return caught.value

        error = wait_for(leaderless)
        assert 'etcdserver: no leader' in str(error)
        info = cluster_info(client)  # what is left still answers the member list and its own status
        assert info['leader'] is None and info['member_count'] == 3
        assert 'no member that answered sees a leader' in info['problems']
        assert info['alarm_error'].startswith(cluster.endpoints[0])


def test_paused_member_times_out_with_the_command_timeout(line, cluster_factory):
    cluster = cluster_factory(line)
    with EtcdClient(cluster.endpoints, command_timeout=1, **cluster.tls()) as client:
        client.status(cluster.endpoints[2])  # connected before the pause
        cluster.stop_member(cluster.members[2], sig=signal.SIGSTOP)
        try:
            with pytest.raises(EtcdClientError) as caught:
                client.status(cluster.endpoints[2])
        finally:
            cluster.stop_member(cluster.members[2], sig=signal.SIGCONT)
    assert caught.value.kind == 'timeout'
    assert str(caught.value).startswith('%s: no answer within 1.0s (command_timeout)' % cluster.endpoints[2])


def test_learner_is_added_promoted_and_removed(line, cluster_factory):
    cluster = cluster_factory(line)
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        learner = cluster._member('m4')
        # etcd refuses changes until the members have been connected for 5 seconds ('unhealthy cluster')
        added = wait_for(lambda: client.member_add([cluster.peer_url(learner)], is_learner=True))
        assert added['member']['is_learner'] is True and len(added['members']) == 4
        cluster.members.append(learner)
        cluster.start_member(learner, initial_cluster=cluster.initial_cluster(), state='existing')

        def learner_answers():
            status = client.status(cluster.client_url(learner))
            assert status['is_learner'] is True
            return status

        wait_for(learner_answers)
        listing = client.member_list()['members']
        assert [m['is_learner'] for m in listing if m['name'] == 'm4'] == [True]

        def promoted():
            return client.member_promote(added['member']['id'])

        members = wait_for(promoted)['members']
        assert [m['is_learner'] for m in members] == [False] * 4

        peer_urls = [cluster.peer_url(learner), 'https://localhost:%d' % learner['peer_port']]
        updated = client.member_update(added['member']['id'], peer_urls)['members']
        assert [sorted(m['peer_urls']) for m in updated if m['id'] == added['member']['id']] == [sorted(peer_urls)]

        client.member_remove(added['member']['id'])
        assert len(client.member_list()['members']) == 3


def test_auth_errors_name_the_user(line, cluster_factory):
    cluster = cluster_factory(line, size=1)
    cluster.etcdctl('user', 'add', 'root:rootpw')
    cluster.etcdctl('user', 'add', 'reader:readpw')
    cluster.etcdctl('role', 'add', 'readers')
    cluster.etcdctl('role', 'grant-permission', 'readers', 'read', '--prefix=true', '/etcdops/')
    cluster.etcdctl('user', 'grant-role', 'reader', 'readers')
    cluster.etcdctl('user', 'grant-role', 'root', 'root')
    cluster.etcdctl('auth', 'enable')
    endpoints = cluster.endpoints

    with EtcdClient(endpoints, user='root', password='rootpw', **cluster.tls()) as client:
        assert client.put('/etcdops/auth', 'x') > 0
    with EtcdClient(endpoints, user='root', password='wrong', **cluster.tls()) as client:
        with pytest.raises(EtcdClientError) as caught:
            client.get('/etcdops/auth')
    assert caught.value.kind == 'auth_failed'
    assert "authentication failed for user 'root'" in str(caught.value)
    with EtcdClient(endpoints, user='reader', password='readpw', **cluster.tls()) as client:
        assert client.get('/etcdops/auth') == b'x'
        with pytest.raises(EtcdClientError) as caught:
            client.put('/etcdops/auth', 'y')
    assert caught.value.kind == 'permission_denied'
    assert "permission denied for user 'reader'" in str(caught.value)
    with EtcdClient(endpoints, **cluster.tls()) as client:  # the certificate's CN is no etcd user
        with pytest.raises(EtcdClientError) as caught:
            client.get('/etcdops/auth')
    assert caught.value.kind == 'permission_denied'
    assert 'the user named by the CN of %s' % cluster.pki['cert'] in str(caught.value)


def test_nospace_alarm_is_listed_and_disarmed(line, cluster_factory):
    cluster = cluster_factory(line, size=1, extra_args=['--quota-backend-bytes', str(2 * 1024 * 1024)])
    with EtcdClient(cluster.endpoints, command_timeout=10, **cluster.tls()) as client:
        with pytest.raises(EtcdClientError) as caught:
            for index in range(200):
                client.put('/etcdops/fill/%d' % index, 'x' * 100 * 1024)
        assert caught.value.kind == 'no_space'
        member_id = client.status(cluster.endpoints[0])['member_id']
        assert client.alarm_list() == [dict(member_id=member_id, alarm='NOSPACE')]
        problems = cluster_info(client)['problems']
        assert 'alarm NOSPACE is active on member %s' % member_id in problems
        assert any(p.startswith('member m1 (%s) reports errors: ' % member_id) and 'NOSPACE' in p for p in problems)
        assert client.alarm_disarm() == [dict(member_id=member_id, alarm='NOSPACE')]
        assert client.alarm_list() == []
