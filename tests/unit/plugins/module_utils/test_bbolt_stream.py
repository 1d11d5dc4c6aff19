# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status read from a snapshot as it streams (_bbolt_stream) against the status of the same bytes as a file
(_snapshot.database_status): real etcd snapshots and hand-built files cut in every way into chunks, large values
hashed as they pass and never held, a stale copy of a freed page over a live one, and each damage the file walk
reports, reported too."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import random
import struct
import tracemalloc

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _bbolt_stream, _snapshot
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt import BUCKET_LEAF_FLAG, FREELIST, LEAF
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt_stream import StreamStatus
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import SnapshotError, crc32c_combine
from ansible_collections.etcdops.etcd.tests.unit.plugins.module_utils.test_bbolt import (
    FIXTURES, HOSTILE, PAGE, branch_chain, build, bucket_value, cpu_seconds, crafted, inline_file, leaf_body, meta,
    one_bucket, page, raw_page,
)

SPLITS = [[1], [7, 4096, 100, 3], [4095, 4097], [32768], [262144], [1 << 30]]


def pieces(data, sizes, seed=0):
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(data):
        size = rng.choice(sizes)
        out.append(data[at:at + size])
        at += size
    return out


def streamed(data, sizes, seed=0):
    tee = StreamStatus(iter(pieces(data, sizes, seed)), source='the test stream')
    assert b''.join(tee) == data
    return tee.status()


def file_status(path):
    return _snapshot.database_status(str(path))


def assert_same(path, splits=None):
    with open(str(path), 'rb') as handle:
        data = handle.read()
    want = file_status(path)
    for seed, sizes in enumerate(splits or SPLITS):
        assert streamed(data, sizes, seed) == want, sizes
    return want


@pytest.mark.parametrize('name', ['etcd-3.5.db', 'etcd-3.6.db'])
def test_an_etcd_snapshot_in_any_chunks_has_the_files_status(name):
    status = assert_same(os.path.join(FIXTURES, name))
    assert status['revision'] > 0 and status['hashkv'] is not None


def test_a_hand_built_file_with_inline_buckets_overflow_and_a_freelist(tmp_path):
    assert_same(build(str(tmp_path / 'ok.db')))
    assert_same(build(str(tmp_path / 'm.db'), meta0_damage=True))  # the second meta page is the current one


# -- a key bucket of large values ---------------------------------------------------------------------------

def kv(key, value):
    """An mvccpb.KeyValue: key (1), mod_revision (3), value (5), as etcd writes them."""
    def field(number, data):
        size = len(data)
        out = bytearray([number << 3 | 2])
        while size >= 0x80:
            out.append(size & 0x7F | 0x80)
            size >>= 7
        out.append(size)
        return bytes(out) + data
    return field(1, key) + bytes([3 << 3, 5]) + field(5, value)


def revision(main, sub=0, tombstone=False):
    return struct.pack('>q', main) + b'_' + struct.pack('>q', sub) + (b't' if tombstone else b'')


def key_bucket_file(path, values, meta_items=(), storage_version=None, stale=False):
    """0,1 meta; 2 freelist; 3 root leaf: 'key' at 4, 'meta' inline; 4 branch; 5.. one leaf per value; a value
    of ~BIG or more spans overflow pages. stale: page 5 is free, and says it is a leaf with 2 overflow pages."""
    items = list(meta_items)
    if storage_version:
        items.append((b'storageVersion', storage_version, 0))
    leaves = []
    pgid = 6 if stale else 5
    for index, (key, value, tombstone) in enumerate(values):
        body = leaf_body([(revision(index + 2, tombstone=tombstone), kv(key, value), 0)])
        overflow = (PAGE_HEADER + len(body) - 1) // PAGE
        leaves.append((pgid, page(pgid, LEAF, 1, body, overflow=overflow), revision(index + 2)))
        pgid += 1 + overflow
    high_water = pgid
    branch = b''
    count = len(leaves)
    tail = b''
    for index, (child, dummy, first) in enumerate(leaves):
        branch += struct.pack('<IIQ', (count - index) * 16 + len(tail), len(first), child)
        tail += first
    pages = [
        meta(0, 3, 2, high_water, 11), meta(1, 3, 2, high_water, 10),
        page(2, FREELIST, 1, struct.pack('<Q', 5)) if stale else page(2, FREELIST, 0, b''),
        page(3, LEAF, 2, leaf_body([(b'key', bucket_value(4), BUCKET_LEAF_FLAG),
                                    (b'meta', bucket_value(0, sorted(items)), BUCKET_LEAF_FLAG)])),
        page(4, 0x01, count, branch + tail),
    ] + ([stale_page()] if stale else []) + [
        data for dummy, data, dummy in leaves]
    with open(str(path), 'wb') as handle:
        handle.write(b''.join(pages))
    return path


