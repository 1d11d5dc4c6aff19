#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_backup_fetch
short_description: Fetch a stored etcd backup into a snapshot file on the host, ready to restore
version_added: 0.1.0
description:
  - Checks the backup's signature against O(trusted_keys) first, then downloads the snapshot object of the backup
    taken by M(etcdops.etcd.etcd_backup) and streams it through age
    decryption (the identity in O(identity_file) or O(identity)), zstd decompression and a sha256 check against the
    backup's metadata into the snapshot file O(path), in one pass. The same fetch as the restore drill of
    M(etcdops.etcd.etcd_backup_verify).
  - The file is written to a hidden temporary name beside O(path) (mode 0600), synced, checked and only then renamed
    into place, so O(path) never holds a partial or unchecked snapshot, and any failure (wrong identity, missing or
    damaged object, broken download, full disk) leaves nothing behind and O(path) as it was. There is no other
    copy of the decrypted snapshot. A missing directory of O(path) is created with mode 0700.
  - The file is what M(etcdops.etcd.etcd_snapshot) O(etcdops.etcd.etcd_snapshot#module:state=restored) and
    C(etcdutl snapshot restore) take.
  - When O(path) already holds the backup's snapshot (its sha256 is the one the metadata records), nothing is
    downloaded and nothing changes; a file with other content is replaced.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.backup_store
  - etcdops.etcd.backup_trust
  - etcdops.etcd.backup_store.unused_connection
  - etcdops.etcd.attributes
options:
  path:
    description:
      - The snapshot file to write on the host.
    type: path
    required: true
  backup_id:
    description:
      - The backup to fetch (as M(etcdops.etcd.etcd_backup_info) lists it), or V(latest) for the newest trusted backup
        that passed a restore drill (M(etcdops.etcd.etcd_backup_verify)), else the newest trusted one (see
        O(trusted_keys)).
      - Restoring several hosts, resolve V(latest) once and give every host the RV(backup_id) it returned, so that all
        restore the same backup.
    type: str
    default: latest
  identity_file:
    description:
      - An age identity file (C(age-keygen) output) on the host; one of its identities must be a recipient of the
        backup. Needed for encrypted backups, unless O(identity) is given.
    type: path
  identity:
    description:
      - The text of an age identity file (from a vault), instead of O(identity_file). Never logged.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Resolves the backup, reads its metadata and checks its signature as a real run does, and compares the sha256
        of an existing O(path); downloads and writes nothing.
  diff_mode:
    support: full
    details:
      - The sha256 of O(path) before and after, and the backup it holds.
notes:
  - Reading the sha256 of an existing O(path) reads the whole file (about 1 GB in a few seconds).
requirements:
  - boto3 (for O(store=s3)), zstandard, pyrage and cryptography on the host that runs the module.
seealso:
  - module: etcdops.etcd.etcd_backup
  - module: etcdops.etcd.etcd_backup_info
  - module: etcdops.etcd.etcd_snapshot
'''

EXAMPLES = r'''
- name: Fetch the newest backup of the main etcd cluster
  etcdops.etcd.etcd_backup_fetch:
    cluster_name: prod
    bucket: etcd-backups
    region: eu-west-1
    identity_file: /root/.age/etcd-backup.txt
    trusted_keys_file: /etc/etcdops/backup-signing.pub
    path: /var/lib/etcd-restore/snapshot.db
  register: fetched

- name: Restore it into this member's data dir (etcd stopped)
  etcdops.etcd.etcd_snapshot:
    state: restored
    path: "{{ fetched.path }}"

- name: Fetch one backup, with the identity from a vault
  etcdops.etcd.etcd_backup_fetch:
    cluster_name: prod
    bucket: etcd-backups
    backup_id: 2026-11-23T10-50-32Z-3f9a
    identity: "{{ vault_etcd_backup_identity }}"
    trusted_keys: ["{{ etcd_backup_signing_public_key }}"]
    path: /var/lib/etcd-restore/snapshot.db
'''

RETURN = r'''
location:
  description: Where the etcd cluster's backups are, relative to the store's root.
  returned: always
  type: str
  sample: prod/backups/etcd/main
path:
  description: The snapshot file.
  returned: always
  type: str
  sample: /var/lib/etcd-restore/snapshot.db
backup_id:
  description: The backup fetched (or that would be, in check mode).
  returned: when a backup was found
  type: str
  sample: 2026-11-23T10-50-32Z-3f9a
backup:
  description: The backup as M(etcdops.etcd.etcd_backup_info) lists it.
  returned: when a backup was found
  type: dict
  sample: {backup_id: 2026-11-23T10-50-32Z-3f9a, revision: 24825, total_key: 1201, etcd_version: 3.6.16,
           encrypted: true, verified: true, member: cp2}
snapshot_sha256:
  description: The sha256 of the snapshot (the metadata's, which the file has once fetched).
  returned: when a backup was found
  type: str
  sample: b6081c0f0e6a4b2f14e5bd19e8e2b1d1c6a53e0cc0a3f6f3d69bd4a59e0d6a5c
revision:
  description: The snapshot's revision, from the metadata.
  returned: when a backup was found
  type: int
  sample: 24825
fetched:
  description: Whether the snapshot was downloaded on this run.
  returned: always
  type: bool
  sample: true
checks:
  description: The sha256 of the stored object and of the snapshot as read back, and the snapshot's size.
  returned: when the snapshot was downloaded
  type: dict
  sample: {stored_sha256: 0f2d..., snapshot_sha256: b608..., snapshot_size: 1395359776}
duration_seconds:
  description: Seconds the download, decryption, decompression and write took.
  returned: when the snapshot was downloaded
  type: float
  sample: 12.4
mb_per_second:
  description: Snapshot megabytes (10^6 bytes) written per second.
  returned: when the snapshot was downloaded
  type: float
  sample: 112.5
signed_by:
  description: The id of the trusted key that signed the backup, V(null) for an unsigned backup taken with
    O(accept_unsigned=true).
  returned: when a backup was found
  type: str
  sample: 6F1D8E3A2B4C5D7E
passed_over:
  description: Newer backups that V(latest) passed over because they are not trusted, with the reason.
  returned: when the store was listed
  type: list
  elements: dict
  sample: [{backup_id: 2026-11-23T11-00-02Z-9c1e, error: "it is not signed (no metadata.json.minisig) ..."}]
error_kind:
  description: What failed, in a word (no_backup, store, metadata, unsigned, unknown_signer, bad_signature, mismatch,
    key, identity, fetch, decrypt, sha256, write).
  returned: on failure
  type: str
  sample: identity
msg:
  description: What was done, or would be.
  returned: always
  type: str
  sample: fetched backup 2026-11-23T10-50-32Z-3f9a (revision 24825) into /var/lib/etcd-restore/snapshot.db
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.etcdops.etcd.plugins.module_utils._backup import (
    STORE_REQUIRED_IF,
    listing_entry,
    store_argument_spec,
    store_from_params,
    unused_connection_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._fetch import (
    LATEST,
    FetchError,
    choose_trusted,
    fetch_snapshot,
    snapshot_object,
    trust_argument_spec,
    trust_from_params,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import SnapshotError, file_digest, write_file
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

MEGABYTE = 1000 * 1000.0


def main():
    spec = unused_connection_spec()
    spec.update(store_argument_spec())
    spec.update(trust_argument_spec())
    spec.update(
        path=dict(type='path', required=True),
        backup_id=dict(type='str', default=LATEST),
        identity_file=dict(type='path'),
        identity=dict(type='str', no_log=True),
    )
    module = AnsibleModule(argument_spec=spec, required_if=STORE_REQUIRED_IF,
                           mutually_exclusive=[('identity_file', 'identity')], supports_check_mode=True)
    for present, name, error in ((HAS_ZSTANDARD, 'zstandard', ZSTANDARD_IMPORT_ERROR),
                                 (HAS_PYRAGE, 'pyrage', PYRAGE_IMPORT_ERROR)):
        if not present:
            module.fail_json(msg=missing_required_lib(name), exception=error)
    params = module.params
    path = os.path.abspath(params['path'])
    result = dict(fetched=False, path=path)
    if os.path.isdir(path):
        module.fail_json(msg='%s is a directory: give the path of the snapshot file to write' % path,
                         error_kind='write', **result)

    try:
        location = etcd_location(params['cluster_name'], params['etcd_cluster'])
        result['location'] = location.path
        store = store_from_params(params)
        listed = store.list_backups(location)
    except StoreError as error:
        module.fail_json(msg='cannot list the backups: %s' % error, error_kind='store', **result)
    try:
        trust = trust_from_params(store, location, params)
        chosen, document, skipped = choose_trusted(listed, params['backup_id'], trust)
    except FetchError as error:
        what = 'backup %s' % params['backup_id'] if params['backup_id'] != LATEST else 'the latest backup'
        module.fail_json(msg='%s cannot be used: %s; nothing was changed' % (what, error.msg),
                         error_kind=error.kind, **result)
    result['passed_over'] = skipped
    for warning in trust.warnings + ['backup %s was passed over: %s' % (s['backup_id'], s['error']) for s in skipped]:
        module.warn(warning)
    if chosen is None:
        if params['backup_id'] != LATEST:
            what = 'backup %s of %s is not in %s (etcd_backup_info lists the backups there)' % (
                params['backup_id'], location.path, store.describe(location.path))
        elif skipped:
            what = 'no backup of %s in %s is trusted (%d passed over: %s)' % (
                location.path, store.describe(location.path), len(skipped),
                '; '.join('%s: %s' % (s['backup_id'], s['error']) for s in skipped))
        else:
            what = 'there is no backup of %s in %s' % (location.path, store.describe(location.path))
        module.fail_json(msg='%s; nothing was changed' % what, error_kind='no_backup', **result)
    backup_id = chosen['id']
    try:
        snapshot_object(document)
    except FetchError as error:
        module.fail_json(msg='backup %s cannot be restored: %s; nothing was changed' % (backup_id, error.msg),
                         error_kind=error.kind, backup_id=backup_id, **result)
    expected = document['snapshot']['sha256']
    result.update(backup_id=backup_id, backup=listing_entry(document), snapshot_sha256=expected,
                  revision=document.get('revision'), signed_by=document.get('signed_by'))

    try:
        before = file_digest(path)['sha256'] if os.path.isfile(path) else None
    except SnapshotError:
        before = None  # unreadable: replaced by the fetched snapshot
    if before == expected:
        result['msg'] = '%s already holds backup %s (sha256 %s)' % (path, backup_id, expected[:12])
        module.exit_json(changed=False, **result)
    if module._diff:
        result['diff'] = dict(before=dict(path=path, sha256=before),
                              after=dict(path=path, sha256=expected, backup_id=backup_id))

    identities = None
    try:
        if params['identity_file']:
            identities = read_identities(params['identity_file'])
        elif params['identity']:
            identities = identities_from_text(params['identity'], source='the identity option')
    except StreamError as error:
        module.fail_json(msg='%s; nothing was changed' % error, error_kind='identity', **result)
    if (document.get('encrypted') or document['objects'][0]['name'].endswith('.age')) and not identities:
        module.fail_json(msg='backup %s is encrypted with age and no identity was given: give identity_file (or '
                             'identity); nothing was changed' % backup_id, error_kind='identity', **result)

    directory = os.path.dirname(path)
    if module.check_mode:
        result['msg'] = 'would fetch backup %s (revision %s) into %s%s' % (
            backup_id, document.get('revision'), path, ', replacing the file there' if before else '')
        module.exit_json(changed=True, **result)

    created = not os.path.isdir(directory)
    if created:
        try:
            os.makedirs(directory, 0o700)
        except OSError as error:
            module.fail_json(msg='cannot create %s: %s; nothing was changed' % (directory, error.strerror or error),
                             error_kind='write', **result)

    def write(chunks, verify):
        write_file(chunks, path, 0o600, verify=verify)

    started = time.monotonic()
    try:
        checks = fetch_snapshot(store, location, backup_id, document, identities, write)
    except FetchError as error:
        if created and not os.listdir(directory):
            os.rmdir(directory)
        module.fail_json(msg='backup %s was not fetched: %s; %s was left as it was' % (backup_id, error.msg, path),
                         error_kind=error.kind, **result)
    seconds = time.monotonic() - started
    result.update(fetched=True, checks=checks, duration_seconds=round(seconds, 3),
                  mb_per_second=round(checks['snapshot_size'] / MEGABYTE / seconds, 1) if seconds > 0 else 0.0,
                  msg='fetched backup %s (revision %s, %d bytes) into %s' % (
                      backup_id, document.get('revision'), checks['snapshot_size'], path))
    module.exit_json(changed=True, **result)


if __name__ == '__main__':
    main()
