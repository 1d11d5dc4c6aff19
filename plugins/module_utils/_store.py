# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: backup stores (a local directory, or S3 and S3-compatible object stores) behind one interface.

Layout, the same in both stores, relative to the store's root (the LocalStore directory, or
``s3://<bucket>/<prefix>/``); etcd clusters (kops: ``main``, ``events``) and Kubernetes clusters stay apart::

    <cluster_name>/backups/etcd/<etcd_cluster>/<backup_id>/snapshot.db[.zst][.age]
    <cluster_name>/backups/etcd/<etcd_cluster>/<backup_id>/metadata.json
    <cluster_name>/resources/<backup_id>/kubernetes.tar[.zst][.age]
    <cluster_name>/resources/<backup_id>/metadata.json

``backup_id`` is the UTC time the backup started plus a random suffix, e.g. ``2026-11-23T10-50-32Z-3f9a``: ids
sort by time and two hosts backing up in the same second do not collide. The resources (PKI, manifests,
encryption configuration) are a separate backup under their own prefix so that they can be encrypted to other
recipients: the key that decrypts the Secrets in etcd must not travel with them.

A backup exists when its ``metadata.json`` exists. It is written last (``write_metadata``) and deleted first
(``delete_backups``): a listing never shows a half-written or half-deleted backup. Objects are written whole
or not at all: a local file goes to a hidden temporary file in the same directory, fsync, rename, fsync of the
directory; an S3 object small enough for one part is one PUT, a larger one a multipart upload aborted on any
failure (including one raised by the stream it reads), so no incomplete upload remains.

What is here:

* ``new_backup_id(now=None)``, ``backup_time(backup_id)``, ``etcd_location(cluster_name, etcd_cluster)``,
  ``resources_location(cluster_name)``, ``object_name('snapshot.db', compressed, encrypted)``.
* ``Store``: ``put_object(location, backup_id, name, chunks)`` -> ``{name, key, size, sha256}`` of what was
  stored; ``get_object(location, backup_id, name)`` -> chunks; ``write_metadata``/``read_metadata``;
  ``list_backups(location)`` -> records newest first (what ``_retention.select`` reads: ``id``, ``time``,
  ``verified``, plus the metadata and ``stored_objects``/``stored_bytes``); ``delete_backups(location, ids)``;
  ``incomplete_backups``/``remove_incomplete`` for what an interrupted run left.
* ``LocalStore(directory)`` and ``S3Store(bucket, prefix, endpoint_url, region, path_style, sse, kms_key_id,
  storage_class, access_key, secret_key, session_token, ...)``: S3 parts of ``part_size`` (5 MiB, S3's
  minimum) are uploaded by up to ``concurrency`` (2) threads while the stream fills the next part, so the
  network overlaps compression and encryption; at most ``concurrency`` parts are in memory (10 MiB). Why so
  few: a module process with ansible, gRPC and boto3 loaded starts near 70 MiB, and the pipeline must keep it
  under 100 MiB (measured: ~88 MiB with these defaults, ~98 MiB with 3 parts). On a link with a long round
  trip raise concurrency: each more part costs part_size of memory.
* ``ResourceArchive(root, paths)``: a tar stream (pax) of /etc/kubernetes paths with modes, owners and times,
  as chunks; ``extract_resources(chunks, dest)`` restores it, refusing names that leave ``dest``.
* ``StoreError``: an operator message naming the store, bucket, endpoint or path and what to check; it never
  contains a credential.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import calendar
import concurrent.futures
import datetime
import errno
import json
import os
import re
import stat
import tarfile
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._signing import SIGNATURE_SUFFIX, backup_comment
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import ChunkReader, Sha256, close_stream, file_chunks

# boto3 and botocore are imported when the first S3Store is made (_import_boto3), not with this file: they cost
# a module process ~13 MiB of memory to import (and ~15 MiB more for an S3 client), which a local store, whose
# backups must stay under 100 MiB of RSS, has no use for.
boto3 = None
botocore = None

METADATA = 'metadata.json'
SIGNATURE = METADATA + SIGNATURE_SUFFIX
VERIFICATION_OBJECT = 'verification.json'
# Objects of a backup that are not its data: not counted in stored_objects/stored_bytes.
BOOKKEEPING = (METADATA, SIGNATURE, VERIFICATION_OBJECT)
ETCD = 'etcd'
RESOURCES = 'resources'
LAYOUT_VERSION = 1
CHUNK_SIZE = 1024 * 1024
MIB = 1024 * 1024
S3_MIN_PART_SIZE = 5 * MIB
S3_MAX_PART_SIZE = 5 * 1024 * MIB
S3_MAX_PARTS = 10000
DEFAULT_PART_SIZE = 5 * MIB
DEFAULT_CONCURRENCY = 2
# An interrupted run's leftovers are removed only when older than this: a backup in progress is not touched.
INCOMPLETE_GRACE_SECONDS = 24 * 3600

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_BACKUP_ID = re.compile(r'^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})Z(?:-[0-9a-z]{1,16})?$')


class StoreError(Exception):
    """A store operation failed; the message names the store and what to check."""


# -- names ---------------------------------------------------------------------------------------------------

def new_backup_id(now=None, suffix=None):
    """The id of a backup started at now (UTC; default: the current time), e.g. 2026-11-23T10-50-32Z-3f9a."""
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    elif isinstance(now, (int, float)):
        now = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    elif now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc)
    if suffix is None:
        suffix = binascii.hexlify(os.urandom(2)).decode('ascii')
    return '%s-%s' % (now.strftime('%Y-%m-%dT%H-%M-%SZ'), suffix)


def is_backup_id(name):
    return bool(_BACKUP_ID.match(name or ''))


def backup_epoch(backup_id):
    """Seconds since the epoch at which the backup started, from its id."""
    match = _BACKUP_ID.match(backup_id or '')
    if not match:
        raise StoreError('%r is not a backup id (expected a UTC time like 2026-11-23T10-50-32Z-3f9a)' % (backup_id,))
    return calendar.timegm(tuple(int(g) for g in match.groups()) + (0, 0, 0))


