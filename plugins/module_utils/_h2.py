# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: etcd's Snapshot call read straight off HTTP/2, without the gRPC library.

Why: a snapshot is one server-streaming call that carries the whole database in 32 KiB messages. Through
grpcio every message costs a trip through gRPC's C core and Python layer and a protobuf object: 2.8-2.9 s of
CPU for a 1.2 GB snapshot on the backup benchmark's host (2 vCPUs, shared with the member that serves it),
most of what the backup's pulling thread spends. Here the socket is read in large pieces, HTTP/2 frames and
gRPC messages are cut out of that buffer and each message's ``blob`` is handed on as it is.

What is implemented is what this one call needs and nothing else:

* a TCP connection, TLS with ALPN ``h2`` (the CA, client certificate and key the gRPC channel uses, the server
  name checked against the endpoint's host) or cleartext HTTP/2 with prior knowledge (``http://``);
* the client preface, SETTINGS (no push, our window), one request (HEADERS as HPACK literals, never
  compressed, never indexed, so no HPACK state is kept; the empty SnapshotRequest as DATA);
* flow control (WINDOW_UPDATE for the stream and the connection as data is consumed), SETTINGS and PING
  acknowledged, GOAWAY and RST_STREAM turned into errors;
* what a hostile or broken peer can send is checked before it costs anything: every frame's size against
  the 64 KiB we announce, the control frames' sizes, streams and settings as RFC 9113 fixes them, DATA beyond
  the window we gave, DATA before the response headers, header blocks (HEADERS and CONTINUATION) of more
  than 64 KiB, and more than 1000 frames in a row without a byte of the snapshot (a flood of PINGs or
  SETTINGS, each of which is answered); each is an H2Error of kind 'protocol';
* the response's HEADERS and trailers are not decoded (that would need HPACK with Huffman): the snapshot proves
  itself instead. The caller (``EtcdClient.snapshot``) checks the sha256 trailer and the announced size
  (``_snapshot.TrailerCheck``); a stream that ends before a message with ``remaining_bytes`` 0 is an error here.

``SnapshotCall`` raises ``H2Error``; ``error.received`` says how many blob bytes were handed on before it.
When nothing was received the caller asks again through grpcio, which reports what went wrong in gRPC's words
(refused connection, certificate, permission...): this reader never has to translate those.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import select
import socket
import ssl
import struct
import time

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
SNAPSHOT_PATH = b'/etcdserverpb.Maintenance/Snapshot'

# frame types and flags (RFC 9113 section 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = 0x1
END_HEADERS = 0x4
ACK = 0x1
PADDED = 0x8
PRIORITY_FLAG = 0x20
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
_SETTING = struct.Struct('>HI')
# The exact payload length of the control frames that have one (RFC 9113 section 6); others: a bad size.
_CONTROL_LENGTH = {PRIORITY: 5, RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4}
DEFAULT_WINDOW = 65535
STREAM_ID = 1

DEFAULT_STREAM_WINDOW = 8 * 1024 * 1024
# Sizes: etcd's frames are a message's first 4 KiB and the rest (~28.7 KiB) once the peer takes frames of 64 KiB
# (three frames of at most 16 KiB with HTTP/2's default). The buffers stay small: the backup to S3 has a
# peak memory bound of 100 MiB and runs close to it.
MAX_FRAME_SIZE = 64 * 1024        # what we accept
READ_SIZE = 128 * 1024            # one read of plain text asks for up to this much
SOCKET_READ_SIZE = 128 * 1024     # one recv of TLS records from the socket
BUFFER_SIZE = 256 * 1024          # the read buffer: after compaction a whole frame and a read always fit
LOWAT = 64 * 1024                 # SO_RCVLOWAT while streaming (see PlainPipe)
POLL_MS = 20                      # the longest wait for LOWAT bytes before reading what there is
# etcd sends SnapshotResponses of 32 KiB and a header (every line, 3.4 to 3.6); gRPC clients refuse more than
# 4 MiB by default. A larger announced size is refused before anything of it is gathered: a chunk is at most
# chunk_size and one message, within the backup's memory bound.
MAX_MESSAGE = 4 * 1024 * 1024
# The response's headers and trailers (HEADERS and its CONTINUATIONs): a few hundred bytes from etcd.
MAX_HEADER_BLOCK = 64 * 1024
# Frames in a row that carry no snapshot byte (SETTINGS, PING, empty or all-padding DATA, unknown types...): etcd
# sends a handful between messages; a peer that sends more is flooding (every PING and SETTINGS is answered).
MAX_IDLE_FRAMES = 1000
MAX_WINDOW = 2 ** 31 - 1
# Deadlines beside the caller's timeout for the whole stream: no byte for STALL_TIMEOUT seconds ends the call, and
# the whole-stream deadline grows with the size the first message announces (at SCALE_RATE bytes a second, sizes
# counted up to MAX_SCALED_SIZE), so that an 8 GiB database is not cut off by a timeout meant for a small one.
STALL_TIMEOUT = 60.0
SCALE_RATE = 8 * 1024 * 1024
MAX_SCALED_SIZE = 64 * 1024 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 256 * 1024   # blobs are handed on in chunks of about this size

_FRAME_HEADER = struct.Struct('>BHBBI')   # 24-bit length as byte + short, type, flags, stream id
_ERROR_CODES = ('NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT',
                'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR',
                'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED')


class Stalled(socket.timeout):
    """No byte came for the stall timeout."""


class H2Error(Exception):
    """The stream could not be read to its end. ``kind``: 'connect' (no HTTP/2 connection), 'refused' (the server
    ended the call before any message: gRPC's status says why), 'timeout', 'broken' (the stream stopped after
    some messages), 'protocol' (the server sent what HTTP/2 or gRPC does not allow)."""

    def __init__(self, msg, kind, received=0):
        super(H2Error, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.received = received


def error_name(code):
    return _ERROR_CODES[code] if 0 <= code < len(_ERROR_CODES) else 'error 0x%x' % code


def frame(kind, flags, stream_id, payload=b''):
    length = len(payload)
    return _FRAME_HEADER.pack(length >> 16, length & 0xffff, kind, flags, stream_id) + payload


def hpack_integer(value, prefix_bits, first=0):
    """An HPACK integer (RFC 7541 section 5.1) with the given prefix size, or-ed into first."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes(bytearray([first | value]))
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    """A header field as a literal without indexing, new name, no Huffman (RFC 7541 section 6.2.2)."""
    return b'\x00' + hpack_integer(len(name), 7) + name + hpack_integer(len(value), 7) + value


def request_headers(scheme, authority, token=None):
    """The HPACK block of the Snapshot request."""
    fields = [(b':method', b'POST'), (b':scheme', scheme), (b':path', SNAPSHOT_PATH), (b':authority', authority),
              (b'content-type', b'application/grpc'), (b'te', b'trailers'), (b'user-agent', b'etcdops-h2/1')]
    if token:
        fields.append((b'token', token))
    return b''.join(hpack_literal(name, value) for name, value in fields)


def read_bounded_varint(data, pos, end):
    """The protobuf varint at data[pos:end]: (value, position after it), or (None, end) when it runs past end.
    ValueError when it runs over 10 bytes."""
    value = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7f) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError('a varint longer than 10 bytes')
    return None, end


PREFIX_STATE, KEY_STATE, VALUE_STATE, LENGTH_STATE, SKIP_STATE, BLOB_STATE = range(6)
_BLOB = 3
_REMAINING_BYTES = 2


class SnapshotDecoder(object):
    """The gRPC messages of a Snapshot response (SnapshotResponse), fed in pieces of any size.

    The blobs are copied once, straight from what is fed into chunks of about chunk_size bytes, which wait in
    ``ready`` as (chunk, remaining_bytes of its last message); a message with remaining_bytes 0 ends its chunk, so
    that the sha256 trailer etcd sends last comes alone, as etcd sent it. A message without blob bytes (etcd
    sends none) is read and ignored: it cannot end the stream. Raises ValueError on what is not a
    SnapshotResponse stream.

    The fields are read as they stream by, each byte once: what the decoder keeps of a message besides its blob
    is a gRPC prefix or a varint cut by the end of a piece (at most 10 bytes). Fields other than remaining_bytes
    and blob are skipped unread. A chunk is at most chunk_size plus one message (MAX_MESSAGE).
    """

    def __init__(self, chunk_size=DEFAULT_CHUNK_SIZE):
        self.chunk_size = chunk_size
        self.ready = []
        self.messages = 0
        self.remaining = None     # remaining_bytes of the last whole message that carried snapshot bytes
        self._state = PREFIX_STATE
        self._small = bytearray()  # a prefix or a varint cut by the end of a piece
        self._left = 0             # bytes of the current message still to be fed
        self._skip = 0             # bytes of the blob or of a skipped field still to be fed
        self._field = 0            # the number of the field being read
        self._blobs = 0            # blobs in the current message
        self._blob_size = 0        # the size of its blob
        self._message_remaining = None
        self._out = bytearray(chunk_size + 65536)
        self._pos = 0

    def feed(self, view, first=0, last=None):  # pylint: disable=too-many-branches
        """Take view[first:last] (a memoryview)."""
        if last is None:
            last = len(view)
        while first < last:
            state = self._state
            if state == BLOB_STATE:
                take = min(self._skip, last - first)
                pos = self._pos
                self._out[pos:pos + take] = view[first:first + take]
                self._pos = pos + take
                first += take
                self._skip -= take
                self._left -= take
                if not self._skip:
                    self._field_done()
            elif state == SKIP_STATE:
                take = min(self._skip, last - first)
                first += take
                self._skip -= take
                self._left -= take
                if not self._skip:
                    self._field_done()
            elif state == PREFIX_STATE:
                small = self._small
                take = min(5 - len(small), last - first)
                small += view[first:first + take]
                first += take
                if len(small) < 5:
                    return
                if small[0] != 0:
                    raise ValueError('a compressed gRPC message (the request asked for none)')
                size = struct.unpack_from('>I', small, 1)[0]
                if size > MAX_MESSAGE:
                    raise ValueError('a gRPC message of %d bytes, more than the %d a SnapshotResponse may have' % (
                        size, MAX_MESSAGE))
                del small[:]
                self._left = size
                self._blobs = 0
                self._blob_size = 0
                self._message_remaining = None
                self._state = KEY_STATE
                if not size:
                    self._done()
            else:
                value, first = self._varint(view, first, min(last, first + self._left))
                if value is not None:
                    self._field_value(state, value)

    def _varint(self, view, first, end):
        """The varint at view[first:end] or that continues self._small there: (value or None, position after)."""
        small = self._small
        if small:
            had = len(small)
            small += view[first:min(end, first + 10 - had)]
            value, pos = read_bounded_varint(small, 0, len(small))
            taken = pos - had
            if value is not None:
                del small[:]
        else:
            value, pos = read_bounded_varint(view, first, end)
            taken = pos - first
            if value is None:
                small += view[first:end]
        self._left -= taken
        if value is None and not self._left:
            raise ValueError('the last field runs past the end of the message')
        return value, first + taken

    def _field_value(self, state, value):
        left = self._left
        if state == KEY_STATE:
            wire = value & 7
            self._field = field = value >> 3
            if wire not in (0, 1, 2, 5):
                raise ValueError('field %d has wire type %d' % (field, wire))
            if not left:
                raise ValueError('the message ends after the key of field %d' % field)
            if wire == 0:
                self._state = VALUE_STATE
            elif wire == 2:
                self._state = LENGTH_STATE
            else:
                self._skip_field(8 if wire == 1 else 4)
        elif state == VALUE_STATE:
            if self._field == _REMAINING_BYTES:
                self._message_remaining = value
            self._field_done()
        elif self._field == _BLOB:
            if value > left:
                raise ValueError('a blob of %d bytes runs past the end of its message' % value)
            self._blobs += 1
            if self._blobs > 1:
                raise ValueError('a message with two blobs')
            self._blob_size = value
            self._skip = value
            self._state = BLOB_STATE
            if not value:
                self._field_done()
        else:
            self._skip_field(value)

    def _skip_field(self, size):
        if size > self._left:
            raise ValueError('field %d (%d bytes) runs past the end of its message' % (self._field, size))
        self._skip = size
        self._state = SKIP_STATE
        if not size:
            self._field_done()

    def _field_done(self):
        self._state = KEY_STATE
        if not self._left:
            self._done()

    def _done(self):
        self.messages += 1
        self._state = PREFIX_STATE
        if not self._blob_size:
            return  # a message without snapshot bytes neither ends the stream nor says what is left
        remaining = self._message_remaining or 0
        self.remaining = remaining
        if self._pos and (self._pos >= self.chunk_size or remaining == 0):
            self._flush()

    def _flush(self):
        out = self._out
        pos = self._pos
        self._pos = 0
        if 4 * pos < len(out):
            # a small chunk (the sha256 trailer; crafted messages that each end a chunk) is copied out, so that
            # the buffer is allocated again only once a quarter of it was filled: linear in what was fed
            self.ready.append((out[:pos], self.remaining))
            return
        del out[pos:]
        self.ready.append((out, self.remaining))
        self._out = bytearray(self.chunk_size + 65536)

    def finish(self):
        """The stream ended: hand on the last chunk; ValueError if it ended inside a message."""
        if self._state != PREFIX_STATE or self._small:
            raise ValueError('the stream ended inside a gRPC message')
        if self._pos:
            self._flush()


def tls_context(ca_cert=None, client_cert=None, client_key=None):
    """TLS as the gRPC channel does it: the CA given (else the system's), the client pair if given, ALPN h2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    if hasattr(ssl, 'TLSVersion'):
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9113 section 9.2
    if ca_cert:
        context.load_verify_locations(cafile=ca_cert)
    else:
        context.load_default_certs()
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    context.set_alpn_protocols(['h2'])
    return context


class PlainPipe(object):
    """The connection as the reader uses it, once set up: a non-blocking socket waited on with poll.

    While streaming, the socket's SO_RCVLOWAT keeps poll from waking before LOWAT bytes have arrived (or
    POLL_MS passed): a reader faster than the member would otherwise wake for every TLS record (1.2 GB came in
    55 000 reads of 22 KiB, against 14 000 of 85 KiB with it; 0.6-0.7 s of system time against 0.35-0.4 s).
    """

    def __init__(self, sock):
        self.sock = sock
        self.deadline = None  # time.monotonic() after which a read raises socket.timeout
        self.stall = None     # seconds without a byte after which a read raises Stalled
        self._progress = None
        self._poller = None

    def stream(self, deadline, stall=None):
        """Switch to non-blocking reads bounded by deadline (None: unbounded) and by stall seconds without a
        byte (None: no bound)."""
        self.deadline = deadline
        self.stall = stall
        self._progress = time.monotonic()
        self.sock.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self.sock.fileno(), select.POLLIN)
        self.set_lowat(LOWAT)

    def set_lowat(self, size):
        if hasattr(socket, 'SO_RCVLOWAT'):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)

    def _wait(self, events=None):
        wait = POLL_MS
        now = time.monotonic()
        if self.deadline is not None:
            left = self.deadline - now
            if left <= 0:
                raise socket.timeout('timed out')
            wait = min(wait, int(left * 1000) + 1)
        if self.stall is not None:
            quiet = now - self._progress
            if quiet >= self.stall:
                raise Stalled('no byte came for %.1f s' % self.stall)
            wait = min(wait, int((self.stall - quiet) * 1000) + 1)
        if events is None:
            self._poller.poll(wait)
        else:
            poller = select.poll()
            poller.register(self.sock.fileno(), events)
            poller.poll(wait)

    def recv_raw(self, view, size):
        """Up to size bytes from the socket into view, 0 at its end; waits (poll) before each read."""
        while True:
            self._wait()
            try:
                count = self.sock.recv_into(view, size)
            except (BlockingIOError, InterruptedError):
                continue
            self._progress = time.monotonic()
            return count

    recv_into = recv_raw

    def sendall(self, data):
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                self._wait(select.POLLOUT)
                continue
            view = view[sent:]

    def close(self):
        self.sock.close()


class TLSPipe(PlainPipe):
    """TLS over the socket through memory buffers (ssl.MemoryBIO): the socket is read in large pieces, where an
    SSLSocket lets OpenSSL read every TLS record with two system calls of its own (its header, then its body).
    etcd sends a record per HTTP/2 frame or less (about 150 000 for a 1.2 GB snapshot)."""

    def __init__(self, sock, context, server_hostname):
        super(TLSPipe, self).__init__(sock)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._raw = bytearray(SOCKET_READ_SIZE)
        self._raw_view = memoryview(self._raw)
        # the whole handshake within the socket's (dial) timeout, not each read: a server that drips a byte at a
        # time must not hold the connection open for longer
        budget = sock.gettimeout()
        deadline = None if budget is None else time.monotonic() + budget
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise socket.timeout('the TLS handshake took longer than %.1f s' % budget)
                    sock.settimeout(left)
                count = sock.recv_into(self._raw_view, SOCKET_READ_SIZE)
                if not count:
                    raise ssl.SSLEOFError('the server closed the connection during the TLS handshake')
                self._incoming.write(self._raw_view[:count])
        self._flush()
        if budget is not None:
            sock.settimeout(budget)

    def alpn(self):
        return self._tls.selected_alpn_protocol()

    def _flush(self):
        pending = self._outgoing.read()
        if pending:
            if self._poller is None:
                self.sock.sendall(pending)
            else:
                PlainPipe.sendall(self, pending)

    def recv_into(self, view, size):
        """Up to size bytes of plain text into view; 0 at the end of the connection."""
        while True:
            try:
                return self._tls.read(size, view)
            except ssl.SSLWantReadError:
                self._flush()  # TLS 1.3 key updates may need an answer
                count = self.recv_raw(self._raw_view, SOCKET_READ_SIZE)
                if count:
                    self._incoming.write(self._raw_view[:count])
                else:
                    self._incoming.write_eof()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0

    def sendall(self, data):
        self._tls.write(data)
        self._flush()


class _PeerState(object):
    """What a SnapshotCall tracks of the server: its header blocks, its frames without data, our send windows."""

    def __init__(self, fail):
        self.fail = fail         # SnapshotCall._fail: raises H2Error
        self.header_blocks = 0   # HEADERS frames begun: the response's headers, then its trailers
        self.open_block = None   # while a header block waits for CONTINUATION: whether it ends the stream
        self.block_size = 0
        self.idle = 0            # frames in a row without a snapshot byte
        # what we may still send (we send 5 bytes of DATA: the windows only have to stay in range)
        self.connection_window = DEFAULT_WINDOW
        self.stream_window = DEFAULT_WINDOW
        self.initial_window = DEFAULT_WINDOW

    def idle_frame(self):
        self.idle += 1
        if self.idle > MAX_IDLE_FRAMES:
            self.fail('%d frames in a row without any of the snapshot (a flood: ENHANCE_YOUR_CALM)' % self.idle)

    def setting(self, key, value):
        if key == SETTINGS_ENABLE_PUSH and value > 1:
            self.fail('SETTINGS_ENABLE_PUSH of %d, not 0 or 1 (PROTOCOL_ERROR)' % value)
        elif key == SETTINGS_INITIAL_WINDOW_SIZE:
            if value > MAX_WINDOW:
                self.fail('SETTINGS_INITIAL_WINDOW_SIZE of %d, above 2^31-1 (FLOW_CONTROL_ERROR)' % value)
            self.stream_window += value - self.initial_window
            self.initial_window = value
            if self.stream_window > MAX_WINDOW:
                self.fail('a stream window above 2^31-1 (FLOW_CONTROL_ERROR)')
        elif key == SETTINGS_MAX_FRAME_SIZE and not 16384 <= value <= 16777215:
            self.fail('SETTINGS_MAX_FRAME_SIZE of %d, outside 16384-16777215 (PROTOCOL_ERROR)' % value)
        # other settings (and unknown ones) bound what we send, which is one small request: nothing to do

    def grow_window(self, stream_id, increment):
        if stream_id == 0:
            self.connection_window += increment
            window = self.connection_window
        elif stream_id == STREAM_ID:
            self.stream_window += increment
            window = self.stream_window
        else:
            return  # a stream we did not open: nothing to track
        if window > MAX_WINDOW:
            self.fail('a WINDOW_UPDATE that takes a window above 2^31-1 (FLOW_CONTROL_ERROR)')


class SnapshotCall(object):
    """Iterate to receive one member's snapshot as (chunk, remaining_bytes) pairs: the blobs of etcd's messages
    gathered into chunks of about chunk_size bytes (SnapshotDecoder), remaining_bytes that of the chunk's last.

    host, port: where to connect; context: an ssl.SSLContext (tls_context) or None for cleartext; token: etcd's
    auth token (bytes or str) or None; dial_timeout: seconds to connect and shake hands; timeout: seconds for
    the whole stream (None: no bound), extended to the size the member announces at SCALE_RATE; stall_timeout:
    seconds without a byte that end the call (None: no bound); window: the HTTP/2 flow-control window of the stream, what the server may
    send ahead of what was read. The chunks are bytearrays owned by the caller.
    """

    def __init__(self, host, port, context=None, token=None, dial_timeout=2.0, timeout=None,  # pylint: disable=too-many-arguments
                 window=DEFAULT_STREAM_WINDOW, chunk_size=DEFAULT_CHUNK_SIZE, stall_timeout=STALL_TIMEOUT):
        self.host = host
        self.port = port
        self.context = context
        self.token = token
        self.dial_timeout = dial_timeout
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.window = max(DEFAULT_WINDOW, int(window or DEFAULT_STREAM_WINDOW))
        self.chunk_size = chunk_size
        self.received = 0  # blob bytes handed on
        self.frames = 0    # DATA frames read (for tests and benchmarks)
        self._sock = None
        self._deadline = None
        self._started = None

    # -- connection ---------------------------------------------------------------------------------

    def _connect(self):
        self._started = started = time.monotonic()
        if self.timeout is not None:
            self._deadline = started + self.timeout
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.dial_timeout)
        except (OSError, socket.error) as exc:
            raise H2Error('cannot connect to %s:%s: %s' % (self.host, self.port, exc), 'connect')
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                pipe = TLSPipe(sock, self.context, self.host)
                if pipe.alpn() != 'h2':
                    raise H2Error('%s:%s did not agree to HTTP/2 over TLS (ALPN: %s)' % (
                        self.host, self.port, pipe.alpn()), 'connect')
                self._sock = pipe
            else:
                self._sock = PlainPipe(sock)
            self._send(self._opening())
        except (OSError, socket.error, ssl.SSLError) as exc:
            sock.close()
            self._sock = None
            raise H2Error('cannot set up HTTP/2 with %s:%s: %s' % (self.host, self.port, exc), 'connect')
        except H2Error:
            sock.close()
            raise

    def _opening(self):
        settings = struct.pack('>HIHIHI', SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, self.window,
                               SETTINGS_MAX_FRAME_SIZE, MAX_FRAME_SIZE)
        token = self.token
        if token is not None and not isinstance(token, bytes):
            token = token.encode('utf-8')
        scheme = b'https' if self.context is not None else b'http'
        authority = ('%s:%d' % (self.host if ':' not in self.host else '[%s]' % self.host, self.port)).encode('ascii')
        return b''.join([
            PREFACE,
            frame(SETTINGS, 0, 0, settings),
            frame(WINDOW_UPDATE, 0, 0, struct.pack('>I', self.window - DEFAULT_WINDOW)) if self.window > DEFAULT_WINDOW
            else b'',
            frame(HEADERS, END_HEADERS, STREAM_ID, request_headers(scheme, authority, token)),
            frame(DATA, END_STREAM, STREAM_ID, b'\x00\x00\x00\x00\x00'),  # the empty SnapshotRequest, uncompressed
        ])

    def _send(self, data):
        self._sock.sendall(data)

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except (OSError, socket.error):
                pass
            self._sock = None

    # -- reading ------------------------------------------------------------------------------------

    def __iter__(self):
        self._connect()
        try:
            yield from self._messages()
        except Stalled as exc:
            raise H2Error('the snapshot stream from %s:%s stalled after %d bytes: %s' % (
                self.host, self.port, self.received, exc), 'timeout', self.received)
        except socket.timeout:
            raise H2Error('the snapshot stream from %s:%s did not end within %.0f s (the timeout, or the time its size '
                          'allows at %d MiB/s)' % (self.host, self.port,
                                                   (self._sock.deadline if self._sock else 0) - (self._started or 0),
                                                   SCALE_RATE // (1024 * 1024)),
                          'timeout', self.received)
        except (OSError, socket.error, ssl.SSLError) as exc:
            raise H2Error('the snapshot stream from %s:%s broke after %d bytes: %s' % (
                self.host, self.port, self.received, exc), 'broken' if self.received else 'refused', self.received)
        finally:
            self.close()

    def _fail(self, msg, kind='protocol'):
        raise H2Error('%s:%s: %s (after %d bytes of the snapshot)' % (self.host, self.port, msg, self.received),
                      kind, self.received)

    def _messages(self):  # pylint: disable=too-many-branches,too-many-statements,too-many-locals
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        start = end = 0
        unpack = _FRAME_HEADER.unpack_from
        recv_into = self._sock.recv_into
        half_window = self.window // 2
        unacknowledged = 0
        ended = False
        decoder = SnapshotDecoder(self.chunk_size)
        state = _PeerState(self._fail)
        self._sock.stream(self._deadline, self.stall_timeout)
        lowat = True
        scaled = self._deadline is None
        while not ended:
            # one whole frame in buf[start:end]
            while True:
                if end - start >= 9:
                    high, low, kind, flags, stream_id = unpack(buf, start)
                    length = (high << 16) | low
                    if length > MAX_FRAME_SIZE:
                        self._fail('a frame of %d bytes, larger than the %d announced (FRAME_SIZE_ERROR)'
                                   % (length, MAX_FRAME_SIZE))
                    if end - start >= 9 + length:
                        break
                if len(buf) - end < READ_SIZE:
                    buf[:end - start] = buf[start:end]
                    end -= start
                    start = 0
                count = recv_into(view[end:], READ_SIZE)
                if not count:
                    if self.received:
                        self._fail('the connection closed in the middle of the stream', 'broken')
                    self._fail('the connection closed before the snapshot started', 'refused')
                end += count
            payload = start + 9
            start = payload + length
            stream_id &= 0x7fffffff
            if state.open_block is not None and kind != CONTINUATION:
                self._fail('a frame of type %d inside a header block (a CONTINUATION was due)' % kind)
            if kind == DATA:
                if stream_id != STREAM_ID:
                    self._fail('DATA on stream %d' % stream_id)
                if not state.header_blocks:
                    self._fail('DATA before the response headers')
                self.frames += 1
                first, last = payload, payload + length
                if flags & PADDED:
                    if not length or buf[payload] >= length:
                        self._fail('a DATA frame with a bad padding length')
                    last -= buf[payload]
                    first += 1
                unacknowledged += length
                if unacknowledged > self.window:
                    self._fail('%d bytes of DATA beyond the window of %d given (FLOW_CONTROL_ERROR)'
                               % (unacknowledged - self.window, self.window))
                if last > first:
                    state.idle = 0
                else:
                    state.idle_frame()
                try:
                    decoder.feed(view, first, last)
                except ValueError as exc:
                    self._fail('not a snapshot stream: %s' % exc)
                if decoder.ready:
                    if lowat and decoder.remaining < 4 * LOWAT:
                        self._sock.set_lowat(1)  # the end is near: do not wait for bytes that will not come
                        lowat = False
                    for chunk in decoder.ready:
                        self.received += len(chunk[0])
                        yield chunk
                    del decoder.ready[:]
                if not scaled and decoder.remaining is not None:
                    # the size is known: the whole-stream deadline grows with it (never shrinks)
                    size = min(self.received + decoder.remaining, MAX_SCALED_SIZE)
                    self._sock.deadline = max(self._deadline, self._started + size / float(SCALE_RATE))
                    scaled = True
                if unacknowledged >= half_window:
                    increment = struct.pack('>I', unacknowledged)
                    self._send(frame(WINDOW_UPDATE, 0, 0, increment) + frame(WINDOW_UPDATE, 0, STREAM_ID, increment))
                    unacknowledged = 0
                if flags & END_STREAM:
                    ended = True
                continue
            state.idle_frame()
            if kind in (HEADERS, CONTINUATION):
                ended = self._header_frame(state, kind, flags, stream_id, buf, payload, length)
            else:
                self._control(state, kind, flags, stream_id, buf, payload, length)
        try:
            decoder.finish()
        except ValueError as exc:
            self._fail(str(exc), 'broken' if self.received else 'refused')
        if decoder.remaining is None:
            self._fail('the server ended the call without sending any of the snapshot', 'refused')
        if decoder.remaining != 0:
            self._fail('the server ended the stream with %d bytes of the snapshot still to come' % decoder.remaining,
                       'broken' if self.received else 'refused')
        for chunk in decoder.ready:
            self.received += len(chunk[0])
            yield chunk

    def _header_frame(self, state, kind, flags, stream_id, buf, payload, length):  # pylint: disable=too-many-arguments
        """A HEADERS or CONTINUATION frame: the response's headers, then its trailers (or trailers only: an error
        before any message). The blocks are not decoded, only bounded. True when the stream ends with it."""
        if stream_id != STREAM_ID:
            self._fail('%s on stream %d' % ('HEADERS' if kind == HEADERS else 'CONTINUATION', stream_id))
        if kind == CONTINUATION:
            if state.open_block is None:
                self._fail('a CONTINUATION without a HEADERS frame before it')
            block = length
        else:
            if state.header_blocks >= 2:
                self._fail('a third header block on the stream (headers and trailers were sent)')
            if state.header_blocks == 1 and not flags & END_STREAM:
                self._fail('trailers (a second HEADERS frame) that do not end the stream')
            state.header_blocks += 1
            state.open_block = bool(flags & END_STREAM)
            state.block_size = 0
            block = length
            if flags & PADDED:
                if not length or buf[payload] >= length:
                    self._fail('a HEADERS frame with a bad padding length')
                block -= buf[payload] + 1
            if flags & PRIORITY_FLAG:
                block -= 5
                if block < 0:
                    self._fail('a HEADERS frame too short for its priority fields (FRAME_SIZE_ERROR)')
        state.block_size += block
        if state.block_size > MAX_HEADER_BLOCK:
            self._fail('a header block of more than %d bytes' % MAX_HEADER_BLOCK)
        if not flags & END_HEADERS:
            return False
        ends = state.open_block
        state.open_block = None
        return ends

    def _control(self, state, kind, flags, stream_id, buf, payload, length):  # pylint: disable=too-many-arguments
        """The frames that carry no part of the response: checked as RFC 9113 asks, answered or turned into
        errors."""
        size = _CONTROL_LENGTH.get(kind)
        if size is not None and length != size:
            self._fail('a frame of type %d with %d bytes, not %d (FRAME_SIZE_ERROR)' % (kind, length, size))
        if kind in (SETTINGS, PING, GOAWAY) and stream_id != 0:
            self._fail('a frame of type %d on stream %d, not on the connection' % (kind, stream_id))
        if kind in (RST_STREAM, PRIORITY) and stream_id == 0:
            self._fail('a frame of type %d on the connection, not on a stream' % kind)
        if kind == SETTINGS:
            if flags & ACK:
                if length:
                    self._fail('a SETTINGS acknowledgement with a payload (FRAME_SIZE_ERROR)')
                return
            if length % 6:
                self._fail('SETTINGS of %d bytes, not a multiple of 6 (FRAME_SIZE_ERROR)' % length)
            for offset in range(payload, payload + length, 6):
                state.setting(*_SETTING.unpack_from(buf, offset))
            self._send(frame(SETTINGS, ACK, 0))
        elif kind == PING:
            if not flags & ACK:
                self._send(frame(PING, ACK, 0, bytes(buf[payload:payload + length])))
        elif kind == WINDOW_UPDATE:
            increment = struct.unpack_from('>I', buf, payload)[0] & 0x7fffffff
            if not increment:
                self._fail('a WINDOW_UPDATE of 0 (PROTOCOL_ERROR)')
            state.grow_window(stream_id, increment)
        elif kind == RST_STREAM:
            if stream_id == STREAM_ID:
                code = struct.unpack_from('>I', buf, payload)[0]
                self._fail('the server reset the stream (%s)' % error_name(code),
                           'broken' if self.received else 'refused')
        elif kind == GOAWAY:
            if length < 8:
                self._fail('a GOAWAY of %d bytes, less than 8 (FRAME_SIZE_ERROR)' % length)
            last_stream, code = struct.unpack_from('>II', buf, payload)
            if (last_stream & 0x7fffffff) < STREAM_ID or code != 0:
                self._fail('the server closed the connection (GOAWAY %s)' % error_name(code),
                           'broken' if self.received else 'refused')
        elif kind == PUSH_PROMISE:
            self._fail('a PUSH_PROMISE, though push was disabled')
        # PRIORITY and unknown frame types: nothing to do (RFC 9113 asks to ignore unknown types)
