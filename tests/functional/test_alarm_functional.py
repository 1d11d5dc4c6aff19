# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_alarm with etcd_defrag against real 3-member TLS clusters of etcd 3.4 to 3.7 whose members have a 4 MiB
--quota-backend-bytes, read like the OpenShift runbook: fill the database until etcd raises NOSPACE and refuses
writes, see the alarm listed, compact, defragment every member (the leader last), disarm, write again. CORRUPT is
never disarmed. What the modules did is checked with etcdctl."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient, EtcdClientError
from ansible_collections.etcdops.etcd.plugins.modules import etcd_alarm, etcd_defrag
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import call_main

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')]

QUOTA = 4 * 1024 * 1024


def connection(cluster):
    return dict(endpoints=cluster.endpoints, ca_cert=cluster.pki['ca'], client_cert=cluster.pki['cert'],
                client_key=cluster.pki['key'])


def task(module, cluster, **args):
    return call_main(module, dict(connection(cluster), **args))


def by_member(alarms):
    """etcd lists alarms in no fixed order."""
    return sorted(alarms, key=lambda alarm: alarm['member_id'])


def etcdctl_alarms(cluster):
    out = cluster.etcdctl('alarm', 'list').decode()
    return sorted(line.split('alarm:')[1].strip() for line in out.splitlines() if line.startswith('memberID:'))


def fill_until_nospace(client):
    """Overwrite one key with 100 KiB values until etcd refuses: every old revision stays until compaction."""
    with pytest.raises(EtcdClientError) as caught:
        for dummy in range(1000):
            client.put('/etcdops/fill', 'x' * 100 * 1024)
    assert caught.value.kind == 'no_space', caught.value
    # each member that sees its quota exceeded raises its own alarm, a moment apart: wait until they are all in
    seen, since = None, time.time()
    while time.time() - since < 2:
        alarms = sorted((a['member_id'], a['alarm']) for a in client.alarm_list())
        if alarms != seen:
            seen, since = alarms, time.time()
        time.sleep(0.2)
    return caught.value


def test_nospace_listed_then_compact_defragment_disarm_and_write_again(line, cluster_factory):
    cluster = cluster_factory(line, extra_args=['--quota-backend-bytes', str(QUOTA)])
    with EtcdClient(cluster.endpoints, command_timeout=10, **cluster.tls()) as client:
        fill_until_nospace(client)
        listed = task(etcd_alarm, cluster).result
        assert listed['changed'] is False and listed['alarms']
        assert set(a['alarm'] for a in listed['alarms']) == {'NOSPACE'}
        assert all(a['member_name'] in ('m1', 'm2', 'm3') for a in listed['alarms'])
        assert etcdctl_alarms(cluster) == ['NOSPACE'] * len(listed['alarms'])

        # disarming is refused for CORRUPT, even when it is not active, and nothing is touched
        refused = task(etcd_alarm, cluster, state='disarmed', alarm='CORRUPT')
        assert refused.failed and refused.result['msg'].startswith('CORRUPT alarms are never disarmed by this module')
        # check mode says what it would disarm; etcdctl still lists it
        checked = task(etcd_alarm, cluster, state='disarmed', _ansible_check_mode=True).result
        assert checked['changed'] is True and checked['alarms_after'] == []
        assert by_member(checked['disarmed']) == by_member(listed['alarms'])
        assert etcdctl_alarms(cluster) == ['NOSPACE'] * len(listed['alarms'])
        # a member without the alarm: nothing to disarm
        others = [m['name'] for m in cluster.members if m['name'] not in [a['member_name'] for a in listed['alarms']]]
        if others:
            assert task(etcd_alarm, cluster, state='disarmed', member=others[0]).result['changed'] is False

        # the runbook: compact, defragment every member (the leader last), then disarm
        client.compact(client.count()['revision'], physical=True)
        results = [task(etcd_defrag, cluster, member=m['name'], force=True).result for m in cluster.members
                   if not _is_leader(client, cluster, m)]
        leader = [m for m in cluster.members if _is_leader(client, cluster, m)][0]
        results.append(task(etcd_defrag, cluster, member=leader['name'], force=True).result)
        for result in results:
            assert result['defragmented'] is True, result['msg']
            assert result['db_size_after'] < QUOTA // 2 < result['db_size_before']
        assert results[-1]['member']['is_leader'] is True

        done = task(etcd_alarm, cluster, state='disarmed')
        assert not done.failed, done.result['msg']
        assert done.result['changed'] is True and done.result['alarms_after'] == []
        assert by_member(done.result['disarmed']) == by_member(listed['alarms']) and done.result['warnings'] == []
        assert etcdctl_alarms(cluster) == []
        assert client.put('/etcdops/after', 'writes work again') > 0
        assert task(etcd_alarm, cluster, state='disarmed').result['changed'] is False


def _is_leader(client, cluster, member):
    status = client.status(cluster.client_url(member))
    return status['leader'] == status['member_id']


def test_disarming_before_defragmenting_is_raised_again(line, cluster_factory):
    cluster = cluster_factory(line, size=1, extra_args=['--quota-backend-bytes', str(QUOTA)])
    with EtcdClient(cluster.endpoints, command_timeout=10, **cluster.tls()) as client:
        fill_until_nospace(client)
        done = task(etcd_alarm, cluster, state='disarmed', member='m1')
        assert not done.failed and done.result['changed'] is True
        # the file is still above the quota: the next write raises it again
        assert fill_until_nospace(client).kind == 'no_space'
        assert etcdctl_alarms(cluster) == ['NOSPACE']
