# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_member with the client mocked: replace a failed member as the runbook does (remove it, add the new one
as a learner, promote it once it has caught up), idempotence, check mode, and the quorum refusals."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import yaml

from ansible_collections.etcdops.etcd.plugins.modules import etcd_member
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
    IDS,
    NEW_ID,
    FakeClient,
    capture_exit,
    cluster,
    member,
    rpc_error,
    run,
)

NEW_PEER = 'https://10.0.0.14:2380'
NOT_IN_SYNC = 'etcdserver: can only promote a learner member which is in sync with leader'


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    capture_exit(monkeypatch)
    monkeypatch.setattr(etcd_member, 'RETRY_INTERVAL', 0.01)
    monkeypatch.setattr(etcd_member, 'RECONFIG_SETTLE_SECONDS', 0.2)


def member_run(monkeypatch, client, **args):
    done = run(monkeypatch, etcd_member, client, **args)
    assert client.closed
    return done


def documented():
    doc = yaml.safe_load(etcd_member.RETURN)
    return set(doc), set(doc['member']['contains'])


def check_documented(result):
    top, per_member = documented()
    assert set(result) - {'changed', 'diff', 'error_kind', 'msg'} <= top, set(result) - top
    if result.get('member'):
        assert set(result['member']) == per_member


# -- adding --------------------------------------------------------------------------------------------

def test_new_member_is_added_as_a_learner_with_what_its_manifest_needs(monkeypatch):
    client = FakeClient()
    done = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER])
    result = done.result
    assert not done.failed, result['msg']
    assert client.changes == [('add', [NEW_PEER], True)]
    assert result['changed'] is True and result['actions'] == ['add as learner']
    assert result['member'] == dict(id=NEW_ID, name='', peer_urls=[NEW_PEER], client_urls=[], is_learner=True)
    assert result['initial_cluster'] == ('master-1=https://10.0.0.11:2380,master-2=https://10.0.0.12:2380,'
                                         'master-3=https://10.0.0.13:2380,master-4=' + NEW_PEER)
    assert result['initial_cluster_state'] == 'existing'
    assert len(result['members_before']) == 3 and len(result['members_after']) == 4
    assert result['msg'] == ('member master-4 added as a learner: start it with initial_cluster and '
                             'initial_cluster_state=existing, then run this task again to promote it')
    check_documented(result)


def test_running_again_before_it_starts_changes_nothing_and_still_gives_initial_cluster(monkeypatch):
    client = FakeClient(members=cluster(3) + [member(4, started=False, learner=True)])
    result = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER]).result
    assert client.changes == [] and result['changed'] is False
    assert result['initial_cluster'].endswith(',master-4=' + NEW_PEER)
    assert 'is a learner that has not started yet: start it' in result['msg']


def test_started_learner_is_promoted_once_in_sync(monkeypatch):
    not_ready = [rpc_error('other', NOT_IN_SYNC)] * 3
    client = FakeClient(members=cluster(4, learners=(4,)), failures={'member_promote': not_ready})
    done = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER], promote_timeout=5)
    assert not done.failed, done.result['msg']
    assert client.changes == [('promote', IDS[3])]
    assert done.result['actions'] == ['promote to voting member']
    assert done.result['member']['is_learner'] is False
    assert client.failures['member_promote'] == []  # it was refused three times before


def test_learner_that_never_catches_up_fails_after_promote_timeout(monkeypatch):
    client = FakeClient(members=cluster(4, learners=(4,)),
                        failures={'member_promote': [rpc_error('other', NOT_IN_SYNC)] * 1000})
    done = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER], promote_timeout=0.1)
    assert done.failed
    assert done.result['msg'] == ('etcd member change failed: member master-4 (%s) has not caught up with the leader '
                                  'within 0.1s (promote_timeout): it stays a learner; check its log and its peer '
                                  'connectivity, then run the task again' % IDS[3])
    assert done.result['error_kind'] == 'learner_not_ready' and done.result['changed'] is False


def test_learner_stays_a_learner_with_promote_false(monkeypatch):
    client = FakeClient(members=cluster(4, learners=(4,)))
    result = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER], promote=False).result
    assert client.changes == [] and result['changed'] is False
    assert result['msg'] == 'member master-4 is present as a learner: nothing to change'


