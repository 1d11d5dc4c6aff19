#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_member
short_description: Add, promote, re-address or remove one etcd cluster member, keeping quorum
version_added: 0.1.0
description:
  - Makes one member of the etcd cluster present or absent, as C(etcdctl member add), C(member promote),
    C(member update) and C(member remove) do, and only when needed.
  - The member is found by O(name), or by one of its O(peer_urls). A member that was added but has not started yet
    has no name in the member list; it is found by its peer URL, so give O(peer_urls) with O(name).
  - With O(state=present), a member that is not there is added, by default as a learner (a member that receives
    the data but does not vote); RV(initial_cluster) and RV(initial_cluster_state) are what the new member must
    start with (C(--initial-cluster) and C(--initial-cluster-state=existing)). A learner that has started is promoted
    to a voting member as soon as it has caught up with the leader (O(promote), O(promote_timeout)); one that has not
    started yet cannot be promoted, so start it and run the task again. A member whose peer URLs differ from
    O(peer_urls) gets them (C(etcdctl member update)).
  - With O(state=absent), the member is removed, unless that would leave the cluster without quorum (see the
    notes). Removing a member that is not there changes nothing.
  - etcd itself refuses any member change while a voting member is down or has been connected for less than
    5 seconds (C(etcdserver unhealthy cluster)). The module retries such a refusal for 15 seconds, then fails with it.
    This is why a failed member is removed before its replacement is added, as the Kubernetes runbook does.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  state:
    description:
      - V(present) adds the member, updates its peer URLs and promotes it; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  name:
    description:
      - The member's name (etcd's C(--name); kubeadm uses the node name).
      - Needed to add a member, since the new member starts with this name and RV(initial_cluster) lists it.
    type: str
  peer_urls:
    description:
      - The member's peer URLs (etcd's C(--initial-advertise-peer-urls)), for example V(https://10.0.0.14:2380).
      - Required with O(state=present). With O(state=absent), a member is matched when it has one of these URLs.
    type: list
    elements: str
  learner:
    description:
      - Add a new member as a learner, which does not count in the quorum until it is promoted. With V(false), it
        is added as a voting member at once, and the cluster needs it to start before it has a margin again; the
        module then refuses the addition unless the healthy voting members already make a quorum of the membership
        with the new member (or O(force=true)).
      - Has no effect on a member that is already there (etcd cannot turn a voting member back into a learner).
    type: bool
    default: true
  promote:
    description:
      - Promote the member to a voting member when it is a learner that has started. etcd refuses the promotion
        until the learner has caught up with the leader; the module retries until O(promote_timeout).
      - With V(false), a learner stays a learner.
    type: bool
    default: true
  promote_timeout:
    description:
      - Seconds to wait for a learner to catch up with the leader before the task fails; the member then stays a
        learner, and running the task again resumes the wait.
    type: float
    default: 120.0
  force:
    description:
      - Skip this module's quorum checks (see the notes). etcd's own checks still apply; the last voting member is
        never removed.
      - For when the host running the module cannot see a member's health that the cluster sees, for example when
        a firewall blocks that member's client port from this host only.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Reports the changes that would be made (RV(actions)) and the member list they would give; an addition has
        no member id yet. The quorum checks run and fail the task as they would in a real run.
  diff_mode:
    support: full
    details:
      - Shows the member list before and after, one member per line.
notes:
  - "The quorum rule: a voting member is removed only when the healthy voting members that remain are a majority of
    the voting members that remain (for example, of three members one may be removed when the two others are
    healthy, whether the one removed is healthy or not; not when one of the two others is down). Healthy means
    that the member answers a Status request on one of its client URLs within O(command_timeout) and sees a leader.
    Learners do not vote and are always removable."
  - The last voting member is never removed, even with O(force=true).
  - A member being promoted counts as healthy for the quorum, as etcd counts it.
seealso:
  - name: Replacing a failed etcd member (Kubernetes documentation)
    description: The procedure this module's steps follow (remove the failed member, then add the new one).
    link: https://kubernetes.io/docs/tasks/administer-cluster/configure-upgrade-etcd/#replacing-a-failed-etcd-member
  - name: etcd learner design
    description: Why a new member joins as a learner and is promoted once it has caught up.
    link: https://etcd.io/docs/v3.5/learning/design-learner/
  - module: etcdops.etcd.etcd_cluster_info
'''

EXAMPLES = r'''
- name: Remove the failed member master-1 (the two others are healthy)
  etcdops.etcd.etcd_member:
    name: master-1
    state: absent

- name: Add master-4 as a learner
  etcdops.etcd.etcd_member:
    name: master-4
    peer_urls: ["https://10.0.0.14:2380"]
    promote: false
  register: added

- name: Start etcd on master-4 with the cluster it joins
  ansible.builtin.debug:
    msg: >-
      --name=master-4 --initial-cluster={{ added.initial_cluster }}
      --initial-cluster-state={{ added.initial_cluster_state }}

- name: Promote master-4 once it has caught up with the leader
  etcdops.etcd.etcd_member:
    name: master-4
    peer_urls: ["https://10.0.0.14:2380"]
    promote_timeout: 300

- name: Give master-2 a new peer address before restarting it there
  etcdops.etcd.etcd_member:
    name: master-2
    peer_urls: ["https://10.0.1.12:2380"]
'''

RETURN = r'''
actions:
  description: What was done (or, in check mode, would be), in order; empty when nothing changed.
  returned: always
  type: list
  elements: str
  sample: ['add as learner']
member:
  description: The member after the change; V(null) when it is absent.
  returned: success
  type: dict
  contains:
    id:
      description: Member id, in hex as etcdctl shows it; V(null) in check mode for a member not added yet.
      type: str
      returned: always
      sample: 2be1eb8f84b7f63e
    name:
      description: Member name; empty for a member that has not started yet.
      type: str
      returned: always
      sample: master-4
    peer_urls:
      description: The member's peer URLs.
      type: list
      elements: str
      returned: always
      sample: ['https://10.0.0.14:2380']
    client_urls:
      description: The member's client URLs; empty until it has started.
      type: list
      elements: str
      returned: always
      sample: []
    is_learner:
      description: Whether the member is a learner.
      type: bool
      returned: always
      sample: true
members_before:
  description: The member list before the task, as RV(member) describes each entry.
  returned: success
  type: list
  elements: dict
  sample: [{"id": "8e9e05c52164694d", "name": "master-2", "peer_urls": ["https://10.0.0.12:2380"],
            "client_urls": ["https://10.0.0.12:2379"], "is_learner": false}]
members_after:
  description: The member list after the task (in check mode, the one the changes would give).
  returned: success
  type: list
  elements: dict
  sample: [{"id": "8e9e05c52164694d", "name": "master-2", "peer_urls": ["https://10.0.0.12:2380"],
            "client_urls": ["https://10.0.0.12:2379"], "is_learner": false}]
cluster_id:
  description: The cluster id, in hex.
  returned: success
  type: str
  sample: cdf818194e3a8c32
initial_cluster:
  description:
    - The C(--initial-cluster) value the member starts with to join this cluster (ETCD_INITIAL_CLUSTER in the output
      of C(etcdctl member add)), the member under O(name).
  returned: when O(state=present) and the member's name is known (O(name), or the name a started member published)
  type: str
  sample: master-2=https://10.0.0.12:2380,master-3=https://10.0.0.13:2380,master-4=https://10.0.0.14:2380
initial_cluster_state:
  description: The C(--initial-cluster-state) value the member starts with; always V(existing).
  returned: when RV(initial_cluster) is
  type: str
  sample: existing
msg:
  description: What was done, or what the operator does next (for example, start a learner so it can be promoted).
  returned: success
  type: str
  sample: "member master-4 added as a learner: start it with initial_cluster and initial_cluster_state=existing, then run this task again to promote it"
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
    MembershipError,
    find_member,
    initial_cluster,
    label,
    member_health,
    removal_refusal,
    same_urls,
    voting,
    voting_add_refusal,
)

