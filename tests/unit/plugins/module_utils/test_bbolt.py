# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure-Python bbolt reader: real etcd snapshots (branch pages, overflow pages, inline buckets) read in
bbolt's order, and hand-built files for what etcd's snapshots never hold (a freelist page) and for each damage
that bbolt's tx.Check() reports."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt import (
    BRANCH, BUCKET_LEAF_FLAG, FREELIST, LEAF, MAGIC, META, NO_FREELIST, BboltError, BboltFile, fnv64a,
)

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'snapshots')
PAGE = 4096
ETCD_BUCKETS = [b'alarm', b'auth', b'authRoles', b'authUsers', b'cluster', b'key', b'lease', b'members',
                b'members_removed', b'meta']


def walk(path, check=True):
    """[(bucket, [(key, value)])] in bbolt's order."""
    out = []
    with BboltFile(path) as bolt:
        bolt.walk(lambda name: out.append((bytes(name), [])),
                  lambda key, value: out[-1][1].append((bytes(key), None if value is None else bytes(value))),
                  check=check)
    return out


# -- real etcd snapshots --------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['etcd-3.5.db', 'etcd-3.6.db'])
def test_an_etcd_snapshot_has_etcds_buckets_and_every_revision_in_order(name):
    buckets = dict(walk(os.path.join(FIXTURES, name)))
    assert sorted(buckets) == [b for b in ETCD_BUCKETS if b in buckets] and b'key' in buckets and b'meta' in buckets
    revisions = [struct.unpack('>Q', key[:8])[0] for key, dummy in buckets[b'key']]
    assert revisions == sorted(revisions) and revisions[-1] == 103
    # the 20 000-byte value put last is read whole across its overflow pages
    assert max(len(value) for dummy, value in buckets[b'key']) > 20000


def test_the_fixture_holds_branch_overflow_and_inline_pages():
    # what the reader must handle is really in the file it is tested on
    path = os.path.join(FIXTURES, 'etcd-3.6.db')
    with open(path, 'rb') as handle:
        data = handle.read()
    headers = [struct.unpack_from('<QHHI', data, pgid * PAGE) for pgid in range(2, 16)]
    assert any(flags == BRANCH for dummy, flags, dummy, dummy in headers)
    assert any(flags == LEAF and overflow > 0 for dummy, flags, dummy, overflow in headers)
    with BboltFile(path) as bolt:
        assert bolt.meta.freelist == NO_FREELIST  # etcd runs bbolt with NoFreelistSync
        assert bolt.size == 16 * PAGE and bolt.file_size == 16 * PAGE + 32
    with BboltFile(path) as bolt:
        buckets = []
        bolt.walk(buckets.append, lambda key, value: None)
        root = bolt.meta.root
    # the root bucket's leaf: each element is a top-level bucket whose header says where its tree is
    roots = {}
    dummy, flags, count, dummy = struct.unpack_from('<QHHI', data, root * PAGE)
    for index in range(count):
        element = root * PAGE + 16 + index * 16
        dummy, pos, ksize, dummy = struct.unpack_from('<IIII', data, element)
        roots[data[element + pos:element + pos + ksize]] = struct.unpack_from('<Q', data, element + pos + ksize)[0]
    inline = [name for name, root in roots.items() if root == 0]
    assert inline and b'key' not in inline and sorted(roots) == [bytes(b) for b in buckets]


def test_the_trailer_after_the_last_page_is_ignored(tmp_path):
    with open(os.path.join(FIXTURES, 'etcd-3.6.db'), 'rb') as handle:
        data = handle.read()
    bare = tmp_path / 'db'
    bare.write_bytes(data[:-32])
    assert walk(str(bare)) == walk(os.path.join(FIXTURES, 'etcd-3.6.db'))


# -- hand-built files -----------------------------------------------------------------------------------