def test_present_voting_member_is_no_change(monkeypatch):
    client = FakeClient()
    result = member_run(monkeypatch, client, name='master-2', peer_urls=['https://10.0.0.12:2380']).result
    assert client.changes == [] and result['changed'] is False and result['actions'] == []
    assert result['members_after'] == result['members_before']
    assert result['msg'] == 'member master-2 is present as a voting member: nothing to change'


def test_other_peer_urls_update_the_member(monkeypatch):
    client = FakeClient()
    urls = ['https://10.0.1.12:2380']
    result = member_run(monkeypatch, client, name='master-2', peer_urls=urls, _ansible_diff=True).result
    assert client.changes == [('update', IDS[1], urls)]
    assert result['actions'] == ['update peer URLs'] and result['member']['peer_urls'] == urls
    assert '%s master-2 https://10.0.0.12:2380\n' % IDS[1] in result['diff']['before']
    assert '%s master-2 https://10.0.1.12:2380\n' % IDS[1] in result['diff']['after']


def test_voting_add_is_refused_when_the_healthy_members_would_not_be_a_quorum(monkeypatch):
    client = FakeClient(down={IDS[2]})
    done = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER], learner=False)
    assert done.failed and client.changes == []
    assert done.result['msg'].startswith('adding a voting member makes 4 voting members, whose quorum of 3 needs the '
                                         'new member before it has started: only 2 are healthy')
    assert done.result['msg'].endswith('; force=true skips this check')
    forced = FakeClient(down={IDS[2]})
    assert not member_run(monkeypatch, forced, name='master-4', peer_urls=[NEW_PEER], learner=False,
                          force=True).failed
    assert forced.changes == [('add', [NEW_PEER], False)]


def test_learner_add_needs_no_quorum_check(monkeypatch):
    client = FakeClient(down={IDS[1], IDS[2]})
    assert not member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER]).failed


def test_etcd_unhealthy_cluster_refusal_is_retried_then_reported(monkeypatch):
    unhealthy = rpc_error('unhealthy_cluster', 'etcdserver: unhealthy cluster')
    client = FakeClient(failures={'member_add': [unhealthy, unhealthy]})
    assert not member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER]).failed
    assert client.changes == [('add', [NEW_PEER], True)]

    client = FakeClient(failures={'member_add': [unhealthy] * 1000})
    done = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER])
    assert done.failed and done.result['error_kind'] == 'unhealthy_cluster'
    assert done.result['msg'] == 'etcd member change failed: https://10.0.0.11:2379: etcdserver: unhealthy cluster'


def test_other_errors_are_not_retried(monkeypatch):
    client = FakeClient(failures={'member_add': [rpc_error('other', 'etcdserver: Peer URLs already exists'),
                                                 AssertionError('called twice')]})
    done = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER])
    assert done.failed and 'Peer URLs already exists' in done.result['msg']


def test_adding_needs_a_name(monkeypatch):
    done = member_run(monkeypatch, FakeClient(), peer_urls=[NEW_PEER])
    assert done.failed
    assert done.result['msg'] == ('no member has peer URLs %s, and name is needed to add one (the new member starts '
                                  'with that name)' % NEW_PEER)


def test_present_needs_peer_urls(monkeypatch):
    client = FakeClient()
    done = run(monkeypatch, etcd_member, client, name='master-4')
    assert done.failed and 'state is present but all of the following are missing: peer_urls' in done.result['msg']


def test_a_name_and_a_peer_url_of_two_members_is_refused(monkeypatch):
    client = FakeClient()
    done = member_run(monkeypatch, client, name='master-2', peer_urls=['https://10.0.0.13:2380'])
    assert done.failed and client.changes == []
    assert done.result['msg'].startswith('the name master-2 is member master-2')


# -- removing ------------------------------------------------------------------------------------------

def test_failed_member_is_removed_when_the_two_others_are_healthy(monkeypatch):
    client = FakeClient(down={IDS[0]})
    done = member_run(monkeypatch, client, name='master-1', state='absent')
    assert not done.failed, done.result['msg']
    assert client.changes == [('remove', IDS[0])]
    result = done.result
    assert result['changed'] is True and result['member'] is None and result['actions'] == ['remove']
    assert [m['name'] for m in result['members_after']] == ['master-2', 'master-3']
    assert 'initial_cluster' not in result and result['msg'] == 'member master-1 removed'
    check_documented(result)