def backup_time(backup_id):
    """ISO 8601 UTC time at which the backup started, from its id: 2026-11-23T10:50:32Z."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(backup_epoch(backup_id)))


def _check_name(value, what):
    if not isinstance(value, str) or not _NAME.match(value):
        raise StoreError('%s %r is not usable in a store path: use letters, digits, ".", "_" and "-", starting with '
                         'a letter or digit' % (what, value))
    return value


class Location(object):
    """Where one kind of backup of one cluster lives in a store: <cluster>/backups/etcd/<etcd_cluster>
    or <cluster>/resources."""

    def __init__(self, cluster_name, kind=ETCD, etcd_cluster='main'):
        self.cluster_name = _check_name(cluster_name, 'cluster name')
        if kind not in (ETCD, RESOURCES):
            raise StoreError('backup kind %r: expected %r or %r' % (kind, ETCD, RESOURCES))
        self.kind = kind
        self.etcd_cluster = _check_name(etcd_cluster, 'etcd cluster name') if kind == ETCD else None
        if kind == ETCD:
            self.path = '%s/backups/etcd/%s' % (cluster_name, etcd_cluster)
        else:
            self.path = '%s/resources' % cluster_name

    def key(self, backup_id, name=None):
        if not is_backup_id(backup_id):
            raise StoreError('%r is not a backup id (expected a UTC time like 2026-11-23T10-50-32Z-3f9a)' % (backup_id,))
        if name is None:
            return '%s/%s/' % (self.path, backup_id)
        return '%s/%s/%s' % (self.path, backup_id, _check_name(name, 'object name'))

    def __repr__(self):
        return 'Location(%r)' % self.path


def etcd_location(cluster_name, etcd_cluster='main'):
    return Location(cluster_name, ETCD, etcd_cluster)


def resources_location(cluster_name):
    return Location(cluster_name, RESOURCES)


def object_name(base, compressed=True, encrypted=True):
    """'snapshot.db' -> 'snapshot.db.zst.age' (the suffixes say how to read it back)."""
    return base + ('.zst' if compressed else '') + ('.age' if encrypted else '')


# -- the interface ---------------------------------------------------------------------------------------

class Store(object):
    """What both stores do, written once over five primitives each store implements:
    _put(key, chunks, metadata), _get(key, chunk_size), _list(prefix) -> [(key, size)], _delete(keys),
    describe(key)."""

    def describe(self, key=''):
        raise NotImplementedError

    def _put(self, key, chunks, metadata=False):
        raise NotImplementedError

    def _get(self, key, chunk_size):
        raise NotImplementedError

    def _list(self, prefix):
        raise NotImplementedError

    def _delete(self, keys):
        raise NotImplementedError

    # A metadata object is a few KiB; anyone who may write to the store may have replaced one, so what is read of
    # it and how deep its JSON nests are bounded.
    METADATA_MAX_BYTES = MIB
    METADATA_MAX_DEPTH = 32
    _SMALL_CHUNK = 64 * 1024

    def _read_many(self, keys):
        """{key: bytes or StoreError} for small objects (metadata; S3 reads them in parallel). An object above
        METADATA_MAX_BYTES is a StoreError: refused from its size when the store tells it before the content
        (a local file's, S3's Content-Length), else once that much was read."""
        result = {}
        for key in keys:
            try:
                result[key] = self._join_small(key, self._get(key, self._SMALL_CHUNK))
            except StoreError as exc:
                result[key] = exc
        return result

    def _too_large(self, key, size=None):
        return StoreError('%s is %s bytes, more than the %d a metadata object may have: not read (the backup is '
                          'damaged, or someone with write access to the store replaced it)'
                          % (self.describe(key), size if size is not None else 'more than %d' % self.METADATA_MAX_BYTES,
                             self.METADATA_MAX_BYTES))

    def _join_small(self, key, chunks):
        """The bytes of chunks, read no further than METADATA_MAX_BYTES (StoreError above it); chunks closed."""
        parts = []
        total = 0
        try:
            for chunk in chunks:
                total += len(chunk)
                if total > self.METADATA_MAX_BYTES:
                    raise self._too_large(key)
                parts.append(bytes(chunk))
        finally:
            close_stream(chunks)
        return b''.join(parts)

    # objects

    def put_object(self, location, backup_id, name, chunks):
        """Store one object of a backup from a stream; {name, key, size, sha256} of the bytes stored."""
        if name in BOOKKEEPING:
            raise StoreError('%s is written by write_metadata or write_verification' % name)
        key = location.key(backup_id, name)
        digest = Sha256(chunks)
        try:
            self._put(key, digest)
        except BaseException:
            close_stream(chunks)  # stop the snapshot stream and the workers feeding it now, not at exit
            raise
        return {'name': name, 'key': key, 'size': digest.size, 'sha256': digest.hexdigest()}

    def get_object(self, location, backup_id, name, chunk_size=CHUNK_SIZE):
        """The stored bytes of one object of a backup, as chunks."""
        return self._get(location.key(backup_id, name), chunk_size)

    # metadata

    def write_metadata(self, location, backup_id, metadata, signer=None):
        """Write the metadata object, which makes the backup exist: call it after every object is stored.

        With signer (a _signing.SecretKey), its minisign signature of the metadata's bytes is stored first, as
        metadata.json.minisig: a signed backup never exists unsigned, not even for a moment."""
        document = dict(metadata)
        document.update(backup_id=backup_id, layout=LAYOUT_VERSION, cluster_name=location.cluster_name,
                        kind=location.kind)
        if location.kind == ETCD:
            document['etcd_cluster'] = location.etcd_cluster
        data = json.dumps(document, indent=2, sort_keys=True).encode('utf-8') + b'\n'
        if signer is not None:
            signature = signer.sign(data, backup_comment(location.path, backup_id))
            self._put(location.key(backup_id, SIGNATURE), iter([signature.encode('ascii')]), metadata=True)
        self._put(location.key(backup_id, METADATA), iter([data]), metadata=True)
        return document

    def write_verification(self, location, backup_id, verification):
        """Record a restore drill's result beside the backup (verification.json): the signed metadata is never
        rewritten. list_backups shows it as the record's verified and verification."""
        data = json.dumps(verification, indent=2, sort_keys=True).encode('utf-8') + b'\n'
        self._put(location.key(backup_id, VERIFICATION_OBJECT), iter([data]), metadata=True)
        return verification

    def read_signed(self, location, backup_id):
        """(the metadata's bytes, the signature's text or None when the backup has no signature object).
        Both are read no further than METADATA_MAX_BYTES (StoreError above it)."""
        metadata_key = location.key(backup_id, METADATA)
        signature_key = location.key(backup_id, SIGNATURE)
        listed = set(key for key, dummy in self._list(location.key(backup_id)))
        keys = [metadata_key] + ([signature_key] if signature_key in listed else [])
        found = self._read_many(keys)
        for key in keys:
            if isinstance(found[key], StoreError):
                raise found[key]
        if signature_key not in found:
            return found[metadata_key], None
        return found[metadata_key], found[signature_key].decode('ascii', 'replace')

    def read_metadata(self, location, backup_id):
        """A backup's metadata document (StoreError when it cannot be read, is too large or is not a JSON object)."""
        key = location.key(backup_id, METADATA)
        data = self._read_many([key])[key]
        if isinstance(data, StoreError):
            raise data
        return self._parse_metadata(key, data)

    def parse_metadata(self, key, data):
        """The bounded parse of metadata bytes read by other means (read_signed): see _parse_metadata."""
        return self._parse_metadata(key, data)

    def _parse_metadata(self, key, data):
        """The JSON object of a metadata object's bytes: at most METADATA_MAX_BYTES, nested at most
        METADATA_MAX_DEPTH deep (checked without recursion before json parses it: json recurses once per level),
        integers of at most 64 digits, no NaN or Infinity."""
        if len(data) > self.METADATA_MAX_BYTES:
            raise self._too_large(key, len(data))
        try:
            text = data.decode('utf-8')
            if self._json_too_deep(text, self.METADATA_MAX_DEPTH):
                raise StoreError('%s nests JSON more than %d levels deep: the backup is damaged'
                                 % (self.describe(key), self.METADATA_MAX_DEPTH))
            document = json.loads(text, parse_int=self._json_int, parse_constant=self._json_constant)
        except ValueError as exc:
            raise StoreError('%s is not valid JSON (%s): the backup is damaged' % (self.describe(key), exc))
        if not isinstance(document, dict):
            raise StoreError('%s is not a JSON object: the backup is damaged' % self.describe(key))
        return document

    def _verification(self, key, data):
        """{verified, verification} from a drill's verification.json (an unreadable one: verified False)."""
        try:
            if isinstance(data, StoreError):
                raise data
            verification = self._parse_metadata(key, data)
        except StoreError as exc:
            return dict(verified=False, verification=dict(verified=False, error=str(exc)))
        return dict(verified=verification.get('verified') is True, verification=verification)

    _JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')

    @classmethod
    def _json_too_deep(cls, text, limit):
        """Whether the JSON text nests arrays and objects more than limit deep (brackets inside strings do not
        count); one pass over the special characters, no recursion."""
        if text.count('[') + text.count('{') <= limit:
            return False
        depth = 0
        in_string = False
        escaped = -1
        for match in cls._JSON_SPECIAL.finditer(text):
            position = match.start()
            if position == escaped:
                continue
            char = match.group()
            if in_string:
                if char == '\\':
                    escaped = position + 1
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char in '[{':
                depth += 1
                if depth > limit:
                    return True
            elif char in ']}':
                depth -= 1
        return False

    @staticmethod
    def _json_int(text):
        # Python before 3.11 converts any number of digits, in time quadratic in their count
        if len(text.lstrip('-')) > 64:
            raise ValueError('an integer of %d digits' % len(text))
        return int(text)

    @staticmethod
    def _json_constant(name):
        raise ValueError('%s is not a JSON number' % name)

    # backups

    def _backup_objects(self, location):
        """{backup_id: {name: size}} of everything under location, complete or not."""
        found = {}
        base = location.path + '/'
        for key, size in self._list(base):
            rest = key[len(base):].split('/')
            if len(rest) == 2 and is_backup_id(rest[0]) and rest[1]:
                found.setdefault(rest[0], {})[rest[1]] = size
        return found

    def list_backups(self, location):
        """The backups at location (those whose metadata exists), newest first.

        Each record is the metadata plus: id/backup_id, time (ISO UTC, from the id: it wins over a 'time' in
        the metadata), stored_objects {name: size as listed}, stored_bytes. A record whose metadata cannot be
        read has verified=False and error set.
        """
        found = self._backup_objects(location)
        complete = sorted((bid for bid, names in found.items() if METADATA in names), reverse=True)
        drilled = [bid for bid in complete if VERIFICATION_OBJECT in found[bid]]
        documents = self._read_many([location.key(bid, METADATA) for bid in complete] +
                                    [location.key(bid, VERIFICATION_OBJECT) for bid in drilled])
        records = []
        for backup_id in complete:
            key = location.key(backup_id, METADATA)
            record = {}
            try:
                data = documents[key]
                if isinstance(data, StoreError):
                    raise data
                record.update(self._parse_metadata(key, data))
            except StoreError as exc:
                record.update(verified=False, error=str(exc))
            if backup_id in drilled and not record.get('error'):
                record.update(self._verification(location.key(backup_id, VERIFICATION_OBJECT),
                                                 documents[location.key(backup_id, VERIFICATION_OBJECT)]))
            stored = dict((n, s) for n, s in found[backup_id].items() if n not in BOOKKEEPING)
            record.update(id=backup_id, backup_id=backup_id, time=backup_time(backup_id), stored_objects=stored,
                          stored_bytes=sum(stored.values()), signed=SIGNATURE in found[backup_id])
            records.append(record)
        records.sort(key=lambda r: (backup_epoch(r['id']), r['id']), reverse=True)
        return records

    def delete_backups(self, location, backup_ids):
        """Delete backups: every metadata object first (so they stop existing at once), then their objects."""
        backup_ids = list(backup_ids)
        if not backup_ids:
            return []
        self._delete([location.key(bid, METADATA) for bid in backup_ids])
        found = self._backup_objects(location)
        rest = []
        for bid in backup_ids:
            rest.extend(location.key(bid, name) for name in found.get(bid, {}))
        self._delete(rest)
        return backup_ids

    def delete_backup(self, location, backup_id):
        return self.delete_backups(location, [backup_id])

    def incomplete_backups(self, location):
        """Ids that have objects but no metadata: interrupted runs, or runs in progress."""
        return sorted(bid for bid, names in self._backup_objects(location).items() if METADATA not in names)

    def remove_incomplete(self, location, older_than=INCOMPLETE_GRACE_SECONDS, now=None):
        """Remove what interrupted runs left (objects without metadata) when older than older_than seconds."""
        now = time.time() if now is None else now
        stale = [bid for bid in self.incomplete_backups(location) if now - backup_epoch(bid) >= older_than]
        if stale:
            found = self._backup_objects(location)
            self._delete([location.key(bid, name) for bid in stale for name in found.get(bid, {})])
        return stale


