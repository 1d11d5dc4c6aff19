#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_snapshot
short_description: Save an etcd snapshot from a member chosen by policy, report a snapshot file's status, or restore it
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
  - With O(state=restored), restores the snapshot file at O(path) into this member's data dir, as the etcd and
    Kubernetes runbooks do with C(etcdutl snapshot restore) (C(ETCDCTL_API=3 etcdctl snapshot restore) on etcd 3.4).
    The member's name, initial cluster, cluster token, peer URLs and data dir are read from its static pod manifest
    (O(manifest); by default C(etcd.yaml) in O(manifests_dir), else its parked copy in O(parking_dir)); each option
    given overrides what the manifest says.
  - The restore refuses, changing nothing, while this member's etcd runs (its manifest is in O(manifests_dir), or a
    process is etcd with this data dir or has a file open under it, read from C(/proc)); when the snapshot is
    missing, unreadable or its sha256 trailer does not match; when no etcdutl (etcdctl on 3.4) is found; and when the
    tool's etcd line differs from the server's (the manifest's image).
  - It restores into C(<data_dir>.restoring) beside the data dir, then moves the old data dir aside as
    C(<data_dir>.moved-<UTC timestamp>) (never deletes it) and renames the restored dir into place. Where the data
    dir is a mount point, the old content moves into C(<data_dir>/moved-<UTC timestamp>/) instead.
  - The snapshot's status (sha256, trailer, revision, keys) is read in a thread while etcdutl restores it into
    C(<data_dir>.restoring), not before it; the restored dir takes the data dir's place only when both passed. A
    snapshot that fails this check is refused as it would be before etcdutl (same C(error_kind)); the restoring dir
    is removed and nothing else was changed. Check mode, and a run that must first know whether the data dir was
    already restored from this file, read the status before anything else.
  - A file C(.etcdops-restore.json) in the restored data dir records the snapshot's sha256, a quick fingerprint
    (its size, the sha256 of its first 64 KiB and its last 32 bytes) and the member's identity; a later run with
    the same snapshot and identity reports no change (even while etcd runs), so a restore playbook run again after
    an interruption converges. A file whose fingerprint differs is another snapshot, known without reading it
    whole; for the same fingerprint (or a marker without one) the sha256 decides. The file moves into the data
    dir last, after the restored data. A run killed after its restore was complete and the old data dir was moved
    aside is finished by the next run (the restored dir takes its place; etcdutl does not run again).
  - One restore of a data dir runs at a time; a run holds a lock file C(.<data dir name>.etcdops-restore.lock)
    beside the data dir while it writes, and removes it when done. A module left running on the host by a
    controller that was killed keeps the lock; a second run waits for it (up to 15 minutes), then finds its work
    done or goes on.
  - The revision bump and mark-compacted (C(--bump-revision 1000000000 --mark-compacted), etcd's recovery guide)
    are on by default where the tool has them (etcdutl 3.5.10 and later; not etcdctl 3.4 before 3.4.27, where the
    restore runs without them and a warning says so).
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
      - V(restored) restores the snapshot file at O(path) into this member's data dir (see the description); the
        connection options are not used.
    type: str
    choices: [saved, status, restored]
    default: saved
  path:
    description:
      - The snapshot file. Its directory must exist.
      - With O(state=restored), the snapshot to restore (a file C(etcdctl snapshot save), M(etcdops.etcd.etcd_snapshot)
        or a fetched backup wrote).
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
      - With O(state=restored), V(true) restores even when the data dir was already restored from this snapshot (the
        data written since then is moved aside with the old data dir).
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
      - Read with the collection's HTTP/2 reader, the deadline grows with the size the member announces (the
        time it takes at 8 MiB/s, when that is longer), and a stream that sends no byte for 60 s is abandoned
        at once.
    type: float
    default: 900.0
  data_dir:
    description:
      - With O(state=restored), the member's data dir on the host. Default, the manifest's C(--data-dir) mapped
        through its hostPath volume (C(/var/lib/etcd) with kubeadm).
    type: path
  name:
    description:
      - With O(state=restored), the member's name. Default, the manifest's C(--name).
    type: str
  initial_cluster:
    description:
      - With O(state=restored), every member as C(name=peer-URL), comma-separated. Default, the manifest's
        C(--initial-cluster). Restoring several members, give each the same list of all of them.
    type: str
  initial_cluster_token:
    description:
      - With O(state=restored), the cluster token. Default, the manifest's C(--initial-cluster-token), else etcd's
        default C(etcd-cluster) (kubeadm sets none).
    type: str
  initial_advertise_peer_urls:
    description:
      - With O(state=restored), this member's peer URLs, comma-separated; they must be its URLs in
        O(initial_cluster). Default, the manifest's C(--initial-advertise-peer-urls).
    type: str
  manifest:
    description:
      - With O(state=restored), the member's etcd static pod manifest to read the defaults from. Default,
        C(etcd.yaml) in O(manifests_dir), else in O(parking_dir).
    type: path
  manifests_dir:
    description:
      - The directory the kubelet runs static pods from. With O(state=restored), an C(etcd.yaml) there means etcd
        runs (or will be started at once), so the restore refuses.
    type: path
    default: /etc/kubernetes/manifests
  parking_dir:
    description:
      - Where M(etcdops.etcd.static_pod_manifest) parks manifests; the parked C(etcd.yaml) is read when none is in
        O(manifests_dir).
    type: path
    default: /etc/kubernetes/manifests-parked
  etcdutl:
    description:
      - With O(state=restored), the path of etcdutl (or etcdctl on etcd 3.4), or the directory holding it.
        Default, C(/var/lib/etcdops/tools/<version>) when M(etcdops.etcd.etcd_tools) staged the version the
        member's manifest names there, else C(/usr/local/bin), C(/usr/bin), C(/bin) and C(/opt/bin), etcdutl first.
    type: path
  bump_revision:
    description:
      - With O(state=restored), how many revisions to add to the snapshot's last one (C(--bump-revision)), so that
        the restored revisions stay above every revision watchers have seen.
      - Default, 1000000000 where the tool has the flag (and O(mark_compacted=true)), 0 where it does not. V(0)
        restores without a bump.
    type: int
  mark_compacted:
    description:
      - With O(state=restored), mark the revisions before the bumped one compacted (C(--mark-compacted)), so
        watchers re-list. It goes with a bump (etcdutl demands it with one); V(false) with no O(bump_revision)
        restores without a bump.
    type: bool
    default: true
  skip_hash_check:
    description:
      - With O(state=restored), restore a snapshot without etcd's sha256 trailer (a C(member/snap/db) copied from a
        data dir), unchecked.
    type: bool
    default: false
  allow_version_mismatch:
    description:
      - With O(state=restored), restore with a tool of another etcd line than the server's (read from the manifest's
        image tag).
    type: bool
    default: false
  verified_status:
    description:
      - With O(state=restored), the status of this very snapshot file from an earlier read, that is the registered result of
        this module in check mode (a restore's plan) or with O(state=status).
      - When its C(fingerprint) is the file's and its trailer was valid, the file is not read again. The fingerprint
        holds the trailer (the sha256 of the database) and etcdutl checks the database against it while it restores,
        so a file that passes has the same content; its revision, hash, key counts and sha256 are taken from
        O(verified_status). With O(skip_hash_check=true), or when the status is needed before etcdutl runs (check
        mode, a data dir already restored), the file's sha256 is computed whole and must equal its C(sha256), else
        the module fails with nothing changed (the file changed since it was read).
      - When its fingerprint is not the file's, it is ignored and the file is read whole.
      - A dict without the status fields (C(fingerprint), C(sha256), C(trailer), C(revision), C(hash), C(total_key),
        C(live_keys), C(total_size), C(version)) is refused.
    type: dict
attributes:
  check_mode:
    support: full
    details:
      - Reports which member would serve the snapshot and writes nothing.
      - With O(state=restored), verifies the snapshot, finds the tool and reports the command it would run and where
        the old data dir would go, and touches nothing. While etcd still runs it warns (a real run refuses) instead
        of failing, so a playbook's check mode can show a restore that follows the step that stops etcd.
  diff_mode:
    support: full
    details:
      - Shows the revision, size and sha256 of the file before and after.
      - With O(state=restored), the sha256 of the snapshot the data dir was restored from, before and after.
notes:
  - Progress (bytes and MB/s) is logged to the host's syslog every 10 seconds while the snapshot streams.
  - The status hash is crc32c. With the C(google-crc32c) or C(crc32c) Python package on the host it takes a
    second or two per GB; without either, a pure Python crc32c reads about 10 MB per second.
seealso:
  - name: etcd snapshot and restore
    description: How etcd snapshots are taken and restored.
    link: https://etcd.io/docs/v3.5/op-guide/recovery/
  - module: etcdops.etcd.etcd_cluster_info
  - module: etcdops.etcd.static_pod_manifest
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

- name: Stop etcd on this member, then restore the snapshot into its data dir (identity from the parked manifest)
  etcdops.etcd.static_pod_manifest:
    name: etcd
    state: absent
    wait: stopped

- name: Restore; the old data dir is moved aside as /var/lib/etcd.moved-<timestamp>
  etcdops.etcd.etcd_snapshot:
    state: restored
    path: /var/backups/etcd/latest.db
  register: restored

- name: Restore on etcd 3.4 with the etcdctl of that line and without a bump
  etcdops.etcd.etcd_snapshot:
    state: restored
    path: /var/backups/etcd/latest.db
    etcdutl: /usr/local/bin/etcdctl
    bump_revision: 0
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
    - From etcd 3.6 (RV(version) set, or a snapshot just saved from a member of 3.6 or later) the keys alive at
      RV(revision), as etcdutl 3.6 and 3.7 count them.
    - Before (RV(version) empty) every entry of every bucket (key revisions, tombstones, members, meta), as
      C(etcdctl snapshot status) 3.4 and etcdutl 3.5 count them. A file read on its own whose RV(version) is empty
      (written by etcd 3.5 or older, or by a 3.6 member that had just started) is counted this way.
      RV(live_keys) gives the keys alive either way.
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
fingerprint:
  description:
    - A quick fingerprint of the file read from its ends (size, the sha256 of its first 64 KiB, its last 32 bytes);
      files with different fingerprints differ. O(verified_status) uses it to know the status is of this file.
  returned: with O(state=status) and O(state=restored)
  type: str
  sample: "v1:1395359776:5f0c...:b608..."
database_walked:
  description:
    - With O(state=restored), whether this run read the snapshot's database (V(false) when O(verified_status) stood
      for it, or when nothing had to be read).
  returned: when O(state=restored)
  type: bool
  sample: false
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
    and reading its status); with O(state=restored), seconds of the restore and the swap.
  returned: when a snapshot was taken or restored
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
data_dir:
  description: The member's data dir that was (or would be) restored.
  returned: when O(state=restored)
  type: str
  sample: /var/lib/etcd
