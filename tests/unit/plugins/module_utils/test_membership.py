# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The quorum rule, checked against every cluster of 1 to 7 voting members and every number of healthy ones,
plus finding a member by name or peer URL and the --initial-cluster string."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import itertools

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _membership
from ansible_collections.etcdops.etcd.plugins.module_utils._membership import (
    MembershipError,
    blocking_refusal,
    find_member,
    initial_cluster,
    member_health,
    quorum,
    removal_refusal,
    voting_add_refusal,
)
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import FakeClient, cluster, member, rpc_error


def health_of(members, healthy_ids):
    return dict((m['id'], dict(status=None, problem=None if m['id'] in healthy_ids else 'does not answer'))
                for m in members)


def majority(healthy, voters):
    """Raft commits when strictly more than half of the voters agree."""
    return healthy * 2 > voters


@pytest.mark.parametrize('voters,expected', [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_quorum_is_a_majority(voters, expected):
    assert quorum(voters) == expected
    assert majority(expected, voters) and not majority(expected - 1, voters)


def every_case(max_voters=7):
    """(members, healthy ids, target) for every size, every healthy subset and every target."""
    for size in range(1, max_voters + 1):
        members = cluster(size)
        ids = [m['id'] for m in members]
        for count in range(size + 1):
            for healthy in itertools.combinations(ids, count):
                for target in members:
                    yield members, set(healthy), target


def test_removal_is_allowed_exactly_when_a_majority_of_the_rest_is_healthy():
    checked = 0
    for members, healthy, target in every_case():
        staying = [m for m in members if m['id'] != target['id']]
        healthy_staying = len([m for m in staying if m['id'] in healthy])
        expected_safe = bool(staying) and majority(healthy_staying, len(staying))
        refusal = removal_refusal(members, health_of(members, healthy), target)
        assert (refusal is None) == expected_safe, (len(members), sorted(healthy), target['id'], refusal)
        checked += 1
    assert checked == sum(n * 2 ** n for n in range(1, 8))


def test_blocking_is_allowed_exactly_when_the_others_keep_a_majority():
    for members, healthy, target in every_case():
        others = len([m for m in members if m['id'] != target['id'] and m['id'] in healthy])
        refusal = blocking_refusal(members, health_of(members, healthy), target)
        assert (refusal is None) == majority(others, len(members)), (len(members), sorted(healthy), target['id'])


def test_voting_add_is_allowed_exactly_when_the_healthy_are_a_majority_with_the_new_member():
    for size in range(1, 8):
        members = cluster(size)
        for count in range(size + 1):
            healthy = set(m['id'] for m in members[:count])
            refusal = voting_add_refusal(members, health_of(members, healthy))
            assert (refusal is None) == majority(count, size + 1), (size, count)


def test_replacing_a_failed_member_of_three_the_runbook_case():
    members = cluster(3)
    health = health_of(members, {members[1]['id'], members[2]['id']})
    assert removal_refusal(members, health, members[0]) is None  # the failed one goes
    refusal = removal_refusal(members, health, members[1])  # a healthy one would leave one of two healthy
    assert refusal.startswith('removing member master-2 (%s) would leave 2 voting members of which 1 are healthy, '
                              'fewer than the quorum of 2' % members[1]['id'])
    assert 'unhealthy: member master-1 (%s) does not answer' % members[0]['id'] in refusal


def test_last_voting_member_is_never_removable_even_healthy():
    members = cluster(1) + [member(2, learner=True)]
    refusal = removal_refusal(members, health_of(members, {m['id'] for m in members}), members[0])
    assert refusal.startswith('member master-1 (%s) is the last voting member' % members[0]['id'])


def test_learners_do_not_count_and_are_always_removable():
    members = cluster(3, learners=(3,))
    nobody = health_of(members, set())
    assert removal_refusal(members, nobody, members[2]) is None
    assert blocking_refusal(members, nobody, members[2]) is None
    # two voters, both healthy: removing one leaves one voter, a majority of one
    everybody = health_of(members, {m['id'] for m in members})
    assert removal_refusal(members, everybody, members[0]) is None
    # the learner's health does not make up for a voter that is down
    assert removal_refusal(members, health_of(members, {members[0]['id'], members[2]['id']}), members[0]) is not None


def test_a_single_member_cluster_cannot_keep_quorum_while_blocked():
    members = cluster(1)
    refusal = blocking_refusal(members, health_of(members, {members[0]['id']}), members[0])
    assert 'the other healthy voting members (0) are fewer than the quorum of 1 of the 1 voting members' in refusal


def test_five_members_one_down_may_block_another():
    members = cluster(5)
    health = health_of(members, {m['id'] for m in members[1:]})
    assert blocking_refusal(members, health, members[1]) is None
    health = health_of(members, {m['id'] for m in members[2:]})
    assert blocking_refusal(members, health, members[2]) is not None


def test_member_health_reads_status_and_leader():
    members = cluster(3) + [member(4, started=False, learner=True)]
    client = FakeClient(members=members, down={members[1]['id']}, leaderless={members[2]['id']})
    health = member_health(client, members)
    assert health[members[0]['id']]['problem'] is None and health[members[0]['id']]['status']['db_size'] > 0
    assert health[members[1]['id']]['problem'].startswith('does not answer: https://10.0.0.12:2379: connection refused')
    assert health[members[2]['id']]['problem'] == 'sees no leader'
    assert health[members[3]['id']]['problem'] == 'has no client URL: it was added but has not started yet'


def test_member_health_tries_each_client_url():
    members = cluster(1)
    members[0]['client_urls'] = ['https://10.9.9.9:2379', 'https://10.0.0.11:2379']
    first_fails = FakeClient(members=members, failures={'status': [rpc_error('dial_timeout', 'no connection')]})
    health = member_health(first_fails, members)
    assert health[members[0]['id']]['problem'] is None
    assert health[members[0]['id']]['status']['endpoint'] == 'https://10.0.0.11:2379'


# -- finding a member ------------------------------------------------------------------------------------

def test_found_by_name_or_peer_url():
    members = cluster(3)
    assert find_member(members, name='master-2')['id'] == members[1]['id']
    assert find_member(members, peer_urls=['https://10.0.0.13:2380/'])['id'] == members[2]['id']
    assert find_member(members, peer_urls=['HTTPS://10.0.0.13:2380'])['id'] == members[2]['id']
    assert find_member(members, name='master-9', peer_urls=['https://10.0.0.19:2380']) is None
    assert find_member(members, name='master-2', peer_urls=['https://10.0.1.12:2380'])['id'] == members[1]['id']


def test_a_member_not_started_is_found_by_peer_url():
    members = cluster(3) + [member(4, started=False, learner=True)]
    assert find_member(members, name='master-4', peer_urls=['https://10.0.0.14:2380'])['id'] == members[3]['id']
    assert find_member(members, name='master-4') is None


def test_a_peer_url_of_another_member_is_a_conflict():
    members = cluster(3)
    with pytest.raises(MembershipError) as caught:
        find_member(members, name='master-2', peer_urls=['https://10.0.0.13:2380'])
    assert str(caught.value) == ('the name master-2 is member master-2 (%s) but peer URLs https://10.0.0.13:2380 '
                                 'belong to member master-3 (%s)' % (members[1]['id'], members[2]['id']))
    with pytest.raises(MembershipError) as caught:
        find_member(members, name='master-4', peer_urls=['https://10.0.0.13:2380'])
    assert 'belong to member master-3' in str(caught.value) and 'not to a member named master-4' in str(caught.value)


def test_two_members_with_one_name_are_ambiguous():
    members = cluster(3)
    members[2]['name'] = 'master-2'
    with pytest.raises(MembershipError) as caught:
        find_member(members, name='master-2')
    assert str(caught.value).startswith('2 members are named master-2')


def test_initial_cluster_is_what_etcdctl_member_add_prints():
    members = cluster(2) + [member(4, started=False, learner=True)]
    assert initial_cluster(members, members[2]['id'], 'master-4') == (
        'master-1=https://10.0.0.11:2380,master-2=https://10.0.0.12:2380,master-4=https://10.0.0.14:2380')
    members[0]['peer_urls'].append('https://master-1:2380')
    assert initial_cluster(members, members[2]['id'], 'master-4').startswith(
        'master-1=https://10.0.0.11:2380,master-1=https://master-1:2380,')


def test_module_utils_talks_to_etcd_only_through_the_client():
    source = open(_membership.__file__).read()
    assert 'import grpc' not in source and 'subprocess' not in source
