# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_member against real 3-member TLS clusters of etcd 3.4 to 3.7 on loopback, read like the Kubernetes runbook
"Replacing a failed etcd member": add a fourth member as a learner, start a real etcd with what the module returned
(--initial-cluster-state=existing), promote it once it has caught up, move its peer URLs, remove it; then lose a
member, see a removal that would break quorum refused (by the module, and by etcd when forced), and replace the
failed one. What the module did is checked with etcdctl."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import signal
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient, EtcdClientError
from ansible_collections.etcdops.etcd.plugins.modules import etcd_defrag, etcd_member
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import call_main

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')]

KEYS = 300


def connection(cluster, endpoints=None):
    return dict(endpoints=endpoints or cluster.endpoints, ca_cert=cluster.pki['ca'], client_cert=cluster.pki['cert'],
                client_key=cluster.pki['key'])


def member_task(cluster, endpoints=None, **args):
    return call_main(etcd_member, dict(connection(cluster, endpoints), **args))


def etcdctl_members(cluster, endpoint=None):
    """`etcdctl member list -w json` as {peer URL tuple: (name, is_learner)}: the independent view of the members."""
    out = cluster.etcdctl('member', 'list', '-w', 'json', endpoint=endpoint or cluster.endpoints[0])
    listing = [json.loads(text) for text in out.decode().splitlines() if text.startswith('{"header"')][-1]
    return dict((tuple(sorted(m['peerURLs'])), (m.get('name', ''), bool(m.get('isLearner'))))
                for m in listing['members'])


def wait_for(check, timeout=30, interval=0.3):
    deadline = time.time() + timeout
    while True:
        try:
            return check()
        except (AssertionError, EtcdClientError):
            if time.time() > deadline:
                raise
        time.sleep(interval)


def stop_if_running(cluster, member):
    process = member['process']
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        process.wait()


def test_add_a_learner_start_it_promote_it_move_it_remove_it(line, cluster_factory):
    cluster = cluster_factory(line)
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        for index in range(KEYS):
            client.put('/etcdops/data/%04d' % index, 'v' * 1000)
    new = cluster._member('m4')
    peer = cluster.peer_url(new)
    three = etcdctl_members(cluster)
    assert len(three) == 3

    # check mode: it says what it would do, and etcd's member list is unchanged
    done = member_task(cluster, name='m4', peer_urls=[peer], _ansible_check_mode=True)
    assert not done.failed, done.result['msg']
    assert done.result['changed'] is True and done.result['actions'] == ['add as learner']
    assert etcdctl_members(cluster) == three

    # add: a learner, and what its manifest needs
    done = member_task(cluster, name='m4', peer_urls=[peer])
    assert not done.failed, done.result['msg']
    added = done.result
    assert added['changed'] is True and added['actions'] == ['add as learner']
    assert added['member']['is_learner'] is True and added['member']['name'] == ''
    assert added['initial_cluster_state'] == 'existing'
    assert sorted(added['initial_cluster'].split(',')) == sorted(cluster.initial_cluster(cluster.members + [new])
                                                                 .split(','))
    assert etcdctl_members(cluster)[(peer,)] == ('', True)

    # again before it has started: nothing to do, the same initial_cluster, and the next step said
    again = member_task(cluster, name='m4', peer_urls=[peer]).result
    assert again['changed'] is False and again['initial_cluster'] == added['initial_cluster']
    assert 'is a learner that has not started yet: start it' in again['msg']

    # start a real etcd with what the module returned
    cluster.members.append(new)
    cluster.start_member(new, initial_cluster=added['initial_cluster'], state=added['initial_cluster_state'])
    with EtcdClient(cluster.endpoints, **cluster.tls()) as client:
        wait_for(lambda: client.status(cluster.client_url(new)))
    wait_for(lambda: etcdctl_members(cluster)[(peer,)] == ('m4', True) or pytest.fail('not started'))

    # a learner is not defragmented: the module says so before etcd would refuse it
    defrag = call_main(etcd_defrag, dict(connection(cluster), member='m4', force=True))
    assert defrag.failed and 'is a learner: etcd does not defragment learners' in defrag.result['msg']

    # promote: the module retries etcd's "not in sync" until the learner has caught up
    done = member_task(cluster, name='m4', peer_urls=[peer], promote_timeout=60)
    assert not done.failed, done.result['msg']
    assert done.result['actions'] == ['promote to voting member'] and done.result['member']['is_learner'] is False
    assert etcdctl_members(cluster)[(peer,)] == ('m4', False)
    assert member_task(cluster, name='m4', peer_urls=[peer]).result['changed'] is False
    with EtcdClient([cluster.client_url(new)], **cluster.tls()) as client:
        assert client.count('/etcdops/data/')['count'] == KEYS  # it has the data it caught up with

    # move its peer URLs (etcdctl member update), idempotently
    urls = [peer, 'https://localhost:%d' % new['peer_port']]
    done = member_task(cluster, name='m4', peer_urls=urls)
    assert not done.failed, done.result['msg']
    assert done.result['actions'] == ['update peer URLs']
    assert etcdctl_members(cluster)[tuple(sorted(urls))] == ('m4', False)
    assert member_task(cluster, name='m4', peer_urls=list(reversed(urls))).result['changed'] is False

    # remove it: four healthy voters, three stay
    done = member_task(cluster, name='m4', state='absent')
    assert not done.failed, done.result['msg']
    assert done.result['actions'] == ['remove'] and done.result['member'] is None
    assert etcdctl_members(cluster) == three
    assert member_task(cluster, name='m4', state='absent').result['changed'] is False
    cluster.members.remove(new)
    stop_if_running(cluster, new)
    cluster.wait_healthy()