restored:
  description: Whether this run restored the snapshot into RV(data_dir) (V(false) in check mode and when it already was).
  returned: when O(state=restored)
  type: bool
  sample: true
moved_to:
  description: Where the old data dir went (or would go in check mode); V(null) when there was none.
  returned: when O(state=restored)
  type: str
  sample: /var/lib/etcd.moved-20250314T101500Z
restored_at:
  description: The UTC timestamp of the restore (of the earlier one when nothing was done).
  returned: when O(state=restored) and the data dir was or had been restored
  type: str
  sample: 20250314T101500Z
manifest:
  description: The manifest the member's identity was read from; V(null) when all came from options.
  returned: when O(state=restored)
  type: str
  sample: /etc/kubernetes/manifests-parked/etcd.yaml
name:
  description: The member name restored.
  returned: when O(state=restored)
  type: str
  sample: master-1
initial_cluster:
  description: The initial cluster restored.
  returned: when O(state=restored)
  type: str
  sample: master-1=https://10.0.0.11:2380,master-2=https://10.0.0.12:2380
initial_cluster_token:
  description: The cluster token restored.
  returned: when O(state=restored)
  type: str
  sample: etcd-cluster
initial_advertise_peer_urls:
  description: This member's peer URLs.
  returned: when O(state=restored)
  type: str
  sample: https://10.0.0.11:2380