PAGE_HEADER = 16


def stale_page():
    """The first page of a freed leaf of 3 pages (its overflow pages were given out again)."""
    body = leaf_body([(revision(1), kv(b'/old', b'x' * 9000), 0)])
    return page(5, LEAF, 1, body, overflow=2)[:PAGE]


def test_large_values_are_hashed_as_they_pass_and_never_held(tmp_path, monkeypatch):
    rng = random.Random(3)
    values = [(b'/registry/configmaps/big%d' % index, bytes(bytearray(rng.getrandbits(8) for dummy in range(size))),
               False) for index, size in enumerate([200, 70000, 300000, 65536 - 40])]
    values.append((b'/registry/configmaps/big1', b'', True))  # a deletion of one of them
    path = key_bucket_file(tmp_path / 'big.db', values, storage_version=b'3.6.0')
    held = []
    real = _bbolt_stream._Reading.feed

    def feed(self, view, offset):
        done = real(self, view, offset)
        if self.end - self.start >= 70000:  # the pages of the 70 000 and 300 000-byte values
            held.append(len(self.held))
        return done
    monkeypatch.setattr(_bbolt_stream._Reading, 'feed', feed)
    status = assert_same(path)
    assert status['version'] == '3.6.0' and status['live_keys'] == 3 and status['total_key'] == 3
    assert status['revision'] == len(values) + 1
    # the 300 000-byte and 70 000-byte values went through: of their pages only the elements and keys were held
    assert held and max(held) < PAGE


def test_a_key_longer_than_the_first_bytes_kept_of_a_large_value(tmp_path):
    values = [(b'/k/' + b'x' * 5000, b'v' * 100000, False), (b'/k/' + b'x' * 5000, b'w' * 100000, False)]
    status = assert_same(key_bucket_file(tmp_path / 'longkey.db', values, storage_version=b'3.6.0'))
    assert status['live_keys'] == 1


def test_compaction_revisions_in_the_meta_bucket_decide_the_hashkv(tmp_path):
    values = [(b'/a', b'1', False), (b'/b', b'2' * 70000, False)]
    done = struct.pack('>q', 2)
    scheduled = struct.pack('>q', 3)
    finished = assert_same(key_bucket_file(tmp_path / 'f.db', values, meta_items=[
        (b'finishedCompactRev', done, 0), (b'scheduledCompactRev', done, 0)]))
    pending = assert_same(key_bucket_file(tmp_path / 'p.db', values, meta_items=[
        (b'finishedCompactRev', done, 0), (b'scheduledCompactRev', scheduled, 0)]))
    assert finished['hashkv'] is not None and pending['hashkv'] is None


def test_a_large_value_that_is_not_a_keyvalue_in_the_key_bucket_is_corrupted(tmp_path):
    path = key_bucket_file(tmp_path / 'nkv.db', [(b'/a', b'1' * 100000, False)])
    data = bytearray(path.read_bytes())
    at = data.index(kv(b'/a', b'1' * 100000)[:4])
    data[at] = 0x2A  # the value's first field is no longer its key
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError) as caught:
        streamed(bytes(data), [4096])
    assert caught.value.kind == 'corrupted' and 'not an mvcc KeyValue' in caught.value.msg