def test_removal_that_breaks_quorum_is_refused_unless_forced(monkeypatch):
    client = FakeClient(down={IDS[0]})
    done = member_run(monkeypatch, client, name='master-2', state='absent')
    assert done.failed and client.changes == []
    assert done.result['msg'].startswith('removing member master-2 (%s) would leave 2 voting members of which 1 are '
                                         'healthy, fewer than the quorum of 2' % IDS[1])
    assert done.result['changed'] is False and len(done.result['members_before']) == 3
    forced = FakeClient(down={IDS[0]})
    assert not member_run(monkeypatch, forced, name='master-2', state='absent', force=True).failed
    assert forced.changes == [('remove', IDS[1])]


def test_a_member_without_a_leader_is_not_healthy(monkeypatch):
    client = FakeClient(leaderless={IDS[2]})
    done = member_run(monkeypatch, client, name='master-1', state='absent')
    assert done.failed and 'member master-3 (%s) sees no leader' % IDS[2] in done.result['msg']


def test_the_last_voting_member_is_never_removed(monkeypatch):
    client = FakeClient(members=cluster(1) + [member(2, learner=True)])
    done = member_run(monkeypatch, client, name='master-1', state='absent', force=True)
    assert done.failed and client.changes == []
    assert done.result['msg'].startswith('member master-1 (%s) is the last voting member' % IDS[0])


def test_learner_is_removed_without_health_checks(monkeypatch):
    client = FakeClient(members=cluster(4, learners=(4,)), down={IDS[1], IDS[2]})
    assert not member_run(monkeypatch, client, peer_urls=[NEW_PEER], state='absent').failed
    assert client.changes == [('remove', IDS[3])]


def test_a_member_not_started_is_removed_by_its_peer_url(monkeypatch):
    client = FakeClient(members=cluster(3) + [member(4, started=False, learner=True)])
    assert not member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER], state='absent').failed
    assert client.changes == [('remove', IDS[3])]


def test_absent_member_is_no_change(monkeypatch):
    client = FakeClient()
    result = member_run(monkeypatch, client, name='master-9', state='absent').result
    assert client.changes == [] and result['changed'] is False
    assert result['msg'] == 'member master-9 is not a member: nothing to remove'


# -- check mode ----------------------------------------------------------------------------------------

def test_check_mode_add_changes_nothing_and_predicts(monkeypatch):
    client = FakeClient()
    result = member_run(monkeypatch, client, name='master-4', peer_urls=[NEW_PEER], _ansible_check_mode=True).result
    assert client.changes == [] and result['changed'] is True
    assert result['member'] == dict(id=None, name='', peer_urls=[NEW_PEER], client_urls=[], is_learner=True)
    assert len(result['members_after']) == 4 and result['initial_cluster'].endswith('master-4=' + NEW_PEER)
    assert result['msg'] == 'member master-4: would add as learner'
    check_documented(result)


def test_check_mode_remove_and_promote(monkeypatch):
    client = FakeClient(down={IDS[0]})
    result = member_run(monkeypatch, client, name='master-1', state='absent', _ansible_check_mode=True).result
    assert client.changes == [] and result['changed'] is True
    assert [m['name'] for m in result['members_after']] == ['master-2', 'master-3']

    client = FakeClient(members=cluster(4, learners=(4,)))
    result = member_run(monkeypatch, client, name='master-4', peer_urls=['https://10.0.1.14:2380'],
                        _ansible_check_mode=True).result
    assert client.changes == []
    assert result['actions'] == ['update peer URLs', 'promote to voting member']
    assert result['member']['is_learner'] is False and result['member']['peer_urls'] == ['https://10.0.1.14:2380']


def test_check_mode_refuses_what_the_real_run_would(monkeypatch):
    client = FakeClient(down={IDS[0]})
    done = member_run(monkeypatch, client, name='master-2', state='absent', _ansible_check_mode=True)
    assert done.failed and 'would leave 2 voting members of which 1 are healthy' in done.result['msg']


def test_no_endpoint_answers(monkeypatch):
    client = FakeClient(failures={'member_list': [rpc_error('connection_refused', 'connection refused')]})
    done = member_run(monkeypatch, client, name='master-1', state='absent')
    assert done.failed and done.result['error_kind'] == 'connection_refused'
    assert done.result['msg'] == 'etcd member change failed: https://10.0.0.11:2379: connection refused'