etcd_running:
  description: Whether this member's etcd was found running (in check mode the restore warns; a real run refuses).
  returned: when O(state=restored) and the data dir was not already restored
  type: bool
  sample: false
server_version:
  description: The etcd version of the member's manifest image; V(null) when unknown.
  returned: when O(state=restored) and the tool was looked for
  type: str
  sample: 3.6.4
tool:
  description: The binary that restores.
  returned: when O(state=restored) and the tool was found
  type: dict
  contains:
    path:
      description: Its path.
      type: str
      returned: always
      sample: /usr/local/bin/etcdutl
    kind:
      description: V(etcdutl) or V(etcdctl) (etcd 3.4).
      type: str
      returned: always
      sample: etcdutl
    version:
      description: Its version.
      type: str
      returned: always
      sample: 3.6.4
    line:
      description: Its major.minor.
      type: str
      returned: always
      sample: '3.6'
    supports_bump_revision:
      description: Whether its C(snapshot restore) has C(--bump-revision) and C(--mark-compacted).
      type: bool
      returned: always
      sample: true
command:
  description: The restore command (run, or to run in check mode).
  returned: when O(state=restored) and a restore was (or would be) run
  type: list
  elements: str
  sample: [/usr/local/bin/etcdutl, snapshot, restore, /var/backups/etcd/latest.db, --data-dir, /var/lib/etcd.restoring]
bump_revision:
  description: The revision bump used (0 for none).
  returned: when O(state=restored) and a restore was (or would be) run
  type: int
  sample: 1000000000
mark_compacted:
  description: Whether the restore marked the revisions before the bump compacted.
  returned: when O(state=restored) and a restore was (or would be) run
  type: bool
  sample: true
restore_seconds:
  description: Seconds etcdutl (etcdctl) took.
  returned: when O(state=restored) and a restore ran
  type: float
  sample: 8.2
