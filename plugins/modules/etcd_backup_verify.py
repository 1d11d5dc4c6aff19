#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_backup_verify
short_description: Restore drill of a stored etcd backup, with the result recorded beside it
version_added: 0.1.0
description:
  - Proves that a backup taken by M(etcdops.etcd.etcd_backup) restores. Checks the signature of its metadata against
    O(trusted_keys) (a backup that is not trusted fails the drill), fetches its snapshot object from the store,
    checks the sha256 of the stored bytes, decrypts it with the age identity in O(identity_file) (or O(identity)),
    decompresses it and checks the sha256 of the snapshot against the metadata.
  - Restores it with C(etcdutl snapshot restore) (C(etcdctl) on etcd 3.4) into a fresh 0700 directory under
    O(scratch_dir), starts a throwaway etcd on it on 127.0.0.1 (free ports, plain HTTP, its own name and cluster
    token, so the cluster's members are never contacted), and compares its revision, its key count and its HashKV at
    that revision with the metadata (the HashKV M(etcdops.etcd.etcd_backup) read from the snapshot; backups without
    it are compared on revision and keys only, and C(hashkv_compared) in RV(checks) says so). Then stops it and removes the
    directory, on success and on failure.
  - With O(record=true), writes the result beside the backup's metadata, as C(verification.json) (C(verified) true
    or false, the time, the error and the checks; the signed metadata is never rewritten), which
    M(etcdops.etcd.etcd_backup_info) lists and retention reads. A backup that fails the drill makes the task fail with a message naming it.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.backup_store
  - etcdops.etcd.backup_trust
  - etcdops.etcd.backup_store.unused_connection
  - etcdops.etcd.attributes
options:
  backup_id:
    description:
      - The backup to verify, or V(latest) for the newest listed one.
    type: str
    default: latest
  identity_file:
    description:
      - An age identity file (C(age-keygen) output) on the host that runs the drill; one of its identities must be a
        recipient of the backup. Needed for encrypted backups, unless O(identity) is given.
      - Keep it off the control-plane hosts, and run the drill on a host that prepares restores.
    type: path
  identity:
    description:
      - The text of an age identity file (from a vault), instead of O(identity_file). Never logged.
    type: str
  scratch_dir:
    description:
      - Where the drill's directory is made (created 0700 when missing). It holds the decrypted snapshot and the
        restored data dir for the length of the drill, so it needs room for about twice the database size.
    type: path
    default: /var/lib/etcd-backup-drill
  tool:
    description:
      - The path of C(etcdutl) (C(etcdctl) for etcd 3.4), or a directory holding it; searched in C(/usr/local/bin),
        C(/usr/bin), C(/bin), C(/opt/bin) when not given. Use the tool of the backup's etcd line.
    type: path
  etcd_binary:
    description:
      - The C(etcd) binary that serves the restored data dir; by default the one beside the restore tool.
    type: path
  start_timeout:
    description:
      - Seconds the throwaway etcd may take to elect itself and answer.
    type: float
    default: 120.0
  record:
    description:
      - Write the result beside the backup's metadata (C(verification.json)).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - Says which backup would be verified; downloads nothing and records nothing.
  diff_mode:
    support: none
notes:
  - C(changed) is V(true) when the result was recorded (every drill records a new time).
requirements:
  - boto3 (for O(store=s3)), zstandard, pyrage and the etcd client library on the host that runs the drill; the
    C(etcd) and C(etcdutl) binaries of the backup's etcd line there.
seealso:
  - module: etcdops.etcd.etcd_backup
  - module: etcdops.etcd.etcd_backup_info
'''

EXAMPLES = r'''
- name: Verify the newest backup of the main etcd cluster
  etcdops.etcd.etcd_backup_verify:
    cluster_name: prod
    bucket: etcd-backups
    region: eu-west-1
    identity_file: /root/.age/etcd-backup.txt
  register: drill

- name: Verify one backup, with the identity from a vault
  etcdops.etcd.etcd_backup_verify:
    cluster_name: prod
    bucket: etcd-backups
    backup_id: 2026-11-23T10-50-32Z-3f9a
    identity: "{{ vault_etcd_backup_identity }}"
    tool: /opt/etcd/3.5/etcdutl
'''

RETURN = r'''
backup_id:
  description: The backup verified.
  returned: when a backup was found
  type: str
  sample: 2026-11-23T10-50-32Z-3f9a
location:
  description: Where the etcd cluster's backups are, relative to the store's root.
  returned: always
  type: str
  sample: prod/backups/etcd/main
verified:
  description: Whether the backup passed the drill (V(null) in check mode).
  returned: when a backup was found
  type: bool
  sample: true
verified_at:
  description: When the result was recorded (UTC).
  returned: when the drill ran
  type: str
  sample: "2026-11-23T11:02:10Z"
error:
  description: Why the backup failed the drill.
  returned: when it failed
  type: str
  sample: "backup 2026-11-23T10-50-32Z-3f9a failed the restore drill: snapshot.db.zst.age does not decrypt ..."
error_kind:
  description: What failed, in a word (fetch, decrypt, sha256, restore, etcd, revision, keys, hashkv, metadata, unsigned,
    unknown_signer, bad_signature, mismatch).
  returned: when it failed
  type: str
  sample: decrypt
checks:
  description: What was compared and the values read back.
  returned: when the drill ran
  type: dict
  sample: {stored_sha256: 0f2d..., snapshot_sha256: b608..., snapshot_size: 1395359776, revision: 24825, keys: 1201,
           hashkv: 3340857632, hashkv_compared: true, tool: etcdutl 3.6.16, etcd_version: 3.6.16}
