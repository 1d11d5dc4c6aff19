# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_cluster_info with the client mocked: a healthy cluster, one member down, nobody answering."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


import pytest
import yaml


from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError, EtcdUnreachableError
from ansible_collections.etcdops.etcd.plugins.modules import etcd_cluster_info
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import ModuleExit, capture_exit, module_args

M1, M2, M3 = '8e9e05c52164694d', 'fd422379fda50e48', '91bc3c398fb3c146'


@pytest.fixture(autouse=True)
def exit_capture(monkeypatch):
    return capture_exit(monkeypatch)


def member(member_id, name, port, learner=False):
    return dict(id=member_id, name=name, peer_urls=['https://10.0.0.%d:2380' % port],
                client_urls=['https://10.0.0.%d:2379' % port] if name else [], is_learner=learner)


def status(url, member_id, leader=M1, errors=()):
    return dict(endpoint=url, member_id=member_id, cluster_id='cdf818194e3a8c32', revision=42, version='3.5.21',
                db_size=2 ** 20, db_size_in_use=2 ** 19, leader=leader, raft_index=100, raft_term=3,
                raft_applied_index=100, is_learner=False, errors=list(errors), storage_version=None, db_size_quota=None)


class FakeClient(object):
    """Answers like EtcdClient; `down` maps a client URL to the kind of error it raises."""

    def __init__(self, members=None, down=None, alarms=None, alarm_error=None, leaders=None, listing_error=None):
        self.members = members or [member(M1, 'master-1', 1), member(M2, 'master-2', 2), member(M3, 'master-3', 3)]
        self.down = down or {}
        self.alarms = alarms or []
        self.alarm_error = alarm_error
        self.leaders = leaders or {}
        self.listing_error = listing_error
        self.answered = None
        self.closed = False

    def member_list(self):
        if self.listing_error:
            raise self.listing_error
        self.answered = 'https://127.0.0.1:2379'
        return dict(cluster_id='cdf818194e3a8c32', members=[dict(m) for m in self.members])

    def status(self, url):
        if url in self.down:
            raise EtcdClientError('%s: connection refused: nothing listens' % url, kind=self.down[url], endpoint=url)
        found = [m for m in self.members if url in m['client_urls']][0]
        return status(url, found['id'], leader=self.leaders.get(url, M1))

    def alarm_list(self):
        if self.alarm_error:
            raise self.alarm_error
        return self.alarms

    def close(self):
        self.closed = True


def run(monkeypatch, client, used=True, **args):
    monkeypatch.setattr(etcd_cluster_info, 'client_from_module', lambda module: client)
    with module_args(args):
        with pytest.raises(ModuleExit) as caught:
            etcd_cluster_info.main()
    assert client.closed == used
    return caught.value


def documented_keys():
    doc = yaml.safe_load(etcd_cluster_info.RETURN)
    return set(doc), set(doc['members']['contains'])


def test_healthy_cluster(monkeypatch):
    done = run(monkeypatch, FakeClient())
    result = done.result
    assert not done.failed
    assert result['changed'] is False
    assert result['healthy'] is True and result['problems'] == []
    assert (result['cluster_id'], result['leader'], result['member_count']) == ('cdf818194e3a8c32', M1, 3)
    assert [m['is_leader'] for m in result['members']] == [True, False, False]
    first = result['members'][0]
    assert first == dict(id=M1, name='master-1', peer_urls=['https://10.0.0.1:2380'],
                         client_urls=['https://10.0.0.1:2379'], is_learner=False, is_leader=True,
                         endpoint='https://10.0.0.1:2379', version='3.5.21', db_size=2 ** 20, db_size_in_use=2 ** 19,
                         raft_term=3, raft_index=100, raft_applied_index=100, errors=[])
    assert result['alarms'] == [] and result['endpoint'] == 'https://127.0.0.1:2379'


def test_every_returned_key_is_documented(monkeypatch):
    top, per_member = documented_keys()
    down = FakeClient(down={'https://10.0.0.2:2379': 'connection_refused'},
                      alarm_error=EtcdClientError('x: etcdserver: no leader', kind='no_leader'))
    for client in (FakeClient(), down):
        result = run(monkeypatch, client).result
        assert set(result) - {'changed'} <= top
        for entry in result['members']:
            assert set(entry) <= per_member
    assert top - set(result) - {'changed'} == set()  # the failing case returns every documented key


def test_one_member_down_is_reported_and_the_others_complete(monkeypatch):
    done = run(monkeypatch, FakeClient(down={'https://10.0.0.2:2379': 'connection_refused'}))
    assert not done.failed
    result = done.result
    down = result['members'][1]
    assert down['error'] == 'https://10.0.0.2:2379: connection refused: nothing listens'
    assert 'version' not in down and down['is_leader'] is False
    assert [m.get('version') for m in result['members']] == ['3.5.21', None, '3.5.21']
    assert result['healthy'] is False
    assert result['problems'] == ['member master-2 (%s) did not answer: https://10.0.0.2:2379: connection refused: '
                                  'nothing listens' % M2]


