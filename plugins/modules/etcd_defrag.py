#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_defrag
short_description: Defragment one etcd member when enough of its database file is free space
version_added: 0.1.0
description:
  - Defragments the database of one member, as C(etcdctl defrag --endpoints=<member>) does, so that the file
    system gets back the space that compaction freed inside the file.
  - Runs only when the member's database is fragmented enough, that is when the free space inside the file
    (C(dbSize - dbSizeInUse) in C(etcdctl endpoint status -w json)) is at least O(min_fragmentation_ratio) of the file
    B(and) at least O(min_fragmentation_bytes); O(force=true) defragments regardless.
  - Defragmentation blocks the member, reads and writes included, until it is done, and the member stops taking
    part in raft meanwhile. The module therefore runs it only when the other healthy voting members are a quorum
    of the voting members (see O(allow_quorum_loss)). Defragment one member per task, the leader last
    (RV(member.is_leader)), and let each member recover for a minute before the next, as the OpenShift runbook
    says.
  - The sizes before and after, and how long it took, are in the result.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  member:
    description:
      - The member to defragment, by name (as in C(etcdctl member list)), or by a client URL it answers on (for
        example V(https://127.0.0.1:2379) on its own host).
    type: str
    required: true
  min_fragmentation_ratio:
    description:
      - Defragment only when at least this share of the database file is free space (V(0.45) is the 45% of the
        OpenShift etcd operator's defragmentation controller).
    type: float
    default: 0.45
  min_fragmentation_bytes:
    description:
      - Defragment only when at least this many bytes of the database file are free space; accepts units, for
        example V(100M) (MiB).
      - OpenShift's controller asks for a database of at least 100 MB; this threshold is on what defragmentation
        gives back, which is what makes blocking the member worth it.
    type: bytes
    default: 104857600
  force:
    description:
      - Defragment even when the thresholds are not met.
    type: bool
    default: false
  allow_quorum_loss:
    description:
      - Defragment even when the cluster has no quorum while this member is blocked, that is when the other healthy
        voting members are fewer than a majority of the voting members. Writes to the cluster then stall until
        the defragmentation is done.
      - This is always the case for a cluster of one or two voting members, and for a member of a three-member
        cluster while another member is down (for example to recover from a NOSPACE alarm in that state).
    type: bool
    default: false
  timeout:
    description:
      - Seconds the defragmentation may take (what C(etcdctl --command-timeout) bounds for C(etcdctl defrag)); it
        takes about as long as writing the database file anew.
      - When it is exceeded the task fails. etcd goes on defragmenting and the member stays blocked until it is
        done; the task is never reported as a success.
      - O(command_timeout) bounds the other requests (member list, status).
    type: float
    default: 300.0
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the member would be defragmented (C(changed), RV(defragmented)) and its fragmentation.
  diff_mode:
    support: none
notes:
  - A learner cannot be defragmented (etcd refuses it for learners); promote it first.
seealso:
  - name: etcd maintenance, defragmentation
    description: What defragmentation does and why it blocks the member.
    link: https://etcd.io/docs/v3.5/op-guide/maintenance/#defragmentation
  - module: etcdops.etcd.etcd_cluster_info
  - module: etcdops.etcd.etcd_alarm
'''

EXAMPLES = r'''
- name: Defragment master-2 if a lot of its database is free space
  etcdops.etcd.etcd_defrag:
    member: master-2
  register: defrag

- name: Say what it gave back
  ansible.builtin.debug:
    msg: "{{ defrag.member.name }}: {{ defrag.db_size_before }} -> {{ defrag.db_size_after | default('unchanged') }} bytes"

- name: Defragment the local member now, whatever its fragmentation, allowing 10 minutes
  etcdops.etcd.etcd_defrag:
    member: https://127.0.0.1:2379
    force: true
    timeout: 600
'''

RETURN = r'''
member:
  description: The member the task is about.
  returned: success
  type: dict
  contains:
    id:
      description: Member id, in hex.
      type: str
      returned: always
      sample: 8e9e05c52164694d
    name:
      description: Member name.
      type: str
      returned: always
      sample: master-2
    endpoint:
      description: The client URL the member was defragmented (or checked) through.
      type: str
      returned: always
      sample: https://10.0.0.12:2379
    is_leader:
      description: Whether the member was the leader before the task; defragment the leader last.
      type: bool
      returned: always
      sample: false
defragmented:
  description: Whether the member was defragmented by this task (in check mode, whether it would be).
  returned: success
  type: bool
  sample: true
msg:
  description: Why the member was, or was not, defragmented.
  returned: success
  type: str
  sample: "master-2: 61.2% (640.0 MiB) of the database is free space, at least 45.0% and 100.0 MiB: defragmented"
db_size_before:
  description: Size of the database file before, in bytes.
  returned: success
  type: int
  sample: 1073741824
db_size_in_use_before:
  description: Bytes of the database file in use before.
  returned: success
  type: int
  sample: 402653184
fragmented_bytes:
  description: Free space inside the database file before (C(dbSize - dbSizeInUse)), in bytes.
  returned: success
  type: int
  sample: 671088640
fragmented_ratio:
  description: RV(fragmented_bytes) as a share of RV(db_size_before), between 0 and 1.
  returned: success
  type: float
  sample: 0.625
db_size_after:
  description: Size of the database file after the defragmentation, in bytes.
  returned: when the member was defragmented
  type: int
  sample: 402653184
db_size_in_use_after:
  description: Bytes of the database file in use after the defragmentation.
  returned: when the member was defragmented
  type: int
  sample: 402653184
reclaimed_bytes:
  description: RV(db_size_before) minus RV(db_size_after).
  returned: when the member was defragmented
  type: int
  sample: 671088640
duration_seconds:
  description: How long the member was blocked by the defragmentation.
  returned: when the member was defragmented
  type: float
  sample: 12.4
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    Refused,
    connection_argument_spec,
    run_with_client,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._membership import (
    blocking_refusal,
    label,
    member_health,
)

MIB = 1024.0 * 1024.0
STATUS_AFTER_SECONDS = 10.0


def fragmentation(status):
    """(free bytes inside the database file, their share of the file) from a member's status."""
    free = max(status['db_size'] - status['db_size_in_use'], 0)
    return free, (float(free) / status['db_size'] if status['db_size'] else 0.0)


def decide(status, min_ratio, min_bytes, force):
    """(defragment?, why) from the member's sizes and the thresholds; both thresholds must be met unless force."""
    free, ratio = fragmentation(status)
    facts = '%.1f%% (%.1f MiB) of the database is free space' % (ratio * 100, free / MIB)
    wanted = 'at least %.1f%% and %.1f MiB' % (min_ratio * 100, min_bytes / MIB)
    if ratio >= min_ratio and free >= min_bytes:
        return True, '%s, %s' % (facts, wanted)
    if force:
        return True, '%s, below %s, force=true' % (facts, wanted)
    return False, '%s, below %s: not worth blocking the member' % (facts, wanted)


def find_target(client, members, health, wanted):
    """(member, its status) for a member name or a client URL; Refused when it is not a member or not answering."""
    named = [m for m in members if m['name'] == wanted]
    if len(named) > 1:
        raise Refused('%d members are named %s (%s): give the client URL of the one you mean' % (
            len(named), wanted, ', '.join(m['id'] for m in named)))
    if named:
        member = named[0]
        entry = health[member['id']]
        if entry['status'] is None:
            raise Refused('%s %s' % (label(member), entry['problem']))
        return member, entry['status']
    if ':' not in wanted:
        raise Refused('no member is named %s (members: %s)' % (
            wanted, ', '.join(m['name'] or m['id'] for m in members)))
    try:
        status = client.status(wanted)
    except EtcdClientError as error:
        raise Refused('the member at %s does not answer: %s' % (wanted, error.msg))
    by_id = [m for m in members if m['id'] == status['member_id']]
    if not by_id:
        raise Refused('%s answers as member %s, which is not in the member list of this cluster' % (
            wanted, status['member_id']))
    return by_id[0], status


def status_after(client, endpoint):
    """The member's status once it answers again (it may be busy for a moment after a long defragmentation)."""
    deadline = time.monotonic() + STATUS_AFTER_SECONDS
    while True:
        try:
            return client.status(endpoint)
        except EtcdClientError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def run_module(module, client, result):
    params = module.params
    members = client.member_list()['members']
    health = member_health(client, members)
    target, status = find_target(client, members, health, params['member'])
    free, ratio = fragmentation(status)
    result.update(
        member=dict(id=target['id'], name=target['name'], endpoint=status['endpoint'],
                    is_leader=status['leader'] == target['id']),
        db_size_before=status['db_size'], db_size_in_use_before=status['db_size_in_use'],
        fragmented_bytes=free, fragmented_ratio=round(ratio, 4))
    who = target['name'] or target['id']

    due, why = decide(status, params['min_fragmentation_ratio'], params['min_fragmentation_bytes'], params['force'])
    if not due:
        result['msg'] = '%s: %s' % (who, why)
        return result
    if target['is_learner']:
        raise Refused('%s is a learner: etcd does not defragment learners (rpc not supported for learner); promote it '
                      'first' % label(target))
    refusal = blocking_refusal(members, health, target)
    if refusal and not params['allow_quorum_loss']:
        raise Refused('%s; allow_quorum_loss=true defragments anyway' % refusal)

    result.update(changed=True, defragmented=True)
    if module.check_mode:
        result['msg'] = '%s: %s: would defragment' % (who, why)
        return result

    module.log('defragmenting %s at %s: %d bytes, %d in use' % (
        label(target), status['endpoint'], status['db_size'], status['db_size_in_use']))
    started = time.monotonic()
    try:
        client.defragment(status['endpoint'], timeout=params['timeout'])
    except EtcdClientError as error:
        result['defragmented'] = False
        if error.kind == 'timeout':
            raise EtcdClientError(
                'defragmentation of %s did not finish within %ss (timeout): etcd goes on defragmenting and the member '
                'answers no request until it is done; wait, check it with etcdops.etcd.etcd_cluster_info, and run '
                'again with a larger timeout if it is still fragmented' % (label(target), params['timeout']),
                kind='timeout', endpoint=error.endpoint)
        raise
    duration = time.monotonic() - started
    after = status_after(client, status['endpoint'])
    result.update(db_size_after=after['db_size'], db_size_in_use_after=after['db_size_in_use'],
                  reclaimed_bytes=status['db_size'] - after['db_size'], duration_seconds=round(duration, 3),
                  msg='%s: %s: defragmented in %.1f s, %.1f MiB given back' % (
                      who, why, duration, (status['db_size'] - after['db_size']) / MIB))
    module.log(result['msg'])
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        member=dict(type='str', required=True),
        min_fragmentation_ratio=dict(type='float', default=0.45),
        min_fragmentation_bytes=dict(type='bytes', default=104857600),
        force=dict(type='bool', default=False),
        allow_quorum_loss=dict(type='bool', default=False),
        timeout=dict(type='float', default=300.0),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    if not 0 <= module.params['min_fragmentation_ratio'] <= 1:
        module.fail_json(msg='min_fragmentation_ratio must be between 0 and 1, not %s' %
                         module.params['min_fragmentation_ratio'])

    run_with_client(module, run_module, dict(changed=False, defragmented=False), 'defragmentation failed')


if __name__ == '__main__':
    main()
