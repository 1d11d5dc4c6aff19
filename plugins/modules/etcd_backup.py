#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_backup
short_description: Back up an etcd cluster (snapshot and /etc/kubernetes resources) into S3 or a directory
version_added: 0.1.0
description:
  - Takes a snapshot from one healthy member chosen by O(member) (as M(etcdops.etcd.etcd_snapshot) does), checks
    its sha256 trailer while it streams, compresses it with zstd, encrypts it with age to O(recipients) and
    stores it as one object under C(<cluster_name>/backups/etcd/<etcd_cluster>/<backup_id>/) in the store.
  - When the stream from the chosen member breaks (the member dies, the trailer does not match, its database
    cannot be read), the backup is taken from the next healthy member; RV(tried) says which members were asked.
  - The hash, revision and key count returned (and recorded) are those C(etcdutl snapshot status) prints for the
    decrypted, decompressed snapshot object. They are read from the snapshot stream as it passes (what the walk
    of the database needs is kept of each page, and the walk runs over that at the end). Nothing of the snapshot
    is written to the host but the backup itself, and no scratch space is needed.
  - With O(resources=true), the Kubernetes resources of the host (C(pki/), C(manifests/) and O(encryption_config)
    under O(resources_root)) are stored as a separate backup under C(<cluster_name>/resources/<backup_id>/),
    encrypted to O(resources_recipients), which may differ from O(recipients), because the key that decrypts the Secrets
    must not travel with the snapshot. Modes, owners and times are kept; only names, sizes and modes are returned.
  - The metadata object (cluster id, member, etcd version, revision, hash, key count, HashKV at that revision (read
    from the snapshot, for restore drills), sizes, sha256 of each
    object, the recipients' public keys, compression, times, C(verified=null)) is written last; a backup without
    it does not exist and is not listed. On any failure the upload is aborted, what was stored for this backup is
    deleted, and no metadata is written.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.backup_store
  - etcdops.etcd.attributes
options:
  state:
    description:
      - V(present) takes a backup. Every run takes a new one (there is nothing to be idempotent about); prune old
        ones with M(etcdops.etcd.etcd_backup_prune).
    type: str
    choices: [present]
    default: present
  member:
    description:
      - Which member serves the snapshot. V(follower) (a healthy follower first, the one that applied the most,
        then the leader), V(leader), or a member name; the other healthy members follow as fall-backs.
    type: str
    default: follower
  recipients:
    description:
      - age X25519 public keys (V(age1...)) the snapshot is encrypted to; each may also be several lines in the
        format of C(age -R) files. C(age -d -i identity) with any matching identity decrypts the object.
      - One of O(recipients) and O(recipients_file) is required unless O(encryption=none), since the snapshot holds
        every Secret of the cluster.
    type: list
    elements: str
    default: []
  recipients_file:
    description:
      - A file on the host of age public keys, one a line (C(#) comments allowed), added to O(recipients).
    type: path
  encryption:
    description:
      - V(age) encrypts the snapshot and the resources with age and fails, before anything is stored, when no
        recipient is given. V(none) stores both unencrypted, only for a store that nobody but the cluster's
        administrators can read.
    type: str
    choices: [age, none]
    default: age
  signing:
    description:
      - V(minisign) signs each backup's metadata (which holds the size and sha256 of every object of the backup)
        with O(signing_key), as C(metadata.json.minisig) beside it; restores, drills and fetches check the signature
        against their trusted public keys before they use a byte of the backup. Fails, before anything is stored,
        when no key is given.
      - V(none) stores unsigned backups, which restores refuse unless told to accept unsigned backups.
    type: str
    choices: [minisign, none]
    default: minisign
  signing_key:
    description:
      - A minisign secret key file without password on the host (made by M(etcdops.etcd.etcd_signing_key) or
        C(minisign -G -W)); it must not be readable by others (mode 0600). The public key of that file goes to the
        restores' C(trusted_keys); C(minisign -Vm metadata.json -p key.pub) verifies a backup by hand.
    type: path
    default: /etc/etcdops/backup-signing.key
  resources:
    description:
      - Whether to store the Kubernetes resources (O(resources_paths) and O(encryption_config)) as well.
    type: bool
    default: true
  resources_recipients:
    description:
      - age public keys the resources object is encrypted to. When neither this nor O(resources_recipients_file)
        is given, the recipients of the snapshot are used.
    type: list
    elements: str
    default: []
  resources_recipients_file:
    description:
      - A file on the host of age public keys for the resources object.
    type: path
  resources_root:
    description:
      - The directory the resources are archived relative to.
    type: path
    default: /etc/kubernetes
  resources_paths:
    description:
      - Paths under O(resources_root) to archive (directories recursively).
    type: list
    elements: str
    default: [pki, manifests]
  encryption_config:
    description:
      - The API server's C(--encryption-provider-config) file, archived with the resources; it must lie under
        O(resources_root). Without it the Secrets of a restored cluster cannot be read when encryption at rest
        is enabled.
    type: path
  scratch_dir:
    description:
      - Not used any more and ignored. The status is read from the snapshot stream, no scratch copy is written.
        Accepted so that existing playbooks keep running; it will be removed in 2.0.0.
    type: path
  compression_level:
    description:
      - zstd level, 1 (fastest) to 19 (smallest).
    type: int
    default: 3
  timeout:
    description:
      - Seconds the stream from one member may take before it is abandoned and the next member is asked.
      - Read with the collection's HTTP/2 reader, the deadline grows with the size the member announces (the
        time it takes at 8 MiB/s, when that is longer), and a stream that sends no byte for 60 s is abandoned
        at once.
    type: float
    default: 900.0
attributes:
  check_mode:
    support: full
    details:
      - Reports which member would serve the snapshot and where it would be stored; writes nothing and does not
        contact the store.
  diff_mode:
    support: none
notes:
  - Progress (bytes and MB/s) is logged to the host's syslog every 10 seconds while the snapshot streams.
  - Store options are not shared with the other modules of the C(group/etcdops.etcd.etcd) action group; set them
    in C(module_defaults) for this module and M(etcdops.etcd.etcd_backup_info)/M(etcdops.etcd.etcd_backup_prune)
    by name.
requirements:
  - boto3 (for O(store=s3)), zstandard, pyrage and cryptography (for O(signing=minisign)) on the host that runs the
    module.
seealso:
  - module: etcdops.etcd.etcd_backup_info
  - module: etcdops.etcd.etcd_backup_prune
  - module: etcdops.etcd.etcd_snapshot
'''

EXAMPLES = r'''
- name: Back up to S3, encrypted to the operators' age keys
  etcdops.etcd.etcd_backup:
    cluster_name: prod
    store: s3
    bucket: etcd-backups
    region: eu-west-1
    recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    signing_key: /etc/etcdops/backup-signing.key
    encryption_config: /etc/kubernetes/enc/encryption-config.yaml
  register: backup

- name: Back up to a local directory (a mounted share), resources to another key
  etcdops.etcd.etcd_backup:
    cluster_name: prod
    store: local
    directory: /mnt/backups/etcd
    recipients_file: /etc/etcd-backup/recipients.txt
    resources_recipients_file: /etc/etcd-backup/resources-recipients.txt
'''

RETURN = r'''
backup_id:
  description: The id of the backup (its UTC start time and a random suffix); the name of its folder in the store.
  returned: success
  type: str
  sample: 2026-11-23T10-50-32Z-3f9a
location:
  description: Where the etcd cluster's backups are, relative to the store's root.
  returned: always
  type: str
  sample: prod/backups/etcd/main
store:
  description: The store used (never a credential).
  returned: always
  type: dict
  sample: {type: s3, url: "s3://etcd-backups/prod/backups/etcd/main/", bucket: etcd-backups, prefix: "",
           endpoint: "AWS S3 (region eu-west-1)"}
object_keys:
  description: The keys (relative to the store's root) of the snapshot object, its metadata and the resources
    object (V(null) without resources).
  returned: success
  type: dict
  sample: {snapshot: prod/backups/etcd/main/2026-11-23T10-50-32Z-3f9a/snapshot.db.zst.age,
           metadata: prod/backups/etcd/main/2026-11-23T10-50-32Z-3f9a/metadata.json,
           resources: prod/resources/2026-11-23T10-50-32Z-3f9a/kubernetes.tar.zst.age}
cluster_id:
  description: The etcd cluster id, in hex.
  returned: when the members were read
  type: str
  sample: cdf818194e3a8c32
member:
  description: The member that served the snapshot (in check mode, the one that would be asked first).
  returned: when the members were read
  type: dict
  sample: {name: master-2, id: fd422379fda50e48, endpoint: "https://10.0.0.12:2379"}
etcd_version:
  description: The etcd version of that member.
  returned: when the members were read
  type: str
  sample: 3.5.21
revision:
  description: The snapshot's revision, as C(etcdutl snapshot status) prints it.
  returned: success
  type: int
  sample: 24825
hash:
  description: The snapshot's hash, as C(etcdutl snapshot status) prints it.
  returned: success
  type: int
  sample: 3340857632
total_key:
  description: The key count C(etcdutl snapshot status) prints (see M(etcdops.etcd.etcd_snapshot) for how it
    depends on the etcd line).
  returned: success
  type: int
  sample: 180501
total_size:
  description: The database size C(etcdutl snapshot status) prints.
  returned: success
  type: int
  sample: 1395359744
version:
  description: The storage version in the snapshot (etcd 3.6 and later), empty before.
  returned: success
  type: str
  sample: 3.6.0
snapshot_size:
  description: Bytes of the snapshot as C(etcdctl snapshot save) would have written it (database and trailer).
  returned: success
  type: int
  sample: 1395359776
snapshot_sha256:
  description: The sha256 of that snapshot, what C(sha256sum) prints of the decrypted, decompressed object.
  returned: success
  type: str
  sample: b608059492cd97194ee1ba60f57f0bfa38398c0d3b6a8cd48f3173ee55884c6b
stored_size:
  description: Bytes of the stored snapshot object (compressed and encrypted).
  returned: success
  type: int
  sample: 301234567
stored_sha256:
  description: The sha256 of the stored snapshot object.
  returned: success
  type: str
  sample: 0f2d3c1b9e6c7a8d5f4e3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d
encrypted:
  description: Whether the snapshot object is encrypted with age.
  returned: always
  type: bool
  sample: true
signed_by:
  description: The key id (as C(minisign) prints it) of the key the backup's metadata is signed with, V(null) with
    O(signing=none).
  returned: success
  type: str
  sample: 6F1D8E3A2B4C5D7E
recipients:
  description: The age public keys the snapshot is encrypted to.
  returned: always
  type: list
  elements: str
  sample: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
resources:
  description: The resources backup, V(null) with O(resources=false).
  returned: success
  type: dict
  contains:
    backup_id:
      description: Its id (the same as RV(backup_id)).
      type: str
      returned: always
      sample: 2026-11-23T10-50-32Z-3f9a
    location:
      description: Where resources backups are, relative to the store's root.
      type: str
      returned: always
      sample: prod/resources
    key:
      description: The key of the resources object.
      type: str
      returned: always
      sample: prod/resources/2026-11-23T10-50-32Z-3f9a/kubernetes.tar.zst.age
    size:
      description: Bytes stored.
      type: int
      returned: always
      sample: 24576
    sha256:
      description: The sha256 of the stored object.
      type: str
      returned: always
      sample: 5d1e0b1f0c6a4c27a5f1b5d6e0b3f4a2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6
    encrypted:
      description: Whether it is encrypted with age.
      type: bool
      returned: always
      sample: true
    members:
      description: What the archive holds; names, types, modes and sizes only.
      type: list
      elements: dict
      returned: always
      sample: [{name: pki/ca.key, type: file, mode: '0600', size: 1679}]
duration_seconds:
  description: Seconds from the start to the metadata written.
  returned: success
  type: float
  sample: 14.2
mb_per_second:
  description: Throughput of the snapshot stream through compression, encryption and upload, in MB (10^6 bytes)
    per second.
  returned: success
  type: float
  sample: 95.3
timings:
  description:
    - Seconds spent streaming the snapshot through the status reading, compression, encryption and the store (to
      the end of the upload), and storing the resources after that.
    - V(status_walk_seconds) is the part of V(stream_seconds) spent walking the database's trees over what was
      kept of its pages, once the stream had ended.
  returned: success
  type: dict
  sample: {stream_seconds: 12.0, resources_seconds: 0.2, status_walk_seconds: 0.05}
tried:
  description: Each member asked for the snapshot, in order, with why it failed (V(null) for the one that served it).
  returned: when a backup was attempted
  type: list
  elements: dict
  sample: [{name: master-2, id: fd422379fda50e48, endpoint: "https://10.0.0.12:2379", error: null}]
unhealthy:
  description: Members not asked because they were not healthy, with the reason.
  returned: when the members were read
  type: list
  elements: dict
  sample: []
'''

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.etcdops.etcd.plugins.module_utils._backup import (
    MEGABYTE,
    NO_RECIPIENT,
    NO_SIGNING_KEY,
    STORE_REQUIRED_IF,
    Backup,
    BackupError,
    bound_allocator,
    recipient_keys,
    store_argument_spec,
    stream_window,
    store_from_params,
    store_summary,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._signing import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    SigningError,
    read_secret_key,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import SnapshotError, candidates
from ansible_collections.etcdops.etcd.plugins.module_utils._store import StoreError, etcd_location
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import (
    HAS_PYRAGE,
    HAS_ZSTANDARD,
    PYRAGE_IMPORT_ERROR,
    ZSTANDARD_IMPORT_ERROR,
    StreamError,
)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(store_argument_spec())
    spec.update(
        state=dict(type='str', default='present', choices=['present']),
        member=dict(type='str', default='follower'),
        recipients=dict(type='list', elements='str', default=[]),
        recipients_file=dict(type='path'),
        encryption=dict(type='str', default='age', choices=['age', 'none']),
        signing=dict(type='str', default='minisign', choices=['minisign', 'none']),
        signing_key=dict(type='path', default='/etc/etcdops/backup-signing.key', no_log=False),
        resources=dict(type='bool', default=True),
        resources_recipients=dict(type='list', elements='str', default=[]),
        resources_recipients_file=dict(type='path'),
        resources_root=dict(type='path', default='/etc/kubernetes'),
        resources_paths=dict(type='list', elements='str', default=['pki', 'manifests']),
        encryption_config=dict(type='path'),
        scratch_dir=dict(type='path', removed_in_version='2.0.0', removed_from_collection='etcdops.etcd'),
        compression_level=dict(type='int', default=3),
        timeout=dict(type='float', default=900.0),
    )
    return spec


def keys_from(module):
    """(snapshot recipients, resources recipients): public keys only, checked; warnings for clear text."""
    params = module.params
    try:
        recipients = recipient_keys(params['recipients'], params['recipients_file'])
        if params['resources_recipients'] or params['resources_recipients_file']:
            resources_recipients = recipient_keys(params['resources_recipients'], params['resources_recipients_file'])
        else:
            resources_recipients = recipients
    except StreamError as error:
        module.fail_json(msg=str(error))
    if params['encryption'] == 'none':
        if recipients or resources_recipients:
            module.fail_json(msg='encryption=none and age recipients given: drop the recipients, or leave encryption '
                                 'at age to encrypt to them. Nothing was stored')
        return recipients, resources_recipients
    if not recipients:
        module.fail_json(msg=NO_RECIPIENT % ('snapshot', 'every Secret of the cluster'), error_kind='encryption')
    if params['resources'] and not resources_recipients:
        module.fail_json(msg=NO_RECIPIENT % ('resources', 'the cluster\'s private keys (pki/)'),
                         error_kind='encryption')
    return recipients, resources_recipients


def signer_from(module):
    """The SecretKey that signs the backup, None with signing=none; fails before anything is stored."""
    params = module.params
    if params['signing'] == 'none':
        return None
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    if not params['signing_key'] or not os.path.exists(params['signing_key']):
        module.fail_json(msg='%s (%s does not exist)' % (NO_SIGNING_KEY, params['signing_key']),
                         error_kind='signing')
    try:
        return read_secret_key(params['signing_key'])
    except SigningError as error:
        module.fail_json(msg='%s. Nothing was stored' % error.msg, error_kind='signing')


def resource_paths(module):
    params = module.params
    paths = list(params['resources_paths'])
    if params['encryption_config']:
        paths.append(params['encryption_config'])
    return paths


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_together=CONNECTION_REQUIRED_TOGETHER,
                           required_if=STORE_REQUIRED_IF, supports_check_mode=True)
    for present, name, error in ((HAS_ZSTANDARD, 'zstandard', ZSTANDARD_IMPORT_ERROR),
                                 (HAS_PYRAGE, 'pyrage', PYRAGE_IMPORT_ERROR)):
        if not present:
            module.fail_json(msg=missing_required_lib(name), exception=error)
    params = module.params
    if not 1 <= params['compression_level'] <= 19:
        module.fail_json(msg='compression_level %d is out of range: use 1 (fastest) to 19 (smallest)'
                             % params['compression_level'])
    recipients, resources_recipients = keys_from(module)
    signer = signer_from(module)
    try:
        location = etcd_location(params['cluster_name'], params['etcd_cluster'])
        store = store_from_params(params)
    except StoreError as error:
        module.fail_json(msg=str(error))
    result = dict(changed=False, location=location.path, store=store_summary(store, location),
                  encrypted=bool(recipients), recipients=recipients, signed_by=signer.id if signer else None)

    bound_allocator()  # before the gRPC client and the pipeline start their threads
    client = client_from_module(module, stream_window=stream_window(params['store']))
    try:
        try:
            cluster_id, order, unhealthy = candidates(client, params['member'])
        except (EtcdClientError, SnapshotError) as error:
            module.fail_json(msg='no backup taken: could not choose a member to take the snapshot from: %s'
                                 % error.msg, error_kind=error.kind, **result)
        first = order[0]
        result.update(cluster_id=cluster_id, unhealthy=unhealthy)
        if module.check_mode:
            result.update(changed=True, member=first.describe(), etcd_version=first.status.get('version'),
                          msg='would back up from %s (%s) to %s' % (
                              first.name, first.endpoint, result['store']['url']))
            module.exit_json(**result)

        def progress(meter):
            module.log('etcd_backup: %s: %d bytes in %.0f s, %.1f MB/s' % (
                location.path, meter.bytes, meter.seconds, meter.bytes_per_second / MEGABYTE))

        backup = Backup(store, params['cluster_name'], params['etcd_cluster'], recipients=recipients,
                        resources=params['resources'], resources_recipients=resources_recipients,
                        resource_root=params['resources_root'], resource_paths=resource_paths(module),
                        compression_level=params['compression_level'],
                        timeout=params['timeout'], progress=progress, signer=signer)
        try:
            done = backup.run(client, order, cluster_id)
        except BackupError as error:
            module.fail_json(msg='no backup taken: %s' % error.msg, error_kind=error.kind, tried=error.tried,
                             **result)
        except Exception as error:  # pylint: disable=broad-except
            module.fail_json(msg='no backup taken: %s' % error, tried=backup.tried, exception=traceback.format_exc(),
                             **result)
    finally:
        client.close()
    result.update(done)
    result.update(changed=True)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
