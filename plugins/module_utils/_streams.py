# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: chained transforms over streams of bytes, with memory that does not grow with the data.

A stream is any iterator of ``bytes`` chunks (the etcd snapshot stream, a file read in pieces, a download).
Every transform takes one and returns one, so a backup is a chain that runs in one pass::

    plain = Sha256(snapshot_chunks)                   # sha256 and size of the snapshot, known at the end
    meter = Meter(plain, progress=log, interval=10)   # bytes, seconds, throughput
    data = age_encrypt(zstd_compress(meter, level=3), parse_recipients(public_keys))
    store.put_object(location, backup_id, 'snapshot.db.zst.age', data)

and a restore is the chain backwards: ``Sha256(zstd_decompress(age_decrypt(download, identities)))``.

What is here:

* ``file_chunks(fileobj)``/``ChunkReader(chunks)``: from a file to a stream and from a stream to a file-like
  object with ``read()``; ``close_stream(chunks)`` ends a stream early (the store does it when a write fails).
* ``Sha256(chunks)``: passes chunks through; ``hexdigest()`` and ``size`` once the stream is exhausted.
* ``Meter(chunks, progress=None, interval=10.0)``: bytes, seconds, ``bytes_per_second``; calls
  ``progress(meter)`` at most every ``interval`` seconds.
* ``zstd_compress(chunks, level=3, threads=0)``/``zstd_decompress(chunks)``: ``zstandard``'s streaming API;
  one standard zstd frame (``zstd -d`` reads it). ``threads`` > 0 moves compression to that many zstd worker
  threads (zstd releases the GIL), so it overlaps the rest of the chain. Decompression is bounded by the output
  size asked for (a run of zeros in a snapshot cannot blow up memory) and refuses a stream that ends inside a
  frame: a truncated object is an error, never a shorter snapshot.
* ``age_encrypt(chunks, recipients)``/``age_decrypt(chunks, identities)``: the age format (X25519 recipients),
  through ``pyrage.encrypt_io``/``decrypt_io``, which stream in 64 KiB age chunks. They pull from a reader and
  push to a writer, so each runs in a worker thread between a reader over the upstream stream and a bounded
  queue to the consumer: memory stays a few chunks, and encryption overlaps what consumes its output.
  The result is a standard age file: ``age -d -i identity.txt`` decrypts it. age authenticates every 64 KiB
  and the end of the stream: a truncated or altered object fails to decrypt instead of restoring garbage.
* ``parse_recipients(texts)``, ``read_identities(path)``, ``identities_from_text(text)``,
  ``public_keys(identities)``: age keys, with messages that never repeat a secret key.
* ``StreamError``: what a module reports with ``fail_json``.

