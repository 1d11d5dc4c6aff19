# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshots without etcd: the sha256 trailer checked on synthetic streams (cut anywhere), the atomic write
that leaves nothing behind, the status of committed etcd 3.5 and 3.6 snapshots as etcdutl printed it, and the
choice of member by policy with a fake client."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import random

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _snapshot
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (
    SnapshotError, TrailerCheck, candidates, database_status, file_digest, file_fingerprint, fingerprint_size, save,
    snapshot_status, write_file,
)

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'snapshots')


def fixture(name):
    return os.path.join(FIXTURES, name)


def etcdutl_said():
    with open(fixture('etcdutl-status.json')) as handle:
        return json.load(handle)


def stream_of(db, trailer=None):
    """What etcd sends: the database, then sha256(database)."""
    return db + (hashlib.sha256(db).digest() if trailer is None else trailer)


def cut(data, sizes):
    """data in chunks of the given sizes (the rest in one last chunk)."""
    chunks, offset = [], 0
    for size in sizes:
        chunks.append(data[offset:offset + size])
        offset += size
    if offset < len(data):
        chunks.append(data[offset:])
    return chunks


def run(check):
    return b''.join(check)


# -- the trailer ----------------------------------------------------------------------------------------

DB = bytes(bytearray(random.Random(7).getrandbits(8) for dummy in range(8192)))


def test_a_whole_stream_passes_through_unchanged_with_its_trailer():
    data = stream_of(DB)
    check = TrailerCheck(cut(data, [4096, 4096]))
    assert run(check) == data
    assert check.done and check.db_size == len(DB) and check.size == len(data)
    assert check.trailer == hashlib.sha256(DB).hexdigest()
    assert check.file_sha256() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize('split', [1, 5, 31, 32, 33, 63])
def test_the_trailer_split_across_chunks_at_any_byte(split):
    data = stream_of(DB)
    # the last chunk boundary falls `split` bytes before the end: inside, at the start of, or before the trailer
    chunks = cut(data, [len(data) - split])
    assert run(TrailerCheck(chunks)) == data


def test_one_byte_chunks():
    data = stream_of(DB[:1024])
    check = TrailerCheck([data[i:i + 1] for i in range(len(data))])
    assert run(check) == data and check.db_size == 1024


def test_random_chunking_always_agrees():
    rng = random.Random(11)
    data = stream_of(DB)
    for dummy in range(50):
        sizes = [rng.randint(0, 700) for dummy in range(20)]
        assert run(TrailerCheck(cut(data, sizes))) == data


def test_pairs_with_remaining_bytes_as_the_client_yields_them():
    data = stream_of(DB)
    pairs = [(DB[:4096], 4096), (DB[4096:], 0), (data[-32:], 0)]
    check = TrailerCheck(pairs)
    assert run(check) == data and check.expected_size == len(DB)


def test_a_wrong_trailer_fails_naming_both_hashes():
    data = stream_of(DB, trailer=b'\0' * 32)
    with pytest.raises(SnapshotError) as caught:
        run(TrailerCheck(cut(data, [1000])))
    assert caught.value.kind == 'sha256_mismatch'
    assert hashlib.sha256(DB).hexdigest() in caught.value.msg and '00' * 32 in caught.value.msg


def test_a_flipped_byte_in_the_database_fails():
    damaged = bytearray(stream_of(DB))
    damaged[100] ^= 1
    with pytest.raises(SnapshotError) as caught:
        run(TrailerCheck([bytes(damaged)]))
    assert caught.value.kind == 'sha256_mismatch'


def test_a_stream_cut_before_the_trailer_fails_as_truncated():
    # the database arrived, the trailer did not: the last 32 bytes of the database are no trailer
    with pytest.raises(SnapshotError) as caught:
        run(TrailerCheck([(DB[:4096], 4096), (DB[4096:], 0)]))
    assert caught.value.kind == 'truncated'


