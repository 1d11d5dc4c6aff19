# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP/2 snapshot reader without an etcd: HPACK literals, the message decoder fed in every split, and a
SnapshotCall against a scripted HTTP/2 server on loopback (flow control, acknowledgements, padding, the ways a
stream ends). tests/functional reads real etcd members of every line with it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import random
import socket
import struct
import threading
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client, _h2
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient, EtcdClientError


def varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint((number << 3) | 2) + varint(len(value)) + value


def response(blob, remaining, version=None, header=True):
    """A serialized SnapshotResponse as etcd sends it: header, remaining_bytes, blob, version (3.6+)."""
    body = b''
    if header:
        body += field(1, field(1, 0x1234567890abcdef) + field(2, 0xfedcba0987654321) + field(3, 123456) +
                      field(4, 7))
    if remaining:
        body += field(2, remaining)
    if blob:
        body += field(3, blob)
    if version:
        body += field(4, version)
    return body


def grpc_message(body):
    return b'\x00' + struct.pack('>I', len(body)) + body


def snapshot_messages(size, piece=32 * 1024, version=b'3.6.0'):
    """The messages of a snapshot of size bytes, its sha256 trailer last (the trailer here is not a real one)."""
    data = bytes(bytearray(random.getrandbits(8) for dummy in range(min(size, 4096)))) * (size // 4096 + 1)
    data = data[:size]
    blobs = [data[offset:offset + piece] for offset in range(0, size, piece)]
    messages = []
    sent = 0
    for blob in blobs:
        sent += len(blob)
        messages.append((blob, size - sent))
    trailer = b'T' * 32
    bodies = [response(blob, left, version if not left else None) for blob, left in messages]
    bodies.append(response(trailer, 0))
    return data + trailer, [blob for blob, dummy in messages] + [trailer], bodies


# -- HPACK -------------------------------------------------------------------------------------------

def test_hpack_integers_as_rfc_7541_shows_them():
    assert _h2.hpack_integer(10, 5) == b'\x0a'
    assert _h2.hpack_integer(1337, 5) == b'\x1f\x9a\x0a'
    assert _h2.hpack_integer(42, 8) == b'\x2a'
    assert _h2.hpack_integer(127, 7) == b'\x7f\x00'


def test_request_headers_are_literals_never_indexed():
    block = _h2.request_headers(b'https', b'10.0.0.1:2379', b'tok' * 100)
    assert block.startswith(b'\x00\x07:method\x04POST')
    assert b'\x05:path\x22/etcdserverpb.Maintenance/Snapshot' in block
    assert b'\x05token\x7f\xad\x01' + b'tok' * 100 in block  # a 300-byte value: 127 + 173


# -- the decoder -------------------------------------------------------------------------------------

def feed_in_pieces(stream, cuts, chunk_size=_h2.DEFAULT_CHUNK_SIZE):
    decoder = _h2.SnapshotDecoder(chunk_size)
    view = memoryview(stream)
    chunks = []
    previous = 0
    for cut in sorted(cuts) + [len(stream)]:
        decoder.feed(view, previous, cut)
        previous = cut
        chunks.extend(decoder.ready)
        del decoder.ready[:]
    decoder.finish()
    chunks.extend(decoder.ready)
    return decoder, chunks


@pytest.mark.parametrize('seed', range(12))
def test_the_decoder_hands_on_every_blob_byte_in_any_split(seed):
    random.seed(seed)
    size = random.choice([0, 1, 511, 32 * 1024, 100 * 1024 + 7, 700 * 1024])
    whole, blobs, bodies = snapshot_messages(size, piece=random.choice([1000, 32 * 1024]))
    stream = b''.join(grpc_message(body) for body in bodies)
    cuts = random.sample(range(1, len(stream)), min(len(stream) - 1, random.choice([0, 3, 50, 400])))
    if seed % 3 == 0:
        cuts = list(range(1, len(stream)))[:3000]  # byte by byte at the start
    chunk_size = random.choice([1, 4096, _h2.DEFAULT_CHUNK_SIZE])
    decoder, chunks = feed_in_pieces(stream, cuts, chunk_size)
    assert b''.join(bytes(chunk) for chunk, dummy in chunks) == whole
    assert decoder.messages == len(bodies) and decoder.remaining == 0
    # the trailer comes alone, as etcd sent it; a chunk's remaining_bytes is its last message's
    assert chunks[-1] == (bytearray(b'T' * 32), 0)
    done = 0
    for chunk, remaining in chunks[:-1]:
        done += len(chunk)
        assert remaining == size - done
    assert all(len(chunk) >= chunk_size for chunk, remaining in chunks[:-1] if remaining)
    assert all(len(chunk) < chunk_size + 32 * 1024 + 1 for chunk, dummy in chunks)


def test_fields_the_reader_does_not_know_are_skipped_before_and_after_the_blob():
    body = field(9, b'x' * 300) + field(2, 5) + field(3, b'hello') + field(15, 77) + field(4, b'3.7.0')
    body += varint((16 << 3) | 5) + b'\x01\x02\x03\x04'
    decoder, chunks = feed_in_pieces(grpc_message(body) + grpc_message(response(b'!', 0)), [2, 40, 320])
    assert chunks == [(bytearray(b'hello!'), 0)]


@pytest.mark.parametrize('stream, message', [
    (b'\x01\x00\x00\x00\x01\x00', 'compressed'),
    (b'\x00\x7f\x00\x00\x00', 'bytes'),
    (grpc_message(field(3, b'a') + field(3, b'b')), 'two blobs'),
    (grpc_message(b'\x0b'), 'wire type 3'),
    (grpc_message(b'\x10' + b'\xff' * 11), 'longer than 10 bytes'),
])
def test_what_is_not_a_snapshot_stream_is_refused(stream, message):
    decoder = _h2.SnapshotDecoder()
    with pytest.raises(ValueError, match=message):
        decoder.feed(memoryview(stream))


def test_a_stream_cut_inside_a_message_is_refused_at_its_end():
    decoder = _h2.SnapshotDecoder()
    decoder.feed(memoryview(grpc_message(response(b'x' * 100, 0))[:-10]))
    with pytest.raises(ValueError, match='inside a gRPC message'):
        decoder.finish()


def test_fields_before_the_blob_are_read_once_in_linear_time():
    """A message of 256 KiB of small fields before its blob: each byte is read once (this took minutes when the
    head of a message was scanned again for every 64 bytes gathered)."""
    body = field(1, 0) * (128 * 1024) + field(3, b"x")
    stream = grpc_message(body) + grpc_message(response(b'!', 0))
    started = time.monotonic()
    decoder, chunks = feed_in_pieces(stream, range(16384, len(stream), 16384))
    assert time.monotonic() - started < 5
    assert chunks == [(bytearray(b'x'), 0), (bytearray(b'!'), 0)]


def test_skipped_fields_are_not_kept():
    """What the decoder keeps of a message besides its blob is at most a varint, however long the message."""
    decoder = _h2.SnapshotDecoder()
    out = decoder._out
    body = field(9, b'y' * (_h2.MAX_MESSAGE - 16))
    stream = grpc_message(body)
    view = memoryview(stream)
    for offset in range(0, len(stream), 65536):
        decoder.feed(view, offset, min(len(stream), offset + 65536))
        assert len(decoder._small) <= 10 and decoder._out is out and len(out) == _h2.DEFAULT_CHUNK_SIZE + 65536
    assert decoder.messages == 1


def test_a_message_larger_than_the_bound_is_refused_from_its_prefix():
    decoder = _h2.SnapshotDecoder()
    with pytest.raises(ValueError, match='more than the 4194304'):
        decoder.feed(memoryview(b'\x00' + struct.pack('>I', _h2.MAX_MESSAGE + 1)))
    decoder = _h2.SnapshotDecoder()
    decoder.feed(memoryview(b'\x00' + struct.pack('>I', _h2.MAX_MESSAGE)))  # the bound itself is taken
    assert decoder.messages == 0


def test_many_tiny_messages_that_each_end_a_chunk_cost_what_they_weigh():
    """Each message with remaining_bytes 0 ends its chunk: a small chunk is copied out and the buffer kept, not
    allocated again (320 KiB for every 8 bytes fed)."""
    stream = grpc_message(response(b'ab', 0, header=False)) * 20000
    decoder = _h2.SnapshotDecoder()
    out = decoder._out
    started = time.monotonic()
    decoder.feed(memoryview(stream))
    assert time.monotonic() - started < 5
    assert decoder._out is out and len(decoder.ready) == 20000 and decoder.ready[0] == (bytearray(b'ab'), 0)


@pytest.mark.parametrize('stream, message', [
    (grpc_message(b'\x1a'), 'ends after the key of field 3'),
    (grpc_message(b'\x1a\x05abc'), 'blob of 5 bytes runs past'),
    (grpc_message(b'\x4a\x05abc'), 'field 9 [(]5 bytes[)] runs past'),
    (grpc_message(b'\x10\x80'), 'last field runs past the end'),
    (grpc_message(b'\x0d\x01\x02'), 'field 1 [(]4 bytes[)] runs past'),
])
def test_fields_that_run_past_their_message_are_refused(stream, message):
    with pytest.raises(ValueError, match=message):
        feed_in_pieces(stream, range(1, len(stream)))


# -- a scripted HTTP/2 server --------------------------------------------------------------------------

class Server(object):
    """Accepts one connection, reads the client's preface and request, then plays script (a list of bytes to
    send, 'close', or a number of seconds to wait), then records what the client sends until it closes."""

    def __init__(self, script):
        self.script = script
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.frames = []  # (type, flags, stream, payload) the client sent
        self.thread = threading.Thread(target=self.run)
        self.thread.daemon = True
        self.thread.start()

    def _read_frames(self, conn, until_request):
        while True:
            header = self._exact(conn, 9)
            if header is None:
                return
            length = struct.unpack('>I', b'\x00' + header[:3])[0]
            payload = self._exact(conn, length) if length else b''
            self.frames.append((header[3], header[4], struct.unpack('>I', header[5:])[0] & 0x7fffffff, payload))
            if until_request and header[3] == _h2.DATA and header[4] & _h2.END_STREAM:
                return

    @staticmethod
    def _exact(conn, size):
        data = b''
        while len(data) < size:
            piece = conn.recv(size - len(data))
            if not piece:
                return None
            data += piece
        return data

    def run(self):
        conn, dummy = self.listener.accept()
        try:
            assert self._exact(conn, len(_h2.PREFACE)) == _h2.PREFACE
            self._read_frames(conn, True)
            for step in self.script:
                if step == 'close':
                    conn.close()
                    return
                if isinstance(step, (int, float)):
                    threading.Event().wait(step)
                    continue
                conn.sendall(step)
            conn.settimeout(2)
            self._read_frames(conn, False)
        except (OSError, socket.error):
            pass
        finally:
            conn.close()
            self.listener.close()

    def sent(self, kind):
        return [(flags, stream, payload) for frame_kind, flags, stream, payload in self.frames if frame_kind == kind]


def data_frames(stream, size, padded=False):
    frames = []
    for offset in range(0, len(stream), size):
        piece = stream[offset:offset + size]
        if padded:
            frames.append(_h2.frame(_h2.DATA, _h2.PADDED, 1, b'\x03' + piece + b'\x00\x00\x00'))
        else:
            frames.append(_h2.frame(_h2.DATA, 0, 1, piece))
    return frames


HEADERS = _h2.frame(_h2.HEADERS, 0x4, 1, b'\x88\x5f\x8b\x1d\x75\xd0\x62\x0d\x26\x3d\x4c\x4d\x65\x64')
TRAILERS = _h2.frame(_h2.HEADERS, 0x4 | _h2.END_STREAM, 1, b'\x40\x88\x9a\xca\xc8\xb2\x12\x34\xda\x8f\x01\x30')


def call(server, **options):
    options.setdefault('timeout', 10)
    snapshot = _h2.SnapshotCall('127.0.0.1', server.port, None, **options)
    return snapshot


def test_a_stream_with_settings_ping_padding_and_split_messages():
    whole, dummy, bodies = snapshot_messages(300 * 1024)
    stream = b''.join(grpc_message(body) for body in bodies)
    script = [_h2.frame(_h2.SETTINGS, 0, 0, struct.pack('>HI', 3, 100)), HEADERS,
              _h2.frame(_h2.PING, 0, 0, b'12345678'), _h2.frame(_h2.WINDOW_UPDATE, 0, 0, b'\x00\x00\x10\x00')]
    script += data_frames(stream, 10000, padded=True) + [TRAILERS]
    server = Server(script)
    snapshot = call(server, token='the-token', window=70000, chunk_size=64 * 1024)
    chunks = list(snapshot)
    server.thread.join(5)
    assert b''.join(bytes(chunk) for chunk, dummy in chunks) == whole
    assert snapshot.received == len(whole)
    assert chunks[-1][1] == 0 and all(left > 0 for dummy, left in chunks[:-2])
    settings = server.sent(_h2.SETTINGS)
    assert settings[0][0] == 0 and struct.pack('>HI', _h2.SETTINGS_INITIAL_WINDOW_SIZE, 70000) in settings[0][2]
    assert (_h2.ACK, 0, b'') in settings  # the server's settings acknowledged
    assert (_h2.ACK, 0, b'12345678') in server.sent(_h2.PING)
    headers = server.sent(_h2.HEADERS)[0][2]
    assert b'\x05token\x09the-token' in headers and b'\x0a:authority\x0f127.0.0.1:%d' % server.port in headers
    assert server.sent(_h2.DATA) == [(_h2.END_STREAM, 1, b'\x00\x00\x00\x00\x00')]
    # the window is given back as it is used, for the connection and the stream alike
    updates = server.sent(_h2.WINDOW_UPDATE)
    assert updates[0] == (0, 0, struct.pack('>I', 70000 - 65535))
    given = sum(struct.unpack('>I', payload)[0] for flags, stream_id, payload in updates[1:] if stream_id == 1)
    assert given > len(stream) - 70000


def test_trailers_only_is_a_refusal_with_nothing_received():
    server = Server([HEADERS[:3] + bytes(bytearray([_h2.HEADERS, 0x5])) + HEADERS[5:]])
    with pytest.raises(_h2.H2Error) as caught:
        list(call(server))
    assert caught.value.kind == 'refused' and caught.value.received == 0
    assert 'without sending any of the snapshot' in caught.value.msg


def test_a_reset_after_some_chunks_is_a_broken_stream():
    dummy, dummy, bodies = snapshot_messages(200 * 1024)
    stream = b''.join(grpc_message(body) for body in bodies[:3])
    server = Server([HEADERS] + data_frames(stream, 16384) + [_h2.frame(_h2.RST_STREAM, 0, 1, b'\x00\x00\x00\x02')])
    received = []
    with pytest.raises(_h2.H2Error) as caught:
        for chunk, dummy in call(server, chunk_size=1):
            received.append(len(chunk))
    assert caught.value.kind == 'broken' and caught.value.received == sum(received) == 3 * 32 * 1024
    assert 'INTERNAL_ERROR' in caught.value.msg


def test_a_connection_closed_mid_stream_is_a_broken_stream():
    dummy, dummy, bodies = snapshot_messages(200 * 1024)
    stream = b''.join(grpc_message(body) for body in bodies)
    server = Server([HEADERS] + data_frames(stream[:100000], 16384) + ['close'])
    with pytest.raises(_h2.H2Error) as caught:
        list(call(server, chunk_size=1))
    assert caught.value.kind == 'broken' and 'closed in the middle' in caught.value.msg


def test_a_stream_ending_before_the_last_message_is_broken():
    dummy, dummy, bodies = snapshot_messages(200 * 1024)
    stream = b''.join(grpc_message(body) for body in bodies[:2])
    server = Server([HEADERS] + data_frames(stream, 16384) + [TRAILERS])
    with pytest.raises(_h2.H2Error) as caught:
        list(call(server, chunk_size=1))
    assert caught.value.kind == 'broken' and 'still to come' in caught.value.msg


def test_a_goaway_before_the_stream_is_a_refusal():
    server = Server([_h2.frame(_h2.GOAWAY, 0, 0, b'\x00\x00\x00\x00\x00\x00\x00\x0b')])
    with pytest.raises(_h2.H2Error) as caught:
        list(call(server))
    assert caught.value.kind == 'refused' and 'ENHANCE_YOUR_CALM' in caught.value.msg


def test_a_silent_server_times_out():
    server = Server([HEADERS, 3])
    with pytest.raises(_h2.H2Error) as caught:
        list(call(server, timeout=0.5))
    assert caught.value.kind == 'timeout'


def test_nothing_listening_is_a_connect_error():
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(_h2.H2Error) as caught:
        list(_h2.SnapshotCall('127.0.0.1', port, None, timeout=5))
    assert caught.value.kind == 'connect'


# -- EtcdClient.snapshot: the reader first, grpcio when it got nothing ---------------------------------------

class FakeCall(object):
    def __init__(self, chunks, error=None):
        self.chunks = chunks
        self.error = error
        self.closed = False

    def __iter__(self):
        received = 0
        for chunk in self.chunks:
            received += len(chunk[0])
            yield chunk
        if self.error:
            raise _h2.H2Error(self.error[1], self.error[0], received)

    def close(self):
        self.closed = True


@pytest.fixture
def client(monkeypatch, tmp_path):
    if not _client.HAS_ETCD_CLIENT:
        pytest.skip('grpcio/protobuf/etcd-sdk-python missing')
    monkeypatch.delenv('ETCDOPS_SNAPSHOT_READER', raising=False)
    made = EtcdClient(['http://127.0.0.1:1'], pki_dir=str(tmp_path))
    monkeypatch.setattr(made, '_grpc_snapshot', lambda endpoint, timeout: iter([(b'grpc', 0)]))
    return made


def test_the_reader_serves_and_grpc_is_not_asked(client, monkeypatch):
    fake = FakeCall([(bytearray(b'abc'), 32), (bytearray(b'T' * 32), 0)])
    monkeypatch.setattr(client, '_h2_call', lambda endpoint, timeout: fake)
    assert list(client.snapshot('http://127.0.0.1:1')) == [(b'abc', 32), (b'T' * 32, 0)]
    assert fake.closed and client.snapshot_fallback is None


def test_grpc_is_asked_when_the_reader_got_nothing(client, monkeypatch):
    fake = FakeCall([], error=('refused', 'the server ended the call without sending any of the snapshot'))
    monkeypatch.setattr(client, '_h2_call', lambda endpoint, timeout: fake)
    assert list(client.snapshot('http://127.0.0.1:1')) == [(b'grpc', 0)]
    assert 'without sending' in client.snapshot_fallback


def test_a_stream_broken_after_data_fails_without_asking_grpc(client, monkeypatch):
    fake = FakeCall([(bytearray(b'abc'), 10)], error=('broken', 'the connection closed in the middle of the stream'))
    monkeypatch.setattr(client, '_h2_call', lambda endpoint, timeout: fake)
    with pytest.raises(EtcdClientError) as caught:
        list(client.snapshot('http://127.0.0.1:1'))
    assert caught.value.kind == 'stream_broken' and 'broke after 3 bytes' in caught.value.msg


def test_a_timeout_is_not_asked_again(client, monkeypatch):
    fake = FakeCall([], error=('timeout', 'did not end within 5s'))
    monkeypatch.setattr(client, '_h2_call', lambda endpoint, timeout: fake)
    with pytest.raises(EtcdClientError) as caught:
        list(client.snapshot('http://127.0.0.1:1', timeout=5))
    assert caught.value.kind == 'timeout' and 'within 5s' in caught.value.msg


def test_the_grpc_reader_only_when_asked(client, monkeypatch):
    monkeypatch.setattr(client, '_h2_call', lambda endpoint, timeout: pytest.fail('the HTTP/2 reader was used'))
    client.snapshot_reader = 'grpc'
    assert list(client.snapshot('http://127.0.0.1:1')) == [(b'grpc', 0)]
    monkeypatch.setenv('ETCDOPS_SNAPSHOT_READER', 'grpc')
    assert EtcdClient(['http://127.0.0.1:1'], pki_dir='/nonexistent').snapshot_reader == 'grpc'


def test_a_tls_handshake_dripped_a_byte_at_a_time_fails_within_the_dial_timeout():
    # a server that answers the ClientHello one byte every 0.2 s: each read is within the dial timeout, the whole
    # handshake must not be
    import ssl  # pylint: disable=import-outside-toplevel
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    stop = threading.Event()

    def drip():
        conn, dummy = listener.accept()
        try:
            conn.recv(65536)
            conn.sendall(b'\x16\x03\x03\x40\x00')  # a handshake record of 16 KiB, whose body never ends
            while not stop.is_set():
                conn.sendall(b'\x00')
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()
    thread = threading.Thread(target=drip)
    thread.start()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        with pytest.raises(_h2.H2Error) as caught:
            _h2.SnapshotCall('127.0.0.1', listener.getsockname()[1], context=context, dial_timeout=1.0)._connect()
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert time.monotonic() - started < 3 and caught.value.kind == 'connect', caught.value.msg
    assert 'timed out' in caught.value.msg or 'took longer' in caught.value.msg


# -- a peer that breaks HTTP/2's rules: refused before it costs anything -------------------------------------

class ScriptedPipe(object):
    """The pipe a SnapshotCall reads, fed from bytes: no socket, every read takes what the buffer asks for."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.sent = []

    def stream(self, deadline, stall=None):
        pass

    def set_lowat(self, size):
        pass

    def recv_into(self, view, size):
        count = min(size, len(view), len(self.data) - self.pos)
        view[:count] = self.data[self.pos:self.pos + count]
        self.pos += count
        return count

    def sendall(self, data):
        self.sent.append(bytes(data))

    def close(self):
        pass


def play(data, **options):
    snapshot = _h2.SnapshotCall('peer.example', 2379, None, **options)
    snapshot._sock = ScriptedPipe(data)
    return snapshot, [bytes(chunk) for chunk, dummy in snapshot._messages()]


def refused(data, **options):
    with pytest.raises(_h2.H2Error) as caught:
        play(data, **options)
    assert caught.value.kind == 'protocol', caught.value.msg
    return caught.value.msg


F = _h2.frame


def a_stream(size=100 * 1024):
    whole, dummy, bodies = snapshot_messages(size)
    return whole, b''.join(data_frames(b''.join(grpc_message(body) for body in bodies), 16384))


def test_a_well_formed_stream_with_header_blocks_in_continuations_padding_and_priority():
    whole, frames = a_stream()
    headers = F(_h2.HEADERS, _h2.PADDED | _h2.PRIORITY_FLAG, 1, b'\x02' + b'\x00\x00\x00\x00\x10' + HEADERS[9:13] +
                b'\x00\x00')
    headers += F(_h2.CONTINUATION, _h2.END_HEADERS, 1, HEADERS[13:])
    trailers = F(_h2.HEADERS, _h2.END_STREAM, 1, TRAILERS[9:12]) + F(_h2.CONTINUATION, 0, 1, TRAILERS[12:14])
    trailers += F(_h2.CONTINUATION, _h2.END_HEADERS, 1, TRAILERS[14:])
    extras = F(_h2.SETTINGS, 0, 0, struct.pack('>HIHI', 4, 2 ** 31 - 1, 5, 16384))
    extras += F(_h2.WINDOW_UPDATE, 0, 0, b'\x00\x01\x00\x00') + F(_h2.PRIORITY, 0, 3, b'\x00' * 5) + F(0xfa, 0, 0, b'?')
    snapshot, chunks = play(extras + headers + frames + trailers)
    assert b''.join(chunks) == whole
    assert F(_h2.SETTINGS, _h2.ACK, 0) in snapshot._sock.sent


WELL = (F(_h2.SETTINGS, 0, 0, b''), HEADERS)


@pytest.mark.parametrize('frames, message', [
    ([F(_h2.DATA, 0, 1, b'\0' * 16)[:3].replace(b'\x00\x00\x10', b'\x01\x00\x01') + F(_h2.DATA, 0, 1)[3:] +
      b'\0' * 65537], 'larger than the 65536 announced'),
    ([F(_h2.PING, 0, 0, b'1234567')], 'with 7 bytes, not 8'),
    ([F(_h2.PING, 0, 1, b'12345678')], 'on stream 1, not on the connection'),
    ([F(_h2.SETTINGS, 0, 1, b'')], 'on stream 1, not on the connection'),
    ([F(_h2.SETTINGS, 0, 0, b'\0' * 7)], 'not a multiple of 6'),
    ([F(_h2.SETTINGS, _h2.ACK, 0, b'\0' * 6)], 'acknowledgement with a payload'),
    ([F(_h2.SETTINGS, 0, 0, struct.pack('>HI', 2, 2))], 'SETTINGS_ENABLE_PUSH of 2'),
    ([F(_h2.SETTINGS, 0, 0, struct.pack('>HI', 4, 2 ** 31))], 'SETTINGS_INITIAL_WINDOW_SIZE of 2147483648'),
    ([F(_h2.SETTINGS, 0, 0, struct.pack('>HI', 5, 100))], 'SETTINGS_MAX_FRAME_SIZE of 100'),
    ([F(_h2.SETTINGS, 0, 0, struct.pack('>HI', 5, 2 ** 24))], 'outside 16384-16777215'),
    ([F(_h2.WINDOW_UPDATE, 0, 1, b'\x00\x00\x00\x00')], 'WINDOW_UPDATE of 0'),
    ([F(_h2.WINDOW_UPDATE, 0, 0, b'\x7f\xff\xff\xff')], 'window above 2^31-1'),
    ([F(_h2.SETTINGS, 0, 0, struct.pack('>HI', 4, 2 ** 31 - 1)), F(_h2.WINDOW_UPDATE, 0, 1, b'\x00\x00\x00\x01')],
     'window above 2^31-1'),
    ([F(_h2.WINDOW_UPDATE, 0, 0, b'\x00\x00\x01')], 'with 3 bytes, not 4'),
    ([F(_h2.RST_STREAM, 0, 0, b'\x00\x00\x00\x01')], 'on the connection, not on a stream'),
    ([F(_h2.RST_STREAM, 0, 1, b'\x00\x00\x01')], 'with 3 bytes, not 4'),
    ([F(_h2.PRIORITY, 0, 1, b'\x00' * 4)], 'with 4 bytes, not 5'),
    ([F(_h2.GOAWAY, 0, 0, b'\x00' * 7)], 'GOAWAY of 7 bytes'),
    ([F(_h2.GOAWAY, 0, 1, b'\x00' * 8)], 'on stream 1, not on the connection'),
    ([F(_h2.DATA, 0, 1, b'\x00\x00\x00\x00\x05')], 'DATA before the response headers'),
    ([F(_h2.CONTINUATION, _h2.END_HEADERS, 1, b'')], 'CONTINUATION without a HEADERS frame'),
    ([F(_h2.HEADERS, 0, 1, b'\x88'), F(_h2.PING, 0, 0, b'12345678')], 'inside a header block'),
    ([F(_h2.HEADERS, 0, 1, b'\x88'), F(_h2.CONTINUATION, _h2.END_HEADERS, 3, b'')], 'CONTINUATION on stream 3'),
    ([F(_h2.HEADERS, _h2.PADDED, 1, b'\x05abcd')], 'bad padding length'),
    ([F(_h2.HEADERS, _h2.PRIORITY_FLAG, 1, b'\x00\x00')], 'too short for its priority fields'),
    ([HEADERS, F(_h2.HEADERS, _h2.END_HEADERS, 1, b'\x88')], 'trailers (a second HEADERS frame) that do not end'),
    ([F(_h2.PUSH_PROMISE, _h2.END_HEADERS, 1, b'\x00\x00\x00\x02')], 'PUSH_PROMISE'),
], ids=lambda value: value if isinstance(value, str) else '')
def test_frames_that_break_the_rules_are_refused(frames, message):
    assert message in refused(b''.join(frames))


def test_a_header_block_is_bounded_across_its_continuations():
    flood = F(_h2.HEADERS, 0, 1, b'\x88') + F(_h2.CONTINUATION, 0, 1, b'\x00' * 16384) * 5
    assert 'a header block of more than 65536 bytes' in refused(flood)


def test_a_flood_of_frames_without_snapshot_data_is_refused_and_not_all_answered():
    for filler in (F(_h2.PING, 0, 0, b'12345678'), F(_h2.SETTINGS, 0, 0), F(_h2.CONTINUATION, 0, 1),
                   F(_h2.DATA, _h2.PADDED, 1, b'\x00'), F(0x0b, 0, 0, b'')):
        head = F(_h2.HEADERS, 0, 1, b'\x88') if filler[3] == _h2.CONTINUATION else HEADERS
        with pytest.raises(_h2.H2Error) as caught:
            snapshot, dummy = play(head + filler * 5000)
        assert 'frames in a row without any of the snapshot' in caught.value.msg
        assert caught.value.kind == 'protocol'
    # the answers stop at the bound: a PING flood is not mirrored
    snapshot = _h2.SnapshotCall('peer.example', 2379, None)
    snapshot._sock = ScriptedPipe(HEADERS + F(_h2.PING, 0, 0, b'12345678') * 5000)
    with pytest.raises(_h2.H2Error):
        list(snapshot._messages())
    assert len(snapshot._sock.sent) <= _h2.MAX_IDLE_FRAMES


def test_control_frames_between_data_frames_are_not_a_flood():
    whole, frames = a_stream(300 * 1024)
    ping = F(_h2.PING, 0, 0, b'12345678') * 50
    pieces = [frames[offset:offset + 16393] for offset in range(0, len(frames), 16393)]
    dummy, chunks = play(HEADERS + b''.join(ping + piece for piece in pieces) + TRAILERS)
    assert b''.join(chunks) == whole


def test_data_beyond_the_window_given_is_refused():
    message = refused(HEADERS + F(_h2.DATA, 0, 1, b'\x00' * 65536), window=65535)
    assert 'beyond the window of 65535 given (FLOW_CONTROL_ERROR)' in message


def test_a_call_whose_messages_carry_no_snapshot_byte_is_refused():
    # one empty SnapshotResponse: remaining_bytes reads as 0, yet no byte of a snapshot came
    with pytest.raises(_h2.H2Error) as caught:
        play(HEADERS + F(_h2.DATA, _h2.END_STREAM, 1, b'\x00\x00\x00\x00\x00'))
    assert caught.value.kind == 'refused' and 'without sending any of the snapshot' in caught.value.msg


def test_a_message_without_snapshot_bytes_cannot_end_the_stream():
    # 400 bytes with 100 announced still to come, then an empty message (remaining_bytes reads as 0)
    stream = grpc_message(response(b'x' * 400, 100)) + grpc_message(b'')
    with pytest.raises(_h2.H2Error) as caught:
        play(HEADERS + F(_h2.DATA, _h2.END_STREAM, 1, stream), chunk_size=1)
    assert caught.value.kind == 'broken' and '100 bytes of the snapshot still to come' in caught.value.msg


def test_a_stream_that_stalls_ends_after_the_stall_timeout_not_the_whole_timeout():
    dummy, dummy, bodies = snapshot_messages(100 * 1024)
    stream = b''.join(grpc_message(body) for body in bodies)
    server = Server([HEADERS] + data_frames(stream[:40000], 16384) + [5])
    started = time.monotonic()
    with pytest.raises(_h2.H2Error) as caught:
        list(call(server, timeout=30, stall_timeout=0.5, chunk_size=1))
    assert caught.value.kind == 'timeout' and 'stalled after' in caught.value.msg and 'no byte came for 0.5 s' in caught.value.msg
    assert time.monotonic() - started < 4


def test_the_whole_stream_deadline_grows_with_the_size_the_member_announces(monkeypatch):
    whole, dummy, bodies = snapshot_messages(200 * 1024)
    stream = b''.join(grpc_message(body) for body in bodies)
    script = [HEADERS] + data_frames(stream[:40000], 16384) + [1.2] + data_frames(stream[40000:], 16384) + [TRAILERS]
    # 200 KiB at 100 KiB/s: 2 s allowed, more than the 0.8 s timeout
    monkeypatch.setattr(_h2, 'SCALE_RATE', 100 * 1024)
    chunks = list(call(Server(script), timeout=0.8, chunk_size=1))
    assert b''.join(bytes(chunk) for chunk, dummy in chunks) == whole
    # at 1 MiB/s the same size allows only the timeout: the pause is too long
    monkeypatch.setattr(_h2, 'SCALE_RATE', 1024 * 1024)
    with pytest.raises(_h2.H2Error) as caught:
        list(call(Server(script), timeout=0.8, chunk_size=1))
    assert caught.value.kind == 'timeout' and 'did not end within 1 s' in caught.value.msg