def page(pgid, flags, count, body, overflow=0):
    data = struct.pack('<QHHI', pgid, flags, count, overflow) + body
    size = PAGE * (1 + overflow)
    assert len(data) <= size
    return data + b'\0' * (size - len(data))


def leaf_body(items):
    """items: [(key, value, flags)] -> elements then data, pos relative to each element."""
    head, tail = b'', b''
    count = len(items)
    for index, (key, value, flags) in enumerate(items):
        pos = (count - index) * 16 + len(tail)
        head += struct.pack('<IIII', flags, pos, len(key), len(value))
        tail += key + value
    return head + tail


def branch_body(children):
    """children: [(first key, pgid)]."""
    head, tail = b'', b''
    count = len(children)
    for index, (key, pgid) in enumerate(children):
        pos = (count - index) * 16 + len(tail)
        head += struct.pack('<IIQ', pos, len(key), pgid)
        tail += key
    return head + tail


def meta(pgid, root, freelist, high_water, txid, damage=False):
    fields = struct.pack('<IIIIQQQQQ', MAGIC, 2, PAGE, 0, root, 0, freelist, high_water, txid)
    checksum = fnv64a(fields) ^ (1 if damage else 0)
    return page(pgid, META, 0, fields + struct.pack('<Q', checksum))


def bucket_value(root, inline_items=None):
    value = struct.pack('<QQ', root, 0)
    if inline_items is not None:
        value += struct.pack('<QHHI', 0, LEAF, len(inline_items), 0) + leaf_body(inline_items)
    return value


def build(path, freed=(8,), branch_children=None, leaf5=None, meta0_damage=False, meta1_damage=False,
          high_water=9, freelist=2):
    """0,1 meta; 2 freelist; 3 root leaf (bucket 'a' inline, bucket 'b' at 4); 4 branch -> 5, 6;
    5 leaf k1, k2; 6-7 leaf k3 with a 5000-byte value (overflow 1); 8 free."""
    big = b'v' * 5000
    pages = [
        meta(0, 3, freelist, high_water, 11, damage=meta0_damage),
        meta(1, 3, freelist, high_water, 10, damage=meta1_damage),
        page(2, FREELIST, len(freed), b''.join(struct.pack('<Q', f) for f in freed)),
        page(3, LEAF, 2, leaf_body([(b'a', bucket_value(0, [(b'x', b'1', 0), (b'y', b'2', 0)]), 1),
                                    (b'b', bucket_value(4), 1)])),
        page(4, BRANCH, len(branch_children or [1, 2]),
             branch_body(branch_children or [(b'k1', 5), (b'k3', 6)])),
        page(5, LEAF, 2, leaf_body(leaf5 or [(b'k1', b'v1', 0), (b'k2', b'v2', 0)])),
        page(6, LEAF, 1, leaf_body([(b'k3', big, 0)]), overflow=1),
        page(8, LEAF, 0, b''),
    ]
    with open(path, 'wb') as handle:
        handle.write(b''.join(pages))
    return path


def test_a_hand_built_file_reads_in_order_with_inline_and_overflow(tmp_path):
    path = build(str(tmp_path / 'ok.db'))
    assert walk(path) == [(b'a', [(b'x', b'1'), (b'y', b'2')]),
                          (b'b', [(b'k1', b'v1'), (b'k2', b'v2'), (b'k3', b'v' * 5000)])]
    with BboltFile(path) as bolt:
        assert bolt.meta.txid == 11 and bolt.size == 9 * PAGE


def test_a_damaged_first_meta_page_falls_back_to_the_second(tmp_path):
    path = build(str(tmp_path / 'm.db'), meta0_damage=True)
    with BboltFile(path) as bolt:
        assert bolt.meta.txid == 10
    assert walk(path)[0][0] == b'a'


def test_two_damaged_meta_pages_are_refused(tmp_path):
    path = build(str(tmp_path / 'm.db'), meta0_damage=True, meta1_damage=True)
    with pytest.raises(BboltError) as caught:
        BboltFile(path)
    assert 'checksum' in str(caught.value)