def test_a_stream_cut_in_the_middle_fails_as_truncated():
    data = stream_of(DB)
    with pytest.raises(SnapshotError) as caught:
        run(TrailerCheck([(data[:4096], len(DB) - 4096), (data[4096:6000], 0)]))
    assert caught.value.kind == 'truncated' and 'truncated' in caught.value.msg


def test_a_stream_shorter_than_a_trailer_fails():
    with pytest.raises(SnapshotError) as caught:
        run(TrailerCheck([b'x' * 20]))
    assert caught.value.kind == 'truncated'


def test_an_empty_stream_fails():
    with pytest.raises(SnapshotError):
        run(TrailerCheck([]))


def test_a_database_that_is_not_whole_sectors_is_refused():
    data = stream_of(DB[:1000])
    with pytest.raises(SnapshotError) as caught:
        run(TrailerCheck([data]))
    assert caught.value.kind == 'bad_size'


def test_memory_stays_one_chunk():
    # the check keeps 32 bytes aside, never the stream: 64 MiB through it holds one chunk at a time
    chunk = b'\1' * (1 << 20)
    body = hashlib.sha256()
    for dummy in range(64):
        body.update(chunk)

    def chunks():
        for dummy in range(64):
            yield chunk
        yield body.digest()

    check = TrailerCheck(chunks())
    total = 0
    for piece in check:
        total += len(piece)
    assert total == 64 * (1 << 20) + 32 and check.done


# -- the atomic write ----------------------------------------------------------------------------------

def leftovers(directory):
    return sorted(os.listdir(directory))


def test_write_file_puts_the_file_in_place_with_its_mode(tmp_path):
    target = tmp_path / 'snap.db'
    data = stream_of(DB)
    write_file(TrailerCheck([data]), str(target), mode=0o640)
    assert target.read_bytes() == data
    assert oct(os.stat(str(target)).st_mode & 0o7777) == oct(0o640)
    assert leftovers(str(tmp_path)) == ['snap.db']


def test_write_file_default_mode_is_owner_only(tmp_path):
    target = tmp_path / 'snap.db'
    write_file([b'x'], str(target))
    assert os.stat(str(target)).st_mode & 0o777 == 0o600


def test_a_failed_stream_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / 'snap.db'
    target.write_bytes(b'old snapshot')
    with pytest.raises(SnapshotError):
        write_file(TrailerCheck([stream_of(DB, trailer=b'\1' * 32)]), str(target))
    assert target.read_bytes() == b'old snapshot'
    assert leftovers(str(tmp_path)) == ['snap.db']


def test_an_error_while_streaming_leaves_nothing(tmp_path):
    def broken():
        yield b'a' * 1000
        raise EtcdClientError('member died', kind='unavailable')

    with pytest.raises(EtcdClientError):
        write_file(TrailerCheck(broken()), str(tmp_path / 'snap.db'))
    assert leftovers(str(tmp_path)) == []


def test_a_failed_verification_leaves_nothing(tmp_path):
    def verify(temp):
        assert os.path.basename(temp).startswith('.snap.db.part-')
        raise SnapshotError('damaged', kind='corrupted')

    with pytest.raises(SnapshotError):
        write_file([b'x'], str(tmp_path / 'snap.db'), verify=verify)
    assert leftovers(str(tmp_path)) == []


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(SnapshotError) as caught:
        write_file([b'x'], str(tmp_path / 'nope' / 'snap.db'))
    assert caught.value.kind == 'no_directory' and str(tmp_path / 'nope') in caught.value.msg


# -- status of a snapshot file -------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['etcd-3.5.db', 'etcd-3.6.db'])
def test_status_equals_what_etcdutl_printed(name):
    expected = etcdutl_said()[name]
    status = snapshot_status(fixture(name))
    assert status['hash'] == expected['hash']
    assert status['revision'] == expected['revision']
    assert status['total_key'] == expected['totalKey']
    assert status['total_size'] == expected['totalSize']
    assert status['version'] == expected.get('version', '')
    assert status['trailer'] == 'valid'
    assert status['size'] == expected['totalSize'] + 32
    with open(fixture(name), 'rb') as handle:
        assert status['sha256'] == hashlib.sha256(handle.read()).hexdigest()


