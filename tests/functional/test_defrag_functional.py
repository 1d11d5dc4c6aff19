# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_defrag against real 3-member TLS clusters of etcd 3.4 to 3.7 on loopback: fragment a database (write big
values, overwrite them, compact), see the default thresholds skip it, defragment one member and read the smaller
file with etcdctl, a timeout reported as a failure, and the refusal while the cluster would lose quorum."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient
from ansible_collections.etcdops.etcd.plugins.modules import etcd_defrag
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import call_main

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')]

MIB = 1024 * 1024
LOWERED = dict(min_fragmentation_bytes='4M', min_fragmentation_ratio=0.3)


def defrag_task(cluster, **args):
    connection = dict(endpoints=cluster.endpoints, ca_cert=cluster.pki['ca'], client_cert=cluster.pki['cert'],
                      client_key=cluster.pki['key'])
    return call_main(etcd_defrag, dict(connection, **args))


def etcdctl_status(cluster, endpoint):
    """`etcdctl endpoint status -w json` of one endpoint: the independent view of its sizes."""
    out = cluster.etcdctl('endpoint', 'status', '-w', 'json', endpoint=endpoint)
    return [json.loads(text) for text in out.decode().splitlines() if text.startswith('[')][-1][0]['Status']


def fragment(cluster, keys=120, size=100 * 1024):
    """Write keys big values, overwrite each with a small one, compact: the big ones become free pages."""
    with EtcdClient(cluster.endpoints, command_timeout=30, **cluster.tls()) as client:
        for index in range(keys):
            client.put('/etcdops/fragment/%04d' % index, 'x' * size)
        for index in range(keys):
            revision = client.put('/etcdops/fragment/%04d' % index, 'small')
        client.compact(revision, physical=True)
        # bbolt counts freed pages as free once a later write transaction has begun (etcd commits every 100 ms)
        deadline = time.time() + 20
        while time.time() < deadline:
            client.put('/etcdops/fragment/done', 'x')
            time.sleep(0.3)
            statuses = [client.status(url) for url in cluster.endpoints]
            if all(s['db_size_in_use'] * 2 < s['db_size'] for s in statuses):
                return
    raise AssertionError('compaction freed no space: %s' % statuses)


def test_fragmented_member_shrinks_thresholds_skip_timeouts_fail(line, cluster_factory):
    cluster = cluster_factory(line)
    fragment(cluster)
    m2, m3 = cluster.endpoints[1], cluster.endpoints[2]
    before = etcdctl_status(cluster, m2)
    m1_before = etcdctl_status(cluster, cluster.endpoints[0])
    assert before['dbSize'] - before['dbSizeInUse'] > 8 * MIB

    # the defaults (45% and 100 MiB) are not met by 10 MiB of free space: skipped, unchanged
    done = defrag_task(cluster, member='m2')
    assert not done.failed, done.result['msg']
    skipped = done.result
    assert skipped['changed'] is False and skipped['defragmented'] is False
    assert skipped['db_size_before'] == before['dbSize']
    assert skipped['fragmented_bytes'] == before['dbSize'] - before['dbSizeInUse'] > 8 * MIB
    assert skipped['fragmented_ratio'] > 0.5 and skipped['msg'].endswith('not worth blocking the member')

    # check mode with lowered thresholds: it would run, and the file is untouched
    done = defrag_task(cluster, member='m2', _ansible_check_mode=True, **LOWERED)
    assert done.result['changed'] is True and done.result['msg'].endswith('would defragment')
    assert etcdctl_status(cluster, m2)['dbSize'] == before['dbSize']

    # a timeout is a failure, never a success
    done = defrag_task(cluster, member=m3, force=True, timeout=0.001)
    assert done.failed and done.result['error_kind'] == 'timeout'
    assert 'did not finish within 0.001s (timeout): etcd goes on defragmenting' in done.result['msg']
    assert done.result['defragmented'] is False

    # defragmented: the file etcdctl sees is smaller, by what the module reports
    done = defrag_task(cluster, member='m2', **LOWERED)
    assert not done.failed, done.result['msg']
    result = done.result
    after = etcdctl_status(cluster, m2)
    assert result['changed'] is True and result['defragmented'] is True
    assert result['db_size_after'] == after['dbSize'] < before['dbSize'] - 8 * MIB
    assert result['reclaimed_bytes'] == result['db_size_before'] - result['db_size_after']
    assert result['member']['name'] == 'm2' and result['member']['endpoint'] == m2
    assert result['member']['is_leader'] == (format(after['leader'], 'x') == result['member']['id'])
    assert result['duration_seconds'] > 0
    # the others are not (m1's own file: members' files differ in size by what each allocated)
    assert etcdctl_status(cluster, cluster.endpoints[0])['dbSize'] == m1_before['dbSize']

    # again: nothing left to give back, so it is skipped
    again = defrag_task(cluster, member='m2', **LOWERED).result
    assert again['changed'] is False and again['fragmented_bytes'] < 4 * MIB

    # by the client URL it answers on, as on its own host
    done = defrag_task(cluster, member=cluster.endpoints[0], **LOWERED)
    assert not done.failed and done.result['defragmented'] is True and done.result['member']['name'] == 'm1'
    cluster.wait_healthy()


def test_refused_while_the_cluster_would_lose_quorum(line, cluster_factory):
    cluster = cluster_factory(line)
    cluster.stop_member(cluster.members[2])
    done = defrag_task(cluster, member='m2', force=True)
    assert done.failed
    assert 'is blocked by the defragmentation, the other healthy voting members (1) are fewer than the quorum of 2' \
        in done.result['msg']
    assert 'member m3 (' in done.result['msg'] and done.result['changed'] is False

    done = defrag_task(cluster, member='m2', force=True, allow_quorum_loss=True)
    assert not done.failed, done.result['msg']
    assert done.result['defragmented'] is True


def test_unknown_member_is_named(cluster):
    done = defrag_task(cluster, member='m9')
    assert done.failed and done.result['msg'].startswith('no member is named m9 (members: ')
    assert all(name in done.result['msg'] for name in ('m1', 'm2', 'm3'))