# etcd refuses changes until every voting member has been connected for 5 s (its HealthInterval)
RECONFIG_SETTLE_SECONDS = 15.0
RETRY_INTERVAL = 1.0
NOT_IN_SYNC = 'can only promote a learner member which is in sync with leader'


def plan(members, state, name, peer_urls, learner, promote):
    """(target member or None, [actions]) with actions among 'add', 'update', 'promote', 'remove'."""
    target = find_member(members, name=name, peer_urls=peer_urls)
    if state == 'absent':
        return target, (['remove'] if target else [])
    if target is None:
        if not name:
            raise Refused('no member has peer URLs %s, and name is needed to add one (the new member starts with '
                          'that name)' % ', '.join(peer_urls))
        return None, ['add']
    actions = []
    if not same_urls(target['peer_urls'], peer_urls):
        actions.append('update')
    if target['is_learner'] and promote and started(target):
        actions.append('promote')
    return target, actions


def started(member):
    """A member publishes its name and client URLs once it has started and joined."""
    return bool(member['name'])


def action_label(action, learner):
    return dict(add='add as learner' if learner else 'add as voting member', update='update peer URLs',
                promote='promote to voting member', remove='remove')[action]


def check_quorum(client, members, target, actions, learner, force):
    """Raise Refused when an action would leave the cluster without quorum (the last voter: even with force)."""
    if 'remove' in actions and not target['is_learner'] and len(voting(members)) <= 1:
        raise Refused(removal_refusal(members, {}, target))
    if force:
        return
    if 'remove' in actions and not target['is_learner']:
        refusal = removal_refusal(members, member_health(client, members), target)
        if refusal:
            raise Refused(refusal + '; force=true skips this check')
    if 'add' in actions and not learner:
        refusal = voting_add_refusal(members, member_health(client, members))
        if refusal:
            raise Refused(refusal + '; force=true skips this check')


def predict(members, target, action, name, peer_urls, learner):
    """The member list an action gives, for check mode (an added member has no id yet)."""
    if action == 'add':
        return members + [dict(id=None, name='', peer_urls=list(peer_urls), client_urls=[], is_learner=learner)]
    if action == 'remove':
        return [m for m in members if m['id'] != target['id']]
    changed = []
    for member in members:
        member = dict(member)
        if member['id'] == target['id']:
            if action == 'update':
                member['peer_urls'] = list(peer_urls)
            else:
                member['is_learner'] = False
        changed.append(member)
    return changed


