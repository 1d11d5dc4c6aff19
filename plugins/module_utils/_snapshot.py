# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: etcd snapshots: taking one from a member chosen by policy, checking its sha256 trailer while it
streams, writing it atomically, and reading a snapshot file's status as ``etcdutl snapshot status`` does.

What a snapshot file holds (the same bytes ``etcdctl snapshot save`` writes): etcd's Snapshot RPC streams the
member's bbolt database (a consistent copy at one revision: bbolt's ``tx.WriteTo``), then one last message
with the sha256 of everything before it (etcd 3.4 to 3.7 all send it). ``etcdctl snapshot save`` copies the
whole stream to the file, trailer included, and refuses a stream whose size is not a multiple of 512 plus 32.
``etcdutl snapshot restore`` (``etcdctl`` on 3.4) recognises the trailer by that size, checks it and cuts it
off; without it, restore demands ``--skip-hash-check``. bbolt ignores bytes past its last page, so
``snapshot status`` reads the file as it is. So the file written here is the stream as it came, trailer
included: restore and status treat it exactly as an ``etcdctl snapshot save`` file.

What is here:

* ``TrailerCheck(chunks)``: passes a snapshot stream through (bytes, or ``(bytes, remaining_bytes)`` pairs as
  ``EtcdClient.snapshot`` yields), hashing all but the last 32 bytes, which it keeps aside; at the end it
  checks them against the hash and the size the member announced. A mismatch, or a stream that ends early,
  raises ``SnapshotError``. Memory: one chunk and 32 bytes.
* ``write_file(chunks, path, mode)``: a temporary file in the same directory, fsync, rename, fsync of the
  directory; the temporary file is removed on any failure, so a partial snapshot never exists under any name.
* ``snapshot_status(path)``: ``etcdutl snapshot status -w json`` of the file, in pure Python (``_bbolt.py``),
  plus the file's own size, sha256 and whether its trailer is there and right.
* ``candidates(client, policy)``, ``save(client, policy, path, ...)``: the members to ask in order (a healthy
  follower first, the leader, or a named member; then the other healthy ones) and the save with fail-over to
  the next one when a stream fails.