def test_a_page_neither_reachable_nor_free(tmp_path):
    path = build(str(tmp_path / 'u.db'), freed=())
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'page 8: unreachable unfreed' in str(caught.value)


def test_a_reachable_page_in_the_freelist(tmp_path):
    path = build(str(tmp_path / 'f.db'), freed=(8, 5))
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'page 5: reachable freed' in str(caught.value)


def test_a_page_freed_twice(tmp_path):
    path = build(str(tmp_path / 'f.db'), freed=(8, 8))
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'page 8: already freed' in str(caught.value)


def test_a_page_referenced_twice(tmp_path):
    path = build(str(tmp_path / 'r.db'), branch_children=[(b'k1', 5), (b'k2', 5), (b'k3', 6)])
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'page 5: multiple references' in str(caught.value)


def test_keys_out_of_order(tmp_path):
    path = build(str(tmp_path / 'o.db'), leaf5=[(b'k2', b'v2', 0), (b'k1', b'v1', 0)])
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'out of order' in str(caught.value)
    # without the check, the order is what the file says
    assert [k for k, dummy in walk(path, check=False)[1][1]] == [b'k2', b'k1', b'k3']


def test_a_branch_pointing_at_the_freelist_page_is_an_invalid_type(tmp_path):
    path = build(str(tmp_path / 't.db'), branch_children=[(b'k1', 2), (b'k3', 6)])
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'invalid type' in str(caught.value)


def test_a_page_past_the_high_water_mark(tmp_path):
    path = build(str(tmp_path / 'h.db'), branch_children=[(b'k1', 5), (b'k3', 6), (b'k4', 8)], high_water=8,
                 freed=())
    with pytest.raises(BboltError) as caught:
        walk(path)
    assert 'out of bounds' in str(caught.value)


def test_a_file_shorter_than_its_pages_is_truncated(tmp_path):
    path = build(str(tmp_path / 's.db'), high_water=20)
    with pytest.raises(BboltError) as caught:
        BboltFile(path)
    assert 'truncated' in str(caught.value)


def test_not_a_bbolt_file(tmp_path):
    junk = tmp_path / 'junk'
    junk.write_bytes(b'\x01' * 9000)
    with pytest.raises(BboltError) as caught:
        BboltFile(str(junk))
    assert 'not a bbolt database' in str(caught.value) or 'not a valid bbolt database' in str(caught.value)


def test_an_empty_file(tmp_path):
    empty = tmp_path / 'empty'
    empty.write_bytes(b'')
    with pytest.raises(BboltError) as caught:
        BboltFile(str(empty))
    assert 'too small' in str(caught.value)


def test_an_unreadable_path_is_named(tmp_path):
    with pytest.raises(BboltError) as caught:
        BboltFile(str(tmp_path / 'none'))
    assert str(tmp_path / 'none') in str(caught.value)


# -- hostile files: each ends in a clear error naming the page, in linear time -------------------------------

def crafted(root, pages, high_water, freelist=NO_FREELIST):
    """Meta pages 0 and 1 (root, freelist, high water mark) and pages [(pgid, bytes)], zeros between them."""
    out = bytearray(meta(0, root, freelist, high_water, 11) + meta(1, root, freelist, high_water, 10))
    for pgid, data in pages:
        out += b'\0' * (pgid * PAGE - len(out))
        out[pgid * PAGE:pgid * PAGE + len(data)] = data
    return bytes(out + b'\0' * (high_water * PAGE - len(out)))


def one_bucket(pages, high_water, bucket=4, freelist=NO_FREELIST):
    """A root leaf at page 3 with bucket 'b' rooted at page bucket, then pages."""
    return crafted(3, [(3, page(3, LEAF, 1, leaf_body([(b'b', bucket_value(bucket), 1)])))] + pages, high_water,
                   freelist)


