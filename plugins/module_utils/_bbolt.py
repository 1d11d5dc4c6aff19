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
# The most pages (branch, leaf, inline bucket) on a path from the meta page. bbolt keeps at least 2 children in
# a branch page but the root's (node.rebalance merges the others), so a tree of N pages is at most log2(N) + 1
# deep: 22 for 8 GiB of 4 KiB pages, 33 for 2^32 pages; etcd's trees are the root bucket's (1 or 2 levels) and a
# bucket's below it. Nested buckets (etcd has none) add their trees' levels.
MAX_DEPTH = 64

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
        if walker.failure():
            raise BboltError('%s: %s' % (self.path, walker.failure()))


def tree_pages(root, read):
    """What read(pgid, stack) gives of each leaf of the B+tree rooted at page root, in key order, without recursion:
    yields (what, len(stack)) of each ('leaf', what) read gives; ('branch', child ids) is walked into; None is a
    page not to walk into. stack: the branch pages above (read bounds the depth)."""
    stack = []
    todo = [[root]]  # at each level, the child ids left (the next last)
    while todo:
        if not todo[-1]:
            todo.pop()
            if stack:
                stack.pop()
            continue
        pgid = todo[-1].pop()
        page = read(pgid, stack)
        if page is not None and page[0] == 'branch':
            stack.append(pgid)
            todo.append(page[1][::-1])
        elif page is not None:
            yield page[1], len(stack)


class IntegrityCheck(object):
    """What tx.Check() keeps over a walk of the trees: pages reached, pages freed, the problems found. Both walks
    (this file's and _bbolt_stream's) mark each page reached once: a page reached again, through a cycle or a second
    reference, is a problem and is not walked into again, so no file makes a walk loop or repeat itself."""

    def __init__(self, high_water, freed):
        self.high_water = high_water
        self.problems = []  # the first MAX_PROBLEMS
        self.count = 0      # and how many in all
        self.reachable = bytearray(high_water)
        self.freed = bytearray(high_water) if freed else None
        self.freelist = None  # (pgid, overflow) of the freelist, marked reachable once the trees are walked
        for pgid in (0, 1):
            if pgid < high_water:
                self.reachable[pgid] = 1

    def problem(self, text):
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        self.count += 1

    def failure(self):
        """The integrity check's message, or None."""
        if not self.count:
            return None
        more = self.count - len(self.problems)
        return 'integrity check failed, %d error(s): %s%s' % (
            self.count, '; '.join(self.problems), ' (and %d more)' % more if more else '')

    def reach(self, pgid, overflow, stack):
        """Mark pages pgid to pgid + overflow reachable; False (a problem) when one of them is already: then only
        those before it are marked, so that no page is marked, or looked at here, twice over the walk."""
        end = pgid + overflow + 1
        hit = self.reachable.find(1, pgid, end)
        stop = end if hit < 0 else hit
        self.reachable[pgid:stop] = b'\x01' * (stop - pgid)
        if hit >= 0:
            self.problem('page %d: multiple references (stack: %s)%s' % (
                hit, stack + [pgid], ', a cycle' if hit in stack else ''))
        return hit < 0

    def free(self, pgid, overflow, ids):
        """The freelist page pgid (and overflow) lists ids."""
        self.freelist = (pgid, overflow)
        high_water, freed = self.high_water, self.freed
        for pgid in ids:
            if pgid >= high_water:
                self.problem('page %d: freed page out of bounds (high water mark %d)' % (pgid, high_water))
            elif freed[pgid]:
                self.problem('page %d: already freed' % pgid)
            else:
                freed[pgid] = 1

    def unreachable(self):
        """Once the trees are walked: the freelist's pages are reached, every other page is reached or free."""
        if self.freelist is not None:
            self.reach(self.freelist[0], self.freelist[1], ['freelist'])
        if self.freed is None:
            return
        reachable, freed = self.reachable, self.freed
        for pgid in range(self.high_water):
            if not reachable[pgid] and not freed[pgid]:
                self.problem('page %d: unreachable unfreed' % pgid)


