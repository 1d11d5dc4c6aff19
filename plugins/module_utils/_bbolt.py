# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: a read-only reader of bbolt (BoltDB) files in pure Python: etcd's backend database and snapshots.

What ``etcdutl snapshot status`` reads, without an etcd binary on the host. The format (go.etcd.io/bbolt
``page.go``, ``db.go``, ``bucket.go``, ``tx_check.go``), little-endian as on every platform etcd ships for:

* The file is a run of pages of ``page_size`` bytes; page N starts at ``N * page_size``. A page starts with a
  16-byte header: id (u64), flags (u16: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist), count (u16),
  overflow (u32); a page with overflow > 0 spans 1 + overflow pages.
* Pages 0 and 1 are meta pages: magic 0xED0CDAED, version 2, page size, flags, the root bucket (root page,
  sequence), the freelist page, the high-water page id, the transaction id and an FNV-1a 64 checksum of the
  fields before it. The valid one with the higher transaction id is the current one.
* A bucket is a B+tree. Branch elements are (pos u32, ksize u32, child page u64), leaf elements (flags u32,
  pos u32, ksize u32, vsize u32), 16 bytes each after the page header; ``pos`` counts from the element
  itself. A leaf element with flag 0x01 is a sub-bucket: its value is the bucket header (root page u64,
  sequence u64) followed, when root is 0, by an inline leaf page holding the sub-bucket's elements.
* The freelist page lists free page ids (u64 each); a count of 0xFFFF means the real count is the first u64.

``BboltFile.walk()`` visits every bucket and key in bbolt's order (``Cursor.First``/``Next``, ``ForEach``) and
checks the file the way ``tx.Check()`` does (every page below the high-water mark reachable exactly once or
free, page types, bounds, key order), so a damaged snapshot fails like it does with etcdutl.
Bytes after the last page (the 32-byte sha256 trailer of an etcd snapshot) are ignored, as bbolt does.

Pages are read with ``os.pread``, one page (with its overflow pages) at a time, into a bytes object that is
dropped once its elements are visited. The file is not memory-mapped: a mapped page that was read counts in
the process's resident memory (a walk touches every page of the database), and a backup module must stay
under its memory bound whatever the database size. Only the page being read, the child ids of the branch
pages above it and the integrity check's ``reachable``/``freed`` maps (one byte per page each: 0.5 MiB per GiB
of database at 4 KiB pages) are held.

A snapshot read as it streams, without a file: ``_bbolt_stream`` (the same status from the same format).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER_SIZE = 16
ELEMENT_SIZE = 16
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01
NO_FREELIST = 0xFFFFFFFFFFFFFFFF
# Where bbolt looks for the first meta page when page 0 is damaged: the OS page size it was written with.
FALLBACK_PAGE_SIZE = 4096
# How many integrity problems are listed before the rest are only counted.
MAX_PROBLEMS = 20

_PAGE_HEADER = struct.Struct('<QHHI')
_META = struct.Struct('<IIIIQQQQQQ')
_BRANCH_ELEMENT = struct.Struct('<IIQ')
_LEAF_ELEMENT = struct.Struct('<IIII')
_BUCKET_HEADER = struct.Struct('<QQ')
_U64 = struct.Struct('<Q')


class BboltError(Exception):
    """The file is not a bbolt database, or is damaged; the message says where."""


