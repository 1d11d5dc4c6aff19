#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_snapshot
short_description: Save an etcd snapshot from a member chosen by policy, or report the status of a snapshot file
version_added: 0.1.0
description:
  - With O(state=saved), streams a snapshot (etcd's Snapshot RPC, as C(etcdctl snapshot save) does) from one healthy
    member into O(path) and reports its status as C(etcdutl snapshot status) does, plus the member, cluster id, etcd
    version, duration and throughput.
  - The member is chosen by O(member) among the healthy ones (answering, no errors, seeing a leader, not a learner).
    When its stream fails (the member dies, the connection breaks, the sha256 trailer does not match, its database
    is damaged), the snapshot is taken from the next healthy member; RV(tried) says which members were asked and
    why each one failed.
  - The file holds exactly what C(etcdctl snapshot save) writes, the database followed by etcd's 32-byte sha256
    trailer, which is checked while the snapshot streams; C(etcdutl snapshot restore) and C(etcdutl snapshot status)
    (C(etcdctl) on etcd 3.4) accept it as they accept an etcdctl snapshot.
  - The file is written to a hidden temporary file in the same directory, created with mode 0600, synced to disk
    and renamed into place; it is removed on any failure, so O(path) never holds a partial snapshot and a file
    already there is kept unless a complete new snapshot replaces it.
  - With O(state=status), reports the status of the snapshot file at O(path) and changes nothing. The status is
    read in Python (no etcdutl binary is needed on the host), with the same results as C(etcdutl snapshot status).
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.connection
  - etcdops.etcd.attributes
options:
  state:
    description:
      - V(saved) takes a snapshot into O(path), unless a file is already there and O(force=false).
      - V(status) reports the status of the existing snapshot file at O(path); the connection options are not used.
    type: str
    choices: [saved, status]
    default: saved
  path:
    description:
      - The snapshot file. Its directory must exist.
    type: path
    required: true
  member:
    description:
      - Which member serves the snapshot.
      - V(follower) asks a healthy follower first (the one that has applied the most entries), then the leader, so
        that the leader is not loaded while followers can serve.
      - V(leader) asks the leader first, then the followers.
      - Any other value is a member name (as in C(etcdctl member list)); that member is asked first, then the
        followers, then the leader.
    type: str
    default: follower
  force:
    description:
      - With O(state=saved), whether to replace a file that already exists at O(path).
      - When V(false) and O(path) exists, no snapshot is taken, the task reports no change and the status of
        the file that is there; it fails when that file is not a readable snapshot or its sha256 trailer does not
        match. Every snapshot differs from the
        last, so a scheduled backup names each file uniquely (for example with a timestamp) or sets V(true).
    type: bool
    default: false
  mode:
    description:
      - Permissions of the snapshot file, in octal (for example V('0600')). A snapshot holds every Kubernetes Secret;
        the default lets only the owner read it.
    type: raw
    default: '0600'
  timeout:
    description:
      - Seconds the whole stream from one member may take before it is abandoned and the next member is asked.
    type: float
    default: 900.0
attributes:
  check_mode:
    support: full
    details:
      - Reports which member would serve the snapshot and writes nothing.
  diff_mode:
    support: full
    details:
      - Shows the revision, size and sha256 of the file before and after.
notes:
  - Progress (bytes and MB/s) is logged to the host's syslog every 10 seconds while the snapshot streams.
  - The status hash is crc32c. With the C(google-crc32c) or C(crc32c) Python package on the host it takes a
    second or two per GB; without either, a pure Python crc32c reads about 10 MB per second.
seealso:
  - name: etcd snapshot and restore
    description: How etcd snapshots are taken and restored.
    link: https://etcd.io/docs/v3.5/op-guide/recovery/
  - module: etcdops.etcd.etcd_cluster_info
'''

EXAMPLES = r'''
- name: Save a snapshot from a healthy follower, with kubeadm's certificates
  etcdops.etcd.etcd_snapshot:
    path: "/var/backups/etcd/snapshot-{{ ansible_date_time.iso8601_basic_short }}.db"
  register: snapshot

- name: Show what was saved
  ansible.builtin.debug:
    msg: >-
      revision {{ snapshot.revision }}, {{ snapshot.total_key }} keys, {{ snapshot.size }} bytes
      from {{ snapshot.member.name }} at {{ snapshot.mb_per_second }} MB/s

- name: Take it from a named member, replacing yesterday's file
  etcdops.etcd.etcd_snapshot:
    path: /var/backups/etcd/latest.db
    member: master-2
    force: true

- name: Check a snapshot file before restoring it
  etcdops.etcd.etcd_snapshot:
    state: status
    path: /var/backups/etcd/latest.db
  register: status
  failed_when: status.trailer != 'valid'
'''

RETURN = r'''
path:
  description: The snapshot file.
  returned: success
  type: str
  sample: /var/backups/etcd/snapshot.db
saved:
  description: Whether this run wrote a snapshot to RV(path) (V(false) for O(state=status), in check mode, and when
    the file existed and O(force=false)).
  returned: success
  type: bool
  sample: true
member:
  description: The member that served the snapshot, or in check mode the one that would be asked first.
  returned: when O(state=saved) and a snapshot was taken or would be
  type: dict
  contains:
    name:
      description: Member name.
      type: str
      returned: always
      sample: master-2
    id:
      description: Member id, in hex as etcdctl shows it.
      type: str
      returned: always
      sample: fd422379fda50e48
    endpoint:
      description: The client URL the snapshot was streamed from.
      type: str
      returned: always
      sample: https://10.0.0.12:2379
cluster_id:
  description: The cluster id, in hex as etcdctl shows it.
  returned: when O(state=saved) and a snapshot was taken or would be
  type: str
  sample: cdf818194e3a8c32
etcd_version:
  description: The etcd version the member that served the snapshot runs.
  returned: when O(state=saved) and a snapshot was taken or would be
  type: str
  sample: 3.5.21
hash:
  description: The crc32c hash of the database's buckets, keys and values, as C(etcdutl snapshot status) prints it.
  returned: when a snapshot file was read
  type: int
  sample: 3340857632
revision:
  description: The revision of the last change in the snapshot, as C(etcdutl snapshot status) prints it.
  returned: when a snapshot file was read
  type: int
  sample: 24825
total_key:
  description:
    - The key count C(etcdutl snapshot status) prints, which depends on the etcd line that wrote the snapshot.
    - From etcd 3.6 (RV(version) set) the keys alive at RV(revision), as etcdutl 3.6 counts them.
    - Before (RV(version) empty) every entry of every bucket (key revisions, tombstones, members, meta), as
      C(etcdctl snapshot status) 3.4 and etcdutl 3.5 count them. RV(live_keys) gives the keys alive either way.
  returned: when a snapshot file was read
  type: int
  sample: 180501
live_keys:
  description: The keys alive at RV(revision) (deleted ones not counted), whatever the etcd line.
  returned: when a snapshot file was read
  type: int
  sample: 180501
total_size:
  description: The size of the database in bytes (its pages in use up to the high-water mark), as
    C(etcdutl snapshot status) prints it; the file is 32 bytes longer (the sha256 trailer).
  returned: when a snapshot file was read
  type: int
  sample: 1395359744
version:
  description: The storage version recorded in the snapshot (etcd 3.6 and later), as C(etcdutl snapshot status)
    prints it; empty for snapshots of earlier versions.
  returned: when a snapshot file was read
  type: str
  sample: 3.6.0
size:
  description: The size of the file in bytes.
  returned: when a snapshot file was read
  type: int
  sample: 1395359776
sha256:
  description: The sha256 of the whole file (what C(sha256sum) prints).
  returned: when a snapshot file was read
  type: str
  sample: b608059492cd97194ee1ba60f57f0bfa38398c0d3b6a8cd48f3173ee55884c6b
trailer:
  description:
    - V(valid) when the file ends with etcd's sha256 trailer and it matches the database; restore checks it.
    - V(absent) when the file has no trailer (for example a database copied from a data directory); restore then
      needs C(--skip-hash-check).
    - V(mismatch) when the trailer does not match the database; the file is damaged.
  returned: when a snapshot file was read
  type: str
  sample: valid
duration_seconds:
  description: Seconds from asking the member that served the snapshot to the file in place (stream, sync to disk
    and reading its status).
  returned: when a snapshot was taken
  type: float
  sample: 12.4
mb_per_second:
  description: Throughput of the stream from the member to the file, in megabytes (10^6 bytes) per second.
  returned: when a snapshot was taken
  type: float
  sample: 112.5
tried:
  description: Each member asked for the snapshot, in order; the last one served it unless the task failed.
  returned: when O(state=saved) and a snapshot was taken or attempted
  type: list
  elements: dict
  contains:
    name:
      description: Member name.
      type: str
      returned: always
      sample: master-3
    id:
      description: Member id, in hex.
      type: str
      returned: always
      sample: 91bc3c398fb3c146
    endpoint:
      description: The client URL asked.
      type: str
      returned: always
      sample: https://10.0.0.13:2379
    error:
      description: Why the snapshot from this member failed; V(null) for the member that served it.
      type: str
      returned: always
      sample: "snapshot stream from master-3 (https://10.0.0.13:2379): connection refused"
unhealthy:
  description: Members not asked because they were not healthy, with the reason.
  returned: when O(state=saved) and the members were read
  type: list
  elements: dict
  contains:
    name:
      description: Member name; empty for a member that has not started.
      type: str
      returned: always
      sample: master-3
    id:
      description: Member id, in hex.
      type: str
      returned: always
      sample: 91bc3c398fb3c146
    error:
      description: Why the member was not asked.
      type: str
      returned: always
      sample: "https://10.0.0.13:2379: connection refused"
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (
    MEGABYTE,
    SnapshotError,
    candidates,
    save,
    snapshot_status,
)

STATUS_FIELDS = ('hash', 'revision', 'total_key', 'live_keys', 'total_size', 'version', 'size', 'sha256', 'trailer')


def parse_mode(module, value):
    """'0600', '600', 0o600 or 384 (YAML's reading of 0600) to an int; fails the module otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            module.fail_json(msg="mode %r is not an octal file mode such as '0600'" % (value,))
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg='mode %r is out of range (0000 to 7777 in octal)' % (value,))
    return mode


def file_status(path):
    """The status fields of the file at path (SnapshotError when it is not a readable snapshot)."""
    status = snapshot_status(path)
    return dict((field, status[field]) for field in STATUS_FIELDS)


def summary(status):
    """What diff mode shows of a snapshot file."""
    if not status:
        return {}
    return dict((field, status[field]) for field in ('revision', 'total_key', 'size', 'sha256'))


def state_status(module):
    path = module.params['path']
    try:
        status = file_status(path)
    except SnapshotError as error:
        module.fail_json(msg=error.msg, error_kind=error.kind, path=path)
    if status['trailer'] == 'mismatch':
        module.fail_json(msg='%s is damaged: its sha256 trailer does not match its database; restore would refuse '
                             'it' % path, error_kind='sha256_mismatch', path=path, saved=False, **status)
    module.exit_json(changed=False, path=path, saved=False, **status)


def state_saved(module):
    params = module.params
    path = params['path']
    mode = parse_mode(module, params['mode'])
    before = None
    if os.path.lexists(path):
        if os.path.isdir(path):
            module.fail_json(msg='%s is a directory: give the path of the snapshot file' % path)
        if not params['force']:
            try:
                status = file_status(path)
            except SnapshotError as error:
                module.fail_json(msg='%s exists and is not a readable snapshot (%s); set force=true to replace it'
                                     % (path, error.msg), error_kind=error.kind, path=path)
            if status['trailer'] == 'mismatch':
                module.fail_json(msg='%s exists and is damaged: its sha256 trailer does not match its database; set '
                                     'force=true to replace it' % path, error_kind='sha256_mismatch', path=path,
                                 saved=False, **status)
            module.exit_json(changed=False, path=path, saved=False,
                             msg='%s exists: kept (force=false); its status is returned' % path, **status)
        try:
            before = file_status(path)
        except SnapshotError:
            before = None  # replaced anyway: force=true
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        module.fail_json(msg='directory %s does not exist: create it first' % directory, path=path)

    client = client_from_module(module)
    try:
        try:
            cluster_id, order, unhealthy = candidates(client, params['member'])
        except (EtcdClientError, SnapshotError) as error:
            module.fail_json(msg='could not choose a member to take the snapshot from: %s' % error.msg,
                             error_kind=error.kind, path=path)
        first = order[0]
        result = dict(path=path, cluster_id=cluster_id, unhealthy=unhealthy)
        if module.check_mode:
            result.update(changed=True, saved=False, member=first.describe(), etcd_version=first.status['version'],
                          tried=[])
            if module._diff:
                result['diff'] = dict(before=summary(before), after=dict(path=path, member=first.name))
            module.exit_json(**result)

        def progress(meter):
            module.log('etcd_snapshot: %s: %d bytes in %.0f s, %.1f MB/s' % (
                path, meter.bytes, meter.seconds, meter.bytes_per_second / MEGABYTE))

        try:
            saved = save(client, order, path, mode=mode, timeout=params['timeout'], progress=progress)
        except (EtcdClientError, SnapshotError) as error:
            module.fail_json(msg='no snapshot saved: %s' % error.msg, error_kind=error.kind, saved=False,
                             tried=getattr(error, 'tried', []), **result)
    finally:
        client.close()

    member = saved['member']
    status = dict(saved['status'])
    status.update(size=saved['size'], sha256=saved['sha256'], trailer='valid')
    stream_seconds = saved['stream_seconds']
    result.update(changed=True, saved=True, member=member.describe(), etcd_version=member.status['version'],
                  duration_seconds=round(saved['seconds'], 3),
                  mb_per_second=round(saved['size'] / MEGABYTE / stream_seconds, 1) if stream_seconds > 0 else 0.0,
                  tried=saved['tried'])
    result.update((field, status[field]) for field in STATUS_FIELDS)
    if module._diff:
        result['diff'] = dict(before=summary(before), after=summary(status))
    module.exit_json(**result)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        state=dict(type='str', default='saved', choices=['saved', 'status']),
        path=dict(type='path', required=True),
        member=dict(type='str', default='follower'),
        force=dict(type='bool', default=False),
        mode=dict(type='raw', default='0600'),
        timeout=dict(type='float', default=900.0),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    if module.params['state'] == 'status':
        state_status(module)
    state_saved(module)


if __name__ == '__main__':
    main()