def retrying(call, timeout, retry_on):
    """call() until it succeeds, or raises an error retry_on(error) rejects, or timeout seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except EtcdClientError as error:
            if not retry_on(error) or time.monotonic() + RETRY_INTERVAL > deadline:
                raise
        time.sleep(RETRY_INTERVAL)


def unsettled(error):
    return error.kind == 'unhealthy_cluster'


def apply(client, target, action, peer_urls, learner, promote_timeout):
    """Run one action; return (member list after it, the member's id)."""
    if action == 'add':
        added = retrying(lambda: client.member_add(peer_urls, is_learner=learner), RECONFIG_SETTLE_SECONDS, unsettled)
        return added['members'], added['member']['id']
    if action == 'update':
        done = retrying(lambda: client.member_update(target['id'], peer_urls), RECONFIG_SETTLE_SECONDS, unsettled)
        return done['members'], target['id']
    if action == 'remove':
        done = retrying(lambda: client.member_remove(target['id']), RECONFIG_SETTLE_SECONDS, unsettled)
        return done['members'], target['id']

    def catching_up(error):
        return NOT_IN_SYNC in (error.details or error.msg) or unsettled(error)

    try:
        done = retrying(lambda: client.member_promote(target['id']), promote_timeout, catching_up)
    except EtcdClientError as error:
        if NOT_IN_SYNC in (error.details or error.msg):
            raise EtcdClientError('%s has not caught up with the leader within %ss (promote_timeout): it stays a '
                                  'learner; check its log and its peer connectivity, then run the task again' % (
                                      label(target), promote_timeout), kind='learner_not_ready',
                                  endpoint=error.endpoint)
        raise
    return done['members'], target['id']


def listing_lines(members):
    return ''.join('%s %s %s%s\n' % (m['id'] or '(new)', m['name'] or '(not started)', ','.join(m['peer_urls']),
                                     ' learner' if m['is_learner'] else '') for m in members)


def next_step(state, who, member, actions, promote):
    """One sentence: what was done, or what the operator does next."""
    if state == 'absent':
        return '%s removed' % who if actions else '%s is not a member: nothing to remove' % who
    if member['is_learner'] and promote and not started(member):
        start = 'added as a learner' if 'add as learner' in actions else 'is a learner that has not started yet'
        return ('%s %s: start it with initial_cluster and initial_cluster_state=existing, then run this task again '
                'to promote it' % (who, start))
    if not actions:
        kind = 'a learner' if member['is_learner'] else 'a voting member'
        return '%s is present as %s: nothing to change' % (who, kind)
    return '%s: %s' % (who, ', '.join(actions))


def run_module(module, client, result):
    """Fill result (also on failure: what was done until then) and return it; raises Refused, MembershipError,
    EtcdClientError."""
    params = module.params
    state, name, peer_urls = params['state'], params['name'], params['peer_urls']
    learner, promote = params['learner'], params['promote']

    listing = client.member_list()
    before = listing['members']
    result.update(cluster_id=listing['cluster_id'], members_before=before, members_after=before)
    target, actions = plan(before, state, name, peer_urls, learner, promote)
    who = 'member %s' % (name or (target and (target['name'] or target['id'])) or ', '.join(peer_urls))
    check_quorum(client, before, target, actions, learner, params['force'])

    after = before
    for action in actions:
        result['actions'].append(action_label(action, learner))
        if module.check_mode:
            after = predict(after, target, action, name, peer_urls, learner)
            member_id = None if action == 'add' else target['id']
        else:
            after, member_id = apply(client, target, action, peer_urls, learner, params['promote_timeout'])
            result.update(changed=True, members_after=after)
        if action == 'remove':
            target = None
        elif action == 'add' and module.check_mode:
            target = after[-1]
        else:
            target = [m for m in after if m['id'] == member_id][0]
        result['member'] = target

    result.update(changed=bool(actions), members_after=after, member=target,
                  msg=next_step(state, who, target, result['actions'], promote))
    if module.check_mode and actions:
        result['msg'] = '%s: would %s' % (who, ', '.join(result['actions']))
    if state == 'present' and (name or target['name']):
        result['initial_cluster'] = initial_cluster(after, target['id'], name or target['name'])
        result['initial_cluster_state'] = 'existing'
    if module._diff:
        result['diff'] = dict(before=listing_lines(before), after=listing_lines(after))
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        name=dict(type='str'),
        peer_urls=dict(type='list', elements='str'),
        learner=dict(type='bool', default=True),
        promote=dict(type='bool', default=True),
        promote_timeout=dict(type='float', default=120.0),
        force=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           required_if=[('state', 'present', ['peer_urls'])],
                           required_one_of=[('name', 'peer_urls')], supports_check_mode=True)

    run_with_client(module, run_module, dict(changed=False, actions=[], member=None), 'etcd member change failed', refused=(MembershipError, Refused))


if __name__ == '__main__':
    main()