Why pyrage and not the ``age`` command: no binary needed on the control-plane hosts, no child process to feed
through pipes; the output is the same format (the unit tests decrypt it with ``/usr/bin/age``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import io
import queue
import struct
import threading
import time
import traceback

ZSTANDARD_IMPORT_ERROR = None
try:
    import zstandard
except ImportError:
    zstandard = None
    ZSTANDARD_IMPORT_ERROR = traceback.format_exc()
HAS_ZSTANDARD = zstandard is not None

PYRAGE_IMPORT_ERROR = None
try:
    import pyrage
except ImportError:
    pyrage = None
    PYRAGE_IMPORT_ERROR = traceback.format_exc()
HAS_PYRAGE = pyrage is not None

DEFAULT_CHUNK_SIZE = 256 * 1024
ZSTD_JOB_SIZE = 1024 * 1024
# Worker-thread transforms hand over at most this many chunks ahead of the consumer.
QUEUE_DEPTH = 4
# How long a stopped worker is waited for before it is left to finish on its own (it is a daemon thread).
WORKER_JOIN_SECONDS = 30.0


class StreamError(Exception):
    """A stream could not be transformed; the message says what to check (key, file, object)."""


def close_stream(chunks):
    """Close a stream that can be closed (a generator, a wrapper here): it releases what it holds upstream
    (a gRPC call, a download, a worker thread) now rather than when garbage collected."""
    close = getattr(chunks, 'close', None)
    if close is not None:
        try:
            close()
        except ValueError:  # a generator running in another thread: it ends with that thread
            pass


class Coalesce(object):
    """Pass a stream of small chunks on as chunks of at least size bytes (the last one may be shorter): every
    step after it then runs once per chunk instead of once per small message (etcd streams a snapshot in 32 KiB
    messages, 36 000 per 1.2 GB)."""

    def __init__(self, chunks, size=DEFAULT_CHUNK_SIZE):
        self._chunks = chunks
        self._size = size

    def __iter__(self):
        parts = []
        gathered = 0
        size = self._size
        for chunk in self._chunks:
            parts.append(chunk)
            gathered += len(chunk)
            if gathered >= size:
                yield parts[0] if len(parts) == 1 else b''.join(parts)
                parts = []
                gathered = 0
        if parts:
            yield b''.join(parts)

    def close(self):
        close_stream(self._chunks)


def file_chunks(fileobj, chunk_size=DEFAULT_CHUNK_SIZE):
    """Read a binary file object to its end, in chunks."""
    while True:
        chunk = fileobj.read(chunk_size)
        if not chunk:
            return
        yield chunk


class ChunkReader(io.RawIOBase):
    """A read-only binary file over a stream of chunks: what APIs that pull with ``read(n)`` need.

    An exception raised by the stream is remembered in ``error`` (then re-raised), so that a library
    wrapping it (pyrage turns it into its own error) does not hide what really failed.
    """

    def __init__(self, chunks, observe=None):
        super(ChunkReader, self).__init__()
        self._chunks = iter(chunks)
        self._current = memoryview(b'')
        self._observe = observe
        self.error = None
        self.eof = False

    def readable(self):
        return True

    def _fill(self):
        while not len(self._current) and not self.eof:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.eof = True
                return
            except BaseException as exc:
                self.error = exc
                raise
            if self._observe is not None:
                self._observe(chunk)
            self._current = memoryview(chunk)

    def read(self, size=-1):
        if size is None or size < 0:
            parts = []
            while True:
                self._fill()
                if self.eof:
                    return b''.join(parts)
                parts.append(self._current.tobytes())
                self._current = memoryview(b'')
        self._fill()
        piece = self._current[:size]
        self._current = self._current[len(piece):]
        return piece.tobytes()

    def readinto(self, buffer):
        self._fill()
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        return count

    def close(self):
        if not self.closed:
            close_stream(self._chunks)
        super(ChunkReader, self).close()


class Sha256(object):
    """Pass chunks through, hashing them: ``hexdigest()`` and ``size`` are final once ``done``."""

    def __init__(self, chunks):
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self.size = 0
        self.done = False

    def __iter__(self):
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk
        self.done = True

    def hexdigest(self):
        return self._hash.hexdigest()

    def close(self):
        close_stream(self._chunks)


class Meter(object):
    """Pass chunks through, counting bytes and time; ``progress(meter)`` at most every ``interval`` seconds."""

    def __init__(self, chunks, progress=None, interval=10.0, clock=time.monotonic):
        self._chunks = chunks
        self._progress = progress
        self._interval = interval
        self._clock = clock
        self.bytes = 0
        self.started = None
        self.finished = None

    def __iter__(self):
        self.started = self._clock()
        reported = self.started
        for chunk in self._chunks:
            self.bytes += len(chunk)
            if self._progress is not None and self._clock() - reported >= self._interval:
                reported = self._clock()
                self._progress(self)
            yield chunk
        self.finished = self._clock()

    @property
    def seconds(self):
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else self._clock()) - self.started

    @property
    def bytes_per_second(self):
        seconds = self.seconds
        return self.bytes / seconds if seconds > 0 else 0.0

    def close(self):
        close_stream(self._chunks)

    def summary(self):
        """What a module result reports: bytes, seconds and MiB/s."""
        return {
            'bytes': self.bytes,
            'seconds': round(self.seconds, 3),
            'mib_per_second': round(self.bytes_per_second / 1048576.0, 1),
        }


# -- zstd ------------------------------------------------------------------------------------------------

def _require_zstandard():
    if not HAS_ZSTANDARD:
        raise StreamError('the Python library zstandard is needed for compression: pip install zstandard')


def zstd_compress(chunks, level=3, threads=0):
    """One zstd frame of the stream (standard format, with a content checksum).

    level 1..19 (3: zstd's default; above ~12 the compressor needs tens of MiB more); threads 0 compresses in
    the calling thread, N > 0 in N zstd worker threads, -1 one per CPU.
    """
    _require_zstandard()
    if not 1 <= int(level) <= 19:
        raise StreamError('zstd level %s is out of range: use 1 (fastest) to 19 (smallest)' % level)
    # Worker threads compress jobs of job_size each; zstd's default (4 windows: 8 MiB at level 3, per worker,
    # in and out) costs ~50 MiB more RSS for no speed: 1 MiB jobs keep it at a few MiB.
    params = zstandard.ZstdCompressionParameters.from_level(
        int(level), threads=int(threads), job_size=ZSTD_JOB_SIZE if threads else 0, write_checksum=True)
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    for chunk in chunks:
        out = stream.compress(chunk)
        if out:
            yield out
    out = stream.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
    if out:
        yield out