# -- pages as bbolt leaves them -----------------------------------------------------------------------------

def test_a_stale_freed_page_whose_overflow_covers_live_pages(tmp_path):
    """Page 5 was freed; its header still says it is a leaf with 2 overflow pages, over pages 6 and 7, which
    were given out again and are live leaves now: they are read as pages of their own."""
    values = [(b'/a', b'1', False), (b'/b', b'2', False), (b'/c', b'3', False)]
    path = key_bucket_file(tmp_path / 'stale.db', values, stale=True)
    status = assert_same(path)
    assert status['live_keys'] == 3
    data = path.read_bytes()
    assert struct.unpack_from('<QHHI', data, 5 * PAGE) == (5, LEAF, 1, 2)


@pytest.mark.parametrize('damage, words', [
    (dict(freed=()), 'unreachable unfreed'),
    (dict(freed=(8, 5)), 'reachable freed'),
    (dict(freed=(8, 8)), 'already freed'),
    (dict(branch_children=[(b'k1', 5), (b'k2', 5), (b'k3', 6)]), 'multiple references'),
    (dict(leaf5=[(b'k2', b'v2', 0), (b'k1', b'v1', 0)]), 'out of order'),
    (dict(branch_children=[(b'k1', 2), (b'k3', 6)]), 'not a branch or leaf page'),
    (dict(branch_children=[(b'k1', 5), (b'k3', 6), (b'k4', 8)], high_water=8, freed=()), 'out of bounds'),
    (dict(high_water=20), 'truncated'),
    (dict(meta0_damage=True, meta1_damage=True), 'checksum'),
])
def test_each_damage_the_file_walk_reports_is_reported(tmp_path, damage, words):
    path = build(str(tmp_path / 'bad.db'), **damage)
    with pytest.raises(SnapshotError):
        file_status(path)
    data = open(path, 'rb').read()
    for sizes in ([1], [4096], [1 << 20]):
        with pytest.raises(SnapshotError) as caught:
            streamed(data, sizes)
        assert caught.value.kind == 'corrupted' and words in caught.value.msg, caught.value.msg
        assert 'the test stream is not a readable etcd snapshot' in caught.value.msg


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_a_hostile_file_ends_in_a_clear_error_as_it_streams(tmp_path, name):
    make, words = HOSTILE[name]
    data = make()
    path = tmp_path / 'hostile.db'
    path.write_bytes(data)
    with pytest.raises(SnapshotError) as caught:
        file_status(path)
    assert words in caught.value.msg
    for sizes in ([1], [4096], [7, 4097], [1 << 20]):
        with pytest.raises(SnapshotError) as caught:
            streamed(data, sizes)
        assert caught.value.kind == 'corrupted' and words in caught.value.msg, caught.value.msg


def test_nesting_just_within_the_limit_has_the_files_status(tmp_path):
    for index, data in enumerate([branch_chain(60), inline_file(60)]):
        path = tmp_path / ('deep%d.db' % index)
        path.write_bytes(data)
        assert_same(path, [[4096], [1 << 20]])


def overlapping(count, flags):
    """count pages after the root leaf, each whose header says it runs to the high water mark: the headers of
    stale freed pages, each over all the pages after it."""
    high_water = 4 + count
    return crafted(3, [(3, page(3, LEAF, 0, b''))] + [(pgid, raw_page(pgid, flags, 0, high_water - 1 - pgid))
                                                      for pgid in range(4, high_water)], high_water)


