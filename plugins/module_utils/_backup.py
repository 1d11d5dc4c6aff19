# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: a backup of an etcd cluster into a store, composed of the snapshot, stream and store utils.

The flow, one pass over the snapshot stream::

    member --Snapshot RPC--> TrailerCheck (sha256) --> StreamStatus --> zstd --> age --> store.put_object
                                                       (each page read as it passes: the status at the end)

The hash, revision and key count that ``etcdutl snapshot status`` prints come from a walk of the complete
bbolt database (pages refer to pages anywhere in the file). ``_bbolt_stream.StreamStatus`` keeps, of each page
as it passes, what that walk needs (a leaf's crc32c, keys at its ends, live-key events...) and walks the trees
over that when the stream has ended: no scratch copy of the snapshot is written (it used to be, which cost a
second write of the database and room for it on the host).

A backup exists when its metadata object exists (``_store``): it is written last, after the snapshot object,
the resources object and its metadata, and only when the status was read. Any failure before raises, the
store aborts the upload it was doing, objects already stored for this backup id are deleted (best effort: an
interrupted run's leftovers are invisible to listings anyway and ``remove_incomplete`` cleans them).

Fail-over: when the stream from one member breaks (the member dies, the trailer does not match) or its
database cannot be read, the next member in the order ``_snapshot.candidates`` gave is asked. A failure of the
store or of encryption ends the backup at once: another member would not help.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt_stream import StreamStatus
from ansible_collections.etcdops.etcd.plugins.module_utils._signing import SigningError
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import SnapshotError, stream_from
from ansible_collections.etcdops.etcd.plugins.module_utils._store import (
    LocalStore,
    ResourceArchive,
    S3Store,
    StoreError,
    etcd_location,
    new_backup_id,
    object_name,
    resources_location,
)
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import (
    Coalesce,
    Meter,
    StreamError,
    age_encrypt,
    parse_recipients,
    zstd_compress,
)

MEGABYTE = 1000 * 1000.0
# The snapshot stream's flow-control window: what the member may send ahead of the pipeline. The HTTP/2 reader
# (_h2) leaves that in the kernel's socket buffer; through grpcio (its fallback, see _client._channel_options) it
# is buffered in the process: 3-5 MiB instead of 20-30 MiB with gRPC's default window, which grows with BDP probing. To S3 the peak memory is at its
# bound with 512 KiB (97-100 MiB of 100 measured, 103 with 2 MiB); to a local directory it is ~62 MiB, and a wider
# window lets the member send while the pipeline works (1.2 GB streamed in 7.3 s with 8 MiB, 9.0 s with 512 KiB,
# peak 77 MiB: benchmarks/backup, 2026-12-06).
STREAM_WINDOW = 512 * 1024
LOCAL_STREAM_WINDOW = 8 * 1024 * 1024
SNAPSHOT_OBJECT = 'snapshot.db'
RESOURCES_OBJECT = 'kubernetes.tar'
DEFAULT_RESOURCE_ROOT = '/etc/kubernetes'
DEFAULT_RESOURCE_PATHS = ['pki', 'manifests']
NO_RECIPIENT = ('no age recipient given for the %s object, which holds %s: give recipients (age public keys, '
                '`age-keygen -y identity.txt` prints one) or recipients_file, so that only the holders of the '
                'identities can read it; or set encryption=none to store it unencrypted. Nothing was stored')
NO_SIGNING_KEY = ('no signing key: give signing_key (a minisign secret key file without password on this host, made '
                  'by the etcdops.etcd.etcd_signing_key module or `minisign -G -W`) so that restores can check where '
                  'the backup comes from; or set signing=none to store backups that restores accept only with '
                  'accept_unsigned. Nothing was stored')


def stream_window(store):
    """The snapshot stream's window for a store type ('s3' or 'local')."""
    return LOCAL_STREAM_WINDOW if store == 'local' else STREAM_WINDOW


class BackupError(Exception):
    """The backup failed; ``msg`` names what to check, ``kind`` is a short name, ``tried`` the members asked."""

    def __init__(self, msg, kind='other', tried=None):
        super(BackupError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.tried = tried or []


# -- module options shared by etcd_backup, etcd_backup_info and etcd_backup_prune -----------------------------

def store_argument_spec():
    """Options naming a store and a cluster's place in it (doc fragment etcdops.etcd.backup_store)."""
    return dict(
        store=dict(type='str', default='s3', choices=['s3', 'local']),
        cluster_name=dict(type='str', required=True),
        etcd_cluster=dict(type='str', default='main'),
        directory=dict(type='path'),
        bucket=dict(type='str'),
        prefix=dict(type='str', default=''),
        endpoint_url=dict(type='str'),
        region=dict(type='str'),
        path_style=dict(type='bool', default=False),
        sse=dict(type='str', choices=['AES256', 'aws:kms']),
        kms_key_id=dict(type='str', no_log=False),
        storage_class=dict(type='str'),
        access_key=dict(type='str', no_log=False),
        secret_key=dict(type='str', no_log=True),
        session_token=dict(type='str', no_log=True),
        ca_bundle=dict(type='path'),
        validate_certs=dict(type='bool', default=True),
    )


def unused_connection_spec():
    """The connection options, accepted and ignored (module_defaults of the action group apply to every module)."""
    return dict(endpoints=dict(type='list', elements='str'), ca_cert=dict(type='path'), client_cert=dict(type='path'),
                client_key=dict(type='path', no_log=False), user=dict(type='str'),
                password=dict(type='str', no_log=True), dial_timeout=dict(type='float'),
                command_timeout=dict(type='float'))


STORE_REQUIRED_IF = [('store', 's3', ['bucket']), ('store', 'local', ['directory'])]


def store_from_params(params):
    """The Store the options name (StoreError when they do not make one)."""
    if params['store'] == 'local':
        return LocalStore(params['directory'])
    return S3Store(params['bucket'], prefix=params['prefix'], endpoint_url=params['endpoint_url'],
                   region=params['region'], path_style=params['path_style'], sse=params['sse'],
                   kms_key_id=params['kms_key_id'], storage_class=params['storage_class'],
                   access_key=params['access_key'], secret_key=params['secret_key'],
                   session_token=params['session_token'], ca_bundle=params['ca_bundle'],
                   validate_certs=params['validate_certs'])


def store_summary(store, location):
    """What a result says of where backups go (never a credential)."""
    summary = dict(type='local' if isinstance(store, LocalStore) else 's3', url=store.describe(location.path + '/'))
    if isinstance(store, S3Store):
        summary.update(bucket=store.bucket, prefix=store.prefix, endpoint=store.endpoint)
    else:
        summary.update(directory=store.directory)
    return summary


# -- the process's memory ----------------------------------------------------------------------------------

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 4 * 1024 * 1024


def bound_allocator(arenas=MALLOC_ARENAS, mmap_threshold=MALLOC_MMAP_THRESHOLD):
    """Keep the C allocator from holding memory the pipeline has freed; True when glibc took the settings.

    The backup's threads (the stream's reader, age, the upload pool) each get a glibc malloc arena of
    their own, and glibc raises its mmap threshold after the first large block is freed, so the 5 MiB upload
    parts are then carved out of those arenas, which keep the freed space: 10-15 MiB of a peak RSS bound of
    100 MiB. Two arenas, and blocks of 4 MiB or more always mapped (given back to the system when freed), avoid
    that; smaller blocks (the stream's 256 KiB chunks, a page being read for the status) are reused from the
    heap. Call it before the threads start. Without glibc (musl, other systems) nothing happens.
    """
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ImportError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # the trim threshold as glibc sets it itself when it moves the mmap threshold: twice that; with the default
    # (128 KiB) every large block freed at the top of the heap would be given back and faulted in again
    return (bool(mallopt(_M_ARENA_MAX, int(arenas))) and bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
            and bool(mallopt(_M_TRIM_THRESHOLD, 2 * int(mmap_threshold))))


# -- recipients --------------------------------------------------------------------------------------------

def recipient_keys(keys=None, key_file=None):
    """The age public keys (age1... strings) from a list and/or a file of them (the format of ``age -R``)."""
    texts = list(keys or [])
    if key_file:
        try:
            with open(key_file, 'r') as handle:
                texts.append(handle.read())
        except (IOError, OSError) as exc:
            raise StreamError('cannot read the recipients file %s: %s' % (key_file, exc.strerror or exc))
    lines = []
    for text in texts:
        for line in str(text).splitlines():
            line = line.strip()
            if line and not line.startswith('#') and line not in lines:
                lines.append(line)
    if lines:
        parse_recipients(lines)  # refuses secret keys and malformed keys, without repeating a secret
    return lines


# -- the backup --------------------------------------------------------------------------------------------

def _pipeline(chunks, recipients, level):
    # zstd compresses in the thread that pulls the stream (the age worker's, or the store's without recipients):
    # with a zstd worker thread the backup to S3 took as long (9.6-11.2 s against 9.7-10.7 s for 1.2 GB, 3 runs
    # each, 2 vCPUs: the CPU, not the parallelism, bounds it) and peaked ~4 MiB higher (98-101 MiB against 94-98)
    data = zstd_compress(chunks, level=level, threads=0)
    if recipients:
        data = age_encrypt(data, recipients)
    return data


def _forget(store, location, backup_id):
    """Best-effort removal of what this backup id stored before it failed (no metadata was written)."""
    try:
        store.delete_backups(location, [backup_id])
    except Exception:  # pylint: disable=broad-except
        pass


class Backup(object):
    """One backup run: options in, ``run(client, order)`` does it, ``result`` out."""

    def __init__(self, store, cluster_name, etcd_cluster='main', recipients=None, resources=True,
                 resources_recipients=None, resource_root=DEFAULT_RESOURCE_ROOT, resource_paths=None,
                 compression_level=3, timeout=None, progress=None, backup_id=None, signer=None):
        self.store = store
        self.cluster_name = cluster_name
        self.etcd_cluster = etcd_cluster
        self.location = etcd_location(cluster_name, etcd_cluster)
        self.resources_location = resources_location(cluster_name)
        self.recipients = list(recipients or [])
        self.resources = resources
        self.resources_recipients = list(resources_recipients or [])
        self.resource_root = resource_root
        self.resource_paths = list(resource_paths or DEFAULT_RESOURCE_PATHS)
        self.compression_level = compression_level
        self.timeout = timeout
        self.progress = progress
        self.backup_id = backup_id or new_backup_id()
        self.signer = signer
        self.tried = []

    def run(self, client, order, cluster_id):
        """Back up from the first member of order that streams a complete, readable snapshot; the result dict."""
        started = time.time()
        if self.resources:
            try:
                ResourceArchive(self.resource_root, self.resource_paths)  # every path exists: checked before streaming
            except StoreError as exc:
                raise BackupError('resources: %s' % exc, kind='resources')
        for candidate in order:
            attempt = self._attempt(client, candidate)
            if attempt is not None:
                return self._finish(attempt, candidate, cluster_id, started)
        raise BackupError('no member streamed a complete snapshot, nothing was stored: %s' % '; '.join(
            '%s (%s): %s' % (t['name'], t['endpoint'], t['error']) for t in self.tried), kind='all_failed',
            tried=self.tried)

    def _attempt(self, client, candidate):
        """The stored objects and status from one member, or None when another member should be asked."""
        from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError

        checked = stream_from(client, candidate, self.timeout)
        # 256 KiB chunks from here on: the status, zstd, age and the store run once per 8 messages (measured:
        # 0.15-0.5 s less for a backup of 1.2 GB to a local directory, 4 runs alternated)
        tee = StreamStatus(Coalesce(checked), source='the snapshot stream from %s' % candidate.name,
                           etcd_version=candidate.status.get('version'))
        meter = Meter(tee, progress=self.progress)
        name = object_name(SNAPSHOT_OBJECT, True, bool(self.recipients))
        stream_started = time.monotonic()
        try:
            stored = self.store.put_object(self.location, self.backup_id, name,
                                           _pipeline(meter, self.recipients, self.compression_level))
            upload_seconds = time.monotonic() - stream_started
            mark = time.monotonic()
            resources = self._resources() if self.resources else None
            resources_seconds = time.monotonic() - mark
            status = tee.status()
            hashkv = snapshot_hashkv(status)
        except (EtcdClientError, SnapshotError) as exc:
            _forget(self.store, self.location, self.backup_id)
            if self.resources:
                _forget(self.store, self.resources_location, self.backup_id)
            self.tried.append(dict(candidate.describe(), error=exc.msg))
            return None
        except StoreError as exc:
            self.tried.append(dict(candidate.describe(), error=str(exc)))
            self._forget_all()
            raise BackupError('the backup store failed, nothing was listed: %s' % exc, kind='store', tried=self.tried)
        except SigningError as exc:
            self.tried.append(dict(candidate.describe(), error=exc.msg))
            self._forget_all()
            raise BackupError('the backup could not be signed, nothing was listed: %s' % exc.msg, kind='signing',
                              tried=self.tried)
        except StreamError as exc:
            self.tried.append(dict(candidate.describe(), error=str(exc)))
            self._forget_all()
            raise BackupError('compression or encryption failed, nothing was listed: %s' % exc, kind='stream',
                              tried=self.tried)
        self.tried.append(dict(candidate.describe(), error=None))
        return dict(stored=stored, resources=resources, status=status, checked=checked, meter=meter,
                    upload_seconds=upload_seconds, hashkv=hashkv,
                    timings=dict(stream_seconds=round(upload_seconds, 3), resources_seconds=round(resources_seconds, 3),
                                 status_walk_seconds=round(tee.walk_seconds, 3)))

    def _forget_all(self):
        _forget(self.store, self.location, self.backup_id)
        if self.resources:
            _forget(self.store, self.resources_location, self.backup_id)

    def _resources(self):
        """Store /etc/kubernetes resources as their own backup (own recipients), its metadata included."""
        archive = ResourceArchive(self.resource_root, self.resource_paths)
        name = object_name(RESOURCES_OBJECT, True, bool(self.resources_recipients))
        stored = self.store.put_object(self.resources_location, self.backup_id, name,
                                       _pipeline(archive, self.resources_recipients, self.compression_level))
        members = list(archive.members)
        document = dict(
            kind='resources', cluster_name=self.cluster_name, host=socket.gethostname(), root=self.resource_root,
            paths=self.resource_paths, members=members, objects=[stored], compression=dict(format='zstd'),
            encrypted=bool(self.resources_recipients),
            encryption=dict(format='age', recipients=self.resources_recipients) if self.resources_recipients else None,
            time=_iso(time.time()), verified=None)
        self.store.write_metadata(self.resources_location, self.backup_id, document, signer=self.signer)
        return dict(backup_id=self.backup_id, location=self.resources_location.path, key=stored['key'],
                    size=stored['size'], sha256=stored['sha256'], encrypted=bool(self.resources_recipients),
                    members=members)

    def _finish(self, attempt, candidate, cluster_id, started):
        status = attempt['status']
        checked = attempt['checked']
        stored = attempt['stored']
        resources = attempt['resources']
        finished = time.time()
        document = dict(
            kind='etcd', cluster_name=self.cluster_name, etcd_cluster=self.etcd_cluster, cluster_id=cluster_id,
            member=candidate.describe(), etcd_version=candidate.status.get('version'), host=socket.gethostname(),
            revision=status['revision'], hash=status['hash'], total_key=status['total_key'],
            total_size=status['total_size'], version=status.get('version') or '', live_keys=status.get('live_keys'),
            snapshot=dict(size=checked.size, sha256=checked.file_sha256(), trailer_sha256=checked.trailer),
            objects=[stored], compression=dict(format='zstd', level=self.compression_level),
            encrypted=bool(self.recipients),
            encryption=dict(format='age', recipients=self.recipients) if self.recipients else None,
            resources=dict((k, resources[k]) for k in ('backup_id', 'location', 'key')) if resources else None,
            hashkv=attempt['hashkv'],
            started_at=_iso(started), finished_at=_iso(finished), duration_seconds=round(finished - started, 3),
            verified=None)
        try:
            self.store.write_metadata(self.location, self.backup_id, document, signer=self.signer)
        except StoreError as exc:
            self._forget_all()
            raise BackupError('the backup store failed writing the metadata, nothing was listed: %s' % exc,
                              kind='store', tried=self.tried)
        except SigningError as exc:
            self._forget_all()
            raise BackupError('the backup could not be signed, nothing was listed: %s' % exc.msg, kind='signing',
                              tried=self.tried)
        seconds = attempt['meter'].seconds or attempt['upload_seconds']
        return dict(
            backup_id=self.backup_id, location=self.location.path, cluster_id=cluster_id,
            object_keys=dict(snapshot=stored['key'], metadata=self.location.key(self.backup_id, 'metadata.json'),
                             resources=resources['key'] if resources else None),
            member=candidate.describe(), etcd_version=candidate.status.get('version'),
            revision=status['revision'], hash=status['hash'], total_key=status['total_key'],
            total_size=status['total_size'], version=status.get('version') or '',
            snapshot_size=checked.size, snapshot_sha256=checked.file_sha256(),
            stored_size=stored['size'], stored_sha256=stored['sha256'], encrypted=bool(self.recipients),
            signed_by=self.signer.id if self.signer is not None else None,
            recipients=self.recipients, resources=resources,
            duration_seconds=round(finished - started, 3),
            mb_per_second=round(checked.size / MEGABYTE / seconds, 1) if seconds > 0 else 0.0,
            timings=attempt['timings'], tried=self.tried)


def snapshot_hashkv(status):
    """What etcd's HashKV answers at the snapshot's revision, read from the snapshot with its status (no call to
    the member: HashKV makes it read its whole database, 20-30 s for 1 GiB). A restore drill compares it with
    the HashKV of the restored member. {hash, revision, source} or {hash: None, error} when the file cannot say."""
    if status.get('hashkv') is None:
        return dict(hash=None, revision=status['revision'],
                    error='a compaction was scheduled but not finished in the snapshot: HashKV is not known from it')
    return dict(hash=status['hashkv'], revision=status['revision'], source='snapshot')


def _iso(epoch):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))


# -- listing -----------------------------------------------------------------------------------------------

LISTED_FIELDS = ('backup_id', 'time', 'cluster_name', 'etcd_cluster', 'revision', 'total_key', 'total_size',
                 'etcd_version', 'encrypted', 'signed', 'verified', 'stored_bytes')
# What a restore drill (etcd_backup_verify) recorded: listed as verified_at / verify_error.
VERIFICATION = 'verification'


def listing_entry(record):
    """What etcd_backup_info shows of one backup record of Store.list_backups."""
    entry = dict((field, record.get(field)) for field in LISTED_FIELDS)
    member = record.get('member')
    entry['member'] = member.get('name') if isinstance(member, dict) else member
    entry['encrypted'] = bool(record.get('encrypted'))
    entry['signed'] = bool(record.get('signed'))
    verification = record.get(VERIFICATION) if isinstance(record.get(VERIFICATION), dict) else {}
    entry['verified_at'] = verification.get('at')
    entry['verify_error'] = verification.get('error')
    if record.get('error'):
        entry['error'] = record['error']
    return entry
