#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_master_leases
short_description: Remove the stale kube-apiserver master leases (/registry/masterleases/) and keep the live ones
version_added: 0.1.0
description:
  - Lists the keys under O(prefix) (kube-apiserver's C(/registry/masterleases/<advertise address>)) with the etcd
    lease each is bound to and that lease's remaining TTL, as C(etcdctl get --prefix --keys-only) and
    C(etcdctl lease timetolive) show them.
  - Deletes every key whose address is not in O(keep), the advertise addresses of the API servers that run. A key
    in O(keep) is never deleted, with or without a lease. This is the kops runbook's "stale master leases" step, done
    key by key instead of C(etcdctl del --prefix), so that live API servers never lose their entry.
  - Each key is deleted in a transaction that compares its mod revision with the one read, so a key an API server
    has put again in between is left alone (reported in RV(changed_meanwhile)).
  - The keys are leases of the API servers, not cluster data; every removed key is returned in RV(removed).
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  keep:
    description:
      - The advertise addresses (C(--advertise-address) of kube-apiserver) of the API servers that run; their keys
        are kept. An empty list removes every key under O(prefix), as the kops runbook does (the API servers that run
        put theirs back within seconds).
    type: list
    elements: str
    required: true
  prefix:
    description:
      - The key prefix of the master leases; kube-apiserver's C(--etcd-prefix) followed by C(/masterleases/).
      - Must end with C(/), so that C(/registry/masterleases) never matches other keys.
    type: str
    default: /registry/masterleases/
attributes:
  check_mode:
    support: full
    details:
      - Lists the keys and what would be removed; deletes nothing.
  diff_mode:
    support: full
    details:
      - The list of keys under O(prefix) before and after.
seealso:
  - module: etcdops.etcd.etcd_cluster_info
  - name: kops, etcd administration (stale master leases)
    description: The procedure this module automates.
    link: https://kops.sigs.k8s.io/operations/etcd_administration/
'''

EXAMPLES = r'''
- name: Remove every master lease but those of the API servers at 10.0.0.11 and 10.0.0.12
  etcdops.etcd.etcd_master_leases:
    keep: [10.0.0.11, 10.0.0.12]
  register: leases

- name: Say what was removed
  ansible.builtin.debug:
    msg: "{{ leases.removed | map(attribute='key') | list }}"
'''

RETURN = r'''
leases:
  description: Every key found under O(prefix), before any deletion.
  returned: success
  type: list
  elements: dict
  contains:
    key:
      description: The key.
      type: str
      returned: always
      sample: /registry/masterleases/10.0.0.13
    address:
      description: The API server address, the key without O(prefix).
      type: str
      returned: always
      sample: 10.0.0.13
    mod_revision:
      description: The revision of the key's last write.
      type: int
      returned: always
      sample: 4521
    lease_id:
      description: The etcd lease the key is bound to, in hex as etcdctl shows it; V(null) when it has none.
      type: str
      returned: always
      sample: 694d77aa9e38260f
    ttl:
      description: Seconds left on that lease; V(-1) when the lease no longer exists; V(null) without a lease.
      type: int
      returned: always
      sample: 12
    live:
      description: Whether the address is in O(keep).
      type: bool
      returned: always
      sample: false
removed:
  description: The keys that were deleted (in check mode, that would be deleted), each as in RV(leases).
  returned: success
  type: list
  elements: dict
kept:
  description: The keys of the live API servers, left as they are.
  returned: success
  type: list
  elements: str
  sample: [/registry/masterleases/10.0.0.11]
missing:
  description: Addresses in O(keep) that have no key (an API server that has not put its lease yet, or is not running).
  returned: success
  type: list
  elements: str
  sample: []
changed_meanwhile:
  description: Stale keys that an API server wrote again between the read and the delete, and that were left alone.
  returned: success
  type: list
  elements: str
  sample: []
msg:
  description: What was (or would be) removed and kept.
  returned: always
  type: str
  sample: "removed 1 stale master lease (/registry/masterleases/10.0.0.99, no lease); kept 3"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._leases import (
    DEFAULT_PREFIX,
    delete_if_unchanged,
    plan,
    read_leases,
)


def describe(entry):
    if entry['lease_id'] is None:
        how = 'no lease'
    elif entry['ttl'] is not None and entry['ttl'] < 0:
        how = 'lease %s expired' % entry['lease_id']
    else:
        how = 'lease %s, %ss left' % (entry['lease_id'], entry['ttl'])
    return '%s (%s)' % (entry['key'], how)


def run_module(module, client, result):
    prefix = module.params['prefix']
    keep = [a.strip() for a in module.params['keep'] if a and a.strip()]
    leases = read_leases(client, prefix)
    stale, kept = plan(leases, keep)
    for entry in leases:
        entry['live'] = entry['address'] in keep
    present = set(entry['address'] for entry in leases)
    result.update(leases=leases, kept=[e['key'] for e in kept], missing=sorted(set(keep) - present),
                  removed=[], changed_meanwhile=[])
    before = [e['key'] for e in leases]
    if not stale:
        result['msg'] = 'no stale master lease under %s; kept %d (%s)' % (
            prefix, len(kept), ', '.join(result['kept']) or 'none')
        return result
    # filled as keys go, so a failure half way reports what was removed already
    removed, meanwhile = result['removed'], result['changed_meanwhile']
    if module.check_mode:
        removed.extend(stale)
    else:
        for entry in stale:
            if delete_if_unchanged(client, entry['key'], entry['mod_revision']):
                removed.append(entry)
            else:
                meanwhile.append(entry['key'])
    result['changed'] = bool(removed)
    if module._diff:
        gone = set(e['key'] for e in removed)
        result['diff'] = dict(before='\n'.join(before) + '\n' if before else '',
                              after=''.join(k + '\n' for k in before if k not in gone),
                              before_header='%s (keys)' % prefix, after_header='%s (keys)' % prefix)
    result['msg'] = '%s %d stale master lease%s (%s); kept %d%s' % (
        'would remove' if module.check_mode else 'removed', len(removed), '' if len(removed) == 1 else 's',
        ', '.join(describe(e) for e in removed), len(kept),
        '; left %s, written again meanwhile' % ', '.join(meanwhile) if meanwhile else '')
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        keep=dict(type='list', elements='str', required=True),
        prefix=dict(type='str', default=DEFAULT_PREFIX),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    prefix = module.params['prefix']
    if not prefix or not prefix.endswith('/') or prefix == '/':
        module.fail_json(msg='prefix %r must be a key prefix ending with / (kube-apiserver uses '
                             '/registry/masterleases/): nothing was deleted' % prefix)

    client = client_from_module(module)
    result = dict(changed=False, removed=[], kept=[], leases=[], missing=[], changed_meanwhile=[])
    try:
        run_module(module, client, result)
    except EtcdClientError as error:
        done = ', '.join(e['key'] for e in result.get('removed') or []) or 'nothing'
        module.fail_json(msg='cannot clean the master leases under %s: %s (removed so far: %s)' % (
            prefix, error.msg, done), error_kind=error.kind, **result)
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
