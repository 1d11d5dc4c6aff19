# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_defrag with the client mocked: the thresholds (both must be met), the quorum guard, a timeout that is
never a success, sizes before and after, check mode."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import yaml

from ansible_collections.etcdops.etcd.plugins.modules import etcd_defrag
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
    IDS,
    MIB,
    FakeClient,
    capture_exit,
    cluster,
    rpc_error,
    run,
)

FRAGMENTED = {IDS[1]: (1000 * MIB, 300 * MIB)}  # 700 MiB, 70% free


@pytest.fixture(autouse=True)
def exits(monkeypatch):
    return capture_exit(monkeypatch)


def defrag_run(monkeypatch, client, **args):
    done = run(monkeypatch, etcd_defrag, client, **args)
    assert client.closed
    return done


@pytest.mark.parametrize('size,in_use,due', [
    (1000, 300, True),     # 70% and 700 MiB free
    (1000, 550, True),     # 45% and 450 MiB: the ratio exactly met
    (200, 100, True),      # 50% and 100 MiB: the bytes exactly met
    (1000, 560, False),    # 44%: the ratio not met
    (150, 51, False),      # 66% but 99 MiB
    (100, 10, False),      # 90% but 90 MiB
    (0, 0, False),         # nothing written yet
])
def test_both_thresholds_must_be_met(size, in_use, due):
    status = dict(db_size=size * MIB, db_size_in_use=in_use * MIB)
    assert etcd_defrag.decide(status, 0.45, 100 * MIB, False)[0] is due
    assert etcd_defrag.decide(status, 0.45, 100 * MIB, True)[0] is True


def test_decision_says_why():
    due, why = etcd_defrag.decide(dict(db_size=200 * MIB, db_size_in_use=190 * MIB), 0.45, 100 * MIB, False)
    assert not due
    assert why == '5.0% (10.0 MiB) of the database is free space, below at least 45.0% and 100.0 MiB: not worth ' \
                  'blocking the member'


def test_fragmented_member_is_defragmented_and_sizes_reported(monkeypatch):
    client = FakeClient(sizes=FRAGMENTED)
    done = defrag_run(monkeypatch, client, member='master-2')
    result = done.result
    assert not done.failed, result['msg']
    assert client.changes == [('defragment', 'https://10.0.0.12:2379', 300.0)]
    assert result['changed'] is True and result['defragmented'] is True
    assert result['member'] == dict(id=IDS[1], name='master-2', endpoint='https://10.0.0.12:2379', is_leader=False)
    assert (result['db_size_before'], result['db_size_in_use_before']) == (1000 * MIB, 300 * MIB)
    assert (result['fragmented_bytes'], result['fragmented_ratio']) == (700 * MIB, 0.7)
    assert (result['db_size_after'], result['db_size_in_use_after']) == (300 * MIB, 300 * MIB)
    assert result['reclaimed_bytes'] == 700 * MIB and result['duration_seconds'] >= 0
    assert result['msg'].startswith('master-2: 70.0% (700.0 MiB) of the database is free space, at least 45.0% and '
                                    '100.0 MiB: defragmented in ')
    doc = yaml.safe_load(etcd_defrag.RETURN)
    assert set(result) - {'changed', 'msg'} == set(doc) - {'msg'}
    assert set(result['member']) == set(doc['member']['contains'])


def test_below_thresholds_is_skipped_and_unchanged(monkeypatch):
    client = FakeClient(sizes={IDS[1]: (120 * MIB, 100 * MIB)})
    result = defrag_run(monkeypatch, client, member='master-2').result
    assert client.changes == [] and result['changed'] is False and result['defragmented'] is False
    assert result['fragmented_bytes'] == 20 * MIB and 'db_size_after' not in result
    assert result['msg'].endswith('not worth blocking the member')


def test_force_defragments_below_thresholds(monkeypatch):
    client = FakeClient(sizes={IDS[1]: (120 * MIB, 100 * MIB)})
    result = defrag_run(monkeypatch, client, member='master-2', force=True).result
    assert result['defragmented'] is True and 'force=true' in result['msg']


def test_thresholds_take_units(monkeypatch):
    client = FakeClient(sizes={IDS[1]: (120 * MIB, 100 * MIB)})
    result = defrag_run(monkeypatch, client, member='master-2', min_fragmentation_bytes='10M',
                        min_fragmentation_ratio=0.1).result
    assert result['defragmented'] is True