def fnv64a(data):
    """FNV-1a 64, bbolt's meta page checksum."""
    value = 0xcbf29ce484222325
    for byte in bytearray(data):
        value = ((value ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return value


class Meta(object):
    """One meta page's fields."""

    def __init__(self, raw, offset):
        (self.magic, self.version, self.page_size, self.flags, self.root, self.sequence, self.freelist, self.pgid,
         self.txid, self.checksum) = _META.unpack_from(raw, offset)
        self.valid_checksum = fnv64a(raw[offset:offset + _META.size - 8]) == self.checksum

    def problem(self):
        """Why this meta page cannot be used, or None."""
        if self.magic != MAGIC:
            return 'not a bbolt database (bad magic number)'
        if self.version != VERSION:
            return 'unsupported bbolt version %d' % self.version
        if not self.valid_checksum:
            return 'meta page checksum mismatch'
        return None


class BboltFile(object):
    """A bbolt file opened read-only (pages read with pread, not mapped); use as a context manager."""

    def __init__(self, path):
        self.path = path
        try:
            self._file = open(path, 'rb')
        except (IOError, OSError) as exc:
            raise BboltError('cannot open %s: %s' % (path, exc.strerror or exc))
        try:
            self._fd = self._file.fileno()
            self.file_size = os.fstat(self._fd).st_size
            self._check_size(self.file_size)
            self.meta = self._read_meta()
        except (IOError, OSError) as exc:
            self._file.close()
            raise BboltError('cannot read %s: %s' % (path, exc.strerror or exc))
        except BboltError:
            self._file.close()
            raise
        self.page_size = self.meta.page_size
        self.high_water = self.meta.pgid

    def _check_size(self, size):
        if size is not None and size < 2 * PAGE_HEADER_SIZE + _META.size:
            raise BboltError('%s is not a bbolt database: %d bytes is too small' % (self.path, size))

    def _check_high_water(self, meta, size):
        if size is not None and meta.pgid * meta.page_size > size:
            raise BboltError('%s is truncated: the database needs %d bytes, the file has %d' % (
                self.path, meta.pgid * meta.page_size, size))

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- pages ----------------------------------------------------------------------------------------

    def read(self, offset, size):
        """size bytes of the file at offset (BboltError when the file is shorter: it changed under us)."""
        try:
            data = os.pread(self._fd, size, offset)
        except (IOError, OSError) as exc:
            raise BboltError('cannot read %s at offset %d: %s' % (self.path, offset, exc.strerror or exc))
        if len(data) != size:
            raise BboltError('%s: %d bytes at offset %d read as %d: the file is truncated' % (
                self.path, size, offset, len(data)))
        return data

    def _read_meta(self):
        """The current meta page, chosen as bbolt's db.meta() does."""
        first = Meta(self.read(PAGE_HEADER_SIZE, _META.size), 0)
        page_size = first.page_size
        if first.problem() is not None:
            # bbolt then looks at the second meta page at the page size of the OS it runs on
            page_size = FALLBACK_PAGE_SIZE
        candidates = [first]
        if (page_size + PAGE_HEADER_SIZE + _META.size) <= self.file_size:
            candidates.append(Meta(self.read(page_size + PAGE_HEADER_SIZE, _META.size), 0))
        candidates.sort(key=lambda meta: meta.txid, reverse=True)
        for meta in candidates:
            if meta.problem() is None:
                if meta.page_size < 512 or meta.page_size & (meta.page_size - 1):
                    raise BboltError('%s: invalid page size %d in the meta page' % (self.path, meta.page_size))
                self._check_high_water(meta, self.file_size)
                return meta
        raise BboltError('%s is not a valid bbolt database: %s' % (
            self.path, '; '.join(sorted(set(meta.problem() for meta in candidates)))))

    @property
    def size(self):
        """The database size as bbolt's ``tx.Size()`` (high-water page id x page size): etcd's totalSize."""
        return self.high_water * self.page_size

    def page_header(self, pgid):
        """(id, flags, count, overflow) of page pgid; raises BboltError when it lies outside the database."""
        if pgid >= self.high_water:
            raise BboltError('%s: page %d is out of bounds (high water mark %d)' % (self.path, pgid, self.high_water))
        return _PAGE_HEADER.unpack(self.read(pgid * self.page_size, PAGE_HEADER_SIZE))

    def page(self, pgid):
        """(header, data) of page pgid below the high-water mark: data holds the page and its overflow pages,
        or the first page only when the overflow would go past the high-water mark (the caller says so)."""
        data = self.read(pgid * self.page_size, self.page_size)
        header = _PAGE_HEADER.unpack_from(data, 0)
        overflow = header[3]
        if overflow and pgid + overflow < self.high_water:
            # read again whole rather than joined to the first page: one copy of a large value, not two
            data = self.read(pgid * self.page_size, (1 + overflow) * self.page_size)
        return header, data

    # -- walking --------------------------------------------------------------------------------------

    def walk(self, visit_bucket, visit_item, check=True):
        """Visit every top-level bucket and its keys in bbolt's order; check the file's integrity.

        visit_bucket(name) is called for each top-level bucket; visit_item(key, value) for each element of it,
        value None for a nested bucket (as ``Bucket.ForEach``). Raises BboltError for a damaged file, listing
        what ``tx.Check()`` would report, before or after the visits (do not trust them when it raises).
        """
        walker = _Walker(self, check)
        walker.run(visit_bucket, visit_item)
        if walker.problems:
            listed = walker.problems[:MAX_PROBLEMS]
            more = len(walker.problems) - len(listed)
            raise BboltError('%s: integrity check failed, %d error(s): %s%s' % (
                self.path, len(walker.problems), '; '.join(listed), ' (and %d more)' % more if more else ''))


class _Walker(object):
    """One pass over the tree: yields buckets and items, marks pages, collects integrity problems."""

    def __init__(self, bolt, check):
        self.bolt = bolt
        self.page_size = bolt.page_size
        self.high_water = bolt.high_water
        self.check = check
        self.problems = []
        self.reachable = bytearray(self.high_water) if check else None
        self.freed = bytearray(self.high_water) if check else None

    def problem(self, text):
        self.problems.append(text)

    def run(self, visit_bucket, visit_item):
        meta = self.bolt.meta
        if self.check:
            self._load_freelist(meta)
            for pgid in (0, 1):
                if pgid < self.high_water:
                    self.reachable[pgid] = 1
        if meta.root == 0:
            return  # an empty root cannot be inline at the top level
        for name, value, flags in self._tree(meta.root):
            if not flags & BUCKET_LEAF_FLAG:
                raise BboltError('%s: top-level key %r is not a bucket' % (self.bolt.path, bytes(name)))
            visit_bucket(name)
            for key, sub_value, sub_flags in self._bucket(value, name):
                if sub_flags & BUCKET_LEAF_FLAG:
                    visit_item(key, None)
                    # Nested buckets are walked for the integrity check only: etcd has none.
                    for dummy in self._bucket_all(sub_value, key):
                        pass
                else:
                    visit_item(key, sub_value)
        if self.check:
            self._unreachable(meta)

    def _load_freelist(self, meta):
        if meta.freelist == NO_FREELIST:
            self.freed = None  # bbolt rebuilds it from what is unreachable: nothing to compare
            return
        try:
            dummy, flags, count, overflow = self.bolt.page_header(meta.freelist)
        except BboltError as exc:
            self.problem('freelist: %s' % exc)
            return
        if flags != FREELIST:
            self.problem('page %d: invalid type: freelist expected, flags 0x%x' % (meta.freelist, flags))
            return
        try:
            data = self.bolt.read(meta.freelist * self.page_size, (1 + overflow) * self.page_size)
        except BboltError as exc:
            self.problem('freelist: %s' % exc)
            return
        start = PAGE_HEADER_SIZE
        if count == 0xFFFF:
            count = _U64.unpack_from(data, start)[0]
            start += 8
        end = start + 8 * count
        if end > len(data):
            self.problem('page %d: freelist of %d ids overflows its pages' % (meta.freelist, count))
            return
        for index in range(overflow + 1):
            if meta.freelist + index < self.high_water:
                self.reachable[meta.freelist + index] = 1
        for (pgid,) in struct.iter_unpack('<Q', data[start:end]):
            if pgid >= self.high_water:
                self.problem('page %d: freed page out of bounds (high water mark %d)' % (pgid, self.high_water))
            elif self.freed[pgid]:
                self.problem('page %d: already freed' % pgid)
            else:
                self.freed[pgid] = 1

    def _unreachable(self, meta):
        if self.freed is None:
            return
        reachable, freed = self.reachable, self.freed
        for pgid in range(self.high_water):
            if not reachable[pgid] and not freed[pgid]:
                self.problem('page %d: unreachable unfreed' % pgid)

    # -- trees ----------------------------------------------------------------------------------------

    def _bucket(self, value, name):
        """The elements of a bucket whose header (and inline page) is value."""
        if len(value) < _BUCKET_HEADER.size:
            raise BboltError('%s: bucket %r has a header of %d bytes' % (self.bolt.path, bytes(name), len(value)))
        root = _BUCKET_HEADER.unpack_from(value, 0)[0]
        if root == 0:
            return self._inline(value, name)
        return self._tree(root)

    def _bucket_all(self, value, name):
        for key, sub_value, flags in self._bucket(value, name):
            yield key, sub_value, flags
            if flags & BUCKET_LEAF_FLAG:
                yield from self._bucket_all(sub_value, key)

    def _inline(self, value, name):
        """Elements of an inline bucket: a leaf page stored in the bucket's value after its header."""
        page = bytes(value[_BUCKET_HEADER.size:])
        if len(page) < PAGE_HEADER_SIZE:
            raise BboltError('%s: inline bucket %r is cut short' % (self.bolt.path, bytes(name)))
        dummy, flags, count, dummy = _PAGE_HEADER.unpack_from(page, 0)
        if flags != LEAF:
            raise BboltError('%s: inline bucket %r: page flags 0x%x, leaf expected' % (self.bolt.path, bytes(name),
                                                                                       flags))
        return self._leaf_elements(page, 0, count, len(page), 'inline bucket %r' % bytes(name))

    def _tree(self, root):
        """Leaf elements of the B+tree rooted at page root, in key order; pages are marked as reached."""
        last = None
        for key, value, flags in self._pages(root, []):
            if self.check and last is not None and key <= last:
                self.problem('page %d tree: key %r after %r: keys out of order' % (
                    root, bytes(key)[:64], bytes(last)[:64]))
            last = key
            yield key, value, flags

    def _pages(self, pgid, stack):
        bolt = self.bolt
        if pgid >= self.high_water or pgid < 2:
            raise BboltError('%s: page %d: out of bounds (high water mark %d, stack %s)' % (
                bolt.path, pgid, self.high_water, stack))
        (page_id, flags, count, overflow), data = bolt.page(pgid)
        if page_id != pgid:
            raise BboltError('%s: page %d: its header says page %d (stack %s)' % (bolt.path, pgid, page_id, stack))
        if pgid + overflow >= self.high_water:
            raise BboltError('%s: page %d: overflow of %d pages goes past the high water mark %d' % (
                bolt.path, pgid, overflow, self.high_water))
        if self.check:
            for index in range(overflow + 1):
                if self.reachable[pgid + index]:
                    self.problem('page %d: multiple references (stack: %s)' % (pgid + index, stack + [pgid]))
                self.reachable[pgid + index] = 1
            if self.freed is not None and self.freed[pgid]:
                self.problem('page %d: reachable freed' % pgid)
        if flags == LEAF:
            return self._leaf_elements(data, 0, count, len(data), 'page %d' % pgid)
        if flags == BRANCH:
            return self._branch(data, count, stack + [pgid])
        raise BboltError('%s: page %d: invalid type: flags 0x%x where a branch or leaf page belongs (stack %s)' % (
            bolt.path, pgid, flags, stack))

    def _branch(self, data, count, stack):
        if PAGE_HEADER_SIZE + count * ELEMENT_SIZE > len(data):
            raise BboltError('%s: page %d: %d elements do not fit in the page' % (self.bolt.path, stack[-1], count))
        children = [_BRANCH_ELEMENT.unpack_from(data, PAGE_HEADER_SIZE + index * ELEMENT_SIZE)[2]
                    for index in range(count)]
        del data  # only the child ids are needed while the children are walked
        for child in children:
            yield from self._pages(child, stack)

    def _leaf_elements(self, buf, start, count, end, where):
        unpack = _LEAF_ELEMENT.unpack_from
        element = start + PAGE_HEADER_SIZE
        if element + count * ELEMENT_SIZE > end:
            raise BboltError('%s: %s: %d elements do not fit in the page' % (self.bolt.path, where, count))
        for dummy in range(count):
            flags, pos, ksize, vsize = unpack(buf, element)
            key_start = element + pos
            value_end = key_start + ksize + vsize
            if value_end > end:
                raise BboltError('%s: %s: an element points past the end of its page' % (self.bolt.path, where))
            yield buf[key_start:key_start + ksize], buf[key_start + ksize:value_end], flags
            element += ELEMENT_SIZE