def test_live_keys_are_counted_the_same_on_both_lines():
    # the same writes on 3.5 and 3.6 (100 keys put, one deleted, one big value): 100 keys alive
    assert snapshot_status(fixture('etcd-3.5.db'))['live_keys'] == 100
    assert snapshot_status(fixture('etcd-3.6.db'))['live_keys'] == 100


def test_the_pure_python_crc32c_gives_the_same_hash(monkeypatch):
    monkeypatch.setattr(_snapshot, 'crc32c_update', _snapshot._crc32c_pure)
    assert database_status(fixture('etcd-3.6.db'))['hash'] == etcdutl_said()['etcd-3.6.db']['hash']
    assert _snapshot._crc32c_pure(0, b'123456789') == 0xE3069283  # the Castagnoli check value


def test_a_file_without_trailer_reports_absent_and_keeps_its_status(tmp_path):
    copy = tmp_path / 'db'
    with open(fixture('etcd-3.6.db'), 'rb') as handle:
        copy.write_bytes(handle.read()[:-32])  # what a data directory's member/snap/db looks like
    status = snapshot_status(str(copy))
    assert status['trailer'] == 'absent'
    assert status['hash'] == etcdutl_said()['etcd-3.6.db']['hash']


def test_a_wrong_trailer_reports_mismatch(tmp_path):
    copy = tmp_path / 'snap.db'
    with open(fixture('etcd-3.6.db'), 'rb') as handle:
        copy.write_bytes(handle.read()[:-32] + b'\0' * 32)
    assert file_digest(str(copy))['trailer'] == 'mismatch'


def test_the_fingerprint_is_of_the_content_only_and_tells_files_apart_by_size_head_and_trailer(tmp_path):
    with open(fixture('etcd-3.6.db'), 'rb') as handle:
        data = handle.read()
    first, copy = tmp_path / 'a.db', tmp_path / 'b.db'
    first.write_bytes(data)
    copy.write_bytes(data)
    os.utime(str(copy), (1000000000, 1000000000))  # another name and time, the same bytes: the same fingerprint
    fingerprint = file_fingerprint(str(first))
    assert fingerprint == file_fingerprint(str(copy)) and fingerprint_size(fingerprint) == len(data)
    assert fingerprint.endswith(':' + hashlib.sha256(data[:-32]).hexdigest())  # the trailer is the sha256 of the db
    for other in (data[:-32] + b'\0' * 32, b'\1' + data[1:], data + b'\0' * 512):
        copy.write_bytes(other)
        assert file_fingerprint(str(copy)) != fingerprint
    copy.write_bytes(data[:100] + b'\1' + data[101:])  # inside the first 64 KiB, which are hashed
    assert file_fingerprint(str(copy)) != fingerprint


def test_the_fingerprint_of_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(SnapshotError) as caught:
        file_fingerprint(str(tmp_path / 'none.db'))
    assert caught.value.kind == 'missing'
    with pytest.raises(SnapshotError) as caught:
        file_fingerprint(str(tmp_path))
    assert caught.value.kind == 'not_a_file'


def test_a_truncated_file_is_refused(tmp_path):
    copy = tmp_path / 'snap.db'
    with open(fixture('etcd-3.6.db'), 'rb') as handle:
        copy.write_bytes(handle.read()[:30000])
    with pytest.raises(SnapshotError) as caught:
        snapshot_status(str(copy))
    assert 'truncated' in caught.value.msg


def test_a_file_that_is_not_a_snapshot_is_refused(tmp_path):
    junk = tmp_path / 'junk.db'
    junk.write_bytes(b'hello' * 2000)
    with pytest.raises(SnapshotError) as caught:
        snapshot_status(str(junk))
    assert 'not a' in caught.value.msg and caught.value.kind == 'corrupted'


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SnapshotError) as caught:
        snapshot_status(str(tmp_path / 'none.db'))
    assert caught.value.kind == 'missing'


