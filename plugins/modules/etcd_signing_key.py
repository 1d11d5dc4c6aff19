#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_signing_key
short_description: Make or read the minisign key pair that signs etcd backups
version_added: 0.2.0
description:
  - Makes sure O(path) holds a minisign secret key without password (Ed25519, from the operating system's random
    source), mode 0600, and O(public_path) its public key, in the formats of C(minisign -G -W), so that the
    standard C(minisign) tool reads and verifies what the collection signs.
  - An existing key is read and kept, never replaced; a missing public key file is written again from the secret
    key. Returns the public key and its id, which the restores' C(trusted_keys) take.
  - M(etcdops.etcd.etcd_backup) signs with the secret key on the control-plane hosts; keep a copy of it in a vault,
    and give only the public key to restores.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a key would be made; writes nothing (no key is made up, so RV(public_key) is returned only
        for an existing key).
  diff_mode:
    support: none
options:
  path:
    description:
      - The secret key file. Its directory is created (mode 0700) when missing. An existing file must be a minisign
        secret key without password and not readable by others.
    type: path
    default: /etc/etcdops/backup-signing.key
  public_path:
    description:
      - The public key file (mode 0644). Default O(path) with C(.pub) in place of C(.key), or C(.pub) appended.
    type: path
notes:
  - The secret key is never returned or logged.
requirements:
  - cryptography on the host that runs the module.
seealso:
  - module: etcdops.etcd.etcd_backup
  - module: etcdops.etcd.etcd_backup_fetch
'''

EXAMPLES = r'''
- name: Make the backup signing key on the controller (once), to put into a vault
  etcdops.etcd.etcd_signing_key:
    path: "{{ playbook_dir }}/keys/etcd-backup-signing.key"
  delegate_to: localhost
  run_once: true
  register: signing

- name: Trust it in restores
  ansible.builtin.set_fact:
    backup_trusted_keys: ["{{ signing.public_key }}"]
'''

RETURN = r'''
path:
  description: The secret key file.
  returned: always
  type: str
  sample: /etc/etcdops/backup-signing.key
public_path:
  description: The public key file.
  returned: always
  type: str
  sample: /etc/etcdops/backup-signing.pub
public_key:
  description: The public key's base64 line (what C(trusted_keys) and C(minisign -P) take).
  returned: unless a key would be made in check mode
  type: str
  sample: RWR+XdhMnv3w8T7bRv1m1dbHYSXkFr5t0V3M4KjU0yYh0pYvV1b1w2Yq
key_id:
  description: The key id, as C(minisign) prints it.
  returned: unless a key would be made in check mode
  type: str
  sample: 6F1D8E3A2B4C5D7E
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.etcdops.etcd.plugins.module_utils._signing import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    SigningError,
    generate,
    read_secret_key,
)


def default_public_path(path):
    return path[:-len('.key')] + '.pub' if path.endswith('.key') else path + '.pub'


def write_atomic(path, text, mode):
    """Write text to path through a temporary file in its directory (mode set before a byte is written)."""
    directory = os.path.dirname(path) or '.'
    handle, temporary = tempfile.mkstemp(prefix='.', dir=directory)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, 'w') as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type='path', default='/etc/etcdops/backup-signing.key'),
                                              public_path=dict(type='path')),
                           supports_check_mode=True)
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    path = os.path.abspath(module.params['path'])
    public_path = os.path.abspath(module.params['public_path'] or default_public_path(path))
    result = dict(changed=False, path=path, public_path=public_path)
    if path == public_path:
        module.fail_json(msg='path and public_path are the same file: give another public_path', **result)
    exists = os.path.exists(path)
    if exists:
        try:
            key = read_secret_key(path)
        except SigningError as error:
            module.fail_json(msg='%s; it was left as it is' % error.msg, **result)
    elif module.check_mode:
        result.update(changed=True, msg='would make a new signing key at %s' % path)
        module.exit_json(**result)
    else:
        key = generate()
    public_text = key.public.text()
    try:
        with open(public_path, 'r') as handle:
            public_ok = handle.read(4096) == public_text
    except (IOError, OSError):
        public_ok = False
    result.update(public_key=key.public.line(), key_id=key.id)
    if exists and public_ok:
        module.exit_json(msg='signing key %s at %s' % (key.id, path), **result)
    if module.check_mode:
        result.update(changed=True, msg='would write the public key %s to %s' % (key.id, public_path))
        module.exit_json(**result)
    try:
        for directory in sorted(set([os.path.dirname(path), os.path.dirname(public_path)])):
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
        if not exists:
            write_atomic(path, key.text(), 0o600)
        write_atomic(public_path, public_text, 0o644)
    except (IOError, OSError) as error:
        module.fail_json(msg='cannot write the signing key: %s' % (error.strerror or error), **result)
    result.update(changed=True, msg='%s signing key %s at %s, public key at %s' % (
        'kept' if exists else 'made', key.id, path, public_path))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