_ZSTD_MAGIC = 0xFD2FB528


class _ZstdFrames(object):
    """Follows the frame and block headers of a zstd stream (RFC 8878) as it passes, skipping the payload,
    to tell whether it ended on a frame boundary: zstandard's streaming readers stop quietly at the end of a
    truncated input."""

    def __init__(self):
        self._need = 4          # header bytes wanted next
        self._state = 'magic'
        self._header = b''
        self._skip = 0          # payload bytes to pass over
        self._checksum = False
        self.frames = 0
        self.error = None

    @property
    def complete(self):
        return self.error is None and self.frames > 0 and self._state == 'magic' and not self._header \
            and not self._skip

    def feed(self, data):
        view = memoryview(data)
        while len(view) and self.error is None:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            take = min(self._need - len(self._header), len(view))
            self._header += view[:take].tobytes()
            view = view[take:]
            if len(self._header) == self._need:
                header, self._header = self._header, b''
                self._parse(header)

    def _parse(self, header):
        if self._state == 'magic':
            magic = struct.unpack('<I', header)[0]
            if magic == _ZSTD_MAGIC:
                self._state, self._need = 'descriptor', 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need = 'skippable', 4
            else:
                self.error = 'not a zstd stream (bad magic number)'
        elif self._state == 'skippable':
            self._skip = struct.unpack('<I', header)[0]
            self._state, self._need = 'magic', 4
            self.frames += 1
        elif self._state == 'descriptor':
            descriptor = ord(header[:1])
            single_segment = descriptor >> 5 & 1
            self._checksum = bool(descriptor >> 2 & 1)
            content_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size
            self._state, self._need = 'block', 3
        elif self._state == 'block':
            value = header[0] | header[1] << 8 | header[2] << 16
            last, kind, size = value & 1, value >> 1 & 3, value >> 3
            if kind == 3:
                self.error = 'corrupted zstd stream (reserved block type)'
                return
            self._skip = 1 if kind == 1 else size
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = 'magic', 4
                self.frames += 1


def zstd_decompress(chunks, chunk_size=DEFAULT_CHUNK_SIZE):
    """The decompressed stream, in chunks of at most chunk_size; any number of frames, none cut short."""
    _require_zstandard()
    frames = _ZstdFrames()
    source = ChunkReader(chunks, observe=frames.feed)
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=256 * 1024, read_across_frames=True,
                                                        closefd=False)
    try:
        while True:
            out = reader.read(chunk_size)
            if not out:
                break
            yield out
        if source.read(1):
            raise StreamError('zstd stream: data after the end of the compressed stream: the object is corrupted')
    except zstandard.ZstdError as exc:
        raise StreamError('zstd stream: %s: the object is corrupted or not zstd-compressed' % exc)
    finally:
        reader.close()
    if frames.error:
        raise StreamError('zstd stream: %s: the object is corrupted or not zstd-compressed' % frames.error)
    if not frames.complete:
        raise StreamError('zstd stream ends in the middle of a frame: the object is truncated')


# -- age -------------------------------------------------------------------------------------------------

def _require_pyrage():
    if not HAS_PYRAGE:
        raise StreamError('the Python library pyrage is needed for age encryption: pip install pyrage')


def _key_lines(text):
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith('#'):
            yield number, line


def parse_recipients(recipients):
    """pyrage recipients from age public keys ("age1..."); each item may hold several lines, with # comments
    and blank lines (the format of ``age -R`` files). Objects that are already recipients pass through."""
    _require_pyrage()
    if isinstance(recipients, (str, bytes)):
        recipients = [recipients]
    parsed = []
    for item in recipients:
        if not isinstance(item, (str, bytes)):
            parsed.append(item)
            continue
        if isinstance(item, bytes):
            item = item.decode('utf-8', 'replace')
        for dummy, line in _key_lines(item):
            if line.upper().startswith('AGE-SECRET-KEY-'):
                raise StreamError('an age identity (secret key) was given where a recipient (public key, age1...) '
                                  'belongs: give its public key, from `age-keygen -y identity.txt`')
            if not line.startswith('age1'):
                raise StreamError('recipient %r is not an age X25519 public key: expected "age1..." '
                                  '(see `age-keygen -y identity.txt`)' % line[:80])
            try:
                parsed.append(pyrage.x25519.Recipient.from_str(line))
            except Exception:  # pyrage raises its own RecipientError, or ValueError for bad bech32
                raise StreamError('recipient %r is not a valid age X25519 public key (bad checksum or length)'
                                  % line[:80])
    if not parsed:
        raise StreamError('no age recipient given: at least one public key (age1...) is needed to encrypt')
    return parsed