class _Walker(IntegrityCheck):
    """One pass over the trees: yields buckets and items, marks pages, collects integrity problems. Iterative: no
    path from the meta page is more than MAX_DEPTH pages and inline buckets long."""

    def __init__(self, bolt, check):
        # reachable is kept without the check too: it is what makes each page read once
        super(_Walker, self).__init__(bolt.high_water, freed=check)
        self.bolt = bolt
        self.page_size = bolt.page_size
        self.check = check

    def run(self, visit_bucket, visit_item):
        meta = self.bolt.meta
        if self.check:
            self._load_freelist(meta)
        if meta.root != 0:  # an empty root cannot be inline at the top level
            for name, value, flags, depth in self._tree(meta.root, 1):
                if not flags & BUCKET_LEAF_FLAG:
                    raise BboltError('%s: top-level key %r is not a bucket' % (self.bolt.path, bytes(name)))
                visit_bucket(name)
                for key, sub_value, sub_flags, sub_depth in self._bucket(value, name, depth):
                    if sub_flags & BUCKET_LEAF_FLAG:
                        visit_item(key, None)
                        self._nested(sub_value, key, sub_depth)  # for the integrity check only: etcd has none
                    else:
                        visit_item(key, sub_value)
        if self.check:
            self.unreachable()

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
        if meta.freelist + overflow >= self.high_water:
            self.problem('page %d: freelist overflow of %d pages goes past the high water mark %d' % (
                meta.freelist, overflow, self.high_water))
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
        self.free(meta.freelist, overflow, (pgid for (pgid,) in struct.iter_unpack('<Q', data[start:end])))

    # -- trees ----------------------------------------------------------------------------------------

    def _bucket(self, value, name, depth):
        """(key, value, flags, depth) of the elements of a bucket whose header (and inline page) is value, held
        by a page at depth."""
        if len(value) < _BUCKET_HEADER.size:
            raise BboltError('%s: bucket %r has a header of %d bytes' % (self.bolt.path, bytes(name), len(value)))
        root = _BUCKET_HEADER.unpack_from(value, 0)[0]
        if root != 0:
            return self._tree(root, depth + 1)
        if depth + 1 > MAX_DEPTH:
            raise BboltError('%s: inline bucket %r: more than %d levels of pages and nested buckets' % (
                self.bolt.path, bytes(name), MAX_DEPTH))
        # an inline bucket: a leaf page in the bucket's value after its header (a view: nested ones are not copied)
        page = memoryview(value)[_BUCKET_HEADER.size:]
        if len(page) < PAGE_HEADER_SIZE:
            raise BboltError('%s: inline bucket %r is cut short' % (self.bolt.path, bytes(name)))
        dummy, flags, count, dummy = _PAGE_HEADER.unpack_from(page, 0)
        if flags != LEAF:
            raise BboltError('%s: inline bucket %r: page flags 0x%x, leaf expected' % (self.bolt.path, bytes(name),
                                                                                       flags))
        return ((bytes(key), sub_value, sub_flags, depth + 1) for key, sub_value, sub_flags in self._leaf_elements(
            page, count, 'inline bucket %r' % bytes(name)))

    def _nested(self, value, name, depth):
        """Walk a nested bucket and the buckets nested in it (a stack of buckets, each deeper than the last)."""
        buckets = [self._bucket(value, name, depth)]
        while buckets:
            for key, sub_value, flags, sub_depth in buckets[-1]:
                if flags & BUCKET_LEAF_FLAG:
                    buckets.append(self._bucket(sub_value, key, sub_depth))
                    break
            else:
                buckets.pop()

    def _tree(self, root, depth):
        """(key, value, flags, depth) of the leaf elements of the B+tree rooted at page root (at depth), in key
        order; pages are marked as reached."""
        last = None
        for elements, level in tree_pages(root, lambda pgid, stack: self._page(pgid, stack, depth + len(stack))):
            level += depth
            for key, value, flags in elements:
                if self.check and last is not None and key <= last:
                    self.problem('page %d tree: key %r after %r: keys out of order' % (root, key[:64], last[:64]))
                last = key
                yield key, value, flags, level

    def _page(self, pgid, stack, depth):
        """('branch', child ids) or ('leaf', its elements) of page pgid, None when it was reached already."""
        bolt = self.bolt
        if pgid >= self.high_water or pgid < 2:
            raise BboltError('%s: page %d: out of bounds (high water mark %d, stack %s)' % (
                bolt.path, pgid, self.high_water, stack))
        if depth > MAX_DEPTH:
            raise BboltError('%s: page %d: more than %d levels of pages and nested buckets (stack %s)' % (
                bolt.path, pgid, MAX_DEPTH, stack))
        if self.reachable[pgid]:  # checked before it is read: a page is read once however often it is referred to
            self.reach(pgid, 0, stack)
            return None
        (page_id, flags, count, overflow), data = bolt.page(pgid)
        if page_id != pgid:
            raise BboltError('%s: page %d: its header says page %d (stack %s)' % (bolt.path, pgid, page_id, stack))
        if pgid + overflow >= self.high_water:
            raise BboltError('%s: page %d: overflow of %d pages goes past the high water mark %d' % (
                bolt.path, pgid, overflow, self.high_water))
        if flags not in (LEAF, BRANCH):
            raise BboltError('%s: page %d: invalid type: flags 0x%x where a branch or leaf page belongs (stack %s)' % (
                bolt.path, pgid, flags, stack))
        if not self.reach(pgid, overflow, stack):
            return None
        if self.freed is not None and self.freed[pgid]:
            self.problem('page %d: reachable freed' % pgid)
        if flags == LEAF:
            return 'leaf', self._leaf_elements(data, count, 'page %d' % pgid)
        if PAGE_HEADER_SIZE + count * ELEMENT_SIZE > len(data):
            raise BboltError('%s: page %d: %d elements do not fit in the page' % (bolt.path, pgid, count))
        return 'branch', [_BRANCH_ELEMENT.unpack_from(data, PAGE_HEADER_SIZE + index * ELEMENT_SIZE)[2]
                          for index in range(count)]

    def _leaf_elements(self, buf, count, where):
        """(key, value, flags) of a leaf page's elements (slices of buf); their keys and values must follow one another
        after the elements, as bbolt writes them (node.write): then what is yielded is at most the page."""
        unpack = _LEAF_ELEMENT.unpack_from
        end = len(buf)
        element = PAGE_HEADER_SIZE
        free = element + count * ELEMENT_SIZE  # where the next key may start
        if free > end:
            raise BboltError('%s: %s: %d elements do not fit in the page' % (self.bolt.path, where, count))
        for index in range(count):
            flags, pos, ksize, vsize = unpack(buf, element)
            key_start = element + pos
            value_end = key_start + ksize + vsize
            if value_end > end:
                raise BboltError('%s: %s: an element points past the end of its page' % (self.bolt.path, where))
            if key_start < free:
                raise BboltError('%s: %s: element %d overlaps the elements or the values before it' % (
                    self.bolt.path, where, index))
            free = value_end
            yield buf[key_start:key_start + ksize], buf[key_start + ksize:value_end], flags
            element += ELEMENT_SIZE
