#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_data_dir
short_description: Give a stopped etcd member an empty data directory, moving its old data aside (never deleted)
version_added: 0.1.0
description:
  - Makes sure the etcd data directory O(path) holds no member data, so that the member can join a cluster again
    from nothing (as a learner, with C(--initial-cluster-state=existing)).
  - When O(path) holds a C(member) directory, the whole data directory is moved aside as
    C(<path>.moved-<UTC timestamp>) and an empty one (mode C(0700)) takes its place. Where O(path) is a mount point,
    its content moves into C(<path>/moved-<UTC timestamp>/) instead. Nothing is ever deleted. This is the same move
    as M(etcdops.etcd.etcd_snapshot)'s restore (module_utils C(_restore)).
  - Refuses, changing nothing, while a process uses the data directory (an C(etcd) whose C(--data-dir) is O(path), or
    any process with a file open under it); stop the member first (park its manifest with
    M(etcdops.etcd.static_pod_manifest)).
  - Without a C(member) directory there is nothing to move; a missing O(path) is created.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.attributes
  - etcdops.etcd.attributes.changing_module
attributes:
  check_mode:
    details:
      - Reports where the old data would go and changes nothing.
  diff_mode:
    details:
      - Shows the data directory's content before and after (member data, and where it goes).
options:
  path:
    description:
      - The member's data directory (etcd's C(--data-dir)).
    type: path
    default: /var/lib/etcd
  state:
    description:
      - V(empty) - O(path) exists and holds no C(member) directory; old member data is moved aside.
    type: str
    choices: [empty]
    default: empty
notes:
  - Reading other processes' open files needs root, as the member's data directory does.
seealso:
  - module: etcdops.etcd.etcd_snapshot
  - module: etcdops.etcd.static_pod_manifest
'''

EXAMPLES = r'''
- name: Stop the member (park its manifest)
  etcdops.etcd.static_pod_manifest:
    name: etcd
    state: absent
    wait: stopped

- name: Move its old data aside and give it an empty data directory
  etcdops.etcd.etcd_data_dir:
    path: /var/lib/etcd
  register: moved

- name: Show where the old data went
  ansible.builtin.debug:
    msg: "{{ moved.moved_to }}"
'''

RETURN = r'''
path:
  description: The data directory.
  returned: always
  type: str
  sample: /var/lib/etcd
had_data:
  description: Whether O(path) held a C(member) directory before the task.
  returned: always
  type: bool
  sample: true
moved_to:
  description: Where the old data went (in check mode, would go); V(null) when nothing was moved.
  returned: always
  type: str
  sample: /var/lib/etcd.moved-20250314T101500Z
users:
  description: The processes that use the data directory, when the module refused because of them.
  returned: on failure because the data directory is in use
  type: list
  elements: dict
  sample: [{pid: 4242, why: etcd --data-dir=/var/lib/etcd}]
msg:
  description: What was done (or would be).
  returned: always
  type: str
  sample: moved /var/lib/etcd aside to /var/lib/etcd.moved-20250314T101500Z; /var/lib/etcd is empty
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.etcdops.etcd.plugins.module_utils._restore import (
    etcd_users,
    moved_path,
    restoring_dir,
    swap_in,
    utc_stamp,
)


def _entries(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', default='/var/lib/etcd'),
            state=dict(type='str', choices=['empty'], default='empty'),
        ),
        supports_check_mode=True,
    )
    data_dir = module.params['path'].rstrip('/') or '/'
    if data_dir == '/' or not os.path.isabs(data_dir):
        module.fail_json(msg='path must be an absolute data directory, not %r' % module.params['path'])
    result = dict(changed=False, path=data_dir, had_data=False, moved_to=None)

    if os.path.lexists(data_dir) and not os.path.isdir(data_dir):
        module.fail_json(msg='%s exists and is not a directory; look at it by hand' % data_dir, **result)
    if not os.path.lexists(data_dir):
        result.update(changed=True, msg='%s %s (it did not exist)' % (
            'would create' if module.check_mode else 'created', data_dir))
        if module._diff:
            result['diff'] = dict(before=dict(path=data_dir, exists=False), after=dict(path=data_dir, exists=True))
        if not module.check_mode:
            try:
                os.makedirs(data_dir, 0o700)
            except OSError as exc:
                module.fail_json(msg='cannot create %s: %s' % (data_dir, to_native(exc)), **result)
        module.exit_json(**result)

    result['had_data'] = os.path.isdir(os.path.join(data_dir, 'member'))
    if not result['had_data']:
        result['msg'] = '%s holds no member data: nothing to move' % data_dir
        module.exit_json(**result)

    users = etcd_users(data_dir)
    if users:
        module.fail_json(msg='%s is in use (%s): stop the member first (park its manifest with static_pod_manifest '
                             'state=absent wait=stopped); nothing was moved'
                             % (data_dir, '; '.join('pid %d: %s' % (u['pid'], u['why']) for u in users)),
                         users=users, **result)

    restoring = restoring_dir(data_dir)
    if os.path.lexists(restoring) and (not os.path.isdir(restoring) or _entries(restoring)):
        module.fail_json(msg='%s is left from an interrupted restore; look at it, move it away, and run again'
                             % restoring, **result)

    stamp = utc_stamp()
    before = _entries(data_dir)
    if module.check_mode:
        result['moved_to'] = moved_path(data_dir, stamp)
    else:
        try:
            if not os.path.isdir(restoring):
                os.mkdir(restoring, 0o700)
            result['moved_to'] = swap_in(restoring, data_dir, stamp)
        except OSError as exc:
            module.fail_json(msg='could not move %s aside: %s; the data is where it was or at %s, nothing was deleted'
                                 % (data_dir, to_native(exc), moved_path(data_dir, stamp)), **result)
    result.update(changed=True, msg='%s %s aside to %s; %s is empty' % (
        'would move' if module.check_mode else 'moved', data_dir, result['moved_to'], data_dir))
    if module._diff:
        result['diff'] = dict(before=dict(path=data_dir, entries=before),
                              after=dict(path=data_dir, entries=[], moved_to=result['moved_to'], moved_entries=before))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
