#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_write_probe
short_description: Prove that the etcd cluster takes writes, by writing, reading back and deleting a probe key
version_added: 0.1.0
description:
  - Writes a probe key with a random value, reads it back (a linearizable read), compares the value and deletes
    the key, as an operator does with C(etcdctl put), C(get) and C(del) after a repair (for example after a NOSPACE
    alarm was disarmed).
  - Fails with etcd's reason when any of the three does not work (for example C(database space exceeded) while
    NOSPACE is active, or C(no leader)).
  - Leaves the keyspace as it found it, so the task reports no change; the cluster's revision goes up by two.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  key_prefix:
    description:
      - The probe key is this prefix followed by a random suffix. Choose a prefix nothing else uses (the API server
        uses C(/registry/)).
    type: str
    default: /etcdops/write-probe/
attributes:
  check_mode:
    support: full
    details:
      - Writes nothing; RV(writable) is then V(null).
  diff_mode:
    support: none
seealso:
  - module: etcdops.etcd.etcd_alarm
  - module: etcdops.etcd.etcd_cluster_info
'''

EXAMPLES = r'''
- name: Prove that writes work again after the NOSPACE alarm was disarmed
  etcdops.etcd.etcd_write_probe:
  register: probe
'''

RETURN = r'''
writable:
  description: Whether the put, the read back and the delete all worked; V(null) in check mode.
  returned: success
  type: bool
  sample: true
key:
  description: The probe key that was written and deleted.
  returned: success
  type: str
  sample: /etcdops/write-probe/3f9c2a1e5b7d4c08
revision:
  description: The revision of the probe's write.
  returned: when the probe ran (not in check mode)
  type: int
  sample: 123457
duration_seconds:
  description: How long the put, get and delete took together.
  returned: when the probe ran (not in check mode)
  type: float
  sample: 0.012
msg:
  description: What was proved.
  returned: always
  type: str
  sample: "put, get and delete of /etcdops/write-probe/3f9c2a1e5b7d4c08 worked (revision 123457)"
'''

import binascii
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)


def random_hex(size):
    return binascii.hexlify(os.urandom(size)).decode('ascii')


def run_module(module, client, result):
    key = module.params['key_prefix'] + random_hex(8)
    value = random_hex(16)
    result['key'] = key
    if module.check_mode:
        result.update(writable=None, msg='check mode: no probe key written')
        return result
    started = time.monotonic()
    step = 'put'
    try:
        revision = client.put(key, value)
        step = 'get'
        read = client.get(key)
        if read is None or read.decode('utf-8', 'replace') != value:
            step = 'delete'
            client.delete(key)
            how = 'missing' if read is None else 'with another value'
            module.fail_json(msg='the probe key %s was written but read back %s: the cluster does not return what '
                             'it committed; check every member with etcdops.etcd.etcd_cluster_info and compare hashes '
                             '(etcdctl endpoint hashkv --cluster)' % (key, how), writable=False, **result)
        step = 'delete'
        client.delete(key)
    except EtcdClientError as error:
        result['writable'] = False
        left = ' (the probe key may be left behind: delete it)' if step == 'delete' else ''
        module.fail_json(msg='the cluster does not take writes: %s of %s failed: %s%s' % (step, key, error.msg, left),
                         error_kind=error.kind, **result)
    result.update(writable=True, revision=revision, duration_seconds=round(time.monotonic() - started, 3),
                  msg='put, get and delete of %s worked (revision %d)' % (key, revision))
    return result


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(key_prefix=dict(type='str', default='/etcdops/write-probe/', no_log=False))
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    if not module.params['key_prefix']:
        module.fail_json(msg='key_prefix must not be empty: the probe key would be a random key at the root of the '
                         'keyspace')

    client = client_from_module(module)
    result = dict(changed=False)
    try:
        run_module(module, client, result)
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
