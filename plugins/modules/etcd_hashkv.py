#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_hashkv
short_description: Check that every etcd member holds the same keyspace (hashkv at one revision)
version_added: 0.1.0
description:
  - Asks every voting member for the hash of its keyspace at one revision, as C(etcdctl endpoint hashkv --cluster
    --rev=<revision>) does, and reports whether all hashes are equal. This is the check that closes a restore.
  - The revision is O(revision), or else the lowest current revision among the members, so that every member has it.
  - Waits up to O(wait_seconds) for every member to answer and the hashes to agree (members that were just started
    may still be applying entries); fails when they do not, naming each member's hash.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
  - etcdops.etcd.attributes.info_module
options:
  revision:
    description:
      - The revision to hash at; V(0) picks the lowest current revision among the members.
    type: int
    default: 0
  members:
    description:
      - How many voting members must answer; V(0) means every voting member in the member list.
    type: int
    default: 0
  wait_seconds:
    description:
      - Seconds to keep asking until every member answers and the hashes agree.
    type: int
    default: 60
seealso:
  - name: etcd endpoint hashkv
    description: etcdctl's hashkv command.
    link: https://etcd.io/docs/v3.5/op-guide/data_corruption/
  - module: etcdops.etcd.etcd_snapshot
'''

EXAMPLES = r'''
- name: After a restore, every member must hold the same data
  etcdops.etcd.etcd_hashkv:
    wait_seconds: 120
  register: hashkv
'''

RETURN = r'''
agree:
  description: Whether every member answered with the same hash at RV(revision).
  returned: success
  type: bool
  sample: true
revision:
  description: The revision the members hashed at.
  returned: success
  type: int
  sample: 1000012345
hashes:
  description: Each voting member's answer.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Member name.
      type: str
      returned: always
      sample: master-1
    endpoint:
      description: The client URL asked.
      type: str
      returned: always
      sample: https://10.0.0.11:2379
    hash:
      description: The keyspace hash; V(null) when the member did not answer.
      type: int
      returned: always
      sample: 1084519789
    compact_revision:
      description: The member's compacted revision.
      type: int
      returned: always
      sample: 1000012000
    error:
      description: Why the member did not answer; V(null) when it did.
      type: str
      returned: always
      sample: null
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)


def one_look(client, revision, expected):
    """(agree, revision, hashes, problem) from one round of questions."""
    listing = client.member_list()
    voters = [m for m in listing['members'] if not m['is_learner']]
    if expected and len(voters) != expected:
        return False, revision, [], '%d voting members, %d expected' % (len(voters), expected)
    urls = []
    for member in voters:
        if not member['client_urls']:
            return False, revision, [], 'member %s has not started (no client URL)' % (member['name'] or member['id'])
        urls.append((member, member['client_urls'][0]))
    if not revision:
        revisions = []
        for member, url in urls:
            try:
                revisions.append(client.status(url)['revision'])
            except EtcdClientError as error:
                return False, revision, [], '%s: %s' % (member['name'], error.msg)
        revision = min(revisions)
    hashes = []
    for member, url in urls:
        entry = dict(name=member['name'], endpoint=url, hash=None, compact_revision=None, error=None)
        try:
            answer = client.hashkv(url, revision)
            entry.update(hash=answer['hash'], compact_revision=answer['compact_revision'])
        except EtcdClientError as error:
            entry['error'] = error.msg
        hashes.append(entry)
    failed = [h for h in hashes if h['error']]
    if failed:
        return False, revision, hashes, '; '.join('%s: %s' % (h['name'], h['error']) for h in failed)
    agree = len(set(h['hash'] for h in hashes)) == 1
    return agree, revision, hashes, None if agree else 'the hashes differ'


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        revision=dict(type='int', default=0),
        members=dict(type='int', default=0),
        wait_seconds=dict(type='int', default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    client = client_from_module(module)
    deadline = time.monotonic() + module.params['wait_seconds']
    try:
        while True:
            try:
                agree, revision, hashes, problem = one_look(client, module.params['revision'], module.params['members'])
            except EtcdClientError as error:
                agree, revision, hashes, problem = False, module.params['revision'], [], error.msg
            if agree or time.monotonic() >= deadline:
                break
            time.sleep(2)
    finally:
        client.close()
    result = dict(changed=False, agree=agree, revision=revision, hashes=hashes)
    if not agree:
        module.fail_json(msg='the members do not agree at revision %s after %ds: %s (%s). Compare with etcdctl endpoint '
                             'hashkv --cluster; a member that differs must be rebuilt' % (
                                 revision, module.params['wait_seconds'], problem,
                                 ', '.join('%s=%s' % (h['name'], h['hash']) for h in hashes)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