def test_kv_key_reads_field_one_wherever_it_is():
    assert _snapshot.kv_key(b'\x0a\x03abc\x10\x05') == b'abc'
    # field 2 (varint) first, then field 1
    assert _snapshot.kv_key(b'\x10\x05\x0a\x02xy') == b'xy'


def test_kv_key_of_the_empty_value_a_revision_bump_puts():
    # etcdutl snapshot restore --bump-revision puts an empty value at the bumped revision; etcdutl's status reads it
    # as a KeyValue with an empty key (counted in totalKey), so a backup of a restored member must read it too
    assert _snapshot.kv_key(b'') == b''
    assert _snapshot.kv_key(b'\x10\x05') == b''
    with pytest.raises(_snapshot.SnapshotError):
        _snapshot.kv_key(b'\x0f\x01')  # wire type 7 does not exist


@pytest.mark.parametrize('value', [b'\x0a\x85', b'\x10', b'\x10\x05\x0a\xff', b'\x10' + b'\xff' * 11])
def test_kv_key_of_a_value_cut_inside_a_varint_is_a_corrupted_snapshot(value):
    # was an IndexError (a traceback) from the status walk
    with pytest.raises(_snapshot.SnapshotError) as caught:
        _snapshot.kv_key(value)
    assert caught.value.kind == 'corrupted'


@pytest.mark.parametrize('raw,expected', [(b'3.6.0', '3.6.0'), (b'3.7.0-alpha.1', '3.7.0-alpha.1'), (b'junk', ''),
                                          (b'v3.6.0', '3.6.0')])
def test_storage_version_as_go_semver_prints_it(raw, expected):
    assert _snapshot.semver(raw) == expected


# -- choosing the member -------------------------------------------------------------------------------

IDS = dict(m1='a1', m2='b2', m3='c3')


class FakeClient(object):
    """member_list/status/snapshot as EtcdClient gives them; `down` members refuse, `dies` break mid-stream."""

    def __init__(self, leader='m1', down=(), dies=(), learners=(), applied=None, db=DB, errors=None):
        self.errors = errors or {}
        self.leader = leader
        self.down = set(down)
        self.dies = set(dies)
        self.learners = set(learners)
        self.applied = applied or {}
        self.db = db
        self.asked = []

    def url(self, name):
        return 'https://%s:2379' % name

    def member_list(self):
        return dict(cluster_id='c1d', members=[
            dict(id=IDS[n], name=n, peer_urls=[], client_urls=[self.url(n)], is_learner=n in self.learners)
            for n in ('m1', 'm2', 'm3')])

    def status(self, url):
        name = url.split('//')[1].split(':')[0]
        if name in self.down:
            raise EtcdClientError('%s: connection refused' % url, kind='connection_refused')
        return dict(endpoint=url, member_id=IDS[name], leader=IDS[self.leader], errors=self.errors.get(name, []),
                    version='3.6.16',
                    raft_applied_index=self.applied.get(name, 10))

    def snapshot(self, endpoint, timeout=None):
        name = endpoint.split('//')[1].split(':')[0]
        self.asked.append(name)
        data = stream_of(self.db)
        yield data[:4096], len(self.db) - 4096
        if name in self.dies:
            raise EtcdClientError('%s: connection reset' % endpoint, kind='unavailable')
        yield data[4096:len(self.db)], 0
        yield data[len(self.db):], 0


def names(order):
    return [c.name for c in order]


def test_follower_policy_asks_followers_first_most_applied_first():
    cluster_id, order, unhealthy = candidates(FakeClient(applied=dict(m2=5, m3=9)), 'follower')
    assert cluster_id == 'c1d' and names(order) == ['m3', 'm2', 'm1'] and unhealthy == []


def test_leader_policy_asks_the_leader_first():
    assert names(candidates(FakeClient(leader='m2'), 'leader')[1])[0] == 'm2'