def test_fail_on_unhealthy_fails_and_still_returns_the_members(monkeypatch):
    done = run(monkeypatch, FakeClient(down={'https://10.0.0.2:2379': 'connection_refused'}), fail_on_unhealthy=True)
    assert done.failed
    assert done.result['msg'].startswith('etcd cluster is not healthy: member master-2 (%s) did not answer' % M2)
    assert len(done.result['members']) == 3 and done.result['changed'] is False


def test_fail_on_unhealthy_passes_a_healthy_cluster(monkeypatch):
    assert not run(monkeypatch, FakeClient(), fail_on_unhealthy=True).failed


def test_no_endpoint_answers(monkeypatch):
    errors = [EtcdClientError('https://127.0.0.1:2379: connection refused: nothing listens on 127.0.0.1:2379',
                              kind='connection_refused')]
    done = run(monkeypatch, FakeClient(listing_error=EtcdUnreachableError(errors * 2)))
    assert done.failed
    assert done.result['msg'] == ('could not read the etcd cluster: no etcd endpoint answered (2 tried): '
                                  'https://127.0.0.1:2379: connection refused: nothing listens on 127.0.0.1:2379; '
                                  'https://127.0.0.1:2379: connection refused: nothing listens on 127.0.0.1:2379')
    assert done.result['error_kind'] == 'unreachable_all'


def test_active_alarm_makes_it_unhealthy(monkeypatch):
    done = run(monkeypatch, FakeClient(alarms=[dict(member_id=M3, alarm='NOSPACE')]))
    assert done.result['alarms'] == [dict(member_id=M3, alarm='NOSPACE')]
    assert done.result['problems'] == ['alarm NOSPACE is active on member %s' % M3]


def test_alarms_unreadable_without_leader(monkeypatch):
    client = FakeClient(alarm_error=EtcdClientError('https://127.0.0.1:2379: etcdserver: no leader', kind='no_leader'),
                        leaders={'https://10.0.0.1:2379': None, 'https://10.0.0.2:2379': None,
                                 'https://10.0.0.3:2379': None})
    result = run(monkeypatch, client).result
    assert result['leader'] is None and result['alarms'] == []
    assert result['alarm_error'] == 'https://127.0.0.1:2379: etcdserver: no leader'
    assert 'no member that answered sees a leader' in result['problems']


def test_members_disagreeing_on_the_leader(monkeypatch):
    result = run(monkeypatch, FakeClient(leaders={'https://10.0.0.3:2379': M3})).result
    assert result['leader'] == M1
    assert 'members disagree on the leader: %s, %s' % tuple(sorted([M1, M3])) in result['problems']


def test_learner_not_started_yet(monkeypatch):
    members = [member(M1, 'master-1', 1), member(M2, 'master-2', 2), member(M3, '', 4, learner=True)]
    result = run(monkeypatch, FakeClient(members=members)).result
    learner = result['members'][2]
    assert learner['is_learner'] is True
    assert learner['error'] == 'member has no client URL: it was added but has not started or joined yet'
    assert 'member (not started) (%s) did not answer' % M3 in result['problems'][0]


def test_check_mode_reads_the_same(monkeypatch):
    done = run(monkeypatch, FakeClient(), _ansible_check_mode=True)
    assert not done.failed and done.result['changed'] is False and done.result['healthy'] is True


def test_user_without_password_is_refused(monkeypatch):
    done = run(monkeypatch, FakeClient(), used=False, user='root')
    assert done.failed
    assert 'parameters are required together: user, password' in done.result['msg']


def test_missing_library(monkeypatch):
    monkeypatch.setattr(_client, 'HAS_ETCD_CLIENT', False)
    monkeypatch.setattr(_client, 'ETCD_CLIENT_IMPORT_ERROR', 'Traceback: No module named grpc')
    with module_args({}):
        with pytest.raises(ModuleExit) as caught:
            etcd_cluster_info.main()
    assert caught.value.failed
    assert 'etcd-sdk-python' in caught.value.result['msg']
    assert caught.value.result['exception'] == 'Traceback: No module named grpc'


def test_bad_tls_file_is_named_before_connecting(monkeypatch, tmp_path):
    if not _client.HAS_ETCD_CLIENT:
        pytest.skip('etcd-sdk-python, grpcio or protobuf missing')
    with module_args(dict(ca_cert=str(tmp_path / 'ca.crt'))):
        with pytest.raises(ModuleExit) as caught:
            etcd_cluster_info.main()
    assert caught.value.failed
    assert caught.value.result['msg'] == '%s (ca_cert) does not exist' % (tmp_path / 'ca.crt')
