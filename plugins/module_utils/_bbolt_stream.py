# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: ``etcdutl snapshot status`` of a snapshot read as it streams, with no file and no second read.

``database_status(path)`` (``_snapshot``) walks a bbolt file in bbolt's order: bucket by bucket, key by key,
following the B+trees from the meta page. A snapshot stream brings the same pages in file order instead, and a
page's place in its tree is only known once the pages above it have come, which may be later. So the backup
used to write the stream to a scratch file and walk that: a second write of the whole database (measured: 0.5-0.9
s of a 4.2-5 s backup of 1.2 GB to a local directory, on 2 vCPUs shared with etcd) and room for one snapshot on
the host.

``StreamStatus(chunks)`` passes the stream through and reads each page as it goes by, keeping only what the
status needs, in the order of the file:

* meta pages 0 and 1 first (chosen as bbolt's ``db.meta()`` does: the page size, the root, the freelist page, the
  high-water mark);
* at every page boundary below the high-water mark, a header that names its own page id (``id == pgid``) and a
  branch, leaf or freelist type starts the reading of that page (several at once where they overlap: the stale
  copy of a freed page can cover a live one; at most MAX_COVER over any byte, so that time and memory stay
  linear in the stream's size whatever the headers say);
* a branch page: its child ids. A freelist page: its free ids. A leaf page: a summary (``_Leaf``): the crc32c of
  what the status hashes of it (each element's key and value, the key alone for a sub-bucket) and that length,
  its count, its first and last key, its sub-buckets (name and header, with an inline page), for a leaf of the key
  bucket the events of the live-key count (a 16-byte digest of each KeyValue's key and whether the revision is a
  deletion), and the meta bucket's storage version and compaction revisions. A value of ``BIG`` bytes or more is
  hashed as it passes and never held: only its first bytes are kept (a KeyValue's key is at its start).

At the end the trees are walked over these summaries as ``BboltFile.walk`` walks the file, with the same integrity
check (every page below the high-water mark reachable once or free, page types, bounds, key order): the leaves'
crcs are joined in key order with crc32c_combine (``_snapshot``). The result is what ``database_status`` gives
for the same bytes (tests compare them on every fixture, on damaged files and on real etcd 3.4-3.7 snapshots).

Memory: the summaries (~160 bytes per leaf page of plain items, packed by ``_Pages``, plus 17 bytes per revision
of the key bucket; measured with 9 000 leaves), the child ids of branch pages, the free ids, the pages being read
(a small leaf or branch page, or the first bytes of a large value), and at the end the live-key set and the
integrity check's maps (one byte per page each), as the file walk has. Not the values.

Differences from the file walk, on files etcd does not write: a page that the trees reach but whose header does
not name it is reported as "not a branch or leaf page" (the walk names the id it found); only the first pair of
keys out of order in a leaf is listed; and a value of BIG bytes or more in the key bucket whose KeyValue does not
start with its key (etcd always writes the key first) is "not an mvcc KeyValue", where the walk would look for the
key further in; and a page whose span holds more than MAX_COVER - 1 other headers of pages of several pages is not
read (the oldest reading is dropped: "not read as the stream passes").
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import array
import bisect
import hashlib
import struct
import sys
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt import (
    BboltError, IntegrityCheck, Meta, BRANCH, BUCKET_LEAF_FLAG, ELEMENT_SIZE, FALLBACK_PAGE_SIZE, FREELIST, LEAF,
    MAX_DEPTH, NO_FREELIST, PAGE_HEADER_SIZE, _BRANCH_ELEMENT, _BUCKET_HEADER, _LEAF_ELEMENT, _META, _PAGE_HEADER, _U64,
    tree_pages)
from ansible_collections.etcdops.etcd.plugins.module_utils._etcd_proto import read_varint
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (
    TOMBSTONE_KEY_SIZE, SnapshotError, crc32c_combine, crc32c_update, kv_key_or_none, semver, total_key)

_U16 = struct.Struct('<H')
_REVISION = struct.Struct('>q')

BIG = 64 * 1024              # values this large are hashed as they pass, never held
HEAD = 64                    # bytes first kept of such a value: then as many as the KeyValue's key needs
MAX_PAGE_SIZE = 1024 * 1024  # a meta page announcing more is refused (bbolt uses the OS page size: 4-64 KiB)
MAX_HELD = 16 * 1024 * 1024  # a page whose elements would need more held than this is not summarized
# The most pages read at once over a byte of the stream: a page header found where MAX_COVER multi-page readings
# still go on makes the one that started first fail (its header is the oldest, most likely a stale freed page's:
# bbolt rewrites a page's whole span when it writes it, so headers inside it came later). Each byte is then held
# and fed at most MAX_COVER times, whatever the headers say: time and memory stay linear in the stream's size.
MAX_COVER = 8
LITTLE_ENDIAN = sys.byteorder == 'little'  # page ids read as native u64s (bbolt's are little-endian)
META_KEYS = (b'storageVersion', b'scheduledCompactRev', b'finishedCompactRev')
EVENT_SIZE = 17              # a live-key event: 1 byte (1: a deletion) + a 16-byte digest of the key


def _key_end(head):
    """How many first bytes of a value hold its KeyValue's key (field 1, first), given its first HEAD bytes."""
    if head[0] != 0x0A:
        return HEAD
    try:
        size, offset = read_varint(head, 1)
    except ValueError:
        return HEAD
    return max(HEAD, offset + size)


def _digest(name):
    return hashlib.blake2b(name, digest_size=16).digest()


class _Leaf(object):
    """What the status needs of one leaf page (see the module's description)."""

    __slots__ = ('count', 'crc', 'length', 'first', 'last', 'disorder', 'buckets', 'plain', 'problem', 'short',
                 'not_kv', 'events', 'metas')

    def __init__(self, count):
        self.count = count
        self.crc = 0
        self.length = 0
        self.first = None       # first and last key (bytes)
        self.last = None
        self.disorder = None    # (key, previous key): the first pair out of order in the page
        self.buckets = None     # [(name, bucket header and inline page)] of the elements flagged as sub-buckets
        self.plain = None       # the first key that is not a sub-bucket (a top-level key must be one)
        self.problem = None     # why the page cannot be read
        self.short = None       # the first key under 17 bytes (not a revision: fatal in the key bucket)
        self.not_kv = False     # a value that is not an mvcc KeyValue (fatal in the key bucket)
        self.events = None      # bytearray of live-key events, None once short or not_kv
        self.metas = None       # {key: value} of META_KEYS


def summarize_leaf(headers, count, page_size, get, bigs):
    """A _Leaf of a leaf page: headers holds its first 16 + 16 * count bytes, get(start, stop) gives the bytes
    of the page between those offsets (any range that is not a big value), bigs maps an element's index to
    (crc32c, head) of its value, hashed as it passed."""
    leaf = _Leaf(count)
    unpack = _LEAF_ELEMENT.unpack_from
    crc = 0
    length = 0
    run_start = run_end = None   # contiguous plain elements are hashed in one call
    previous = None
    events = bytearray()
    free = PAGE_HEADER_SIZE + count * ELEMENT_SIZE  # where the next key may start (as _bbolt reads leaves)
    for index in range(count):
        element = PAGE_HEADER_SIZE + index * ELEMENT_SIZE
        flags, pos, ksize, vsize = unpack(headers, element)
        key_start = element + pos
        value_start = key_start + ksize
        value_end = value_start + vsize
        if value_end > page_size:
            leaf.problem = 'an element points past the end of its page'
            return leaf
        if key_start < free:
            leaf.problem = 'element %d overlaps the elements or the values before it' % index
            return leaf
        free = value_end
        key = bytes(get(key_start, value_start))
        big = bigs.get(index) if bigs else None
        bucket = flags & BUCKET_LEAF_FLAG
        if bucket or big is not None or run_end != key_start:
            if run_end is not None:
                crc = crc32c_update(crc, get(run_start, run_end))
                run_start = run_end = None
        if bucket:
            crc = crc32c_update(crc, key)
            length += ksize
            value = None
            if leaf.buckets is None:
                leaf.buckets = []
            leaf.buckets.append((key, get(value_start, value_end)))  # a view (copied for a page of the stream)
        elif big is not None:
            crc = crc32c_combine(crc32c_update(crc, key), big[0], vsize)
            length += ksize + vsize
            value = big[1]  # the value's first bytes: the KeyValue's key if it is one (etcd writes it first)
        else:
            if run_end is None:
                run_start = key_start
            run_end = value_end
            length += ksize + vsize
            value = get(value_start, value_end)
            if leaf.plain is None:
                leaf.plain = key
        if previous is not None and key <= previous and leaf.disorder is None:
            leaf.disorder = (key, previous)
        previous = key
        if events is not None:
            if ksize < 17:
                leaf.short = key
                events = None
            else:
                name = b'' if bucket else kv_key_or_none(value, whole=big is None)
                if name is None:
                    leaf.not_kv = True
                    events = None
                else:
                    events.append(1 if ksize == TOMBSTONE_KEY_SIZE and key[17:18] == b't' else 0)
                    events += _digest(name)
        if not bucket and key in META_KEYS:
            if leaf.metas is None:
                leaf.metas = {}
            leaf.metas[key] = bytes(value)
        if index == 0:
            leaf.first = key
    if run_end is not None:
        crc = crc32c_update(crc, get(run_start, run_end))
    leaf.last = previous
    leaf.crc = crc
    leaf.length = length
    leaf.events = events
    return leaf


def summarize_inline(page):
    """A _Leaf of an inline bucket's page (a view of the bytes after the bucket header), or BboltError."""
    if len(page) < PAGE_HEADER_SIZE:
        raise BboltError('is cut short')
    dummy, flags, count, dummy = _PAGE_HEADER.unpack_from(page, 0)
    if flags != LEAF:
        raise BboltError('page flags 0x%x, leaf expected' % flags)
    if PAGE_HEADER_SIZE + count * ELEMENT_SIZE > len(page):
        raise BboltError('%d elements do not fit in the page' % count)
    return summarize_leaf(page, count, len(page), lambda start, stop: page[start:stop], None)


class _Reading(object):
    """One page being read from the stream: its bytes from start to end (absolute offsets), big values left out."""

    __slots__ = ('pgid', 'flags', 'count', 'start', 'end', 'at', 'held', 'headers_end', 'bigs', 'big_at', 'cut',
                 'failed')

    def __init__(self, pgid, header, start, size, held_max):
        self.pgid = pgid
        dummy, self.flags, self.count, dummy = _PAGE_HEADER.unpack(header)
        self.start = start
        self.end = start + size
        self.at = len(header)          # page offset of the next byte to read
        self.held = bytearray(header)  # the page's bytes read so far, big values left out
        self.failed = None
        self.big_at = 0                # the next big value (index in bigs)
        self.cut = []                  # (page offset after a big value, bytes left out up to there)
        if self.flags == LEAF:
            self.headers_end = PAGE_HEADER_SIZE + self.count * ELEMENT_SIZE
            self.bigs = None           # [value start, value end, element index, crc32c, head], once known
            if self.headers_end > size:
                self.failed = '%d elements do not fit in the page' % self.count
        else:
            self.headers_end = None
            self.bigs = []
            # held whole: a branch up to MAX_HELD, a freelist up to 8 bytes a page (its ids are kept anyway)
            if size > held_max:
                self.failed = 'a page of %d bytes cannot be read as it streams' % size

    def _layout(self):
        """Once the element headers are in: which values are hashed as they pass. bbolt writes the elements one
        after the other (node.write); when they do not or leave the page, the page is held whole (up to
        MAX_HELD) and summarize_leaf reports it."""
        unpack = _LEAF_ELEMENT.unpack_from
        size = self.end - self.start
        bigs = []
        last_end = self.headers_end
        for index in range(self.count):
            element = PAGE_HEADER_SIZE + index * ELEMENT_SIZE
            flags, pos, ksize, vsize = unpack(self.held, element)
            value_start = element + pos + ksize
            value_end = value_start + vsize
            if element + pos < last_end or value_end > size:
                bigs = []
                break
            last_end = value_end
            if value_end - value_start >= BIG and not flags & BUCKET_LEAF_FLAG:
                bigs.append([value_start, value_end, index, 0, bytearray(), HEAD])
        if size - sum(big[1] - big[0] for big in bigs) > MAX_HELD:
            self.failed = 'a page of %d bytes with %d elements cannot be read as it streams' % (size, self.count)
        self.bigs = bigs

    def feed(self, view, offset):
        """Read what belongs to this page of the chunk view (its first byte at absolute offset offset); True
        once the page is complete (or cannot be read)."""
        stop = min(self.end, offset + len(view)) - self.start  # page offsets from here on
        base = self.start - offset                             # view index of page offset 0
        while self.at < stop and self.failed is None:
            at = self.at
            if self.bigs is None:
                take = min(stop, self.headers_end) - at
                self.held += view[base + at:base + at + take]
                self.at += take
                if self.at == self.headers_end:
                    self._layout()
                continue
            big = self.bigs[self.big_at] if self.big_at < len(self.bigs) else None
            if big is None or at < big[0]:
                take = stop - at if big is None else min(stop, big[0]) - at
                self.held += view[base + at:base + at + take]
                self.at += take
                continue
            take = min(stop, big[1]) - at
            piece = view[base + at:base + at + take]
            big[3] = crc32c_update(big[3], piece)
            head = big[4]
            if len(head) < big[5]:
                used = big[5] - len(head)
                head += piece[:used]
                if big[5] == HEAD and len(head) == HEAD:
                    big[5] = _key_end(head)
                    head += piece[used:used + big[5] - len(head)]
            self.at += take
            if self.at == big[1]:
                self.cut.append((big[1], (self.cut[-1][1] if self.cut else 0) + big[1] - big[0]))
                self.big_at += 1
        return self.failed is not None or self.at >= self.end - self.start

    def get(self, start, stop):
        """Bytes [start, stop) of the page (a range that is not in a big value), as a memoryview."""
        left_out = 0
        for after, total in self.cut:
            if after > start:
                break
            left_out = total
        return memoryview(self.held)[start - left_out:stop - left_out]

    def summary(self):
        """('leaf', _Leaf), ('branch', child ids), ('freelist', free ids) or ('bad', why)."""
        if self.failed is not None:
            return ('bad', self.failed)
        size = self.end - self.start
        data = self.held
        if self.flags == LEAF:
            bigs = dict((big[2], (big[3], bytes(big[4]))) for big in self.bigs)
            leaf = summarize_leaf(data, self.count, size, self.get, bigs)
            if leaf.buckets:  # not views of the page's bytes: they are dropped
                leaf.buckets = [(name, bytes(value)) for name, value in leaf.buckets]
            return ('leaf', leaf)
        if self.flags == BRANCH:
            if PAGE_HEADER_SIZE + self.count * ELEMENT_SIZE > size:
                return ('bad', '%d elements do not fit in the page' % self.count)
            return ('branch', [_BRANCH_ELEMENT.unpack_from(data, PAGE_HEADER_SIZE + index * ELEMENT_SIZE)[2]
                               for index in range(self.count)])
        start, count = PAGE_HEADER_SIZE, self.count
        if count == 0xFFFF:
            count = _U64.unpack_from(data, start)[0]
            start += 8
        if start + 8 * count > len(data):
            return ('bad', 'freelist of %d ids overflows its pages' % count)
        ids = array.array('Q')
        ids.frombytes(bytes(data[start:start + 8 * count]))
        if sys.byteorder != 'little':
            ids.byteswap()
        return ('freelist', ids)


class _Pages(object):
    """pgid -> (kind, what, overflow) of the pages read. A leaf that only holds plain items (the key bucket's, most
    of a database) is packed into arrays: ~44 bytes and its two end keys, plus its live-key events (17 bytes per
    revision), instead of ~0.5 KiB of Python objects; it is unpacked again when the trees are walked. (Not an
    array indexed by page id: 4 bytes per page of the database, 1.1 MiB for 1.2 GB of large values, was most of
    what the status added to the backup's peak memory.)"""

    def __init__(self):
        self._other = {}
        self._pgids = array.array('Q')  # of the packed leaves, increasing (found by bisection)
        self._count = array.array('I')
        self._crc = array.array('I')
        self._length = array.array('Q')
        self._overflow = array.array('I')
        self._keys_at = array.array('Q')
        self._events_at = array.array('Q')
        self._keys = bytearray()
        self._events = bytearray()

    def put(self, pgid, summary):
        kind, leaf, overflow = summary
        if kind != 'leaf' or not leaf.count or leaf.events is None or leaf.buckets or leaf.metas or leaf.problem \
                or leaf.disorder or len(leaf.first) > 0xFFFF or len(leaf.last) > 0xFFFF \
                or (self._pgids and pgid <= self._pgids[-1]):  # pages end in the stream in pgid order, but overlap
            self._other[pgid] = summary
            return
        self._pgids.append(pgid)
        self._count.append(leaf.count)
        self._crc.append(leaf.crc)
        self._length.append(leaf.length)
        self._overflow.append(overflow)
        self._keys_at.append(len(self._keys))
        self._keys += _U16.pack(len(leaf.first)) + leaf.first + _U16.pack(len(leaf.last)) + leaf.last
        self._events_at.append(len(self._events))
        self._events += leaf.events

    def get(self, pgid):
        slot = bisect.bisect_left(self._pgids, pgid)
        if slot == len(self._pgids) or self._pgids[slot] != pgid:
            return self._other.get(pgid)
        leaf = _Leaf(self._count[slot])
        leaf.crc = self._crc[slot]
        leaf.length = self._length[slot]
        at = self._keys_at[slot]
        size = _U16.unpack_from(self._keys, at)[0]
        leaf.first = bytes(self._keys[at + 2:at + 2 + size])
        at += 2 + size
        size = _U16.unpack_from(self._keys, at)[0]
        leaf.last = bytes(self._keys[at + 2:at + 2 + size])
        leaf.plain = leaf.first  # packed leaves hold plain items only (a top-level one is an error)
        at = self._events_at[slot]
        leaf.events = memoryview(self._events)[at:at + EVENT_SIZE * leaf.count]
        return ('leaf', leaf, self._overflow[slot])


class StreamStatus(object):
    """Pass a snapshot's chunks (bytes-like) through and read its status from them: ``status()`` once they have
    all passed gives what ``_snapshot.database_status`` gives for a file of the same bytes, or raises
    SnapshotError (kind 'corrupted') for bytes that are not a readable etcd snapshot."""

    def __init__(self, chunks, source='the snapshot stream', etcd_version=None):
        self._chunks = chunks
        self.source = source
        self.etcd_version = etcd_version  # of the member that serves it (see _snapshot.total_key)
        self.meta = None
        self.page_size = None
        self.high_water = None
        self._offset = 0          # stream offset of the next chunk
        self._head = bytearray()  # the first bytes, until the meta pages are in
        self._scan = None         # stream offset of the next page boundary to look at
        self._carry = None        # the first bytes of a page header cut by the chunk's end
        self._reading = []        # pages being read
        self._outer = []          # those of more than one page, the oldest first (see MAX_COVER)
        self.pages = None         # _Pages, once the meta page is known
        self._status = None
        self.walk_seconds = 0.0   # the walk over the summaries at the end

    def __iter__(self):
        for chunk in self._chunks:
            self.feed(chunk)
            yield chunk
        self._status = self.finish()

    def close(self):
        close = getattr(self._chunks, 'close', None)
        if close is not None:
            close()

    def status(self):
        """The status, once every chunk has passed."""
        if self._status is None:
            raise SnapshotError('the snapshot stream did not end: no status to read', kind='truncated')
        return self._status

    # -- reading ------------------------------------------------------------------------------------

    def feed(self, chunk):
        """Read the next chunk of the stream (SnapshotError when its meta pages are not a bbolt database's)."""
        try:
            self._feed(chunk)
        except BboltError as exc:
            raise SnapshotError('%s is not a readable etcd snapshot: %s' % (self.source, exc), kind='corrupted')

    def _feed(self, chunk):
        if self.meta is None:
            self._head += chunk
            self._offset += len(chunk)
            if self._read_meta(final=False):
                head, self._head = self._head, None
                self._offset = 0
                self._pages(memoryview(head))
            return
        self._pages(memoryview(chunk))

    def _read_meta(self, final):
        """Choose the meta page once the head holds both (as BboltFile._read_meta); False while it needs more."""
        head = self._head
        if len(head) < PAGE_HEADER_SIZE + _META.size:
            if final:
                raise BboltError('is not a bbolt database: %d bytes is too small' % len(head))
            return False
        first = Meta(head, PAGE_HEADER_SIZE)
        page_size = first.page_size if first.problem() is None else FALLBACK_PAGE_SIZE
        candidates = [first]
        if 0 < page_size <= MAX_PAGE_SIZE:
            if len(head) < page_size + PAGE_HEADER_SIZE + _META.size and not final:
                return False
            if len(head) >= page_size + PAGE_HEADER_SIZE + _META.size:
                candidates.append(Meta(head, page_size + PAGE_HEADER_SIZE))
        candidates.sort(key=lambda meta: meta.txid, reverse=True)
        for meta in candidates:
            if meta.problem() is None:
                if meta.page_size < 512 or meta.page_size & (meta.page_size - 1) or meta.page_size > MAX_PAGE_SIZE:
                    raise BboltError('invalid page size %d in the meta page' % meta.page_size)
                self.meta = meta
                self.page_size = meta.page_size
                self.high_water = meta.pgid
                self.pages = _Pages()
                self._scan = 2 * meta.page_size
                return True
        raise BboltError('is not a valid bbolt database: %s' % '; '.join(sorted(set(
            meta.problem() for meta in candidates))))

    def _pages(self, view):
        """Start reading the pages whose headers are in view (at stream offset self._offset), feed every page
        being read."""
        offset = self._offset
        end = offset + len(view)
        size = self.page_size
        limit = min(end, self.high_water * size)
        scan = self._scan
        if self._carry is not None:
            self._carry += view[:PAGE_HEADER_SIZE - len(self._carry)]
            if len(self._carry) == PAGE_HEADER_SIZE:
                self._start(bytes(self._carry), scan)
                self._carry = None
                scan += size
        if scan < limit and self._carry is None and LITTLE_ENDIAN and end - PAGE_HEADER_SIZE >= scan:
            # The page ids at every boundary whose header is in the chunk, read in one go (a stride over the
            # chunk as u64s: 0.1 s less per GB than unpacking every header); only a page naming itself is looked
            # at further.
            count = min(-(-(limit - scan) // size), (end - PAGE_HEADER_SIZE - scan) // size + 1)
            at = scan - offset
            ids = view[at:at + (count - 1) * size + 8].cast('B').cast('Q')[::size // 8].tolist()
            first = scan // size
            for index in [index for index, pgid in enumerate(ids) if pgid == first + index]:
                at = scan - offset + index * size
                self._start(bytes(view[at:at + PAGE_HEADER_SIZE]), scan + index * size)
            scan += count * size
        while scan < limit and self._carry is None:
            at = scan - offset
            if scan + PAGE_HEADER_SIZE > end:
                self._carry = bytearray(view[at:])
                break  # completed by the next chunk
            self._start(bytes(view[at:at + PAGE_HEADER_SIZE]), scan)
            scan += size
        self._scan = scan
        reading = self._reading
        if reading:
            going = []  # (not reading.remove() for each page done: quadratic in the pages of a chunk)
            for page in reading:
                if page.feed(view, offset):
                    self.pages.put(page.pgid, page.summary() + ((page.end - page.start) // size - 1,))
                else:
                    going.append(page)
            self._reading = going
        self._offset = end

    def _start(self, header, start):
        """Start reading the page whose header is at stream offset start, if it names itself and is a page the
        trees may reach (see MAX_COVER)."""
        pgid, flags, dummy, overflow = _PAGE_HEADER.unpack(header)
        if pgid * self.page_size != start or flags not in (BRANCH, LEAF, FREELIST) or \
                pgid + overflow >= self.high_water:
            return
        outer = self._outer
        if outer:
            outer[:] = [page for page in outer if page.end > start and page.failed is None]
            if len(outer) >= MAX_COVER:
                outer.pop(0).failed = 'over more than %d other page headers: not read as the stream passes' % (
                    MAX_COVER - 1)
        page = _Reading(pgid, header, start, (1 + overflow) * self.page_size, MAX_HELD if flags != FREELIST else max(
            MAX_HELD, 8 * self.high_water + 2 * self.page_size))
        self._reading.append(page)
        if overflow:
            outer.append(page)

    # -- the end ------------------------------------------------------------------------------------

    def finish(self):
        """The status of the whole stream (SnapshotError when it is not a readable etcd snapshot)."""
        try:
            if self.meta is None:
                if self._read_meta(final=True):
                    head, self._head = self._head, None
                    self._offset = 0
                    self._pages(memoryview(head))
            size = self._offset
            if size < 2 * PAGE_HEADER_SIZE + _META.size:
                raise BboltError('is not a bbolt database: %d bytes is too small' % size)
            if self.high_water * self.page_size > size:
                raise BboltError('is truncated: the database needs %d bytes, the stream had %d' % (
                    self.high_water * self.page_size, size))
            started = time.monotonic()
            status = _Resolve(self).run()
            self.walk_seconds = time.monotonic() - started
            return status
        except BboltError as exc:
            raise SnapshotError('%s is not a readable etcd snapshot: %s' % (self.source, exc), kind='corrupted')


class _Resolve(IntegrityCheck):
    """The trees walked over the pages' summaries, in bbolt's order, with BboltFile.walk's integrity check."""

    def __init__(self, stream):
        super(_Resolve, self).__init__(stream.high_water, freed=True)
        self.pages = stream.pages
        self.etcd_version = stream.etcd_version
        self.meta = stream.meta
        self.page_size = stream.page_size
        # the status
        self.crc = 0
        self.kv_crc = None
        self.entries = 0
        self.revision = 0
        self.live = set()
        self.metas = {}

    def run(self):
        meta = self.meta
        self._load_freelist(meta)
        if meta.root != 0:
            for leaf, depth in self._tree(meta.root, 1):
                if leaf.plain is not None:
                    raise BboltError('top-level key %r is not a bucket' % leaf.plain)
                for name, value in leaf.buckets or ():
                    self._bucket(name, value, depth)
        self.unreachable()
        if self.failure():
            raise BboltError(self.failure())
        storage_version = semver(self.metas[b'storageVersion']) if b'storageVersion' in self.metas else ''
        compaction = dict((key, struct.unpack('>q', self.metas[key][:8])[0]) for key in (
            b'scheduledCompactRev', b'finishedCompactRev') if len(self.metas.get(key) or b'') >= 8)
        hashkv = self.kv_crc
        if hashkv is not None and compaction.get(b'scheduledCompactRev', 0) > compaction.get(b'finishedCompactRev', 0):
            hashkv = None
        live = len(self.live)
        return dict(hash=self.crc, revision=self.revision,
                    total_key=total_key(live, self.entries, storage_version, self.etcd_version),
                    total_size=self.high_water * self.page_size, version=storage_version, live_keys=live,
                    entries=self.entries, hashkv=hashkv)

    def _load_freelist(self, meta):
        if meta.freelist == NO_FREELIST:
            self.freed = None  # bbolt rebuilds it from what is unreachable: nothing to compare
            return
        if meta.freelist >= self.high_water:
            self.problem('freelist: page %d is out of bounds (high water mark %d)' % (
                meta.freelist, self.high_water))
            return
        summary = self.pages.get(meta.freelist)
        if summary is None or summary[0] != 'freelist':
            self.problem('page %d: invalid type: freelist expected%s' % (
                meta.freelist, ', %s' % summary[1] if summary is not None and summary[0] == 'bad' else ''))
            return
        dummy, ids, overflow = summary
        self.free(meta.freelist, overflow, ids)

    def _bucket(self, name, value, depth):
        """A top-level bucket: its name and items hashed, counted; its nested buckets walked for the check."""
        self.crc = crc32c_update(self.crc, name)
        key_bucket = name == b'key'
        if key_bucket:
            self.kv_crc = crc32c_update(0, name)
        meta_bucket = name == b'meta'
        for leaf, leaf_depth in self._elements(value, name, depth):
            self.crc = crc32c_combine(self.crc, leaf.crc, leaf.length)
            self.entries += leaf.count
            if key_bucket:
                self.kv_crc = crc32c_combine(self.kv_crc, leaf.crc, leaf.length)
                self._key_leaf(leaf)
            elif meta_bucket and leaf.metas:
                self.metas.update(leaf.metas)
            for sub_name, sub_value in leaf.buckets or ():
                self._walk_only(sub_name, sub_value, leaf_depth)

    def _key_leaf(self, leaf):
        if not leaf.count:
            return
        if leaf.short is not None:
            raise SnapshotError('key bucket: %r is not a revision' % leaf.short, kind='corrupted')
        if leaf.not_kv:
            raise SnapshotError('a value in the key bucket is not an mvcc KeyValue', kind='corrupted')
        self.revision = _REVISION.unpack_from(leaf.last, 0)[0]
        events = leaf.events
        live = self.live
        for at in range(0, len(events), EVENT_SIZE):
            name = bytes(events[at + 1:at + EVENT_SIZE])
            if events[at]:
                live.discard(name)
            else:
                live.add(name)

    def _walk_only(self, name, value, depth):
        """A nested bucket and the buckets nested in it, for the check only (a stack, each deeper than the last)."""
        buckets = [iter([(name, value, depth)])]
        while buckets:
            for bucket_name, bucket_value, bucket_depth in buckets[-1]:
                buckets.append((sub_name, sub_value, leaf_depth) for leaf, leaf_depth in self._elements(
                    bucket_value, bucket_name, bucket_depth) for sub_name, sub_value in leaf.buckets or ())
                break
            else:
                buckets.pop()

    def _elements(self, value, name, depth):
        """(leaf, depth) of the leaves of the bucket whose header (and inline page) is value, in key order."""
        if len(value) < _BUCKET_HEADER.size:
            raise BboltError('bucket %r has a header of %d bytes' % (bytes(name), len(value)))
        root = _BUCKET_HEADER.unpack_from(value, 0)[0]
        if root != 0:
            return self._tree(root, depth + 1)
        if depth + 1 > MAX_DEPTH:
            raise BboltError('inline bucket %r: more than %d levels of pages and nested buckets' % (
                bytes(name), MAX_DEPTH))
        try:
            leaf = summarize_inline(memoryview(value)[_BUCKET_HEADER.size:])
        except BboltError as exc:
            raise BboltError('inline bucket %r: %s' % (bytes(name), exc))
        if leaf.problem:
            raise BboltError('inline bucket %r: %s' % (bytes(name), leaf.problem))
        return [(leaf, depth + 1)]

    def _tree(self, root, depth):
        last = None
        for leaf, level in tree_pages(root, lambda pgid, stack: self._page(pgid, stack, depth + len(stack))):
            if leaf.problem:
                raise BboltError('a leaf of the tree at page %d: %s' % (root, leaf.problem))
            if leaf.count:
                if last is not None and leaf.first <= last:
                    self.problem('page %d tree: key %r after %r: keys out of order' % (
                        root, leaf.first[:64], last[:64]))
                if leaf.disorder is not None:
                    self.problem('page %d tree: key %r after %r: keys out of order' % (
                        root, leaf.disorder[0][:64], leaf.disorder[1][:64]))
                last = leaf.last
            yield leaf, depth + level

    def _page(self, pgid, stack, depth):
        if pgid >= self.high_water or pgid < 2:
            raise BboltError('page %d: out of bounds (high water mark %d, stack %s)' % (pgid, self.high_water, stack))
        if depth > MAX_DEPTH:
            raise BboltError('page %d: more than %d levels of pages and nested buckets (stack %s)' % (
                pgid, MAX_DEPTH, stack))
        if self.reachable[pgid]:
            self.reach(pgid, 0, stack)
            return None
        summary = self.pages.get(pgid)
        if summary is None or summary[0] == 'freelist':
            raise BboltError('page %d: not a branch or leaf page, where the tree points to it (stack %s)' % (
                pgid, stack))
        kind, what, overflow = summary
        if kind == 'bad':
            raise BboltError('page %d: %s (stack %s)' % (pgid, what, stack))
        if not self.reach(pgid, overflow, stack):
            return None
        if self.freed is not None and self.freed[pgid]:
            self.problem('page %d: reachable freed' % pgid)
        return kind, what