# -- local directory -------------------------------------------------------------------------------------

def _fsync_directory(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(Store):
    """Backups as files under a directory (a mounted NFS share, a second disk...). Files are 0600 and
    directories 0700: an unencrypted snapshot holds every Secret of the cluster."""

    def __init__(self, directory):
        if not directory:
            raise StoreError('the local backup directory is not set')
        self.directory = os.path.abspath(directory)

    def describe(self, key=''):
        return os.path.join(self.directory, key) if key else self.directory

    def _path(self, key):
        return os.path.join(self.directory, *key.split('/'))

    def _failure(self, exc, action, path):
        hint = {
            errno.ENOSPC: 'check free space on that file system',
            errno.EDQUOT: 'check the disk quota',
            errno.EACCES: 'check the permissions of the backup directory',
            errno.EPERM: 'check the permissions of the backup directory',
            errno.EROFS: 'the file system is read-only',
            errno.ENOENT: 'it does not exist',
        }.get(exc.errno, 'check the backup directory %s' % self.directory)
        return StoreError('cannot %s %s: %s: %s' % (action, path, exc.strerror or exc, hint))

    def _put(self, key, chunks, metadata=False):
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise self._failure(exc, 'create', directory)
        temporary = os.path.join(directory, '.%s.%s.tmp' % (os.path.basename(path),
                                                            binascii.hexlify(os.urandom(4)).decode('ascii')))
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise self._failure(exc, 'write', temporary)
        try:
            with os.fdopen(fd, 'wb') as handle:
                for chunk in chunks:  # what the stream raises goes up as it is
                    self._io(handle.write, chunk, path=path)
                self._io(handle.flush, path=path)
                self._io(os.fsync, handle.fileno(), path=path)
            self._io(os.rename, temporary, path, path=path)
            self._io(_fsync_directory, directory, path=path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    def _io(self, function, *args, **kwargs):
        try:
            return function(*args)
        except (IOError, OSError) as exc:
            raise self._failure(exc, 'write', kwargs['path'])

    def _get(self, key, chunk_size):
        path = self._path(key)
        try:
            handle = open(path, 'rb')
        except (IOError, OSError) as exc:
            raise self._failure(exc, 'read', path)
        return self._read(handle, path, chunk_size)

    def _read(self, handle, path, chunk_size):
        with handle:
            try:
                yield from file_chunks(handle, chunk_size)
            except (IOError, OSError) as exc:
                raise self._failure(exc, 'read', path)

    def _read_many(self, keys):
        """Small objects: a file that is not a regular one (a fifo would block, a device never end) or larger than
        METADATA_MAX_BYTES is refused before it is read."""
        result = {}
        for key in keys:
            path = self._path(key)
            try:
                try:
                    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0))
                except OSError as exc:
                    raise self._failure(exc, 'read', path)
                handle = os.fdopen(fd, 'rb')
                try:
                    found = os.fstat(fd)
                    if not stat.S_ISREG(found.st_mode):
                        raise StoreError('%s is not a regular file: not read (the backup is damaged, or someone with '
                                         'write access to the store replaced it)' % path)
                    if found.st_size > self.METADATA_MAX_BYTES:
                        raise self._too_large(key, found.st_size)
                except BaseException:
                    handle.close()
                    raise
                result[key] = self._join_small(key, self._read(handle, path, self._SMALL_CHUNK))
            except StoreError as exc:
                result[key] = exc
        return result

    def _list(self, prefix):
        top = self._path(prefix.rstrip('/'))
        if not os.path.isdir(top):
            return []
        found = []
        for current, directories, files in os.walk(top):
            directories[:] = [d for d in directories if not d.startswith('.')]
            for name in files:
                if name.startswith('.'):  # temporary files of writes in progress
                    continue
                path = os.path.join(current, name)
                try:
                    size = os.lstat(path).st_size
                except OSError:
                    continue
                found.append(('/'.join(os.path.relpath(path, self.directory).split(os.sep)), size))
        return found

    def _delete(self, keys):
        directories = set()
        for key in keys:
            path = self._path(key)
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise self._failure(exc, 'delete', path)
            directories.add(os.path.dirname(path))
        for directory in directories:
            _fsync_directory_if_exists(directory)
            try:
                os.rmdir(directory)  # only when empty: leftovers of other writers stay
            except OSError:
                pass


