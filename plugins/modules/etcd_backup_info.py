#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_backup_info
short_description: List the backups of an etcd cluster in a store, newest first, and preview retention
version_added: 0.1.0
description:
  - Lists the backups M(etcdops.etcd.etcd_backup) stored for O(cluster_name)/O(etcd_cluster), newest first, as
    C(etcd-manager-ctl list-backups) does, with time, member, revision, size, whether encrypted and whether verified.
  - Only complete backups are listed (those whose metadata object exists); what interrupted runs left is counted
    in RV(incomplete).
  - With O(retention), also says which backups M(etcdops.etcd.etcd_backup_prune) would delete under that policy
    now. Reads only.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.backup_store
  - etcdops.etcd.backup_store.unused_connection
  - etcdops.etcd.attributes
  - etcdops.etcd.attributes.INFO_MODULE
options:
  retention:
    description:
      - A retention policy to preview; durations in seconds or as V(90m), V(1h), V(7d), V(2w), V(1y).
      - Keys C(keep_all_within) (default V(1h)), C(hourly_for) (V(7d)) and C(daily_for) (V(365d)), the kops
        defaults. See M(etcdops.etcd.etcd_backup_prune).
    type: dict
  resources:
    description:
      - Whether to list the resources backups (C(<cluster_name>/resources/)) as well, in RV(resources).
    type: bool
    default: false
requirements:
  - boto3 (for O(store=s3)) on the host that runs the module.
seealso:
  - module: etcdops.etcd.etcd_backup
  - module: etcdops.etcd.etcd_backup_prune
'''

EXAMPLES = r'''
- name: List the backups of the main etcd cluster
  etcdops.etcd.etcd_backup_info:
    cluster_name: prod
    bucket: etcd-backups
    region: eu-west-1
    retention:
      keep_all_within: 1h
      hourly_for: 7d
      daily_for: 365d
  register: listing

- name: Show them
  ansible.builtin.debug:
    msg: "{{ item.time }} {{ item.member }} rev {{ item.revision }} {{ item.stored_bytes }} B"
  loop: "{{ listing.backups }}"
'''

RETURN = r'''
location:
  description: Where the backups are, relative to the store's root.
  returned: always
  type: str
  sample: prod/backups/etcd/main
store:
  description: The store (never a credential).
  returned: always
  type: dict
  sample: {type: s3, url: "s3://etcd-backups/prod/backups/etcd/main/"}
backups:
  description: The complete backups, newest first.
  returned: success
  type: list
  elements: dict
  contains:
    backup_id:
      description: The backup's id.
      type: str
      returned: always
      sample: 2026-11-23T10-50-32Z-3f9a
    time:
      description: When it was started (UTC).
      type: str
      returned: always
      sample: "2026-11-23T10:50:32Z"
    cluster_name:
      description: The cluster name recorded.
      type: str
      returned: always
      sample: prod
    etcd_cluster:
      description: The etcd cluster recorded.
      type: str
      returned: always
      sample: main
    member:
      description: The member that served the snapshot.
      type: str
      returned: always
      sample: master-2
    revision:
      description: The snapshot's revision.
      type: int
      returned: always
      sample: 24825
    total_key:
      description: The key count C(etcdutl snapshot status) prints.
      type: int
      returned: always
      sample: 180501
    total_size:
      description: The database size.
      type: int
      returned: always
      sample: 1395359744
    etcd_version:
      description: The etcd version of the member.
      type: str
      returned: always
      sample: 3.5.21
    stored_bytes:
      description: Bytes stored (all objects but the metadata).
      type: int
      returned: always
      sample: 301234567
    encrypted:
      description: Whether the snapshot is encrypted with age.
      type: bool
      returned: always
      sample: true
    verified:
      description: V(null) until a restore drill checked it, then V(true) or V(false).
      type: bool
      returned: always
      sample: null
    verified_at:
      description: When a restore drill (M(etcdops.etcd.etcd_backup_verify)) last recorded its result, V(null) before.
      type: str
      returned: always
      sample: "2026-11-23T11:02:10Z"
    verify_error:
      description: Why the last restore drill failed, V(null) when it passed or never ran.
      type: str
      returned: always
      sample: null
    error:
      description: Why the metadata could not be read (such a backup counts as failed).
      type: str
      returned: when the metadata is damaged
      sample: "s3://b/prod/backups/etcd/main/2026-11-23T10-50-32Z-3f9a/metadata.json is not valid JSON"
incomplete:
  description: Ids that have objects but no metadata (interrupted runs, or a run in progress); never restorable.
  returned: success
  type: list
  elements: str
  sample: []
resources:
  description: The resources backups, newest first (O(resources=true)).
  returned: when O(resources=true)
  type: list
  elements: dict
  sample: [{backup_id: 2026-11-23T10-50-32Z-3f9a, time: "2026-11-23T10:50:32Z", encrypted: true, stored_bytes: 24576}]
now:
  description: The time the retention preview was computed for (UTC).
  returned: when O(retention) is given
  type: str
  sample: "2026-11-23T11:00:00Z"
keep:
  description: With O(retention), the ids kept, newest first, each with why.
  returned: when O(retention) is given
  type: list
  elements: dict
  sample: [{backup_id: 2026-11-23T10-50-32Z-3f9a, reason: keep_all_within}]
prune:
  description: With O(retention), the ids that pruning would delete now, newest first.
  returned: when O(retention) is given
  type: list
  elements: str
  sample: [2026-11-01T10-15-02Z-9a0c]
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._backup import (
    STORE_REQUIRED_IF,
    listing_entry,
    unused_connection_spec,
    store_argument_spec,
    store_from_params,
    store_summary,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._retention import RetentionError, explain
from ansible_collections.etcdops.etcd.plugins.module_utils._store import StoreError, etcd_location, resources_location


def retention_preview(records, policy, now):
    """(keep [{backup_id, reason}], prune [ids]) for records under policy at now (epoch seconds)."""
    keep, prune = [], []
    for record, reason in explain(records, now, policy):
        if reason:
            keep.append(dict(backup_id=record['id'], reason=reason))
        else:
            prune.append(record['id'])
    return keep, prune


def main():
    spec = unused_connection_spec()
    spec.update(store_argument_spec())
    spec.update(retention=dict(type='dict'), resources=dict(type='bool', default=False))
    module = AnsibleModule(argument_spec=spec, required_if=STORE_REQUIRED_IF, supports_check_mode=True)
    params = module.params
    try:
        location = etcd_location(params['cluster_name'], params['etcd_cluster'])
        store = store_from_params(params)
        records = store.list_backups(location)
        incomplete = store.incomplete_backups(location)
        resources = None
        if params['resources']:
            resources = [dict(backup_id=r['id'], time=r['time'], encrypted=bool(r.get('encrypted')),
                              stored_bytes=r['stored_bytes'], host=r.get('host'))
                         for r in store.list_backups(resources_location(params['cluster_name']))]
    except StoreError as error:
        module.fail_json(msg='cannot list the backups: %s' % error)
    result = dict(changed=False, location=location.path, store=store_summary(store, location),
                  backups=[listing_entry(r) for r in records], incomplete=incomplete)
    if resources is not None:
        result['resources'] = resources
    if params['retention'] is not None:
        now = int(time.time())  # whole seconds: the same answer as select() at the returned time
        try:
            keep, prune = retention_preview(records, params['retention'], now)
        except RetentionError as error:
            module.fail_json(msg=str(error), **result)
        result.update(now=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now)), keep=keep, prune=prune)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