def test_a_named_member_is_asked_first_then_the_others():
    assert names(candidates(FakeClient(), 'm1')[1]) == ['m1', 'm2', 'm3']


def test_an_unknown_member_name_is_refused_with_the_names():
    with pytest.raises(SnapshotError) as caught:
        candidates(FakeClient(), 'm9')
    assert 'm1, m2, m3' in caught.value.msg


def test_down_members_and_learners_are_skipped_with_the_reason():
    dummy, order, unhealthy = candidates(FakeClient(down=['m2'], learners=['m3']), 'follower')
    assert names(order) == ['m1']  # alone: the leader
    reasons = dict((s['name'], s['error']) for s in unhealthy)
    assert 'connection refused' in reasons['m2'] and 'learner' in reasons['m3']


def test_nospace_does_not_stop_a_snapshot_but_corrupt_does():
    nospace = ['memberID:11 alarm:NOSPACE ', 'memberID:12 alarm:NOSPACE ']
    dummy, order, unhealthy = candidates(FakeClient(errors=dict(m1=nospace, m2=nospace, m3=['memberID:13 alarm:CORRUPT '])),
                                         'follower')
    assert names(order) == ['m2', 'm1'] and [s['name'] for s in unhealthy] == ['m3']
    assert 'CORRUPT' in unhealthy[0]['error']


def test_no_healthy_member_fails_naming_each():
    with pytest.raises(EtcdClientError) as caught:
        candidates(FakeClient(down=['m1', 'm2', 'm3']), 'follower')
    assert caught.value.kind == 'no_healthy_member' and 'm1' in caught.value.msg and 'm3' in caught.value.msg


def test_save_fails_over_when_the_chosen_member_dies_mid_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(_snapshot, 'database_status', lambda path, etcd_version=None: dict(hash=1))
    client = FakeClient(dies=['m2'], applied=dict(m2=20))
    dummy, order, dummy = candidates(client, 'follower')
    target = tmp_path / 'snap.db'
    saved = save(client, order, str(target))
    assert client.asked == ['m2', 'm3']
    assert [t['name'] for t in saved['tried']] == ['m2', 'm3']
    assert 'connection reset' in saved['tried'][0]['error'] and saved['tried'][1]['error'] is None
    assert saved['member'].name == 'm3' and target.read_bytes() == stream_of(DB)
    assert saved['sha256'] == hashlib.sha256(stream_of(DB)).hexdigest()
    assert leftovers(str(tmp_path)) == ['snap.db']


def test_save_fails_clearly_when_every_member_dies_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_snapshot, 'database_status', lambda path, etcd_version=None: dict(hash=1))
    client = FakeClient(dies=['m1', 'm2', 'm3'])
    dummy, order, dummy = candidates(client, 'follower')
    with pytest.raises(SnapshotError) as caught:
        save(client, order, str(tmp_path / 'snap.db'))
    assert caught.value.kind == 'all_failed' and len(caught.value.tried) == 3
    assert all(name in caught.value.msg for name in ('m1', 'm2', 'm3'))
    assert leftovers(str(tmp_path)) == []


def test_save_passes_over_a_member_whose_database_is_damaged(tmp_path):
    good = open(fixture('etcd-3.6.db'), 'rb').read()[:-32]

    class TwoDatabases(FakeClient):
        def snapshot(self, endpoint, timeout=None):
            self.db = b'\0' * 8192 if 'm2' in endpoint else good
            return FakeClient.snapshot(self, endpoint, timeout)

    client = TwoDatabases(applied=dict(m2=20))
    dummy, order, dummy = candidates(client, 'follower')
    saved = save(client, order, str(tmp_path / 'snap.db'))
    assert saved['member'].name == 'm3'
    assert 'not a readable etcd snapshot' in saved['tried'][0]['error']
    assert saved['status']['hash'] == etcdutl_said()['etcd-3.6.db']['hash']
    assert leftovers(str(tmp_path)) == ['snap.db']