def _fsync_directory_if_exists(path):
    try:
        _fsync_directory(path)
    except OSError:
        pass


# -- S3 --------------------------------------------------------------------------------------------------

def _rechunk(chunks, size):
    """Chunks regrouped into bytearrays of exactly size bytes (the last may be smaller), each allocated once:
    growing a buffer chunk by chunk would copy it again and again and leave the allocator fragmented."""
    buffer = bytearray(size)
    filled = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while len(view):
            step = min(size - filled, len(view))
            buffer[filled:filled + step] = view[:step]
            filled += step
            view = view[step:]
            if filled == size:
                yield buffer
                buffer = bytearray(size)
                filled = 0
    if filled:
        del buffer[filled:]
        yield buffer


def _import_boto3():
    """Import boto3 and botocore into this module's globals on first use; StoreError when they are missing."""
    global boto3, botocore  # pylint: disable=global-statement
    if boto3 is None:
        try:
            import boto3 as imported
            import botocore.config
            import botocore.exceptions
        except ImportError:
            raise StoreError('the Python library boto3 is needed for an S3 backup store: pip install boto3')
        boto3 = imported


class S3Store(Store):
    """Backups in an S3 bucket (AWS or any S3-compatible endpoint) under an optional prefix."""

    def __init__(self, bucket, prefix='', endpoint_url=None, region=None, path_style=False, sse=None,
                 kms_key_id=None, storage_class=None, access_key=None, secret_key=None, session_token=None,
                 part_size=DEFAULT_PART_SIZE, concurrency=DEFAULT_CONCURRENCY, ca_bundle=None, validate_certs=True,
                 connect_timeout=10, read_timeout=60, max_attempts=3, client=None):
        _import_boto3()
        if not bucket:
            raise StoreError('the S3 bucket is not set')
        if sse not in (None, '', 'AES256', 'aws:kms'):
            raise StoreError('server-side encryption %r: use AES256 (SSE-S3) or aws:kms (SSE-KMS)' % (sse,))
        if kms_key_id and sse != 'aws:kms':
            raise StoreError('a KMS key id is only used with server-side encryption aws:kms')
        if not S3_MIN_PART_SIZE <= int(part_size) <= S3_MAX_PART_SIZE:
            raise StoreError('S3 part size %d is out of range: S3 accepts 5 MiB to 5 GiB' % part_size)
        if int(concurrency) < 1:
            raise StoreError('S3 upload concurrency must be at least 1')
        self.bucket = bucket
        self.prefix = (prefix or '').strip('/')
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.sse = sse or None
        self.kms_key_id = kms_key_id or None
        self.storage_class = storage_class or None
        self.part_size = int(part_size)
        self.concurrency = int(concurrency)
        if client is None:
            client = self._client(path_style, access_key, secret_key, session_token, ca_bundle, validate_certs,
                                  connect_timeout, read_timeout, max_attempts)
        self.client = client

    def _client(self, path_style, access_key, secret_key, session_token, ca_bundle, validate_certs,
                connect_timeout, read_timeout, max_attempts):
        options = dict(
            s3={'addressing_style': 'path' if path_style else 'auto'},
            signature_version='s3v4',
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={'max_attempts': max_attempts, 'mode': 'standard'},
            max_pool_connections=max(10, self.concurrency + 2),
        )
        if self.endpoint_url:
            # botocore >= 1.36 adds CRC32 checksum headers to every upload by default; several S3-compatible
            # stores reject them. Only send checksums where the operation requires them, as before 1.36.
            options.update(request_checksum_calculation='when_required', response_checksum_validation='when_required')
        try:
            config = botocore.config.Config(**options)
        except TypeError:  # botocore < 1.36 knows neither option, and does not send those headers anyway
            options.pop('request_checksum_calculation', None)
            options.pop('response_checksum_validation', None)
            config = botocore.config.Config(**options)
        session = boto3.session.Session(aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
                                        aws_session_token=session_token or None, region_name=self.region)
        verify = ca_bundle if ca_bundle else bool(validate_certs)
        try:
            return session.client('s3', endpoint_url=self.endpoint_url, config=config, verify=verify)
        except ValueError as exc:
            raise StoreError('S3 endpoint %r is not usable: %s' % (self.endpoint_url, exc))

    @property
    def endpoint(self):
        return self.endpoint_url or ('AWS S3 (region %s)' % (self.region or 'from the AWS configuration'))

    def _key(self, key):
        return '%s/%s' % (self.prefix, key) if self.prefix else key

    def describe(self, key=''):
        return 's3://%s/%s' % (self.bucket, self._key(key))

    def _failure(self, exc, action, key=''):
        """A StoreError for a botocore/boto3 exception: which endpoint, bucket, key; what to check."""
        where = self.describe(key)
        endpoint = self.endpoint
        exceptions = botocore.exceptions
        if isinstance(exc, exceptions.SSLError):
            return StoreError('TLS to the S3 endpoint %s failed while trying to %s %s: %s. Set ca_bundle to the '
                              'CA of the object store, or check its certificate' % (endpoint, action, where, exc))
        if isinstance(exc, (exceptions.EndpointConnectionError, exceptions.ConnectTimeoutError,
                            exceptions.ReadTimeoutError, exceptions.ConnectionClosedError,
                            getattr(exceptions, 'ProxyConnectionError', exceptions.EndpointConnectionError))):
            return StoreError('cannot reach the S3 endpoint %s to %s %s (%s). Check the endpoint URL, that the object '
                              'store is up, and the network, DNS and proxy between this host and it'
                              % (endpoint, action, where, exc))
        if isinstance(exc, (exceptions.NoCredentialsError, exceptions.PartialCredentialsError)):
            return StoreError('no usable S3 credentials to %s %s at %s: set access_key and secret_key, or give the '
                              'host an instance profile or AWS_* environment (%s)' % (action, where, endpoint, exc))
        if isinstance(exc, exceptions.ClientError):
            error = exc.response.get('Error', {})
            code = str(error.get('Code', ''))
            status = exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')
            message = error.get('Message') or code
            if code == 'NoSuchBucket':
                return StoreError('bucket %s does not exist at %s: create it, or fix the bucket name, endpoint or '
                                  'region' % (self.bucket, endpoint))
            if code in ('NoSuchKey', '404', 'NotFound') or status == 404:
                return StoreError('%s does not exist at %s (to %s)' % (where, endpoint, action))
            if code == 'InvalidAccessKeyId':
                return StoreError('the S3 access key is not known at %s: check access_key (to %s %s)'
                                  % (endpoint, action, where))
            if code == 'SignatureDoesNotMatch':
                return StoreError('S3 signature mismatch at %s: check that secret_key belongs to access_key, and '
                                  'the region (to %s %s)' % (endpoint, action, where))
            if code.startswith('KMS') or 'kms' in message.lower():
                return StoreError('SSE-KMS failed at %s to %s %s: %s. Check kms_key_id and that the credentials may '
                                  'use that key (kms:GenerateDataKey, kms:Decrypt)' % (endpoint, action, where, message))
            if code in ('AccessDenied', 'AllAccessDisabled', '403') or status == 403:
                hint = 'check the credentials and the bucket policy'
                if self.sse == 'aws:kms':
                    hint += ', and that they may use the KMS key (kms:GenerateDataKey, kms:Decrypt)'
                return StoreError('access denied to %s at %s (to %s): %s' % (where, endpoint, action, hint))
            if code == 'InvalidStorageClass':
                return StoreError('storage class %r is not accepted at %s: %s' % (self.storage_class, endpoint, message))
            return StoreError('S3 refused to %s %s at %s: %s (%s, HTTP %s)'
                              % (action, where, endpoint, message, code, status))
        return StoreError('S3 failed to %s %s at %s: %s' % (action, where, endpoint, exc))

    def _call(self, action, key, method, **kwargs):
        try:
            return method(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._failure(exc, action, key)

    def _write_options(self, metadata):
        options = {}
        if self.sse:
            options['ServerSideEncryption'] = self.sse
            if self.kms_key_id:
                options['SSEKMSKeyId'] = self.kms_key_id
        # Metadata stays in the default class: listing reads every metadata object, which an archive class
        # (GLACIER, DEEP_ARCHIVE) would refuse.
        if self.storage_class and not metadata:
            options['StorageClass'] = self.storage_class
        options['ContentType'] = 'application/json' if metadata else 'application/octet-stream'
        return options

    def _put(self, key, chunks, metadata=False):
        full = self._key(key)
        options = self._write_options(metadata)
        parts = _rechunk(chunks, self.part_size)
        first = next(parts, None)
        if first is None:
            first = bytearray()
        second = next(parts, None)
        if second is None:
            self._call('upload', key, self.client.put_object, Bucket=self.bucket, Key=full, Body=first, **options)
            return
        upload = self._call('start a multipart upload of', key, self.client.create_multipart_upload,
                            Bucket=self.bucket, Key=full, **options)
        upload_id = upload['UploadId']
        head = [first, second]
        first = second = None  # the parts are referenced from head only, and dropped once uploaded
        try:
            done = self._upload_parts(key, full, upload_id, _prepend(head, parts))
            self._call('complete the upload of', key, self.client.complete_multipart_upload, Bucket=self.bucket,
                       Key=full, UploadId=upload_id, MultipartUpload={'Parts': done})
        except BaseException as failure:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception as exc:  # pylint: disable=broad-except
                if isinstance(failure, StoreError):
                    raise StoreError('%s; the incomplete upload %s could not be aborted either (%s): '
                                     'remove_incomplete or a bucket lifecycle rule will clean it'
                                     % (failure, upload_id, exc))
            raise

    def _upload_parts(self, key, full, upload_id, parts):
        """Upload parts in a bounded pool while the stream produces the next ones; [{PartNumber, ETag}]."""
        done = []
        pending = set()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency)
        number = 0
        try:
            while True:
                # A free slot first, then the next part: at most `concurrency` parts are alive, one of them
                # being filled by the stream while the others travel.
                while len(pending) >= self.concurrency:
                    finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    done.extend(future.result() for future in finished)
                body = next(parts, None)
                if body is None:
                    break
                number += 1
                if number > S3_MAX_PARTS:
                    raise StoreError('%s needs more than %d parts of %d MiB: raise part_size'
                                     % (self.describe(key), S3_MAX_PARTS, self.part_size // MIB))
                pending.add(pool.submit(self._upload_part, key, full, upload_id, number, body))
                body = None
            for future in concurrent.futures.as_completed(pending):
                done.append(future.result())
            pending = set()
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True)
        return sorted(done, key=lambda part: part['PartNumber'])

    def _upload_part(self, key, full, upload_id, number, body):
        response = self._call('upload part %d of' % number, key, self.client.upload_part, Bucket=self.bucket,
                              Key=full, UploadId=upload_id, PartNumber=number, Body=body)
        part = {'PartNumber': number, 'ETag': response['ETag']}
        for name in ('ChecksumCRC32', 'ChecksumCRC32C', 'ChecksumCRC64NVME', 'ChecksumSHA1', 'ChecksumSHA256'):
            if response.get(name):
                part[name] = response[name]
        return part

    def _get(self, key, chunk_size):
        response = self._call('download', key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return self._read(response['Body'], key, chunk_size)

    def _read(self, body, key, chunk_size):
        try:
            yield from body.iter_chunks(chunk_size)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._failure(exc, 'download', key)
        except (IOError, OSError) as exc:  # urllib3 errors while streaming the body
            raise StoreError('download of %s from %s broke off: %s' % (self.describe(key), self.endpoint, exc))
        finally:
            body.close()

    def _read_many(self, keys):
        result = {}
        if not keys:
            return result

        def read(key):
            try:
                response = self._call('download', key, self.client.get_object, Bucket=self.bucket,
                                      Key=self._key(key))
                size = response.get('ContentLength')
                if size is not None and size > self.METADATA_MAX_BYTES:
                    response['Body'].close()
                    raise self._too_large(key, size)
                return key, self._join_small(key, self._read(response['Body'], key, self._SMALL_CHUNK))
            except StoreError as exc:
                return key, exc
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(keys)))
        try:
            for key, data in pool.map(read, keys):
                result[key] = data
        finally:
            pool.shutdown(wait=True)
        return result

    def _list(self, prefix):
        found = []
        base = len(self._key(''))
        paginator = self.client.get_paginator('list_objects_v2')
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get('Contents', []):
                    found.append((item['Key'][base:], item['Size']))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._failure(exc, 'list', prefix)
        return found

    def _delete(self, keys):
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            response = self._call('delete objects under', batch[0], self.client.delete_objects, Bucket=self.bucket,
                                  Delete={'Objects': [{'Key': self._key(k)} for k in batch], 'Quiet': True})
            errors = response.get('Errors') or []
            if errors:
                first = errors[0]
                raise StoreError('S3 refused to delete %d object(s) at %s, e.g. s3://%s/%s: %s (%s)'
                                 % (len(errors), self.endpoint, self.bucket, first.get('Key'), first.get('Message'),
                                    first.get('Code')))

    def incomplete_uploads(self, location=None):
        """Multipart uploads in progress or left behind under location (or the whole prefix):
        [{'key', 'upload_id', 'initiated' (epoch seconds)}]."""
        prefix = self._key(location.path + '/' if location is not None else '')
        uploads = []
        paginator = self.client.get_paginator('list_multipart_uploads')
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get('Uploads', []):
                    initiated = item.get('Initiated')
                    uploads.append({'key': item['Key'], 'upload_id': item['UploadId'],
                                    'initiated': calendar.timegm(initiated.utctimetuple()) if initiated else 0})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._failure(exc, 'list the multipart uploads under', location.path if location else '')
        return uploads

    def remove_incomplete(self, location, older_than=INCOMPLETE_GRACE_SECONDS, now=None):
        """Also abort multipart uploads under location started more than older_than seconds ago."""
        now = time.time() if now is None else now
        for upload in self.incomplete_uploads(location):
            if now - upload['initiated'] >= older_than:
                self._call('abort the upload of', upload['key'], self.client.abort_multipart_upload,
                           Bucket=self.bucket, Key=upload['key'], UploadId=upload['upload_id'])
        return super(S3Store, self).remove_incomplete(location, older_than, now)