def identities_from_text(text, source='identity'):
    """pyrage identities from the text of an age identity file (AGE-SECRET-KEY-1... lines, # comments)."""
    _require_pyrage()
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    identities = []
    for number, line in _key_lines(text):
        if not line.upper().startswith('AGE-SECRET-KEY-1'):
            # The line is not repeated: an identity file holds secrets.
            raise StreamError('line %d of %s is not an age X25519 identity (AGE-SECRET-KEY-1...)' % (number, source))
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:  # pyrage.IdentityError; its message would be harmless, ours names the line only
            raise StreamError('line %d of %s is not a valid age X25519 identity (bad checksum or length)'
                              % (number, source))
    if not identities:
        raise StreamError('%s holds no age identity (AGE-SECRET-KEY-1... line)' % source)
    return identities


def read_identities(path):
    """pyrage identities from an age identity file (as written by age-keygen)."""
    try:
        with open(path, 'rb') as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        raise StreamError('cannot read the age identity file %s: %s' % (path, exc.strerror or exc))
    return identities_from_text(text, source=path)


def public_keys(identities):
    """The recipients ("age1...") of identities: what a backup records as "encrypted to"."""
    return [str(identity.to_public()) for identity in identities]


class _Stop(Exception):
    """The consumer went away: the worker stops at its next write."""


class _QueueWriter(object):
    """The writer given to pyrage: gathers its 64 KiB pieces into chunks, hands them over through a bounded
    queue, waits while the consumer is behind and stops when it is gone."""

    def __init__(self, out, stop, chunk_size):
        self._out = out
        self._stop = stop
        self._chunk_size = chunk_size
        self._parts = []
        self._size = 0

    def put(self, item):
        while True:
            if self._stop.is_set():
                raise _Stop()
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def write(self, data):
        self._parts.append(bytes(data))
        self._size += len(data)
        if self._size >= self._chunk_size:
            self.flush()
        return len(data)

    def flush(self):
        if self._parts:
            chunk = b''.join(self._parts)
            self._parts, self._size = [], 0
            self.put(('data', chunk))


def _in_worker(work, chunks, chunk_size, describe_error, name):
    """Run work(reader, writer) in a thread, reader over chunks, and yield what it writes."""
    out = queue.Queue(maxsize=QUEUE_DEPTH)
    stop = threading.Event()
    reader = ChunkReader(chunks)
    writer = _QueueWriter(out, stop, chunk_size)

    def run():
        try:
            work(reader, writer)
            writer.flush()
            writer.put(('end', None))
        except _Stop:
            pass
        except BaseException as exc:  # pylint: disable=broad-except
            try:
                writer.put(('error', exc))
            except _Stop:
                pass

    thread = threading.Thread(target=run, name=name)
    thread.daemon = True
    thread.start()
    try:
        while True:
            kind, value = out.get()
            if kind == 'data':
                yield value
            elif kind == 'end':
                return
            else:
                if reader.error is not None:
                    raise reader.error  # what failed upstream, not pyrage's wrapping of it
                if isinstance(value, _Stop):
                    return
                raise StreamError(describe_error(value))
    finally:
        stop.set()
        thread.join(WORKER_JOIN_SECONDS)
        if not thread.is_alive():
            reader.close()


def age_encrypt(chunks, recipients, chunk_size=DEFAULT_CHUNK_SIZE):
    """The stream encrypted to recipients (age1... strings or pyrage recipients), in the age v1 format."""
    _require_pyrage()
    parsed = parse_recipients(recipients)

    def work(reader, writer):
        pyrage.encrypt_io(reader, writer, parsed)

    def describe(exc):
        return 'age encryption failed: %s' % exc

    return _in_worker(work, chunks, chunk_size, describe, 'age-encrypt')


def age_decrypt(chunks, identities, chunk_size=DEFAULT_CHUNK_SIZE):
    """The plaintext of an age stream, decrypted with identities (pyrage identities, e.g. read_identities())."""
    _require_pyrage()
    if not identities:
        raise StreamError('no age identity given: the identity file of one of the recipients is needed to decrypt')

    def work(reader, writer):
        pyrage.decrypt_io(reader, writer, list(identities))

    def describe(exc):
        text = str(exc)
        if 'No matching keys' in text:
            return ('the backup is not encrypted to the given identity: use the identity file of one of the '
                    'recipients the backup lists (age: %s)' % text)
        if 'Header' in text or 'header' in text:
            return 'not an age-encrypted stream, or its header is damaged (age: %s)' % text
        return 'age decryption failed: the object is truncated or was altered (age: %s)' % text

    return _in_worker(work, chunks, chunk_size, describe, 'age-decrypt')