def test_a_timeout_is_a_failure_that_says_the_member_is_still_busy(monkeypatch):
    timeout = rpc_error('timeout', 'no answer within 1.0s', endpoint='https://10.0.0.12:2379')
    client = FakeClient(sizes=FRAGMENTED, failures={'defragment': [timeout]})
    done = defrag_run(monkeypatch, client, member='master-2', timeout=1)
    assert done.failed
    assert done.result['defragmented'] is False and done.result['changed'] is True
    assert done.result['msg'] == (
        'defragmentation failed: defragmentation of member master-2 (%s) did not finish within 1.0s (timeout): etcd '
        'goes on defragmenting and the member answers no request until it is done; wait, check it with '
        'etcdops.etcd.etcd_cluster_info, and run again with a larger timeout if it is still fragmented' % IDS[1])


def test_other_defragment_errors_fail(monkeypatch):
    client = FakeClient(sizes=FRAGMENTED, failures={'defragment': [rpc_error('other', 'etcdserver: boom')]})
    done = defrag_run(monkeypatch, client, member='master-2')
    assert done.failed and done.result['msg'] == 'defragmentation failed: https://10.0.0.11:2379: etcdserver: boom'


def test_refused_when_the_others_are_no_quorum_while_it_is_blocked(monkeypatch):
    client = FakeClient(sizes=FRAGMENTED, down={IDS[2]})
    done = defrag_run(monkeypatch, client, member='master-2')
    assert done.failed and client.changes == []
    assert done.result['msg'].startswith('while member master-2 (%s) is blocked by the defragmentation, the other '
                                         'healthy voting members (1) are fewer than the quorum of 2' % IDS[1])
    assert done.result['msg'].endswith('allow_quorum_loss=true defragments anyway')
    client = FakeClient(sizes=FRAGMENTED, down={IDS[2]})
    assert not defrag_run(monkeypatch, client, member='master-2', allow_quorum_loss=True).failed
    assert len(client.changes) == 1


def test_below_thresholds_is_not_refused_for_quorum(monkeypatch):
    client = FakeClient(down={IDS[2]}, sizes={IDS[1]: (120 * MIB, 100 * MIB)})
    assert not defrag_run(monkeypatch, client, member='master-2').failed


def test_single_member_cluster_needs_allow_quorum_loss(monkeypatch):
    client = FakeClient(members=cluster(1), sizes={IDS[0]: (1000 * MIB, 100 * MIB)})
    assert defrag_run(monkeypatch, client, member='master-1').failed
    client = FakeClient(members=cluster(1), sizes={IDS[0]: (1000 * MIB, 100 * MIB)})
    result = defrag_run(monkeypatch, client, member='master-1', allow_quorum_loss=True).result
    assert result['defragmented'] is True and result['member']['is_leader'] is True


def test_member_by_local_client_url(monkeypatch):
    client = FakeClient(sizes=FRAGMENTED, local_id=IDS[1])
    result = defrag_run(monkeypatch, client, member='https://127.0.0.1:2379').result
    assert result['member']['name'] == 'master-2' and result['member']['endpoint'] == 'https://127.0.0.1:2379'
    assert client.changes == [('defragment', 'https://127.0.0.1:2379', 300.0)]


def test_unknown_member_and_dead_member(monkeypatch):
    done = defrag_run(monkeypatch, FakeClient(), member='master-9')
    assert done.failed and done.result['msg'] == 'no member is named master-9 (members: master-1, master-2, master-3)'
    done = defrag_run(monkeypatch, FakeClient(down={IDS[1]}), member='master-2')
    assert done.failed and done.result['msg'].startswith('member master-2 (%s) does not answer: ' % IDS[1])
    done = defrag_run(monkeypatch, FakeClient(), member='https://10.9.9.9:2379')
    assert done.failed and done.result['msg'].startswith('the member at https://10.9.9.9:2379 does not answer: ')


def test_learner_is_refused(monkeypatch):
    client = FakeClient(members=cluster(4, learners=(4,)), sizes={IDS[3]: (1000 * MIB, 100 * MIB)})
    done = defrag_run(monkeypatch, client, member='master-4')
    assert done.failed and 'is a learner: etcd does not defragment learners' in done.result['msg']


def test_check_mode_reports_and_does_not_defragment(monkeypatch):
    client = FakeClient(sizes=FRAGMENTED)
    result = defrag_run(monkeypatch, client, member='master-2', _ansible_check_mode=True).result
    assert client.changes == [] and result['changed'] is True and result['defragmented'] is True
    assert result['msg'].endswith(': would defragment') and 'db_size_after' not in result


def test_ratio_must_be_a_share(monkeypatch):
    done = run(monkeypatch, etcd_defrag, FakeClient(), member='master-2', min_fragmentation_ratio=45)
    assert done.failed and done.result['msg'] == 'min_fragmentation_ratio must be between 0 and 1, not 45.0'