def test_a_local_write_failure_does_not_try_other_members(tmp_path, monkeypatch):
    client = FakeClient()
    dummy, order, dummy = candidates(client, 'follower')
    with pytest.raises(SnapshotError) as caught:
        save(client, order, str(tmp_path / 'missing' / 'snap.db'))
    assert caught.value.kind == 'no_directory' and len(client.asked) <= 1


def test_status_reads_the_snapshot_page_by_page_without_mapping_it(monkeypatch):
    """The bbolt walk reads one page (with its overflow pages) at a time with pread and never maps the file: a
    mapped page that was read counts in the module's resident memory, which would grow to the database size.
    The figures stay etcdutl's."""
    from ansible_collections.etcdops.etcd.plugins.module_utils import _bbolt
    reads = []
    mapped = []
    read = _bbolt.BboltFile.read

    def recording_read(self, offset, size):
        reads.append(size)
        with open('/proc/self/maps') as handle:
            mapped.append(os.path.realpath(self.path) in handle.read())
        return read(self, offset, size)
    monkeypatch.setattr(_bbolt.BboltFile, 'read', recording_read)
    for name in ('etcd-3.5.db', 'etcd-3.6.db'):
        del reads[:]
        status = database_status(fixture(name))
        assert (status['hash'], status['revision']) == (etcdutl_said()[name]['hash'], etcdutl_said()[name]['revision'])
        # each page in use once or twice (a page with overflow pages is read again whole), never more than the
        # largest value's pages at a time (the 20 000-byte value: 5 pages of 4 KiB)
        assert 0 < sum(reads) <= 2 * status['total_size']
        assert 5 * 4096 <= max(reads) < 8 * 4096 and len(reads) > 5
    assert mapped and not any(mapped)


def test_the_status_hash_is_the_same_whether_values_are_hashed_alone_or_gathered():
    """Values of 64 KiB or more are hashed as they are (no copy into the gathered pieces): the hash is still the
    crc32c of every bucket name, key and value in order, and HashKV still covers the key bucket alone."""
    big = bytes(bytearray(range(256))) * 400   # 100 KiB
    items = [(b'key', [(b'\x00' * 8 + b'_' + b'\x00' * 8, b'small'), (b'\x00' * 7 + b'\x01_' + b'\x00' * 8, big),
                       (b'\x00' * 7 + b'\x02_' + b'\x00' * 8, b'after')]),
             (b'meta', [(b'consistent_index', big), (b'term', b'x')])]
    walk = _snapshot._StatusWalk()
    walk.FLUSH = 16  # gather few bytes: every path of _write runs
    for name, pairs in items:
        walk.bucket(name)
        for key, value in pairs:
            walk._write(key)
            walk._write(value)
    walk.flush()
    everything = b''.join(name + b''.join(k + v for k, v in pairs) for name, pairs in items)
    key_bucket = b'key' + b''.join(k + v for k, v in items[0][1])
    assert walk.crc == _snapshot._crc32c_pure(0, everything)
    assert walk.kv_crc == _snapshot._crc32c_pure(0, key_bucket)


@pytest.mark.parametrize('storage_version, etcd_version, counted', [
    ('3.6.0', None, 'live'), ('3.6.0', '3.5.21', 'live'), ('', None, 'entries'), ('', '3.5.21', 'entries'),
    ('', '3.4.37', 'entries'), ('', '3.6.16', 'live'), ('', '3.7.3', 'live'), ('', 'v3.10.0', 'live'),
    ('', 'not a version', 'entries'),
])
def test_the_key_count_is_the_one_the_lines_etcdutl_prints(storage_version, etcd_version, counted):
    """etcdutl 3.6+ counts the keys alive whatever the file holds; a young 3.6+ member's snapshot may have no
    storage version yet, so the serving member's version decides when it is known."""
    assert _snapshot.total_key(5, 9, storage_version, etcd_version) == (5 if counted == 'live' else 9)