def test_lose_a_member_refuse_what_breaks_quorum_replace_the_failed_one(line, cluster_factory, monkeypatch):
    monkeypatch.setattr(etcd_member, 'RECONFIG_SETTLE_SECONDS', 4.0)
    cluster = cluster_factory(line)
    m1, m2, m3 = cluster.members
    cluster.stop_member(m3)
    alive = [cluster.client_url(m1), cluster.client_url(m2)]
    three = etcdctl_members(cluster)

    # the module refuses to remove a healthy member: m2 would be left alone with the failed m3
    done = member_task(cluster, endpoints=alive, name='m1', state='absent')
    assert done.failed
    m1_id = [m['id'] for m in done.result['members_before'] if m['name'] == 'm1'][0]
    assert done.result['msg'].startswith('removing member m1 (%s) would leave 2 voting members of which 1 are healthy, '
                                         'fewer than the quorum of 2' % m1_id)
    assert 'member m3 (' in done.result['msg'] and 'does not answer' in done.result['msg']
    assert etcdctl_members(cluster) == three

    # forced, the module sends it, and etcd's own check refuses it (when m3 led, m1 and m2 may still be electing a
    # leader: etcd then refuses with "no leader", also changing nothing, and the request is sent again)
    deadline = time.monotonic() + 20
    while True:
        done = member_task(cluster, endpoints=alive, name='m1', state='absent', force=True)
        if done.result.get('error_kind') != 'no_leader' or time.monotonic() > deadline:
            break
        assert done.failed and done.result['changed'] is False and etcdctl_members(cluster) == three
        time.sleep(0.5)
    assert done.failed and done.result['error_kind'] == 'unhealthy_cluster', done.result['msg']
    assert done.result['changed'] is False
    assert etcdctl_members(cluster) == three

    # a voting member cannot be added while the healthy ones would not be a quorum of four
    new_peer = cluster.peer_url(cluster._member('m4'))
    done = member_task(cluster, endpoints=alive, name='m4', peer_urls=[new_peer], learner=False)
    assert done.failed and done.result['msg'].startswith('adding a voting member makes 4 voting members')
    # nor a learner: etcd wants every voting member connected, which is why the runbook removes the failed one first
    done = member_task(cluster, endpoints=alive, name='m4', peer_urls=[new_peer])
    assert done.failed and done.result['error_kind'] == 'unhealthy_cluster'
    assert etcdctl_members(cluster) == three

    # the runbook: remove the failed member; the two others are healthy
    done = member_task(cluster, endpoints=alive, name='m3', state='absent')
    assert not done.failed, done.result['msg']
    assert sorted(name for name, learner in etcdctl_members(cluster).values()) == ['m1', 'm2']
    cluster.members.remove(m3)
    cluster.wait_healthy()


def test_the_last_voting_member_is_never_removed(line, cluster_factory):
    cluster = cluster_factory(line, size=1)
    done = member_task(cluster, name='m1', state='absent', force=True)
    assert done.failed and done.result['msg'].startswith('member m1 (')
    assert 'is the last voting member' in done.result['msg']
    assert list(etcdctl_members(cluster).values()) == [('m1', False)]