def _prepend(head, rest):
    """The items of the list head (popped, so not kept alive), then those of rest."""
    while head:
        yield head.pop(0)
    yield from rest


# -- /etc/kubernetes resources -----------------------------------------------------------------------------

DEFAULT_RESOURCE_ROOT = '/etc/kubernetes'
DEFAULT_RESOURCE_PATHS = ('pki', 'manifests')


class _Sink(object):
    """Where tarfile writes; drained into the stream after each member."""

    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(bytes(data))
        return len(data)

    def drain(self):
        data = b''.join(self.parts)
        self.parts = []
        return data


def _kind(mode):
    if stat.S_ISDIR(mode):
        return 'directory'
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISLNK(mode):
        return 'symlink'
    return None


class ResourceArchive(object):
    """A tar stream (pax format) of paths under root, e.g. pki/, manifests/ and the encryption configuration of
    /etc/kubernetes, with modes, owners and times; iterate it for chunks. ``members`` lists what went in
    (name, type, mode, size: never content). Memory: the largest single file (certificates and manifests are
    kilobytes)."""

    def __init__(self, root=DEFAULT_RESOURCE_ROOT, paths=DEFAULT_RESOURCE_PATHS):
        self.root = os.path.abspath(root)
        self.paths = [self._relative(path) for path in paths if path]
        if not self.paths:
            raise StoreError('no path under %s to archive' % self.root)
        self.members = []

    def _relative(self, path):
        full = os.path.normpath(os.path.join(self.root, path))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise StoreError('%s is not under %s: resources are archived relative to it (move the file under it, '
                             'or set the root)' % (path, self.root))
        if not os.path.lexists(full):
            raise StoreError('%s does not exist: nothing to archive there (check the path)' % full)
        return os.path.relpath(full, self.root)

    def _walk(self):
        seen = set()
        for path in self.paths:
            full = os.path.join(self.root, path)
            entries = [full]
            if os.path.isdir(full) and not os.path.islink(full):
                for current, directories, files in os.walk(full):
                    directories.sort()
                    entries.extend(os.path.join(current, name) for name in sorted(directories + files))
            for entry in entries:
                name = os.path.relpath(entry, self.root)
                # Parents first, so that an extraction creates them with their own modes.
                parents = []
                parent = os.path.dirname(name)
                while parent and parent != '.' and parent not in seen:
                    parents.append(parent)
                    parent = os.path.dirname(parent)
                for item in reversed(parents):
                    seen.add(item)
                    yield item
                if name not in seen:
                    seen.add(name)
                    yield name

    def __iter__(self):
        sink = _Sink()
        tar = tarfile.open(mode='w|', fileobj=sink, format=tarfile.PAX_FORMAT)
        self.members = []
        for name in self._walk():
            full = os.path.join(self.root, name)
            try:
                info = tar.gettarinfo(full, arcname=name)
                kind = _kind(os.lstat(full).st_mode)
                if kind is None:
                    continue  # sockets, devices: nothing kubeadm keeps there
                if kind == 'file':
                    with open(full, 'rb') as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
            except (IOError, OSError) as exc:
                raise StoreError('cannot archive %s: %s' % (full, exc.strerror or exc))
            self.members.append({'name': name, 'type': kind, 'mode': '%04o' % stat.S_IMODE(info.mode),
                                 'size': info.size if kind == 'file' else 0})
            data = sink.drain()
            if data:
                yield data
        tar.close()
        data = sink.drain()
        if data:
            yield data


