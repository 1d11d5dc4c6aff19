#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_cluster_info
short_description: Report an etcd cluster's members, leader, versions, database sizes and alarms
version_added: 0.1.0
description:
  - Reads what C(etcdctl member list) and C(etcdctl endpoint status --cluster) show, plus the active alarms,
    in one result. For each member it gives its id, name, URLs, learner flag, leader flag, version, database size and
    size in use, raft term and indexes, and the errors etcd reports.
  - A member that cannot be reached is reported with its RV(members[].error) text (what to check); the others are
    still read. The task fails only when O(fail_on_unhealthy=true), or when no endpoint in O(endpoints)
    answers at all.
  - Changes nothing.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
  - etcdops.etcd.attributes.info_module
options:
  fail_on_unhealthy:
    description:
      - Fail the task when the cluster is not healthy, that is when RV(healthy) is V(false) because a member did
        not answer, no leader is seen, members disagree on the leader, a member reports errors, or an alarm is
        active. The result, with RV(problems), is returned either way.
    type: bool
    default: false
seealso:
  - name: etcdctl member list and endpoint status
    description: The etcd commands whose output this module returns.
    link: https://etcd.io/docs/v3.5/op-guide/maintenance/
'''

EXAMPLES = r'''
- name: Read the cluster through the local member, with kubeadm's certificates
  etcdops.etcd.etcd_cluster_info:
  register: etcd

- name: Show who leads
  ansible.builtin.debug:
    msg: "{{ etcd.members | selectattr('is_leader') | map(attribute='name') | first }}"

- name: Refuse to go on unless all members answer, agree on a leader and no alarm is active
  etcdops.etcd.etcd_cluster_info:
    endpoints:
      - https://10.0.0.11:2379
      - https://10.0.0.12:2379
      - https://10.0.0.13:2379
    ca_cert: /etc/kubernetes/pki/etcd/ca.crt
    client_cert: /etc/kubernetes/pki/etcd/healthcheck-client.crt
    client_key: /etc/kubernetes/pki/etcd/healthcheck-client.key
    fail_on_unhealthy: true

- name: List the members that did not answer
  ansible.builtin.debug:
    msg: "{{ etcd.members | selectattr('error', 'defined') | map(attribute='name') | list }}"
'''

RETURN = r'''
cluster_id:
  description: The cluster id, in hex as etcdctl shows it.
  returned: success
  type: str
  sample: cdf818194e3a8c32
endpoint:
  description: The endpoint of O(endpoints) that answered the member list.
  returned: success
  type: str
  sample: https://127.0.0.1:2379
leader:
  description: The id of the leader that the members that answered report; V(null) when none sees a leader.
  returned: success
  type: str
  sample: 8e9e05c52164694d
member_count:
  description: How many members the cluster has, learners included.
  returned: success
  type: int
  sample: 3
members:
  description: One entry per member, in the order of C(etcdctl member list).
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: Member id, in hex as etcdctl shows it.
      type: str
      returned: always
      sample: 8e9e05c52164694d
    name:
      description: Member name; empty for a member that was added but has not started yet.
      type: str
      returned: always
      sample: master-1
    peer_urls:
      description: URLs the member uses to talk to the other members.
      type: list
      elements: str
      returned: always
      sample: ['https://10.0.0.11:2380']
    client_urls:
      description: URLs the member serves clients on; empty until it has started.
      type: list
      elements: str
      returned: always
      sample: ['https://10.0.0.11:2379']
    is_learner:
      description: Whether the member is a learner (a non-voting member that catches up before promotion).
      type: bool
      returned: always
      sample: false
    is_leader:
      description: Whether the member is the leader RV(leader).
      type: bool
      returned: always
      sample: true
    endpoint:
      description: The client URL the member's status was read from.
      type: str
      returned: when the member answered
      sample: https://10.0.0.11:2379
    version:
      description: The etcd version the member runs.
      type: str
      returned: when the member answered
      sample: 3.5.21
    db_size:
      description: Size of the member's database file, in bytes.
      type: int
      returned: when the member answered
      sample: 25165824
    db_size_in_use:
      description: Bytes of the database file in use; the rest is reclaimed by defragmentation.
      type: int
      returned: when the member answered
      sample: 8388608
    raft_term:
      description: The member's raft term.
      type: int
      returned: when the member answered
      sample: 4
    raft_index:
      description: The member's raft index.
      type: int
      returned: when the member answered
      sample: 10231
    raft_applied_index:
      description: The raft index the member has applied.
      type: int
      returned: when the member answered
      sample: 10231
    errors:
      description: Errors the member itself reports (for example a corrupt database alarm).
      type: list
      elements: str
      returned: when the member answered
      sample: []
    error:
      description: Why the member could not be reached, naming what to check.
      type: str
      returned: when the member did not answer
      sample: "https://10.0.0.12:2379: connection refused: nothing listens on 10.0.0.12:2379; is the etcd static pod running?"