def raw_page(pgid, flags, count, overflow, body=b''):
    """The first page of a page whose header says what it likes (its overflow pages not written)."""
    return (struct.pack('<QHHI', pgid, flags, count, overflow) + body + b'\0' * PAGE)[:PAGE]


def nested_inline(levels):
    value = bucket_value(0, [(b'x', b'1', 0)])
    for dummy in range(levels):
        value = bucket_value(0, [(b'n', value, BUCKET_LEAF_FLAG)])
    return value


def branch_chain(levels):
    """Branch pages 4, 5 ... each with the next as its only child, then a leaf."""
    pages = [(pgid, page(pgid, BRANCH, 1, branch_body([(b'k', pgid + 1)]))) for pgid in range(4, 4 + levels)]
    pages.append((4 + levels, page(4 + levels, LEAF, 1, leaf_body([(b'k', b'v', 0)]))))
    return one_bucket(pages, 5 + levels)


def inline_file(levels):
    body = leaf_body([(b'b', nested_inline(levels), BUCKET_LEAF_FLAG)])
    overflow = (16 + len(body) - 1) // PAGE
    return crafted(3, [(3, page(3, LEAF, 1, body, overflow=overflow))], 4 + overflow)


def good_file():
    with open(build(os.path.join(os.environ.get('TMPDIR', '/tmp'), 'etcdops-good-%d.db' % os.getpid())),
              'rb') as handle:
        data = handle.read()
    os.unlink(handle.name)
    return data


HOSTILE = {
    # name: (bytes, what the error says, for the file walk and the stream alike)
    'a branch that is its own child': (
        lambda: one_bucket([(4, page(4, BRANCH, 1, branch_body([(b'k', 4)])))], 5),
        'page 4: multiple references (stack: [4, 4]), a cycle'),
    'a bucket rooted at the leaf that holds it': (
        lambda: one_bucket([(4, page(4, LEAF, 1, leaf_body([(b's', bucket_value(4), 1)])))], 5),
        'page 4: multiple references'),
    'a page whose overflow covers a page of the tree': (
        lambda: one_bucket([(4, page(4, BRANCH, 2, branch_body([(b'a', 5), (b'b', 6)]))),
                            (5, page(5, LEAF, 1, leaf_body([(b'a', b'1', 0)]), overflow=1)),
                            (6, page(6, LEAF, 1, leaf_body([(b'b', b'2', 0)])))], 7),
        'page 6: multiple references'),
    'a child page out of range': (
        lambda: one_bucket([(4, page(4, BRANCH, 1, branch_body([(b'k', 1 << 60)])))], 5),
        'page 1152921504606846976: out of bounds'),
    'a root page out of range': (lambda: crafted(1 << 63, [], 4), 'page 9223372036854775808: out of bounds'),
    'a freelist page out of range': (
        lambda: one_bucket([(4, page(4, LEAF, 0, b''))], 5, freelist=1 << 60), 'page 1152921504606846976 is out'),
    'a branch of 65535 elements': (lambda: one_bucket([(4, raw_page(4, BRANCH, 0xFFFF, 0))], 5),
                                   'page 4: 65535 elements do not fit in the page'),
    'a leaf of 65535 elements': (lambda: one_bucket([(4, raw_page(4, LEAF, 0xFFFF, 0))], 5),
                                 'page 4: 65535 elements do not fit in the page'),
    'a freelist of 2^60 ids': (
        lambda: one_bucket([(2, raw_page(2, FREELIST, 0xFFFF, 0, struct.pack('<Q', 1 << 60))),
                            (4, page(4, LEAF, 0, b''))], 5, freelist=2),
        'freelist of 1152921504606846976 ids overflows its pages'),
    'a freelist of 2^32 overflow pages': (
        lambda: one_bucket([(2, raw_page(2, FREELIST, 0, 0xFFFFFFFF)), (4, page(4, LEAF, 0, b''))], 5, freelist=2),
        'page 2: '),
    'an overflow past the high water mark': (
        lambda: one_bucket([(4, raw_page(4, LEAF, 0, 1000))], 5), 'page 4: '),
    'a key outside its page': (
        lambda: one_bucket([(4, raw_page(4, LEAF, 1, 0, struct.pack('<IIII', 0, 0xFFFFFFF0, 5, 5)))], 5),
        'an element points past the end of its page'),
    'two elements on the same bytes': (
        lambda: one_bucket([(4, raw_page(4, LEAF, 2, 0, struct.pack('<IIII', 0, 32, 1, 1) +
                                         struct.pack('<IIII', 0, 16, 1, 1) + b'kv'))], 5),
        'element 1 overlaps the elements or the values before it'),
    'inline buckets nested 70 deep': (lambda: inline_file(70), 'more than 64 levels of pages and nested buckets'),
    'a tree 70 branch pages deep': (lambda: branch_chain(70), 'more than 64 levels of pages and nested buckets'),
    'a file cut after its first meta page': (lambda: good_file()[:100], 'truncated'),
    'a file cut in a page': (lambda: good_file()[:5 * PAGE + 100], 'truncated'),
    'two damaged meta pages': (
        lambda: good_file()[:20] + b'\xff' * 8 + good_file()[28:PAGE + 20] + b'\xff' * 8 + good_file()[PAGE + 28:],
        'not a valid bbolt database'),
}


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_a_hostile_file_ends_in_a_clear_error(tmp_path, name):
    make, words = HOSTILE[name]
    path = tmp_path / 'hostile.db'
    path.write_bytes(make())
    with pytest.raises(BboltError) as caught:
        walk(str(path))
    assert words in str(caught.value) and str(path) in str(caught.value)


