#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_compact
short_description: Compact the etcd key history up to a revision (the current one by default)
version_added: 0.1.0
description:
  - Discards the key history older than a revision, as C(etcdctl compact <revision>) does, so that
    defragmentation (M(etcdops.etcd.etcd_defrag)) can give the space back. This is the first step of the recovery
    from a NOSPACE alarm; the API server compacts every 5 minutes on its own in normal operation.
  - By default compacts to the cluster's current revision, which keeps only the latest value of each key.
  - Nothing is done when the history is already compacted up to that revision (no change).
  - Compaction cannot be undone; watchers and readers of an older revision get "required revision has been
    compacted". Take a backup first (the role C(etcdops.etcd.backup), C(tasks_from=pre_change)).
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  revision:
    description:
      - The revision to compact to; V(0) means the current revision of the cluster.
      - A revision above the current one is refused.
    type: int
    default: 0
  physical:
    description:
      - Wait until the compacted history is removed from every member's database (C(etcdctl compact --physical)),
        so that a defragmentation right after gives the space back.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the history would be compacted and to which revision.
  diff_mode:
    support: none
seealso:
  - name: etcd maintenance, history compaction
    description: What compaction keeps and discards.
    link: https://etcd.io/docs/v3.5/op-guide/maintenance/#history-compaction-v3-api-key-value-database
  - module: etcdops.etcd.etcd_defrag
  - module: etcdops.etcd.etcd_alarm
'''

EXAMPLES = r'''
- name: Keep only the latest value of each key (the first step out of NOSPACE)
  etcdops.etcd.etcd_compact:
  register: compacted

- name: Compact up to a given revision
  etcdops.etcd.etcd_compact:
    revision: 123456
'''

RETURN = r'''
revision:
  description: The revision the history is compacted to (in check mode, would be).
  returned: success
  type: int
  sample: 123456
current_revision:
  description: The cluster's current revision when the task ran.
  returned: success
  type: int
  sample: 123456
compacted:
  description: Whether this task compacted the history (in check mode, whether it would).
  returned: success
  type: bool
  sample: true
msg:
  description: What was done.
  returned: success
  type: str
  sample: "history compacted to revision 123456 (the current revision)"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    COMPACTED,
    EtcdClientError,
    Refused,
    connection_argument_spec,
    run_with_client,
)


def run_module(module, client, result):
    params = module.params
    current = client.count(b'')['revision']
    wanted = params['revision'] or current
    if wanted > current:
        raise Refused('revision %d is above the current revision %d: give a revision the cluster has reached, or 0 '
                      'for the current one' % (wanted, current))
    which = 'the current revision' if wanted == current else 'current revision %d' % current
    result.update(revision=wanted, current_revision=current, compacted=False)
    if client.compacted(wanted):
        result['msg'] = 'history already compacted up to revision %d (%s): nothing to do' % (wanted, which)
        return result
    result.update(changed=True, compacted=True)
    if module.check_mode:
        result['msg'] = 'would compact the history to revision %d (%s)' % (wanted, which)
        return result
    try:
        client.compact(wanted, physical=params['physical'])
    except EtcdClientError as error:
        if COMPACTED not in (error.details or error.msg):
            raise
        # compacted meanwhile by someone else (the API server compacts every 5 minutes)
        result.update(changed=False, compacted=False)
        result['msg'] = 'history was compacted up to revision %d meanwhile by another client: nothing to do' % wanted
        return result
    result['msg'] = 'history compacted to revision %d (%s)' % (wanted, which)
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        revision=dict(type='int', default=0),
        physical=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    if module.params['revision'] < 0:
        module.fail_json(msg='revision must be 0 (the current revision) or a positive revision, not %d' %
                         module.params['revision'])

    run_with_client(module, run_module, dict(changed=False), 'compaction failed')


if __name__ == '__main__':
    main()