msg:
  description: What was done, or why nothing was.
  returned: sometimes
  type: str
  sample: restored /var/backups/etcd/latest.db (revision 24825) into /var/lib/etcd as member master-1
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
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    CONNECTION_REQUIRED_TOGETHER,
    EtcdClientError,
    client_from_module,
    connection_argument_spec,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import ManifestError, StaticPodManifest
from ansible_collections.etcdops.etcd.plugins.module_utils._tools import DEFAULT_DEST as STAGED_TOOLS
from ansible_collections.etcdops.etcd.plugins.module_utils._restore import (
    DEFAULT_BUMP_REVISION,
    RestoreError,
    RestoreLock,
    cluster_string,
    data_entries,
    detect_tool,
    etcd_users,
    interrupted_swap,
    marker_matches,
    marker_may_match,
    moved_path,
    read_marker,
    remove_restoring,
    restore_argv,
    restoring_dir,
    run_restore,
    swap_in,
    url_list,
    utc_stamp,
    write_marker,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (
    MEGABYTE,
    SnapshotError,
    candidates,
    file_digest,
    file_fingerprint,
    fingerprint_size,
    has_trailer_size,
    save,
    snapshot_status,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._threads import InThread

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


def read_status(path, known=None, trailer_checked=False):
    """file_status(), or with known (verified_for()) only the file's sha256, which must be known's: the rest of the
    status is then known's (SnapshotError kind 'snapshot_changed' when the sha256 differs).

    trailer_checked: etcdutl checks the file against its sha256 trailer while it restores it. The trailer is the
    last 32 bytes, part of the fingerprint that matched known's, and known's trailer was valid: a file that passes
    that check has known's content, so nothing is read here and the status is known's."""
    if known is None:
        return file_status(path)
    if trailer_checked:
        return dict(known)
    digest = file_digest(path)
    if digest['sha256'] != known['sha256']:
        raise SnapshotError('its sha256 %s is not the one in verified_status (%s): it changed since it was read; run '
                            'again to read it afresh' % (digest['sha256'][:12], known['sha256'][:12]),
                            kind='snapshot_changed')
    status = dict(known)
    status.update(digest)
    return status


def verified_for(module, fingerprint):
    """The status fields of params['verified_status'] when it is of the file with this fingerprint and its trailer
    was valid; None when it is not given or of another file. Fails the module when it lacks status fields."""
    given = module.params['verified_status']
    if not given:
        return None
    missing = [field for field in STATUS_FIELDS + ('fingerprint',) if field not in given]
    if missing:
        module.fail_json(msg='verified_status lacks %s: give the registered result of etcd_snapshot in check mode or '
                             'with state=status for this file; nothing was changed' % ', '.join(missing),
                         error_kind='bad_input')
    if given['fingerprint'] != fingerprint or given['trailer'] != 'valid':
        return None
    return dict((field, given[field]) for field in STATUS_FIELDS)


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
    try:
        status['fingerprint'] = file_fingerprint(path)
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


RESTORE_OPTIONS = ('data_dir', 'name', 'initial_cluster', 'initial_cluster_token', 'initial_advertise_peer_urls')
ETCD_DEFAULT_TOKEN = 'etcd-cluster'  # what etcd uses when --initial-cluster-token is not given (kubeadm gives none)


def find_manifest(params):
    """The member's etcd manifest: O(manifest), else etcd.yaml in the manifests dir, else its parked copy."""
    if params['manifest']:
        return params['manifest']
    for directory in (params['manifests_dir'], params['parking_dir']):
        candidate = os.path.join(directory, 'etcd.yaml')
        if os.path.isfile(candidate):
            return candidate
    return None


def identity_from_manifest(module, path):
    """data_dir (on the host), name, initial cluster, token, peer URLs and the server's etcd version."""
    try:
        manifest = StaticPodManifest.from_file(path, container='etcd')
    except ManifestError as error:
        try:
            manifest = StaticPodManifest.from_file(path)
        except ManifestError:
            module.fail_json(msg='cannot read the etcd manifest %s: %s; fix it or give data_dir, name, initial_cluster, '
                                 'initial_cluster_token and initial_advertise_peer_urls' % (path, error),
                             error_kind='bad_manifest')
    flags = manifest.flags
    data_dir = manifest.data_dir
    wal_dir = flags.get('wal-dir') if isinstance(flags.get('wal-dir'), str) else None
    found = dict(
        data_dir=(manifest.host_path(data_dir) or data_dir) if data_dir else None,
        wal_dir=(manifest.host_path(wal_dir) or wal_dir) if wal_dir else None,
        name=flags.get('name') if isinstance(flags.get('name'), str) else None,
        initial_cluster=flags.get('initial-cluster') if isinstance(flags.get('initial-cluster'), str) else None,
        initial_cluster_token=flags.get('initial-cluster-token') if isinstance(
            flags.get('initial-cluster-token'), str) else ETCD_DEFAULT_TOKEN,
        initial_advertise_peer_urls=flags.get('initial-advertise-peer-urls') if isinstance(
            flags.get('initial-advertise-peer-urls'), str) else None,
        server_version=manifest.etcd_version,
    )
    return found


def etcd_running(params, data_dir):
    """Why this member's etcd counts as running ([] when it does not): its manifest where kubelet runs it, a process."""
    reasons = []
    in_manifests = os.path.join(params['manifests_dir'], 'etcd.yaml')
    if os.path.exists(in_manifests):
        reasons.append('its manifest %s is in the manifests directory, where the kubelet runs it' % in_manifests)
    if params['manifest'] and os.path.exists(params['manifest']) and \
            os.path.dirname(os.path.abspath(params['manifest'])) == os.path.abspath(params['manifests_dir']):
        if params['manifest'] != in_manifests:
            reasons.append('its manifest %s is in the manifests directory' % params['manifest'])
    for user in etcd_users(data_dir, ignore=[restoring_dir(data_dir)]):
        reasons.append('process %d uses %s (%s)' % (user['pid'], data_dir, user['why']))
    return reasons


def state_restored(module):
    params = module.params
    path = params['path']
    manifest = find_manifest(params)
    identity = dict((option, None) for option in RESTORE_OPTIONS)
    server_version = None
    wal_dir = None
    if manifest and os.path.isfile(manifest):
        found = identity_from_manifest(module, manifest)
        identity.update((k, found[k]) for k in RESTORE_OPTIONS)
        server_version, wal_dir = found['server_version'], found['wal_dir']
    elif params['manifest']:
        module.fail_json(msg='manifest %s does not exist: give the path of the member\'s etcd manifest (or its parked '
                             'copy), or give data_dir, name, initial_cluster and initial_advertise_peer_urls'
                             % params['manifest'], error_kind='missing_manifest')
    for option in RESTORE_OPTIONS:
        if params[option]:
            identity[option] = params[option]
    if not identity['initial_cluster_token']:
        identity['initial_cluster_token'] = ETCD_DEFAULT_TOKEN
    missing = [option for option in RESTORE_OPTIONS if not identity[option]]
    if missing:
        module.fail_json(msg='cannot restore: %s not given and not found in a manifest (looked for %s): give them as '
                             'options' % (', '.join(missing), manifest or 'etcd.yaml in %s and %s' % (
                                 params['manifests_dir'], params['parking_dir'])), error_kind='bad_input')
    if wal_dir:
        module.fail_json(msg='the member keeps its WAL in a separate directory (--wal-dir=%s): restoring such a member '
                             'is not supported yet; restore by hand with etcdutl --wal-dir' % wal_dir,
                         error_kind='unsupported')
    data_dir = os.path.abspath(identity['data_dir']).rstrip('/')
    try:
        identity['initial_cluster'] = cluster_string(identity['initial_cluster'])
    except RestoreError as error:
        module.fail_json(msg=error.msg, error_kind=error.kind)
    identity['initial_advertise_peer_urls'] = url_list(identity['initial_advertise_peer_urls'])
    identity['data_dir'] = data_dir
    result = dict(path=path, manifest=manifest, restored=False, moved_to=None, **identity)

    # 1. the snapshot: there and readable; a real run checks its trailer and reads its status while etcdutl runs
    # (step 5), unless the status is needed first: check mode's plan, a refusal, or a marker that may be of it
    try:
        fingerprint = file_fingerprint(path)
    except SnapshotError as error:
        snapshot_unusable(module, path, error, result)
    known = verified_for(module, fingerprint)
    result.update(fingerprint=fingerprint, database_walked=False)
    status = None
    if module.check_mode or (not params['skip_hash_check'] and not has_trailer_size(fingerprint_size(fingerprint))):
        status = checked_status(module, path, result, known)

    # 2. already restored from this very snapshot for this member: nothing to do
    marker = read_marker(data_dir)
    if not params['force'] and marker_may_match(marker, fingerprint, identity):
        status = status or checked_status(module, path, result, known)
        if marker_matches(marker, status['sha256'], identity):
            result.update(changed=False, restored_at=marker.get('restored_at'), moved_to=marker.get('moved_to'),
                          msg='%s was already restored from this snapshot (sha256 %s) at %s; set force=true to '
                              'restore it again' % (data_dir, status['sha256'][:12], marker.get('restored_at')))
            module.exit_json(**result)

    # 3. etcd must not run on this data dir
    running = etcd_running(params, data_dir)
    result['etcd_running'] = bool(running)
    if running and not module.check_mode:
        module.fail_json(msg='etcd of this member is running: %s. Stop it first (park its manifest with '
                             'etcdops.etcd.static_pod_manifest state=absent wait=stopped); nothing was changed'
                         % '; '.join(running), error_kind='etcd_running', **result)
    if running:
        module.warn('etcd runs (%s): the restore itself needs it stopped, and a real run refuses until it is (stop it '
                    'with etcdops.etcd.static_pod_manifest state=absent wait=stopped, as restore.yml does after '
                    'its plan)' % '; '.join(running))

    # 4. the tool of the server's line
    location = params['etcdutl']
    if not location and server_version:
        staged = os.path.join(STAGED_TOOLS, server_version)  # where etcd_tools staged the server's own version
        if os.path.isdir(staged):
            location = staged
    try:
        tool = detect_tool(location, module)
    except RestoreError as error:
        module.fail_json(msg='%s; nothing was changed' % error.msg, error_kind=error.kind, **result)
    result['tool'] = tool.as_dict()
    server_line = '.'.join(server_version.split('.')[:2]) if server_version else None
    result['server_version'] = server_version
    if server_line and tool.line and server_line != tool.line and not params['allow_version_mismatch']:
        module.fail_json(msg='%s is etcd %s but the member runs etcd %s (its manifest\'s image): a restore must use '
                             'the tool of the server\'s line. Give etcdutl of %s (etcdctl on 3.4) in O(etcdutl), or set '
                             'allow_version_mismatch=true; nothing was changed' % (
                                 tool.path, tool.version, server_version, server_line),
                         error_kind='version_mismatch', **result)
    bump = params['bump_revision']
    if bump is None:
        bump = DEFAULT_BUMP_REVISION if tool.supports_bump_revision and params['mark_compacted'] else 0
        if not tool.supports_bump_revision:
            module.warn('%s %s has no --bump-revision/--mark-compacted: restored without a revision bump; restart '
                        'every kube-apiserver and controller after the restore so no watch cache serves stale '
                        'data' % (tool.kind, tool.version))
    restoring = restoring_dir(data_dir)
    try:
        argv = restore_argv(tool, path, restoring, identity['name'], identity['initial_cluster'],
                            identity['initial_cluster_token'], identity['initial_advertise_peer_urls'],
                            bump_revision=bump, mark_compacted=params['mark_compacted'],
                            skip_hash_check=params['skip_hash_check'])
    except RestoreError as error:
        module.fail_json(msg='%s; nothing was changed' % error.msg, error_kind=error.kind, **result)
    stamp = utc_stamp()
    parent = os.path.dirname(data_dir)
    if not os.path.isdir(parent):
        module.fail_json(msg='the parent directory %s of data_dir does not exist; nothing was changed' % parent,
                         error_kind='no_directory', **result)
    had_data = os.path.lexists(data_dir) and not (os.path.isdir(data_dir) and not data_entries(data_dir, restoring))
    would_move = moved_path(data_dir, stamp) if had_data else None
    result.update(command=argv, bump_revision=bump, mark_compacted=bool(bump), changed=True)
    diff = dict(data_dir=data_dir, before=(marker or {}).get('snapshot_sha256'), would_move=would_move)
    if module.check_mode:
        add_diff(module, result, diff, status)
        # a run killed after etcdutl finished and the old data dir was moved aside: only the swap is left to do
        if not had_data and interrupted_swap(restoring, data_dir, status['sha256'], identity):
            result.update(msg='would finish an interrupted restore of %s: %s (already restored from it) takes the '
                              'place of %s' % (path, restoring, data_dir))
        else:
            result.update(moved_to=would_move, msg='would restore %s (revision %d, %d keys) into %s as member %s%s' % (
                path, status['revision'], status['live_keys'], data_dir, identity['name'],
                ', moving the old data dir to %s' % would_move if would_move else ''))
        module.exit_json(**result)

    # 5. one restore of this data dir at a time: a run killed on the controller may still run here
    lock = RestoreLock(data_dir)
    try:
        lock.__enter__()
    except (RestoreError, OSError, IOError) as error:
        module.fail_json(msg='%s; nothing was changed' % (getattr(error, 'msg', None) or str(error)),
                         error_kind=getattr(error, 'kind', 'locked'), **result)
    try:
        restore_locked(module, result, dict(path=path, data_dir=data_dir, restoring=restoring, identity=identity,
                                            status=status, fingerprint=fingerprint, argv=argv, tool=tool, bump=bump,
                                            stamp=stamp, diff=diff, known=known))
    finally:
        lock.__exit__()


def snapshot_unusable(module, path, error, result, done='nothing was changed'):
    """fail_json for a snapshot that is missing or cannot be read as one (SnapshotError)."""
    what = 'does not exist' if error.kind == 'missing' else 'cannot be used'
    module.fail_json(msg='snapshot %s %s: %s; %s' % (path, what, error.msg, done), error_kind=error.kind, **result)


def status_refusal(path, status, skip_hash_check):
    """(error_kind, message) when a snapshot of this status must not be restored, else None."""
    if status['trailer'] == 'mismatch':
        return 'sha256_mismatch', 'snapshot %s is damaged: its sha256 trailer does not match its database' % path
    if status['trailer'] == 'absent' and not skip_hash_check:
        return 'no_trailer', ('snapshot %s has no sha256 trailer (a db file copied from a data dir?): set '
                              'skip_hash_check=true to restore it unchecked' % path)
    return None


def checked_status(module, path, result, known=None):
    """The snapshot's status, read before anything is touched (its fields go into result); fails the module, with
    nothing changed, when it is not a snapshot to restore."""
    try:
        status = read_status(path, known)
    except SnapshotError as error:
        snapshot_unusable(module, path, error, result)
    result.update((field, status[field]) for field in STATUS_FIELDS)
    result['database_walked'] = known is None
    refusal = status_refusal(path, status, module.params['skip_hash_check'])
    if refusal:
        module.fail_json(msg='%s; nothing was changed%s' % (
            refusal[1], '. Use another backup' if refusal[0] == 'sha256_mismatch' else ''),
            error_kind=refusal[0], **result)
    return status


def add_diff(module, result, diff, status):
    if module._diff:
        result['diff'] = dict(
            before=dict(data_dir=diff['data_dir'], restored_from=diff['before']),
            after=dict(data_dir=diff['data_dir'], restored_from=status['sha256'],
                       old_data_dir_moved_to=diff['would_move']))


def restore_and_check(module, result, job):
    """etcdutl into the restoring dir, the snapshot's status read beside it when it is not known yet: (status,
    what ran). On any failure the restoring dir is removed and the module fails; the data dir is not touched."""
    path, data_dir, restoring, status = (job[k] for k in ('path', 'data_dir', 'restoring', 'status'))
    # with verified_status of this file, etcdutl's check of the trailer stands for reading it (read_status())
    trusted = status is None and job['known'] is not None and not module.params['skip_hash_check']
    checking = InThread(read_status, path, job['known'], trusted).start() if status is None else None
    failed, ran = None, None
    try:
        remove_restoring(restoring)
        ran = run_restore(module, job['argv'], job['tool'].env)
    except (RestoreError, OSError, IOError) as error:
        failed = (getattr(error, 'kind', 'write_failed'), getattr(error, 'msg', None) or str(error))
    if failed and trusted:
        # etcdutl refused or broke and the file was not read: its sha256 says whether it changed since it was read
        checking.join()
        checking = InThread(read_status, path, job['known']).start()
    if checking is not None:
        # the status decides before etcdutl's own words: a damaged snapshot fails both, and it says why
        untouched = 'the restore into %s was removed and the data dir %s was not touched: nothing was changed' % (
            restoring, data_dir)
        try:
            status = checking.join()
            if file_fingerprint(path) != job['fingerprint']:
                raise SnapshotError('it changed while it was restored (size or content at its ends differ): '
                                    'run again when nothing writes it', kind='snapshot_changed')
        except Exception as error:  # pylint: disable=broad-except
            if not isinstance(error, SnapshotError):  # a bug or a damage the walk did not foresee: still refused
                error = SnapshotError('reading its status failed: %r' % (error,), kind='unreadable')
            discard(restoring)
            snapshot_unusable(module, path, error, result, done=untouched)
        result.update((field, status[field]) for field in STATUS_FIELDS)
        result['database_walked'] = job['known'] is None
        refusal = status_refusal(path, status, module.params['skip_hash_check'])
        if refusal:
            discard(restoring)
            module.fail_json(msg='%s; %s%s' % (refusal[1], untouched, '. Use another backup' if refusal[0] ==
                                               'sha256_mismatch' else ''), error_kind=refusal[0], **result)
    if failed:
        discard(restoring)
        module.fail_json(msg='restore into %s failed: %s; the data dir %s was not touched' % (
            restoring, failed[1], data_dir), error_kind=failed[0], **result)
    return status, ran


def discard(restoring):
    """Remove the restoring dir of a failed restore (only ever etcdutl's output from the snapshot)."""
    try:
        remove_restoring(restoring)
    except OSError:
        pass


def restore_locked(module, result, job):
    """Step 5 under the lock: done meanwhile by another run, or finish an interrupted swap, or restore and swap."""
    path, data_dir, restoring, identity, status = (job[k] for k in ('path', 'data_dir', 'restoring', 'identity',
                                                                    'status'))
    stamp, tool, bump, fingerprint = job['stamp'], job['tool'], job['bump'], job['fingerprint']
    marker = read_marker(data_dir)
    if not module.params['force'] and marker_may_match(marker, fingerprint, identity):
        status = status or checked_status(module, path, result, job['known'])
        if marker_matches(marker, status['sha256'], identity):
            add_diff(module, result, job['diff'], status)
            result.update(changed=False, restored_at=marker.get('restored_at'), moved_to=marker.get('moved_to'),
                          msg='%s was restored from this snapshot at %s by another run (it held the lock); nothing '
                              'to do' % (data_dir, marker.get('restored_at')))
            module.exit_json(**result)
    started = time.monotonic()
    had_data = os.path.lexists(data_dir) and not (os.path.isdir(data_dir) and not data_entries(data_dir, restoring))
    record = None
    if not had_data and marker_may_match(read_marker(restoring), fingerprint, identity):
        status = status or checked_status(module, path, result, job['known'])
    if not had_data and status and interrupted_swap(restoring, data_dir, status['sha256'], identity):
        # a run killed after etcdutl finished and the old data dir was moved aside: only the swap is left to do
        record = read_marker(restoring)
        ran = None
    else:
        # restore beside the data dir, then swap: the old data dir is moved aside, never deleted
        status, ran = restore_and_check(module, result, dict(job, status=status))
        try:
            os.chmod(restoring, 0o700)
            record = dict(identity, snapshot_sha256=status['sha256'], snapshot_fingerprint=fingerprint,
                          snapshot_path=path, revision=status['revision'], bump_revision=bump, restored_at=stamp,
                          tool=tool.as_dict())
            write_marker(restoring, record)
        except (OSError, IOError) as error:
            discard(restoring)
            module.fail_json(msg='restore into %s failed: %s; the data dir %s was not touched' % (
                restoring, error, data_dir), error_kind='write_failed', **result)
    add_diff(module, result, job['diff'], status)
    try:
        moved = swap_in(restoring, data_dir, stamp)
    except OSError as error:
        module.fail_json(msg='the restore into %s succeeded but it could not take the place of %s: %s. Nothing was '
                             'deleted: move %s aside and %s into its place by hand, or run again' % (
                                 restoring, data_dir, error, data_dir, restoring),
                         error_kind='swap_failed', **result)
    if ran is None:
        earlier = record.get('restored_at') or ''
        record['moved_to'] = next((p for p in (data_dir + '.moved-' + earlier, os.path.join(data_dir, 'moved-' + earlier))
                                   if earlier and os.path.isdir(p)), None)
        write_marker(data_dir, record)
        result.update(restored=True, moved_to=record['moved_to'], restored_at=record.get('restored_at'),
                      duration_seconds=round(time.monotonic() - started, 3),
                      msg='finished an interrupted restore of %s (revision %d): the restored data dir left by the '
                          'interrupted run took the place of %s as member %s; the old data dir was moved aside by '
                          'that run' % (path, status['revision'], data_dir, identity['name']))
        module.exit_json(**result)
    record['moved_to'] = moved
    write_marker(data_dir, record)
    result.update(restored=True, moved_to=moved, restored_at=stamp,
                  duration_seconds=round(time.monotonic() - started, 3), restore_seconds=round(ran['seconds'], 3),
                  msg='restored %s (revision %d) into %s as member %s%s' % (
                      path, status['revision'], data_dir, identity['name'],
                      '; the old data dir is at %s' % moved if moved else ''))
    module.exit_json(**result)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        state=dict(type='str', default='saved', choices=['saved', 'status', 'restored']),
        path=dict(type='path', required=True),
        member=dict(type='str', default='follower'),
        force=dict(type='bool', default=False),
        mode=dict(type='raw', default='0600'),
        timeout=dict(type='float', default=900.0),
        data_dir=dict(type='path'),
        name=dict(type='str'),
        initial_cluster=dict(type='str'),
        initial_cluster_token=dict(type='str', no_log=False),
        initial_advertise_peer_urls=dict(type='str'),
        manifest=dict(type='path'),
        manifests_dir=dict(type='path', default='/etc/kubernetes/manifests'),
        parking_dir=dict(type='path', default='/etc/kubernetes/manifests-parked'),
        etcdutl=dict(type='path'),
        bump_revision=dict(type='int'),
        mark_compacted=dict(type='bool', default=True),
        skip_hash_check=dict(type='bool', default=False),
        allow_version_mismatch=dict(type='bool', default=False),
        verified_status=dict(type='dict'),
    )
    module = AnsibleModule(argument_spec=argument_spec, required_together=CONNECTION_REQUIRED_TOGETHER,
                           supports_check_mode=True)
    if module.params['state'] == 'status':
        state_status(module)
    if module.params['state'] == 'restored':
        state_restored(module)
    state_saved(module)


if __name__ == '__main__':
    main()