@pytest.mark.parametrize('flags', [LEAF, 0x01, FREELIST])
def test_overlapping_page_headers_cost_linear_time_and_memory(flags):
    """Each header starts a reading of the pages up to the high water mark: with every reading held and fed,
    n headers cost n^2 / 2 pages (141 MiB for 256 of them); each byte is now in MAX_COVER readings at most."""
    costs = {}
    for count in (128, 512):
        data = overlapping(count, flags)
        chunks = [data[at:at + 65536] for at in range(0, len(data), 65536)]

        def run():
            tee = StreamStatus(iter(chunks))
            assert len(b''.join(tee)) == len(data)
            # the trees do not reach those pages (and with no freelist, bbolt does not ask where they are)
            assert tee.status()['entries'] == 0
        tracemalloc.start()
        try:
            run()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        costs[count] = (cpu_seconds(run), peak)
    # linear: x4 (it was x16); generous ratios for a loaded machine
    assert costs[512][0] < 10 * costs[128][0] + 0.05, costs
    assert costs[512][1] < 8 * costs[128][1], costs
    assert costs[512][1] < 8 * len(overlapping(512, flags)), costs


def live_page_over_headers(fakes):
    """A live leaf of 11 pages (4-14) whose value holds, at the starts of pages 5, 6 ..., fakes headers that name
    their page and say it runs to the leaf's last page (14)."""
    body = bytearray(leaf_body([(b'k', b'v' * (11 * PAGE - 100), 0)]))
    for pgid in range(5, 5 + fakes):
        at = (pgid - 4) * PAGE - 16
        body[at:at + 16] = struct.pack('<QHHI', pgid, LEAF, 0, 14 - pgid)
    return one_bucket([(4, page(4, LEAF, 1, bytes(body), overflow=10))], 15)


def test_a_live_page_over_other_page_headers(tmp_path):
    """Up to MAX_COVER - 1 multi-page headers inside a page's span, it is read (as the file walk reads it); over
    more, the oldest reading (the page's own) is dropped, and the trees reaching it say why."""
    assert _bbolt_stream.MAX_COVER == 8
    path = tmp_path / 'seven.db'
    path.write_bytes(live_page_over_headers(7))
    assert assert_same(path, [[4096], [1 << 20], [5000]])['entries'] == 1
    data = live_page_over_headers(8)
    path.write_bytes(data)
    assert file_status(path)['entries'] == 1
    with pytest.raises(SnapshotError) as caught:
        streamed(data, [4096])
    assert 'page 4: over more than 7 other page headers: not read as the stream passes' in caught.value.msg


@pytest.mark.parametrize('data', [b'', b'\x01' * 9000, b'\0' * 70000])
def test_not_a_bbolt_stream(data):
    with pytest.raises(SnapshotError) as caught:
        streamed(data, [4096]) if data else list(StreamStatus(iter([])))
        if not data:
            raise AssertionError('no error')
    assert caught.value.kind == 'corrupted'


def test_the_status_is_asked_before_the_stream_ended():
    tee = StreamStatus(iter([b'x']))
    with pytest.raises(SnapshotError) as caught:
        tee.status()
    assert caught.value.kind == 'truncated'


# -- crc32c_combine -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('implementation', ['installed', 'python'])
def test_crc32c_combine_is_the_crc_of_the_joined_bytes(monkeypatch, implementation):
    rng = random.Random(9)
    if implementation == 'python':
        monkeypatch.setattr(_snapshot, 'CRC32C_IMPLEMENTATION', 'python')
        monkeypatch.setattr(_snapshot, 'crc32c_update', _snapshot._crc32c_pure)
    lengths = [0, 1, 100, 65535, 65536, 65537, 200001] if implementation == 'installed' else [0, 1, 100, 65536, 70001]
    for first in (0, 5, 4096):
        for length in lengths:
            left = bytes(bytearray(rng.getrandbits(8) for dummy in range(first)))
            right = bytes(bytearray(rng.getrandbits(8) for dummy in range(length)))
            whole = _snapshot._crc32c_pure(0, left + right) if implementation == 'python' else \
                _snapshot.crc32c_update(0, left + right)
            assert crc32c_combine(_snapshot.crc32c_update(0, left), _snapshot.crc32c_update(0, right),
                                  length) == whole, (first, length)
