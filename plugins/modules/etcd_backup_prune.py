#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_backup_prune
short_description: Delete the backups of an etcd cluster that a retention policy no longer keeps
version_added: 0.1.0
description:
  - Lists the backups of O(cluster_name)/O(etcd_cluster) in the store and deletes those the retention policy
    O(retention) does not keep now (as etcd-manager does after each backup). It keeps every backup younger than
    C(keep_all_within), the oldest backup of each UTC hour younger than C(hourly_for), the oldest of each UTC day
    younger than C(daily_for). Verified backups are preferred as a bucket's representative; failed ones are kept
    only within C(keep_all_within).
  - Whatever the policy, the newest verified backup is never deleted (when none is verified, the newest one not
    yet checked), so pruning never leaves the cluster without a backup to restore.
  - A backup's metadata object is deleted first, so it stops being listed at once; then its objects.
  - With O(resources=true), the resources backups (C(<cluster_name>/resources/)) are pruned by the same policy.
  - With O(remove_incomplete=true), what interrupted runs left (objects without metadata, and unfinished S3
    multipart uploads) older than a day is removed too.
  - Needs only the store, not etcd, so it can run anywhere the store is reachable (the controller, an AWX job).
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.backup_store
  - etcdops.etcd.backup_store.unused_connection
  - etcdops.etcd.attributes
options:
  retention:
    description:
      - Durations in seconds or as V(90m), V(1h), V(7d), V(2w), V(1y); missing keys take the kops defaults.
    type: dict
    default: {keep_all_within: 1h, hourly_for: 7d, daily_for: 365d}
    suboptions:
      keep_all_within:
        description: Every backup younger than this is kept.
        type: raw
      hourly_for:
        description: The representative of each UTC hour is kept while younger than this.
        type: raw
      daily_for:
        description: The representative of each UTC day is kept while younger than this.
        type: raw
  resources:
    description:
      - Whether to prune the resources backups by the same policy.
    type: bool
    default: true
  remove_incomplete:
    description:
      - Whether to remove what interrupted runs left (older than a day, so a backup in progress is not touched).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - Lists what would be deleted and deletes nothing.
  diff_mode:
    support: none
requirements:
  - boto3 (for O(store=s3)) on the host that runs the module.
seealso:
  - module: etcdops.etcd.etcd_backup
  - module: etcdops.etcd.etcd_backup_info
'''

EXAMPLES = r'''
- name: Prune with kops's retention (every backup of the last hour, hourly for a week, daily for a year)
  etcdops.etcd.etcd_backup_prune:
    cluster_name: prod
    bucket: etcd-backups
    region: eu-west-1

- name: What would a shorter retention delete?
  etcdops.etcd.etcd_backup_prune:
    cluster_name: prod
    bucket: etcd-backups
    retention:
      hourly_for: 2d
      daily_for: 90d
  check_mode: true
  register: preview
'''

RETURN = r'''
location:
  description: Where the backups are, relative to the store's root.
  returned: always
  type: str
  sample: prod/backups/etcd/main
now:
  description: The time the policy was applied at (UTC).
  returned: success
  type: str
  sample: "2026-11-23T11:00:00Z"
pruned:
  description: The ids deleted (in check mode, that would be), newest first.
  returned: success
  type: list
  elements: str
  sample: [2026-11-01T10-15-02Z-9a0c]
kept:
  description: The ids kept, newest first.
  returned: success
  type: list
  elements: str
  sample: [2026-11-23T10-50-32Z-3f9a]
resources_pruned:
  description: The resources backup ids deleted (would be, in check mode).
  returned: success
  type: list
  elements: str
  sample: []
incomplete_removed:
  description: Ids of interrupted runs whose leftovers were removed (would be, in check mode they are only
    listed when older than a day).
  returned: success
  type: list
  elements: str
  sample: []
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._backup import (
    STORE_REQUIRED_IF,
    store_argument_spec,
    store_from_params,
    unused_connection_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._retention import RetentionError, select
from ansible_collections.etcdops.etcd.plugins.module_utils._store import (
    INCOMPLETE_GRACE_SECONDS,
    StoreError,
    backup_epoch,
    etcd_location,
    resources_location,
)

DEFAULT_RETENTION = dict(keep_all_within='1h', hourly_for='7d', daily_for='365d')


def policy_from(params):
    """The policy without unset keys (select fills them with its defaults)."""
    return dict((k, v) for k, v in (params['retention'] or {}).items() if v is not None)


def prune_location(module, store, location, policy, now):
    records = store.list_backups(location)
    keep, prune = select(records, now, policy)
    ids = [r['id'] for r in prune]
    if ids and not module.check_mode:
        store.delete_backups(location, ids)
    return [r['id'] for r in keep], ids


def incomplete(module, store, location, now):
    if module.check_mode:
        return [bid for bid in store.incomplete_backups(location) if now - backup_epoch(bid) >= INCOMPLETE_GRACE_SECONDS]
    return store.remove_incomplete(location, now=now)


def main():
    spec = unused_connection_spec()
    spec.update(store_argument_spec())
    spec.update(
        retention=dict(type='dict', default=DEFAULT_RETENTION, options=dict(
            keep_all_within=dict(type='raw'), hourly_for=dict(type='raw'), daily_for=dict(type='raw'))),
        resources=dict(type='bool', default=True),
        remove_incomplete=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=spec, required_if=STORE_REQUIRED_IF, supports_check_mode=True)
    params = module.params
    now = int(time.time())
    policy = policy_from(params)
    result = dict(changed=False, now=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now)), resources_pruned=[],
                  incomplete_removed=[])
    try:
        location = etcd_location(params['cluster_name'], params['etcd_cluster'])
        result['location'] = location.path
        store = store_from_params(params)
        kept, pruned = prune_location(module, store, location, policy, now)
        result.update(kept=kept, pruned=pruned)
        if params['resources']:
            dummy, result['resources_pruned'] = prune_location(module, store, resources_location(params['cluster_name']),
                                                               policy, now)
        if params['remove_incomplete']:
            result['incomplete_removed'] = incomplete(module, store, location, now)
            if params['resources']:
                result['incomplete_removed'] += incomplete(module, store, resources_location(params['cluster_name']),
                                                           now)
    except RetentionError as error:
        module.fail_json(msg='retention: %s' % error, **result)
    except StoreError as error:
        module.fail_json(msg='pruning stopped: %s' % error, **result)
    result['changed'] = bool(result.get('pruned') or result['resources_pruned'] or result['incomplete_removed'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
