"""Streams: a snapshot goes through sha256, zstd and age in one pass, comes back through age -d and zstd -d
(ours or the standard commands), and memory does not grow with its size."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils._streams import (
    ChunkReader, Coalesce, Meter, Sha256, StreamError, age_decrypt, age_encrypt, file_chunks, identities_from_text,
    parse_recipients, public_keys, read_identities, zstd_compress, zstd_decompress,
)

pyrage = pytest.importorskip('pyrage')
zstandard = pytest.importorskip('zstandard')

AGE = shutil.which('age')
AGE_KEYGEN = shutil.which('age-keygen')
ZSTD = shutil.which('zstd')
needs_age = pytest.mark.skipif(AGE is None or AGE_KEYGEN is None, reason='the age command is not installed (apt-get install age)')
needs_zstd = pytest.mark.skipif(ZSTD is None, reason='the zstd command is not installed (apt-get install zstd)')


def sample(size, seed=1):
    """Bytes that compress like an etcd database: protobuf-ish records with repeats and random ids."""
    rnd = __import__('random').Random(seed)
    out = bytearray()
    while len(out) < size:
        out += b'/registry/pods/default/web-%08x\x12' % rnd.getrandbits(32)
        out += json.dumps({'uid': '%032x' % rnd.getrandbits(128), 'phase': 'Running', 'node': 'cp%d' % rnd.randint(1, 3)}).encode()
    return bytes(out[:size])


def chunked(data, size=65536):
    return [data[i:i + size] for i in range(0, len(data), size)]


def run(cmd, data=None):
    proc = subprocess.run(cmd, input=data, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture(scope='module')
def identity_file(tmp_path_factory):
    """An identity made by age-keygen when it is there (what an operator has), else by pyrage."""
    path = tmp_path_factory.mktemp('age') / 'identity.txt'
    if AGE_KEYGEN:
        run([AGE_KEYGEN, '-o', str(path)])
    else:
        path.write_text('# created by the tests\n%s\n' % pyrage.x25519.Identity.generate())
    return path


@pytest.fixture(scope='module')
def recipient(identity_file):
    return public_keys(read_identities(str(identity_file)))[0]


# -- plumbing --------------------------------------------------------------------------------------------

def test_file_chunks_and_chunk_reader_round_trip():
    data = sample(300000)
    chunks = list(file_chunks(io.BytesIO(data), chunk_size=7000))
    assert max(len(c) for c in chunks) == 7000 and b''.join(chunks) == data
    reader = ChunkReader(iter([b'', b'abc', b'', b'defgh', b'ij']))
    assert reader.read(2) == b'ab'
    assert reader.read(4) == b'c'  # at most one chunk per read: fine for every caller that loops
    buf = bytearray(3)
    assert reader.readinto(buf) == 3 and bytes(buf) == b'def'
    assert reader.read() == b'ghij'
    assert reader.read(5) == b'' and reader.eof


def test_chunk_reader_remembers_the_upstream_error():
    def failing():
        yield b'x'
        raise KeyError('snapshot stream broke')
    reader = ChunkReader(failing())
    assert reader.read(10) == b'x'
    with pytest.raises(KeyError):
        reader.read(10)
    assert isinstance(reader.error, KeyError)


def test_sha256_and_size_once_done():
    data = sample(1000000)
    digest = Sha256(chunked(data))
    assert not digest.done
    assert b''.join(digest) == data
    assert digest.done and digest.size == len(data) and digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_meter_counts_bytes_seconds_and_reports_progress():
    ticks = iter(range(0, 1000, 5))  # each clock read is 5 s later
    seen = []
    meter = Meter([b'a' * 1048576] * 4, progress=lambda m: seen.append(m.bytes), interval=10, clock=lambda: next(ticks))
    assert meter.seconds == 0.0
    assert sum(len(c) for c in meter) == 4 * 1048576
    assert meter.bytes == 4 * 1048576
    assert seen and all(b % 1048576 == 0 for b in seen)
    summary = meter.summary()
    assert summary['bytes'] == 4 * 1048576 and summary['seconds'] > 0
    assert summary['mib_per_second'] == round(4 / summary['seconds'], 1)


# -- zstd ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('threads', [0, 2])
def test_zstd_round_trip(threads):
    data = sample(3 * 1048576 + 17)
    compressed = b''.join(zstd_compress(chunked(data), level=3, threads=threads))
    assert len(compressed) < len(data) / 2
    assert b''.join(zstd_decompress(chunked(compressed, 1000))) == data


def test_zstd_of_nothing_is_a_valid_empty_frame():
    compressed = b''.join(zstd_compress([]))
    assert compressed and b''.join(zstd_decompress([compressed])) == b''


@needs_zstd
def test_zstd_output_decompresses_with_the_zstd_command():
    data = sample(2 * 1048576)
    compressed = b''.join(zstd_compress(chunked(data), level=5, threads=1))
    assert run([ZSTD, '-d', '-c', '-q'], compressed) == data


@needs_zstd
def test_zstd_command_output_decompresses_here_even_several_frames():
    first, second = sample(500000, seed=1), sample(700000, seed=2)
    frames = run([ZSTD, '-c', '-q'], first) + run([ZSTD, '-c', '-q', '--no-check'], second)
    assert b''.join(zstd_decompress(chunked(frames, 4096))) == first + second


def test_zstd_decompression_output_is_bounded_even_for_a_run_of_zeros():
    compressed = b''.join(zstd_compress([bytes(64 * 1048576)]))
    assert len(compressed) < 20000
    sizes = [len(c) for c in zstd_decompress([compressed], chunk_size=1048576)]
    assert sum(sizes) == 64 * 1048576 and max(sizes) <= 1048576


@pytest.mark.parametrize('cut', [1, 4, 100, 'half'])
def test_truncated_zstd_is_an_error_never_a_shorter_snapshot(cut):
    compressed = b''.join(zstd_compress(chunked(sample(2 * 1048576))))
    keep = len(compressed) // 2 if cut == 'half' else len(compressed) - cut
    with pytest.raises(StreamError, match='truncated'):
        b''.join(zstd_decompress(chunked(compressed[:keep], 5000)))


@pytest.mark.parametrize('data, message', [
    (b'this is not zstd at all', 'not zstd'),
    (b'', 'truncated'),
])
def test_not_zstd_is_an_error(data, message):
    with pytest.raises(StreamError, match=message):
        b''.join(zstd_decompress([data]))


def test_data_after_the_zstd_stream_is_an_error():
    compressed = b''.join(zstd_compress([b'snapshot']))
    with pytest.raises(StreamError, match='corrupted'):
        b''.join(zstd_decompress([compressed + b'garbage that is no frame']))


def test_zstd_level_out_of_range():
    with pytest.raises(StreamError, match='level 22'):
        list(zstd_compress([b'x'], level=22))


# -- age -------------------------------------------------------------------------------------------------

def test_age_round_trip(identity_file, recipient):
    data = sample(3 * 1048576 + 5)
    encrypted = list(age_encrypt(chunked(data), [recipient], chunk_size=1048576))
    assert b''.join(encrypted).startswith(b'age-encryption.org/v1\n')
    assert max(len(c) for c in encrypted) < 1048576 + 65536 + 16
    identities = read_identities(str(identity_file))
    assert b''.join(age_decrypt(chunked(b''.join(encrypted), 10000), identities)) == data


@needs_age
def test_age_output_decrypts_with_the_age_command(tmp_path, identity_file, recipient):
    data = sample(1048576 + 3)
    encrypted = tmp_path / 'snapshot.db.age'
    encrypted.write_bytes(b''.join(age_encrypt(chunked(data), recipient)))
    assert run([AGE, '-d', '-i', str(identity_file), str(encrypted)]) == data


@needs_age
def test_age_command_output_decrypts_here(identity_file, recipient):
    data = sample(200000)
    encrypted = run([AGE, '-r', recipient], data)
    assert b''.join(age_decrypt([encrypted], read_identities(str(identity_file)))) == data


def test_several_recipients_each_can_decrypt():
    one, two = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    encrypted = b''.join(age_encrypt([b'secret data'], '# ops team\n%s\n\n%s\n' % (one.to_public(), two.to_public())))
    for identity in (one, two):
        assert b''.join(age_decrypt([encrypted], [identity])) == b'secret data'


def test_wrong_identity_says_so():
    encrypted = b''.join(age_encrypt([b'data'], [str(pyrage.x25519.Identity.generate().to_public())]))
    with pytest.raises(StreamError, match='not encrypted to the given identity'):
        b''.join(age_decrypt([encrypted], [pyrage.x25519.Identity.generate()]))


def test_truncated_or_altered_age_stream_fails(identity_file, recipient):
    identities = read_identities(str(identity_file))
    encrypted = b''.join(age_encrypt(chunked(sample(300000)), [recipient]))
    with pytest.raises(StreamError, match='truncated or was altered'):
        b''.join(age_decrypt(chunked(encrypted[:-1000]), identities))
    altered = bytearray(encrypted)
    altered[len(altered) // 2] ^= 1
    with pytest.raises(StreamError, match='truncated or was altered'):
        b''.join(age_decrypt(chunked(bytes(altered)), identities))
    with pytest.raises(StreamError, match='not an age-encrypted stream'):
        b''.join(age_decrypt([b'plain snapshot bytes' * 100], identities))


def test_an_upstream_failure_comes_out_of_age_encrypt_as_itself(recipient):
    class SnapshotBroke(Exception):
        pass

    def snapshot():
        yield b'a' * 200000
        raise SnapshotBroke('member went away')
    with pytest.raises(SnapshotBroke, match='member went away'):
        b''.join(age_encrypt(snapshot(), [recipient]))


def test_a_consumer_that_stops_early_stops_the_worker(recipient):
    before = threading.active_count()
    produced = []

    def endless():
        while True:
            produced.append(1)
            yield b'z' * 65536
    stream = age_encrypt(endless(), [recipient], chunk_size=65536)
    next(stream)
    stream.close()
    assert threading.active_count() == before
    assert len(produced) < 200  # bounded read-ahead: the queue and one chunk in pyrage


@pytest.mark.parametrize('text, message', [
    ('ssh-ed25519 AAAAC3Nza', 'not an age X25519 public key'),
    ('age1notvalid', 'not a valid age X25519 public key'),
    ('', 'no age recipient'),
    ('# only a comment\n', 'no age recipient'),
])
def test_bad_recipients(text, message):
    with pytest.raises(StreamError, match=message):
        parse_recipients([text])


def test_a_secret_key_given_as_recipient_is_refused_without_being_repeated():
    secret = str(pyrage.x25519.Identity.generate())
    with pytest.raises(StreamError) as err:
        parse_recipients([secret])
    assert 'identity (secret key)' in str(err.value) and secret not in str(err.value)


def test_identity_errors_never_repeat_the_file_content(tmp_path):
    secret = str(pyrage.x25519.Identity.generate())
    damaged = secret[:-3] + ('AAA' if not secret.endswith('AAA') else 'BBB')
    path = tmp_path / 'key.txt'
    path.write_text('# created: today\n%s\n' % damaged)
    with pytest.raises(StreamError) as err:
        read_identities(str(path))
    assert 'line 2 of %s' % path in str(err.value) and damaged[16:] not in str(err.value)
    path.write_text('password123\n')
    with pytest.raises(StreamError) as err:
        read_identities(str(path))
    assert 'password123' not in str(err.value)
    with pytest.raises(StreamError, match='holds no age identity'):
        identities_from_text('# nothing\n')
    with pytest.raises(StreamError, match='cannot read the age identity file'):
        read_identities(str(tmp_path / 'missing.txt'))


# -- the whole chain -------------------------------------------------------------------------------------

def test_backup_chain_and_restore_chain_agree(identity_file, recipient):
    data = sample(5 * 1048576)
    plain = Sha256(chunked(data, 1 << 20))
    meter = Meter(plain)
    stored = Sha256(age_encrypt(zstd_compress(meter, level=3, threads=1), [recipient]))
    blob = b''.join(stored)
    assert plain.hexdigest() == hashlib.sha256(data).hexdigest() and meter.bytes == len(data)
    assert stored.hexdigest() == hashlib.sha256(blob).hexdigest()
    restored = Sha256(zstd_decompress(age_decrypt(chunked(blob), read_identities(str(identity_file)))))
    assert b''.join(restored) == data and restored.hexdigest() == plain.hexdigest()


@needs_age
@needs_zstd
def test_backup_restores_with_the_standard_commands_alone(tmp_path, identity_file, recipient):
    data = sample(2 * 1048576)
    backup = tmp_path / 'snapshot.db.zst.age'
    backup.write_bytes(b''.join(age_encrypt(zstd_compress(chunked(data)), [recipient])))
    shell = '%s -d -i %s %s | %s -d -q -c' % (AGE, identity_file, backup, ZSTD)
    assert run(['sh', '-c', shell]) == data


# -- memory ----------------------------------------------------------------------------------------------

MEMORY_PROBE = textwrap.dedent('''
    import json, os, sys

    def peak_kib():  # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
        with open('/proc/self/status') as status:
            return int([line for line in status if line.startswith('VmHWM:')][0].split()[1])
    from ansible_collections.etcdops.etcd.plugins.module_utils import _streams as s
    import pyrage
    size, threads = int(sys.argv[1]) << 20, int(sys.argv[2])
    identity = pyrage.x25519.Identity.generate()
    text = (b'/registry/pods/default/web-0 {"phase":"Running","node":"cp1"} ' * 20000)[:1 << 19]

    def snapshot():  # 1 MiB chunks, half random (incompressible), half text
        for dummy in range(size >> 20):
            yield os.urandom(1 << 19) + text

    before = peak_kib()
    plain = s.Sha256(snapshot())
    encrypted = s.Meter(s.age_encrypt(s.zstd_compress(plain, level=3, threads=threads), [identity.to_public()]))
    restored = s.Sha256(s.zstd_decompress(s.age_decrypt(encrypted, [identity])))
    count = sum(len(c) for c in restored)
    assert count == size and restored.hexdigest() == plain.hexdigest(), 'round trip differs'
    peak = peak_kib()
    print(json.dumps({'before_kib': before, 'peak_kib': peak, 'encrypted': encrypted.bytes,
                      'seconds': encrypted.seconds}))
''')


def measure(mib, threads):
    """Peak RSS of a fresh interpreter that streams mib MiB through the chain and back."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, '-c', MEMORY_PROBE, str(mib), str(threads)], env=env,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_memory_does_not_grow_with_the_size_one_gib_round_trip():
    """1 GiB through sha256, zstd (2 worker threads), age, then age -d, zstd -d, sha256, in one process: the peak
    RSS is that of 256 MiB (4 GiB measured the same), well under the 100 MiB budget of a module process."""
    small = measure(256, 2)
    large = measure(1024, 2)
    growth_mib = (large['peak_kib'] - small['peak_kib']) / 1024.0
    peak_mib = large['peak_kib'] / 1024.0
    print('RSS before %.1f MiB; peak RSS: 256 MiB run %.1f MiB, 1 GiB run %.1f MiB (growth %.1f MiB); 1 GiB encrypted in %.1f s'
          % (large['before_kib'] / 1024.0, small['peak_kib'] / 1024.0, peak_mib, growth_mib, large['seconds']))
    assert growth_mib < 16, 'peak RSS grew by %.1f MiB from 256 MiB to 1 GiB of data' % growth_mib
    assert peak_mib < 80, 'peak RSS %.1f MiB' % peak_mib


def test_coalesce_passes_the_same_bytes_in_chunks_of_at_least_the_size_and_closes_upstream():
    pieces = [bytes([n]) * (n * 100 + 1) for n in range(1, 60)]
    closed = []

    def upstream():
        try:
            yield from pieces
        finally:
            closed.append(True)
    out = list(Coalesce(upstream(), size=1000))
    assert b''.join(out) == b''.join(pieces)
    assert all(len(chunk) >= 1000 for chunk in out[:-1]) and out[-1]
    big = b'x' * 5000
    assert list(Coalesce(iter([big]), size=1000))[0] is big  # a chunk already large enough is not copied
    stream = Coalesce(upstream(), size=10 ** 9)
    stream.close()
    assert list(Coalesce(iter([]), size=10)) == []
    coalesced = Coalesce(upstream(), size=1000)
    iterator = iter(coalesced)
    next(iterator)
    coalesced.close()
    assert closed[-1] is True