# What extract_resources accepts by default: kubeadm's /etc/kubernetes holds tens of files of a few KiB each.
EXTRACT_MAX_FILES = 10000
EXTRACT_MAX_BYTES = 1024 * MIB
# An extended header (pax, GNU long name) of a member carries its names: a few KiB at most. ResourceArchive writes
# one before a member at most; a chain of them is refused (tarfile reads each chain by recursion).
_EXTENDED_HEADER_MAX = 64 * 1024
_EXTENDED_HEADER_CHAIN = 3
_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                   tarfile.GNUTYPE_LONGLINK)
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
# Permission bits a restored file keeps: setuid, setgid, sticky and group/other write are dropped.
_MODE_KEPT = 0o755
_MAX_ID = 2 ** 32 - 2          # chown's -1 (4294967295) means "leave as is"
_MAX_MTIME = 2 ** 40
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) | getattr(os, 'O_NOFOLLOW', 0)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member header with bounds: an extended header above _EXTENDED_HEADER_MAX (tarfile reads it
    whole into memory) and more than _EXTENDED_HEADER_CHAIN of them before a member are refused."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        obj = super(_BoundedTarInfo, cls).frombuf(buf, encoding, errors)
        if obj.size < 0 or (obj.type in _EXTENDED_TYPES and obj.size > _EXTENDED_HEADER_MAX):
            raise StoreError('the resources archive is damaged: an extended tar header of %d bytes (at most %d are '
                             'read): refusing it' % (obj.size, _EXTENDED_HEADER_MAX))
        return obj

    @classmethod
    def fromtarfile(cls, tarfile):  # pylint: disable=redefined-outer-name
        tar = tarfile
        depth = getattr(tar, '_etcdops_header_depth', 0)
        if depth > _EXTENDED_HEADER_CHAIN:
            raise StoreError('the resources archive is damaged: more than %d extended tar headers in a row: '
                             'refusing it' % _EXTENDED_HEADER_CHAIN)
        tar._etcdops_header_depth = depth + 1
        try:
            return super(_BoundedTarInfo, cls).fromtarfile(tar)
        finally:
            tar._etcdops_header_depth = depth