alarms:
  description: Active alarms, as C(etcdctl alarm list) shows them.
  returned: success
  type: list
  elements: dict
  contains:
    member_id:
      description: Id of the member that raised the alarm, in hex.
      type: str
      returned: always
      sample: 8e9e05c52164694d
    alarm:
      description: V(NOSPACE) (the space quota is used up) or V(CORRUPT) (the member's data differs from the others').
      type: str
      returned: always
      sample: NOSPACE
alarm_error:
  description: Why the alarms could not be read (for example no leader); RV(alarms) is then empty.
  returned: when the alarms could not be read
  type: str
  sample: "https://127.0.0.1:2379: etcdserver: no leader: this member sees no leader"
healthy:
  description: Whether every member answered, all agree on one leader, none reports errors and no alarm is active.
  returned: success
  type: bool
  sample: true
problems:
  description: What makes the cluster unhealthy, one sentence each; empty when RV(healthy) is V(true).
  returned: success
  type: list
  elements: str
  sample: ["member master-2 (fd422379fda50e48) did not answer: https://10.0.0.12:2379: connection refused"]
'''

from collections import Counter

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)

STATUS_FIELDS = ('endpoint', 'version', 'db_size', 'db_size_in_use', 'raft_term', 'raft_index', 'raft_applied_index',
                 'errors')


def member_status(client, member):
    """The status of one member through its first client URL that answers; (status, None) or (None, error)."""
    if not member['client_urls']:
        return None, 'member has no client URL: it was added but has not started or joined yet'
    errors = []
    for url in member['client_urls']:
        try:
            return client.status(url), None
        except EtcdClientError as error:
            errors.append(error.msg)
    return None, '; '.join(errors)


def cluster_info(client):
    """Everything the module returns except `changed`; raises EtcdClientError when no endpoint answers."""
    listing = client.member_list()
    members = []
    leaders = Counter()
    problems = []
    for member in listing['members']:
        entry = dict(member)
        status, error = member_status(client, member)
        label = 'member %s (%s)' % (member['name'] or '(not started)', member['id'])
        if status is None:
            entry['error'] = error
            problems.append('%s did not answer: %s' % (label, error))
        else:
            entry.update((field, status[field]) for field in STATUS_FIELDS)
            if status['leader']:
                leaders[status['leader']] += 1
            if status['errors']:
                problems.append('%s reports errors: %s' % (label, '; '.join(status['errors'])))
        members.append(entry)

    leader = leaders.most_common(1)[0][0] if leaders else None
    if leader is None:
        problems.append('no member that answered sees a leader')
    elif len(leaders) > 1:
        problems.append('members disagree on the leader: %s' % ', '.join(sorted(leaders)))
    for entry in members:
        entry['is_leader'] = entry['id'] == leader

    result = dict(cluster_id=listing['cluster_id'], endpoint=client.answered, leader=leader,
                  member_count=len(members), members=members, alarms=[])
    try:
        result['alarms'] = client.alarm_list()
    except EtcdClientError as error:
        result['alarm_error'] = error.msg
        problems.append('alarms could not be read: %s' % error.msg)
    for alarm in result['alarms']:
        problems.append('alarm %s is active on member %s' % (alarm['alarm'], alarm['member_id']))
    result['healthy'] = not problems
    result['problems'] = problems
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(fail_on_unhealthy=dict(type='bool', default=False))
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)

    client = client_from_module(module)
    try:
        result = cluster_info(client)
    except EtcdClientError as error:
        module.fail_json(msg='could not read the etcd cluster: %s' % error.msg, error_kind=error.kind)
    finally:
        client.close()

    if module.params['fail_on_unhealthy'] and not result['healthy']:
        module.fail_json(msg='etcd cluster is not healthy: %s' % '; '.join(result['problems']), changed=False,
                         **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