crc32c (Castagnoli, etcdutl's status hash) comes from ``google-crc32c`` or ``crc32c`` when one is installed
(hardware CRC, GB/s); otherwise a table in pure Python (about 10 MB/s): the result is the same.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import os
import re
import struct
import tempfile
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import fsync_dir
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt import BboltError, BboltFile
from ansible_collections.etcdops.etcd.plugins.module_utils._etcd_proto import Truncated, read_varint
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import Meter, file_chunks

TRAILER_SIZE = 32  # sha256 digest etcd appends to the database it streams
SECTOR = 512       # etcd's test for a trailer: file size % 512 == 32
DEFAULT_MODE = 0o600
MEGABYTE = 1000 * 1000.0

# -- crc32c ----------------------------------------------------------------------------------------------

_CRC_TABLE = []


def _pure_table():
    if not _CRC_TABLE:
        for index in range(256):
            crc = index
            for dummy in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            _CRC_TABLE.append(crc)
    return _CRC_TABLE


def _crc32c_pure(crc, data):
    table = _pure_table()
    crc ^= 0xFFFFFFFF
    for byte in bytearray(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_implementation():
    """(name, update(crc, data) -> crc): the fastest crc32c found."""
    try:
        import google_crc32c
        if getattr(google_crc32c, 'implementation', 'c') == 'c':
            return 'google-crc32c', lambda crc, data: google_crc32c.extend(crc, bytes(data))
    except ImportError:
        pass
    try:
        import crc32c
        return 'crc32c', lambda crc, data: crc32c.crc32c(bytes(data), crc)
    except (ImportError, TypeError):
        pass
    return 'python', _crc32c_pure


CRC32C_IMPLEMENTATION, crc32c_update = _crc32c_implementation()

_CASTAGNOLI = 0x82F63B78  # reflected


def _multmodp(a, b):
    """a * b modulo the crc32c polynomial, reflected bit order (zlib's multmodp for Castagnoli)."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ _CASTAGNOLI if b & 1 else b >> 1


def _x8nmodp(n):
    """x^(8n) modulo the polynomial: what shifting a crc by n zero bytes multiplies it by."""
    power = 1 << 30  # x^1, then x^2, x^4 ...
    p = 1 << 31      # x^0
    n *= 8
    while n:
        if n & 1:
            p = _multmodp(power, p)
        n >>= 1
        power = _multmodp(power, power)
    return p


_SHIFT_BLOCK = 64 * 1024
_SHIFT = []  # crc -> crc * x^(8 * _SHIFT_BLOCK), as 4 tables of 256 (the map is linear in the crc's bits)


def _shift_tables():
    if not _SHIFT:
        op = _x8nmodp(_SHIFT_BLOCK)
        _SHIFT.extend([_multmodp(op, byte << (8 * lane)) for byte in range(256)] for lane in range(4))
    return _SHIFT


_ZEROS = bytes(_SHIFT_BLOCK)


def crc32c_combine(crc1, crc2, length2):
    """crc32c of A + B from crc1 = crc32c of A, crc2 = crc32c of B and length2 = len(B) (zlib's crc32_combine):
    crc1 times x^(8 length2), plus crc2. Whole 64 KiB blocks through 4 tables of 256; the rest as the
    crc of that many zero bytes (crc(c, zeros) ^ crc(0, zeros) = c times x^(8n): the pre- and post-conditioning
    cancel out)."""
    blocks, rest = divmod(length2, _SHIFT_BLOCK)
    crc = crc1
    if rest:
        if CRC32C_IMPLEMENTATION == 'python':
            crc = _multmodp(_x8nmodp(rest), crc)
        else:
            zeros = _ZEROS[:rest]
            crc = crc32c_update(crc, zeros) ^ crc32c_update(0, zeros)
    if blocks:
        t0, t1, t2, t3 = _shift_tables()
        for dummy in range(blocks):
            crc = t0[crc & 0xFF] ^ t1[(crc >> 8) & 0xFF] ^ t2[(crc >> 16) & 0xFF] ^ t3[crc >> 24]
    return crc ^ crc2


class SnapshotError(Exception):
    """A snapshot could not be taken, checked or read; the message says what and where."""

    def __init__(self, msg, kind='other'):
        super(SnapshotError, self).__init__(msg)
        self.msg = msg
        self.kind = kind


# -- the sha256 trailer ----------------------------------------------------------------------------------

def has_trailer_size(size):
    """etcd's own test (hasChecksum): a snapshot with its sha256 trailer is 512*n + 32 bytes long."""
    return size % SECTOR == TRAILER_SIZE


class TrailerCheck(object):
    """Pass a snapshot stream through; at its end, check the 32-byte sha256 trailer against the bytes before it.

    Yields every byte (trailer included) as it arrives. After the iteration: ``db_size`` (bytes before the
    trailer), ``trailer`` (hex) and ``expected_size`` (the size the member announced, when known).
    """

    def __init__(self, chunks, source='the snapshot stream'):
        self._chunks = chunks
        self._source = source
        self._hash = hashlib.sha256()
        self._tail = b''
        self.db_size = 0
        self.expected_size = None
        self.trailer = None
        self.done = False

    def _feed(self, data):
        """Hash all but the last TRAILER_SIZE bytes seen so far; keep those aside."""
        if len(data) >= TRAILER_SIZE:
            self._hash.update(self._tail)
            view = memoryview(data)
            self._hash.update(view[:-TRAILER_SIZE])
            self.db_size += len(self._tail) + len(data) - TRAILER_SIZE
            self._tail = bytes(view[-TRAILER_SIZE:])
        else:
            joined = self._tail + bytes(data)
            cut = max(0, len(joined) - TRAILER_SIZE)
            self._hash.update(joined[:cut])
            self.db_size += cut
            self._tail = joined[cut:]

    def __iter__(self):
        for item in self._chunks:
            if isinstance(item, tuple):
                data, remaining = item
                if self.expected_size is None:
                    self.expected_size = len(data) + remaining
            else:
                data = item
            if not data:
                continue
            self._feed(data)
            yield data
        self._finish()

    def _finish(self):
        if len(self._tail) < TRAILER_SIZE:
            raise SnapshotError('%s ended after %d bytes, before the 32-byte sha256 trailer: the snapshot is '
                                'truncated' % (self._source, self.db_size + len(self._tail)), kind='truncated')
        if self.expected_size is not None and self.db_size != self.expected_size:
            raise SnapshotError('%s ended after %d database bytes where the member announced %d: the snapshot is '
                                'truncated' % (self._source, self.db_size, self.expected_size), kind='truncated')
        if self._hash.digest() != self._tail:
            raise SnapshotError('%s: the sha256 of the %d database bytes is %s, the trailer says %s: the snapshot '
                                'is corrupted or truncated' % (
                                    self._source, self.db_size, self._hash.hexdigest(), _hex(self._tail)),
                                kind='sha256_mismatch')
        if not has_trailer_size(self.db_size + TRAILER_SIZE):
            raise SnapshotError('%s: %d bytes is not a whole number of 512-byte sectors plus the trailer: etcd '
                                'restore would not recognise the trailer' % (self._source, self.db_size),
                                kind='bad_size')
        self.trailer = _hex(self._tail)
        self.done = True

    def file_sha256(self):
        """sha256 (hex) of everything streamed, trailer included: what sha256sum says of the saved file."""
        whole = self._hash.copy()
        whole.update(self._tail)
        return whole.hexdigest()

    @property
    def size(self):
        return self.db_size + len(self._tail)


def _hex(data):
    return ''.join('%02x' % byte for byte in bytearray(data))


# -- writing a file atomically ---------------------------------------------------------------------------

def temporary_path(path):
    """A hidden name beside path: a failed snapshot left by a killed process is easy to tell and clean."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, '.%s.part-' % name)


def write_file(chunks, path, mode=DEFAULT_MODE, verify=None):
    """Write chunks to path atomically: temp file beside it, fsync, chmod, verify(temp path), rename, fsync dir.

    Returns what verify returned (None without verify). On any failure, verify's included, the temp file is
    removed and the error re-raised: path keeps what it had before (or stays absent).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SnapshotError('directory %s does not exist: create it first' % directory, kind='no_directory')
    if os.path.isdir(path):
        raise SnapshotError('%s is a directory: give the path of the snapshot file' % path, kind='is_directory')
    try:
        # mkstemp creates the file 0600: a snapshot holds every Secret, never readable by others, not for a moment
        handle, temp = tempfile.mkstemp(prefix=os.path.basename(temporary_path(path)), dir=directory)
    except OSError as exc:
        raise SnapshotError('cannot create a temporary file in %s: %s' % (directory, exc.strerror or exc),
                            kind='write_failed')
    verified = None
    try:
        with os.fdopen(handle, 'wb') as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        if verify is not None:
            verified = verify(temp)
        os.rename(temp, path)
    except BaseException as exc:
        _remove(temp)
        if isinstance(exc, (IOError, OSError)) and not isinstance(exc, SnapshotError):
            what = 'no space left on the device' if getattr(exc, 'errno', None) == errno.ENOSPC else \
                (exc.strerror or str(exc))
            raise SnapshotError('cannot write %s: %s' % (path, what), kind='write_failed')
        raise
    fsync_dir(directory)
    return verified


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# -- status of a snapshot file ---------------------------------------------------------------------------

TOMBSTONE_KEY_SIZE = 18  # an mvcc revision key (8 + 1 + 8 bytes) plus the 't' mark of a deletion
_SEMVER = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$')


def kv_key_or_none(value, whole=True):
    """kv_key, or None when value is not an mvcc KeyValue. whole=False: value holds only the first bytes of one,
    and the key is read where etcd writes it (field 1 first), or None."""
    if not whole:
        if len(value) and value[0] == 0x0A:
            try:
                size, offset = read_varint(value, 1)
            except ValueError:
                return None
            if offset + size <= len(value):
                return bytes(value[offset:offset + size])
        return None
    try:
        return _kv_key(value)
    except ValueError:
        return None


def kv_key(value):
    """The key (field 1) of an mvccpb.KeyValue message."""
    try:
        return _kv_key(value)
    except ValueError:  # a varint cut short or too long
        pass
    raise SnapshotError('a value in the key bucket is not an mvcc KeyValue', kind='corrupted')


def _kv_key(value):
    """kv_key, or ValueError."""
    data = bytearray(value[:64]) if len(value) > 64 else bytearray(value)
    if data and data[0] == 0x0A:  # field 1, length-delimited: etcd writes it first
        try:
            size, offset = read_varint(data, 1)
        except Truncated:
            size, offset = len(data), len(data)  # cut by the 64 bytes: read the whole value below
        if offset + size <= len(data):
            return bytes(data[offset:offset + size])
    data = bytearray(value)
    offset = 0
    while offset < len(data):
        tag, offset = read_varint(data, offset)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            dummy, offset = read_varint(data, offset)
        elif wire == 1:
            offset += 8
        elif wire == 5:
            offset += 4
        elif wire == 2:
            size, offset = read_varint(data, offset)
            if field == 1:
                return bytes(data[offset:offset + size])
            offset += size
        else:
            break
    if offset == len(data):
        # no key field: an empty KeyValue, as the empty value etcdutl's --bump-revision puts at the bumped revision
        return b''
    raise ValueError('not an mvcc KeyValue')


def semver(raw):
    """Go semver's String() of the stored storage version, or '' when it does not parse (as etcdutl)."""
    try:
        text = bytes(raw).decode('ascii').strip()
    except UnicodeDecodeError:
        return ''
    match = _SEMVER.match(text)
    if not match:
        return ''
    out = '%d.%d.%d' % tuple(int(part) for part in match.groups()[:3])
    if match.group(4):
        out += '-' + match.group(4)
    if match.group(5):
        out += '+' + match.group(5)
    return out


class _StatusWalk(object):
    """What etcdutl's Status computes, fed by BboltFile.walk()."""

    FLUSH = 1024 * 1024
    DIRECT = 64 * 1024

    def __init__(self):
        self.crc = 0
        self.entries = 0      # every key of every bucket: etcdctl 3.4 / etcdutl 3.5 totalKey
        self.revision = 0
        self.storage_version = ''
        self.live = set()     # keys alive at the end of the key bucket: etcdutl 3.6+ totalKey
        self._bucket = None
        self._pending = []
        self._pending_size = 0
        # etcd's HashKV at the snapshot's revision: crc32c of "key" then every key and value of the key bucket
        # (all of them are at or below the last revision; see hashkv()).
        self.kv_crc = None
        self.compaction = {}  # scheduledCompactRev / finishedCompactRev of the meta bucket (main revisions)

    def _write(self, data):
        if len(data) >= self.DIRECT:
            # A large value is hashed as it is: joining it with the small pieces before it would copy it again
            # (a third of the walk's time for 1 MB values). The order of the hashed bytes is the same.
            self.flush()
            self._hash(data)
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.FLUSH:
            self.flush()

    def _hash(self, data):
        self.crc = crc32c_update(self.crc, data)
        if self._bucket == b'key':
            self.kv_crc = crc32c_update(self.kv_crc, data)

    def flush(self):
        if self._pending:
            self._hash(b''.join(self._pending))
            self._pending = []
            self._pending_size = 0

    def bucket(self, name):
        self.flush()  # what is pending belongs to the previous bucket
        self._bucket = bytes(name)
        if self._bucket == b'key':
            self.kv_crc = 0
        self._write(name)

    def hashkv(self):
        """What etcd's HashKV answers at the snapshot's revision, or None when it cannot be known from the file:
        etcd hashes the key bucket's revisions up to the asked one, skipping those a compaction scheduled at or
        below compactRev drops; once that compaction has finished they are gone from the file, so the hash is
        the key bucket's. With a compaction scheduled but not finished (or no key bucket) it is not known."""
        if self.kv_crc is None:
            return None
        if self.compaction.get('scheduledCompactRev', 0) > self.compaction.get('finishedCompactRev', 0):
            return None
        return self.kv_crc

    def item(self, key, value):
        self._write(key)
        if value is not None:
            self._write(value)
        self.entries += 1
        if self._bucket == b'key':
            if len(key) < 17:
                raise SnapshotError('key bucket: %r is not a revision' % bytes(key), kind='corrupted')
            self.revision = struct.unpack('>q', key[:8])[0]
            name = kv_key(value) if value is not None else b''
            if len(key) == TOMBSTONE_KEY_SIZE and key[17:18] == b't':
                self.live.discard(name)
            else:
                self.live.add(name)
        elif self._bucket == b'meta' and key == b'storageVersion' and value is not None:
            self.storage_version = semver(value)
        elif self._bucket == b'meta' and bytes(key) in (b'scheduledCompactRev', b'finishedCompactRev') and value \
                and len(value) >= 8:
            self.compaction[bytes(key).decode('ascii')] = struct.unpack('>q', bytes(value[:8]))[0]


_LINE = re.compile(r'^v?(\d+)\.(\d+)')


def total_key(live, entries, storage_version, etcd_version=None):
    """The key count etcdutl prints: from 3.6 the keys alive (etcdutl 3.6 and 3.7 count them whatever the file
    holds), before every entry of every bucket (etcdctl 3.4, etcdutl 3.5). The line is the serving member's
    (etcd_version, when known), else told by the snapshot's storage version, which 3.6+ write (a 3.6+ member
    that has just started may not have yet: then the member's version decides)."""
    if storage_version:
        return live
    match = _LINE.match(etcd_version or '')
    if match and (int(match.group(1)), int(match.group(2))) >= (3, 6):
        return live
    return entries


def database_status(path, etcd_version=None):
    """etcdutl's snapshot status of the bbolt file at path: hash, revision, total_key, total_size, version.

    total_key follows the etcd line that wrote the snapshot, as that line's etcdutl prints it: from 3.6 (the
    snapshot has a storage version) the keys alive at the snapshot's revision; before, every entry of every
    bucket (revisions of the key bucket, members, meta ...), as etcdctl 3.4 and etcdutl 3.5 count them.
    live_keys and entries give both counts whatever the line. etcd_version: the version of the member that served
    the snapshot, when known (see total_key). (A snapshot stream's status, without a file:
    ``_bbolt_stream.StreamStatus``.)
    """
    try:
        with BboltFile(path) as bolt:
            walk = _StatusWalk()
            bolt.walk(walk.bucket, walk.item)
            total_size = bolt.size
    except BboltError as exc:
        raise SnapshotError('%s is not a readable etcd snapshot: %s' % (path, exc), kind='corrupted')
    walk.flush()
    live = len(walk.live)
    return dict(hash=walk.crc, revision=walk.revision,
                total_key=total_key(live, walk.entries, walk.storage_version, etcd_version),
                total_size=total_size, version=walk.storage_version, live_keys=live, entries=walk.entries,
                hashkv=walk.hashkv())


def file_digest(path):
    """sha256 of the whole file, its size, and the state of its trailer: 'valid', 'absent' or 'mismatch'."""
    try:
        with open(path, 'rb') as handle:
            size = os.fstat(handle.fileno()).st_size
            body = hashlib.sha256()
            left = size - TRAILER_SIZE if has_trailer_size(size) else size
            trailer = b''
            for chunk in file_chunks(handle):
                if left >= len(chunk):
                    body.update(chunk)
                    left -= len(chunk)
                else:
                    view = memoryview(chunk)
                    body.update(view[:left])
                    trailer += bytes(view[left:])
                    left = 0
    except (IOError, OSError) as exc:
        raise SnapshotError('cannot read %s: %s' % (path, exc.strerror or exc), kind='unreadable')
    whole = body.copy()  # the body is a prefix of the file: one pass hashes both
    whole.update(trailer)
    if not trailer:
        state = 'absent'
    else:
        state = 'valid' if body.digest() == trailer else 'mismatch'
    return dict(size=size, sha256=whole.hexdigest(), trailer=state)


def _regular_file(path):
    if not os.path.exists(path):
        raise SnapshotError('%s does not exist' % path, kind='missing')
    if not os.path.isfile(path):
        raise SnapshotError('%s is not a regular file' % path, kind='not_a_file')


FINGERPRINT_HEAD = 65536  # the bbolt meta pages (their txid and checksum change with every write) and some more


def file_fingerprint(path):
    """A quick fingerprint of the file's content, read from its ends only: 'v1:<size>:<sha256 of the first 64 KiB>:
    <last 32 bytes in hex>' (the last 32 bytes are the sha256 trailer when there is one).

    Two files with different fingerprints differ; equal fingerprints say nothing for sure (the sha256 of the whole
    file decides). It does not depend on the file's name, times or owner, so a copy of the same snapshot has the
    same fingerprint. SnapshotError (kind 'missing', 'not_a_file' or 'unreadable') as snapshot_status.
    """
    _regular_file(path)
    try:
        with open(path, 'rb') as handle:
            size = os.fstat(handle.fileno()).st_size
            head = hashlib.sha256(handle.read(FINGERPRINT_HEAD)).hexdigest()
            handle.seek(max(0, size - TRAILER_SIZE))
            tail = _hex(handle.read(TRAILER_SIZE))
    except (IOError, OSError) as exc:
        raise SnapshotError('cannot read %s: %s' % (path, exc.strerror or exc), kind='unreadable')
    return 'v1:%d:%s:%s' % (size, head, tail)


def fingerprint_size(fingerprint):
    """The file size a file_fingerprint() records."""
    return int(fingerprint.split(':')[1])


def snapshot_status(path, etcd_version=None):
    """database_status() of the file plus size, sha256 and trailer ('valid', 'absent' or 'mismatch')."""
    _regular_file(path)
    status = file_digest(path)
    status.update(database_status(path, etcd_version))
    return status


# -- choosing the member ---------------------------------------------------------------------------------

POLICIES = ('follower', 'leader')


class Candidate(object):
    """A member that may serve the snapshot: its identity, its status and where to reach it."""

    def __init__(self, member, status):
        self.member = member
        self.status = status

    @property
    def name(self):
        return self.member['name']

    @property
    def id(self):
        return self.member['id']

    @property
    def endpoint(self):
        return self.status['endpoint']

    @property
    def is_leader(self):
        return self.status.get('leader') == self.member['id']

    def describe(self):
        return dict(name=self.name, id=self.id, endpoint=self.endpoint)


def _member_status(client, member):
    """The status of one member through its first client URL that answers; (status, error text)."""
    if not member['client_urls']:
        return None, 'member has no client URL: it has not started yet'
    errors = []
    for url in member['client_urls']:
        try:
            return client.status(url), None
        except Exception as exc:  # EtcdClientError; kept broad so that one odd member does not stop the choice
            errors.append(getattr(exc, 'msg', str(exc)))
    return None, '; '.join(errors)


NOSPACE_ALARM = 'alarm:NOSPACE'


def candidates(client, policy='follower'):
    """(cluster_id, [Candidate] in the order to try, [unhealthy members with why]) for a policy.

    follower: healthy followers (the most applied first), then the leader; leader: the leader, then the
    followers; a member name: that member, then the followers, then the leader. Healthy: it answers, has no
    errors (alarms such as CORRUPT; NOSPACE only stops writes, so it does not count), sees a leader and is not a
    learner.
    """
    from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError

    listing = client.member_list()
    healthy, unhealthy = [], []
    names = [m['name'] for m in listing['members']]
    if policy not in POLICIES and policy not in names:
        raise SnapshotError('member %r is not in the cluster (members: %s)' % (policy, ', '.join(sorted(names))),
                            kind='no_such_member')
    for member in listing['members']:
        label = dict(name=member['name'], id=member['id'])
        if member['is_learner']:
            unhealthy.append(dict(label, error='a learner: it may not have caught up with the cluster'))
            continue
        status, error = _member_status(client, member)
        if status is None:
            unhealthy.append(dict(label, error=error))
        elif [e for e in status['errors'] if NOSPACE_ALARM not in e]:
            # NOSPACE refuses writes only: a snapshot is a read, and the backup before a NOSPACE recovery needs it
            unhealthy.append(dict(label, error='%s reports errors: %s' % (status['endpoint'], '; '.join(
                status['errors']))))
        elif not status.get('leader'):
            unhealthy.append(dict(label, error='%s sees no leader' % status['endpoint']))
        else:
            healthy.append(Candidate(member, status))
    leaders = [c for c in healthy if c.is_leader]
    followers = sorted((c for c in healthy if not c.is_leader), key=lambda c: -c.status['raft_applied_index'])
    if policy == 'leader':
        order = leaders + followers
    elif policy == 'follower':
        order = followers + leaders
    else:
        named = [c for c in healthy if c.name == policy]
        order = named + [c for c in followers + leaders if c.name != policy]
    if not order:
        raise EtcdClientError('no healthy member to take a snapshot from: %s' % '; '.join(
            '%s (%s): %s' % (s['name'] or '(not started)', s['id'], s['error']) for s in unhealthy),
            kind='no_healthy_member')
    return listing['cluster_id'], order, unhealthy


# -- saving ----------------------------------------------------------------------------------------------

def stream_from(client, candidate, timeout):
    """The checked stream of one member's snapshot."""
    return TrailerCheck(client.snapshot(candidate.endpoint, timeout=timeout),
                        source='snapshot stream from %s (%s)' % (candidate.name, candidate.endpoint))


def save(client, order, path, mode=DEFAULT_MODE, timeout=None, progress=None):
    """Save a snapshot of the first member of order that streams a complete, readable one; fail over to the next.

    The stream's sha256 trailer is checked as it comes; the file's status (database_status) is read before it
    takes its place at path, so a member whose database is damaged is passed over too.
    Returns dict(member (Candidate), status (database_status), sha256 (of the file), size, seconds (streaming,
    fsync and status), stream_seconds (streaming and writing), tried [dict(name, id, endpoint, error)]: the last
    one served it, error None).
    Raises SnapshotError naming every member tried when none succeeded; nothing is then left at path or beside
    it, and a file already at path is untouched.
    """
    from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError

    tried = []
    for candidate in order:
        checked = stream_from(client, candidate, timeout)
        meter = Meter(checked, progress=progress)
        started = time.monotonic()
        try:
            version = candidate.status.get('version')
            status = write_file(meter, path, mode, verify=lambda written: database_status(written, version))
        except (EtcdClientError, SnapshotError) as exc:
            tried.append(dict(candidate.describe(), error=exc.msg))
            if getattr(exc, 'kind', None) in ('no_directory', 'is_directory', 'write_failed'):
                exc.tried = tried
                raise  # trouble on this host: another member would not help
            continue
        tried.append(dict(candidate.describe(), error=None))
        return dict(member=candidate, status=status, sha256=checked.file_sha256(), size=checked.size,
                    seconds=time.monotonic() - started, stream_seconds=meter.seconds, tried=tried)
    error = SnapshotError('no member streamed a complete snapshot: %s' % '; '.join(
        '%s (%s): %s' % (t['name'], t['endpoint'], t['error']) for t in tried), kind='all_failed')
    error.tried = tried
    raise error