timings:
  description: Seconds spent fetching, restoring and comparing.
  returned: when the drill ran
  type: dict
  sample: {fetch_seconds: 12.1, restore_seconds: 3.2, compare_seconds: 2.0}
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.etcdops.etcd.plugins.module_utils._backup import (
    STORE_REQUIRED_IF,
    store_argument_spec,
    store_from_params,
    unused_connection_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient
from ansible_collections.etcdops.etcd.plugins.module_utils._drill import (
    DEFAULT_DRILL_DIR,
    ENVIRONMENT_KINDS,
    NO_PKI,
    Drill,
    DrillError,
    record,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._fetch import (
    UNTRUSTED,
    FetchError,
    trust_argument_spec,
    trust_from_params,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._store import StoreError, etcd_location
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import (
    HAS_PYRAGE,
    HAS_ZSTANDARD,
    PYRAGE_IMPORT_ERROR,
    ZSTANDARD_IMPORT_ERROR,
    StreamError,
    identities_from_text,
    read_identities,
)


def client_factory(url):
    return EtcdClient(endpoints=[url], pki_dir=NO_PKI, dial_timeout=2.0, command_timeout=300.0)


def main():
    spec = unused_connection_spec()
    spec.update(store_argument_spec())
    spec.update(trust_argument_spec())
    spec.update(
        backup_id=dict(type='str', default='latest'),
        identity_file=dict(type='path'),
        identity=dict(type='str', no_log=True),
        scratch_dir=dict(type='path', default=DEFAULT_DRILL_DIR),
        tool=dict(type='path'),
        etcd_binary=dict(type='path'),
        start_timeout=dict(type='float', default=120.0),
        record=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=spec, required_if=STORE_REQUIRED_IF,
                           mutually_exclusive=[('identity_file', 'identity')], supports_check_mode=True)
    for present, name, error in ((HAS_ZSTANDARD, 'zstandard', ZSTANDARD_IMPORT_ERROR),
                                 (HAS_PYRAGE, 'pyrage', PYRAGE_IMPORT_ERROR)):
        if not present:
            module.fail_json(msg=missing_required_lib(name), exception=error)
    params = module.params
    identities = None
    try:
        if params['identity_file']:
            identities = read_identities(params['identity_file'])
        elif params['identity']:
            identities = identities_from_text(params['identity'], source='the identity option')
    except StreamError as error:
        module.fail_json(msg=str(error))
    try:
        location = etcd_location(params['cluster_name'], params['etcd_cluster'])
        store = store_from_params(params)
        trust = trust_from_params(store, location, params)
        if params['backup_id'] == 'latest':
            listed = store.list_backups(location)
            if not listed:
                module.fail_json(msg='no backup of %s to verify in %s' % (location.path, store.describe(location.path)),
                                 location=location.path)
            backup_id = listed[0]['id']
        else:
            backup_id = params['backup_id']
            store.read_metadata(location, backup_id)  # a backup that does not exist is not a drill's failure
    except StoreError as error:
        module.fail_json(msg='cannot read the backup to verify: %s' % error)
    except FetchError as error:
        module.fail_json(msg='cannot verify backups: %s' % error.msg, error_kind=error.kind)
    result = dict(changed=False, location=location.path, backup_id=backup_id)
    untrusted = None
    try:
        document = trust.document({'id': backup_id})
    except FetchError as error:
        if error.kind not in UNTRUSTED:
            module.fail_json(msg='cannot read backup %s to verify: %s' % (backup_id, error.msg), error_kind=error.kind,
                             **result)
        # A backup that is not trusted does not restore: the drill's verdict, recorded like any other failure.
        document = None
        untrusted = error
    for warning in trust.warnings:
        module.warn(warning)
    result['signed_by'] = document.get('signed_by') if document else None
    if module.check_mode:
        result.update(changed=bool(params['record']), verified=None,
                      msg='would verify backup %s (revision %s) and %s' % (
                          backup_id, document.get('revision'), 'record the result' if params['record'] else
                          'not record it'))
        module.exit_json(**result)

    drill = Drill(store, location, backup_id, document or {}, identities=identities,
                  scratch_dir=params['scratch_dir'], tool=params['tool'], etcd_binary=params['etcd_binary'],
                  runner=module, start_timeout=params['start_timeout'], client_factory=client_factory)
    error = kind = None
    try:
        if untrusted is not None:
            error, kind = 'backup %s is not trusted: %s' % (backup_id, untrusted.msg), untrusted.kind
        else:
            drill.run()
    except DrillError as failure:
        error, kind = failure.msg, failure.kind
    except Exception as failure:  # pylint: disable=broad-except
        error, kind = 'backup %s: the drill broke: %s' % (backup_id, failure), 'other'
        result['exception'] = traceback.format_exc()
    result.update(verified=error is None, checks=drill.checks, timings=drill.timings)
    if kind in ENVIRONMENT_KINDS:
        # The drill could not judge the backup (tools, scratch space, identity, store access): nothing recorded.
        module.fail_json(msg='%s; nothing was recorded: fix this and run the drill again' % error,
                         error=error, error_kind=kind, **dict(result, verified=None))
    if params['record']:
        try:
            written = record(store, location, backup_id, error is None, error, drill.checks)
        except StoreError as failure:
            module.fail_json(msg='%s; and the result could not be recorded: %s' % (
                error or 'backup %s passed the drill' % backup_id, failure), **result)
        result.update(changed=True, verified_at=written['verification']['at'])
    if error is not None:
        module.fail_json(msg=error, error=error, error_kind=kind, **result)
    result['msg'] = 'backup %s restores: revision %s, %s keys%s' % (
        backup_id, drill.checks.get('revision'), drill.checks.get('keys'),
        ', HashKV %s as recorded' % drill.checks['hashkv'] if drill.checks.get('hashkv_compared') else '')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
