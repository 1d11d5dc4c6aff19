#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_alarm
short_description: List etcd's alarms and disarm NOSPACE; never disarm CORRUPT
version_added: 0.1.0
description:
  - With O(state=listed), reports the active alarms, as C(etcdctl alarm list) does, and changes nothing.
  - With O(state=disarmed), disarms the NOSPACE alarms of every member, or of one O(member), as
    C(etcdctl alarm disarm) does, and reports what it disarmed. Nothing to disarm is no change.
  - etcd raises NOSPACE when a member's database file reaches its C(--quota-backend-bytes) and then refuses every
    write. Disarming it helps only once the file is smaller again, that is after compaction and defragmentation of
    every member (M(etcdops.etcd.etcd_defrag)); otherwise the next write raises it again.
  - CORRUPT (a member's data differs from the others') is reported and never disarmed. Asked to disarm it, the task
    fails and says how to investigate.
  - One module rather than an info module and a disarm module, since C(etcdctl alarm) is one command and a disarm
    must list first; M(etcdops.etcd.etcd_cluster_info) also reports the alarms with the rest of the cluster.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  state:
    description:
      - V(listed) only reads the alarms; V(disarmed) disarms the O(alarm) alarms.
    type: str
    choices: [listed, disarmed]
    default: listed
  alarm:
    description:
      - The alarm to disarm with O(state=disarmed). V(CORRUPT) is always refused.
    type: str
    choices: [NOSPACE, CORRUPT]
    default: NOSPACE
  member:
    description:
      - Disarm only this member's alarm, by name or by member id in hex; all members by default.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reports the alarms that would be disarmed and disarms none.
  diff_mode:
    support: none
seealso:
  - name: etcd maintenance, space quota
    description: Why etcd raises NOSPACE and how to recover from it.
    link: https://etcd.io/docs/v3.5/op-guide/maintenance/#space-quota
  - name: etcd data corruption detection
    description: How etcd detects that a member's data differs (CORRUPT).
    link: https://etcd.io/docs/v3.5/op-guide/data_corruption/
  - module: etcdops.etcd.etcd_defrag
  - module: etcdops.etcd.etcd_cluster_info
'''

EXAMPLES = r'''
- name: List the active alarms
  etcdops.etcd.etcd_alarm:
  register: alarms

- name: After compacting and defragmenting every member, let etcd take writes again
  etcdops.etcd.etcd_alarm:
    state: disarmed
'''

RETURN = r'''
alarms:
  description: The alarms active before the task, as C(etcdctl alarm list) shows them.
  returned: success
  type: list
  elements: dict
  contains:
    member_id:
      description: Id of the member that raised the alarm, in hex.
      type: str
      returned: always
      sample: 8e9e05c52164694d
    member_name:
      description: Name of that member; empty when it is not (or no longer) in the member list.
      type: str
      returned: always
      sample: master-1
    alarm:
      description: V(NOSPACE) or V(CORRUPT).
      type: str
      returned: always
      sample: NOSPACE
disarmed:
  description: The alarms disarmed (in check mode, those that would be), as in RV(alarms).
  returned: success
  type: list
  elements: dict
  sample: [{"member_id": "8e9e05c52164694d", "member_name": "master-1", "alarm": "NOSPACE"}]
alarms_after:
  description: The alarms active after the task (in check mode, those that would remain), as in RV(alarms).
  returned: success
  type: list
  elements: dict
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    Refused,
    connection_argument_spec,
    run_with_client,
    parse_member_id,
)

CORRUPT_ADVICE = (
    "CORRUPT alarms are never disarmed by this module: etcd raised it because one member's data differs from the "
    "others'. Investigate first: run 'etcdctl endpoint hashkv --cluster' (etcd 3.5 and later add a revision with "
    "--rev) to find the member whose hash differs at the same revision, take a snapshot from a member that agrees "
    "with the majority, replace the odd member (remove it, empty its data directory, add it back), and disarm by hand "
    "with 'etcdctl alarm disarm' only once every member's hash agrees")


def named(alarms, members):
    names = dict((m['id'], m['name']) for m in members)
    return [dict(member_id=a['member_id'], member_name=names.get(a['member_id'], ''), alarm=a['alarm'])
            for a in alarms]


def member_id_of(members, wanted):
    """The hex id of a member given by name or id; Refused when neither matches."""
    by_name = [m['id'] for m in members if m['name'] == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise Refused('%d members are named %s (%s): give the member id' % (len(by_name), wanted, ', '.join(by_name)))
    try:
        return format(parse_member_id(wanted), 'x')
    except EtcdClientError:
        raise Refused('no member is named %s, and it is not a member id (members: %s)' % (
            wanted, ', '.join('%s (%s)' % (m['name'] or '(not started)', m['id']) for m in members)))


def select(alarms, alarm, member_id):
    """The active alarms a disarm of alarm (for member_id, or all members when None) would deactivate."""
    if alarm == 'CORRUPT':
        raise Refused(CORRUPT_ADVICE)
    return [a for a in alarms if a['alarm'] == alarm and (member_id is None or a['member_id'] == member_id)]


def run_module(module, client, result):
    params = module.params
    members = client.member_list()['members']
    alarms = named(client.alarm_list(), members)
    result.update(alarms=alarms, disarmed=[], alarms_after=alarms)
    corrupt = [a for a in alarms if a['alarm'] == 'CORRUPT']
    if corrupt:
        module.warn('CORRUPT alarm active on %s: %s' % (
            ', '.join('%s (%s)' % (a['member_name'] or '?', a['member_id']) for a in corrupt), CORRUPT_ADVICE))
    if params['state'] == 'listed':
        return result

    member_id = member_id_of(members, params['member']) if params['member'] else None
    chosen = select(alarms, params['alarm'], member_id)
    if not chosen:
        return result
    result.update(changed=True, disarmed=chosen)
    if module.check_mode:
        result['alarms_after'] = [a for a in alarms if a not in chosen]
        return result
    for alarm in chosen:
        client.alarm_disarm(member_id=alarm['member_id'], alarm=alarm['alarm'])
    result['alarms_after'] = named(client.alarm_list(), members)
    again = [a for a in result['alarms_after'] if a in chosen]
    if again:
        module.warn('NOSPACE is active again on %s: the database is still above its quota; compact, defragment every '
                    'member, then disarm' % ', '.join(a['member_name'] or a['member_id'] for a in again))
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        state=dict(type='str', choices=['listed', 'disarmed'], default='listed'),
        alarm=dict(type='str', choices=['NOSPACE', 'CORRUPT'], default='NOSPACE'),
        member=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)

    run_with_client(module, run_module, dict(changed=False), 'etcd alarms')


if __name__ == '__main__':
    main()