def test_nesting_just_within_the_limit_is_read():
    # 60 branch levels below the bucket's: 62 pages deep with the root leaf and the last leaf
    data = branch_chain(60)
    path = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'etcdops-deep-%d.db' % os.getpid())
    try:
        with open(path, 'wb') as handle:
            handle.write(data)
        assert walk(path) == [(b'b', [(b'k', b'v')])]
        with open(path, 'wb') as handle:
            handle.write(inline_file(60))
        assert walk(path)[0][0] == b'b'
    finally:
        os.unlink(path)


def many_references(count):
    """A branch (with overflow pages) whose count children are pages that each say they run to the high water
    mark: read whole every time, the walk would read count^2 / 2 pages."""
    first = 5 + 1 + (16 + 16 * count) // PAGE
    high_water = first + count
    body = branch_body([(b'k%05d' % index, first + index) for index in range(count)])
    overflow = (16 + len(body) - 1) // PAGE
    pages = [(4, page(4, BRANCH, count, body, overflow=overflow))]
    pages += [(pgid, raw_page(pgid, LEAF, 0, high_water - 1 - pgid)) for pgid in range(first, high_water)]
    return one_bucket(pages, high_water)


def cpu_seconds(function, repeat=3):
    best = None
    for dummy in range(repeat):
        started = time.process_time()
        function()
        spent = time.process_time() - started
        best = spent if best is None else min(best, spent)
    return best


def test_pages_referred_to_many_times_are_read_once(tmp_path):
    times = {}
    for count in (500, 2000):
        path = tmp_path / ('many%d.db' % count)
        path.write_bytes(many_references(count))

        def run():
            with pytest.raises(BboltError) as caught:
                walk(str(path))
            assert '%d error(s)' % (count - 1) in str(caught.value) and '(and %d more)' % (count - 21) in str(
                caught.value)
        times[count] = cpu_seconds(run)
    # linear: x4 (read whole each time, it would be x16); generous for a loaded machine
    assert times[2000] < 10 * times[500] + 0.05, times