def _safe_target(name, what='member'):
    """The components of an archive name (a member's, or a hard link's target): refused when it is empty,
    absolute, climbs with '..' or holds a NUL."""
    if not isinstance(name, str) or not name or '\0' in name:
        raise StoreError('the resources archive holds a %s named %r, which is not a path: refusing it' % (what, name))
    parts = [part for part in name.split('/') if part not in ('', '.')]
    if name.startswith('/') or not parts or '..' in parts:
        raise StoreError('the resources archive holds %r, a path outside its root: refusing to restore it' % name)
    return parts


def _inside(path, directory):
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _temporary_name(name):
    return '.%s.%s.tmp' % (name, binascii.hexlify(os.urandom(4)).decode('ascii'))


class _Extraction(object):
    """One extract_resources run. Every write is relative to a descriptor of its directory, which was opened
    component by component from dest with O_NOFOLLOW: no write goes through a symlink, whether the archive placed
    it earlier or it was in dest before. A file, symlink or hard link is made under a temporary name and renamed
    over its name, which replaces a symlink there instead of writing through it."""

    def __init__(self, dest, root_fd, restore_owner, max_files, max_bytes):
        self.dest = dest
        self.real_dest = os.path.realpath(dest)
        self.root_fd = root_fd
        self.restore_owner = restore_owner
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.count = 0
        self.size = 0
        self.files = {}        # name -> (st_dev, st_ino) of a regular file written by this run
        self.symlinks = []     # [(name, link target)]
        self.directories = []  # [(parts, member, mode)]

    def refuse(self, member_name, what):
        return StoreError('the resources archive holds %s, %s: refusing it' % (member_name, what))

    def open_parent(self, parts, create=True):
        """A descriptor of the directory that holds parts[-1]; every directory on the way must be a real one
        (created 0700 when missing and create is set)."""
        fd = os.dup(self.root_fd)
        try:
            for index, part in enumerate(parts[:-1]):
                try:
                    child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno != errno.ENOENT or not create:
                        raise self._not_a_directory(fd, part, parts[:index + 1], exc)
                    try:
                        os.mkdir(part, 0o700, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = os.open(part, _DIRECTORY_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _not_a_directory(self, fd, part, parts, exc):
        path = os.path.join(self.dest, *parts)
        try:
            mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            return exc
        if stat.S_ISLNK(mode):
            return StoreError('restoring the resources archive would write through the symlink %s: refusing it' % path)
        if not stat.S_ISDIR(mode):
            return StoreError('restoring the resources archive needs %s to be a directory, and it is not: refusing it'
                              % path)
        return exc

    def check_limits(self, member):
        self.count += 1
        if self.count > self.max_files:
            raise StoreError('the resources archive holds more than %d members (max_files): refusing it'
                             % self.max_files)
        if member.type in _FILE_TYPES:
            self.size += member.size
            if self.size > self.max_bytes:
                raise StoreError('the resources archive holds more than %d bytes of files (max_bytes), %s among them: '
                                 'refusing it' % (self.max_bytes, member.name))

    def attributes(self, member, name):
        """(mode, owner or None, mtime) to restore, or a StoreError for values no file can have."""
        mode = stat.S_IMODE(member.mode) & _MODE_KEPT
        mtime = member.mtime
        if not isinstance(mtime, (int, float)) or not 0 <= mtime <= _MAX_MTIME:  # NaN fails both comparisons
            raise self.refuse(name, 'with the modification time %r' % (mtime,))
        owner = None
        if self.restore_owner:
            if not (0 <= member.uid <= _MAX_ID and 0 <= member.gid <= _MAX_ID):
                raise self.refuse(name, 'owned by %r:%r' % (member.uid, member.gid))
            owner = (member.uid, member.gid)
        return mode, owner, mtime

    def member(self, tar, member):
        """Restore one member; its listing entry."""
        self.check_limits(member)
        parts = _safe_target(member.name)
        name = '/'.join(parts)
        if member.sparse is not None or not (member.type in _FILE_TYPES or member.isdir() or member.issym()
                                             or member.islnk()):
            raise self.refuse(name, 'neither a file, a directory, a symlink nor a hard link (a device, a fifo, a '
                                    'sparse file...)')
        mode, owner, mtime = self.attributes(member, name)
        parent = self.open_parent(parts)
        try:
            if member.isdir():
                self._directory(parent, parts, member, mode, owner, mtime)
                kind = 'directory'
            elif member.type in _FILE_TYPES:
                self.files[name] = _extract_file(tar, member, parent, parts[-1], (mode, owner, mtime))
                kind = 'file'
            elif member.issym():
                self._symlink(parent, parts, member)
                kind = 'symlink'
            else:
                self.files[name] = self._hardlink(parent, parts, member)
                kind = 'hardlink'
        finally:
            os.close(parent)
        return {'name': name, 'type': kind, 'mode': '%04o' % mode, 'size': member.size if kind == 'file' else 0}

    def _directory(self, parent, parts, member, mode, owner, mtime):
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
        except FileExistsError:
            existing = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
            if not stat.S_ISDIR(existing):
                raise self._not_a_directory(parent, parts[-1], parts, OSError(errno.EEXIST, 'exists'))
        self.directories.append((parts, member, (mode, owner, mtime)))

    def _symlink(self, parent, parts, member):
        name = '/'.join(parts)
        link = member.linkname
        if not link or '\0' in link or os.path.isabs(link):
            raise self.refuse(name, 'a symlink to %r, which leaves %s' % (link, self.dest))
        resolved = os.path.realpath(os.path.join(self.real_dest, *(parts[:-1] + [link])))
        if not _inside(resolved, self.real_dest):
            raise self.refuse(name, 'a symlink to %r, which leaves %s' % (link, self.dest))
        _make_and_rename(parent, parts[-1], lambda temporary: os.symlink(link, temporary, dir_fd=parent))
        self.symlinks.append((name, link))

    def _hardlink(self, parent, parts, member):
        name = '/'.join(parts)
        source = _safe_target(member.linkname, 'hard link target')
        source_name = '/'.join(source)
        expected = self.files.get(source_name)
        if expected is None:
            raise self.refuse(name, 'a hard link to %r, which is not a file this archive restored before it'
                                    % member.linkname)
        source_parent = self.open_parent(source, create=False)
        try:
            found = os.stat(source[-1], dir_fd=source_parent, follow_symlinks=False)
            if not stat.S_ISREG(found.st_mode) or (found.st_dev, found.st_ino) != expected:
                raise self.refuse(name, 'a hard link to %r, which is no longer the file this archive restored there'
                                        % member.linkname)
            _make_and_rename(parent, parts[-1], lambda temporary: os.link(
                source[-1], temporary, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False))
        finally:
            os.close(source_parent)
        return expected

    def finish(self):
        """Directory attributes (last: a read-only directory must not stop the files going into it), then every
        symlink resolved once more: a later member can make an earlier symlink's target lead elsewhere."""
        for parts, dummy, attributes in reversed(self.directories):
            parent = self.open_parent(parts, create=False)
            try:
                fd = os.open(parts[-1], _DIRECTORY_FLAGS, dir_fd=parent)
            finally:
                os.close(parent)
            try:
                _apply_attributes(fd, attributes)
            finally:
                os.close(fd)
        escaping = [(name, link) for name, link in self.symlinks
                    if not _inside(os.path.realpath(os.path.join(self.real_dest, name)), self.real_dest)]
        for name, dummy in escaping:
            parts = name.split('/')
            parent = self.open_parent(parts, create=False)
            try:
                os.unlink(parts[-1], dir_fd=parent)
            finally:
                os.close(parent)
        if escaping:
            raise StoreError('the resources archive holds symlinks that lead out of %s through other symlinks '
                             '(%s): they were removed, refusing the archive' % (self.dest, ', '.join(
                                 '%s -> %s' % item for item in escaping)))


def _members(tar):
    """The members of a tar stream; what tarfile raises on a damaged header, as a StoreError."""
    while True:
        try:
            member = tar.next()
        except StoreError:
            raise
        except (tarfile.TarError, ValueError, OverflowError, EOFError) as exc:
            raise StoreError('the resources archive is damaged or not a tar stream: %s' % exc)
        if member is None:
            return
        yield member


def extract_resources(chunks, dest, restore_owner=None, max_files=EXTRACT_MAX_FILES, max_bytes=EXTRACT_MAX_BYTES):
    """Restore a ResourceArchive stream under dest (created 0700 if missing); returns the members.

    Members are directories, regular files, symlinks and hard links (ResourceArchive writes a hard link for a
    second name of a file); anything else (devices, fifos, sparse files) is refused. Names must be relative and
    not climb ('..'); a symlink must lead to dest or under it, resolved against dest (absolute targets are
    refused), and still so after the last member; a hard link must name a file restored before it. Nothing is
    written through a symlink: the archive's own, or one already in dest. More than max_files members or
    max_bytes of file content are refused. Files are written to a temporary name and renamed; modes (without
    setuid, setgid, sticky, group or other write), times, and owners when running as root (restore_owner) are
    restored. A refusal is a StoreError; what was restored before it stays under dest.
    """
    dest = os.path.abspath(dest)
    if restore_owner is None:
        restore_owner = hasattr(os, 'geteuid') and os.geteuid() == 0
    try:
        os.makedirs(dest, mode=0o700, exist_ok=True)
        root_fd = os.open(dest, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError as exc:
        raise StoreError('cannot create %s: %s' % (dest, exc.strerror or exc))
    run = _Extraction(dest, root_fd, restore_owner, max_files, max_bytes)
    members = []
    try:
        with tarfile.open(fileobj=ChunkReader(chunks), mode='r|', tarinfo=_BoundedTarInfo) as tar:
            for member in _members(tar):
                members.append(run.member(tar, member))
        run.finish()
    except tarfile.TarError as exc:
        raise StoreError('the resources archive is damaged or not a tar stream: %s' % exc)
    except (IOError, OSError) as exc:
        raise StoreError('cannot restore resources under %s: %s' % (dest, exc))
    except UnicodeError as exc:
        raise StoreError('the resources archive holds a name this system cannot write (%s): refusing it' % exc)
    finally:
        os.close(root_fd)
    return members


def _make_and_rename(parent, name, make):
    """make(temporary name) in the directory parent, then that renamed over name."""
    temporary = _temporary_name(name)
    make(temporary)
    try:
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        _unlink_quietly(temporary, parent)
        raise


def _unlink_quietly(name, parent):
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass


def _extract_file(tar, member, parent, name, attributes):
    """Write a member's content to name in the directory parent (through a temporary file, renamed over it);
    the (st_dev, st_ino) of the file."""
    temporary = _temporary_name(name)
    source = tar.extractfile(member)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600,
                 dir_fd=parent)
    try:
        with os.fdopen(fd, 'wb') as handle:
            for chunk in file_chunks(source, CHUNK_SIZE):
                handle.write(chunk)
            handle.flush()
            _apply_attributes(handle.fileno(), attributes)
            os.fsync(handle.fileno())
            written = os.fstat(handle.fileno())
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        _unlink_quietly(temporary, parent)
        raise
    return written.st_dev, written.st_ino


def _apply_attributes(fd, attributes):
    """Owner (first: chown clears setuid bits), mode and times of an open file or directory."""
    mode, owner, mtime = attributes
    if owner is not None:
        os.fchown(fd, owner[0], owner[1])
    os.fchmod(fd, mode)
    os.utime(fd, (mtime, mtime))
