# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz target: what an etcd member (or whatever answers on its port) sends back to the snapshot reader
(``_h2.SnapshotCall``, as every backup reads a member): HTTP/2 frames, the gRPC messages they carry and the
SnapshotResponses inside, handed over in pieces whose sizes the input's first bytes give, as a network would.

Beyond "only H2Error": a stream that is accepted hands on as many bytes as it says it received, ends on a
message with remaining_bytes 0, and what the reader sent back (acknowledgements, window updates) is no larger
than what it was sent plus a small constant: a peer cannot make the reader amplify it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), '.build', 'collections'))

sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'unit', 'plugins', 'module_utils'))

from harness import chunks_of, Target  # noqa: E402  pylint: disable=wrong-import-position
from test_h2 import HEADERS, TRAILERS, data_frames, grpc_message, response  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.etcdops.etcd.plugins.module_utils import _h2  # noqa: E402


class ScriptedPipe(object):
    """The pipe a SnapshotCall reads, fed from chunks: each read gets at most the next chunk."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.index = 0
        self.offset = 0
        self.sent = 0

    def stream(self, deadline, stall=None):
        pass

    def set_lowat(self, size):
        pass

    def recv_into(self, view, size):
        if self.index >= len(self.chunks):
            return 0
        chunk = self.chunks[self.index]
        count = min(size, len(view), len(chunk) - self.offset)
        view[:count] = chunk[self.offset:self.offset + count]
        self.offset += count
        if self.offset == len(chunk):
            self.index += 1
            self.offset = 0
        return count

    def sendall(self, data):
        self.sent += len(data)

    def close(self):
        pass


def split(data):
    """(chunk sizes, window, chunk size, stream): byte 0's low bits say how many u16 sizes (1-4) follow, its high
    bit a small flow-control window (the reader's minimum, where overruns are reachable)."""
    head = data[0] if data else 0
    count = 1 + (head & 3)
    end = 1 + 2 * count
    sizes = [1 + size for size in struct.unpack('<%dH' % count, data[1:end].ljust(2 * count, b'\0'))]
    window = _h2.DEFAULT_WINDOW if head & 0x80 else _h2.DEFAULT_STREAM_WINDOW
    chunk_size = 1 if head & 0x40 else 16 * 1024
    return sizes, window, chunk_size, data[end:]


def one_input(data):
    sizes, window, chunk_size, stream = split(data)
    call = _h2.SnapshotCall('fuzzed.example', 2379, None, window=window, chunk_size=chunk_size)
    call._sock = pipe = ScriptedPipe(chunks_of(stream, sizes))  # pylint: disable=protected-access
    handed = 0
    last = None
    try:
        for chunk, remaining in call._messages():  # pylint: disable=protected-access
            handed += len(chunk)
            last = remaining
    except _h2.H2Error:
        assert pipe.sent <= len(stream) + 4096, 'sent %d bytes for %d received' % (pipe.sent, len(stream))
        raise
    assert handed == call.received and last == 0, (handed, call.received, last)
    assert pipe.sent <= len(stream) + 4096, 'sent %d bytes for %d received' % (pipe.sent, len(stream))


def _grpc_stream(size, piece):
    """The gRPC messages of a snapshot of size bytes in pieces (test_h2's SnapshotResponse), remaining_bytes
    counting down, the version in the last one."""
    data = bytes(bytearray((index * 7 + 3) & 0xff for index in range(size)))
    out = []
    for offset in range(0, size, piece):
        left = max(0, size - offset - piece)
        out.append(grpc_message(response(data[offset:offset + piece], left, None if left else b'3.6.0')))
    return b''.join(out)


def seeds():
    settings = _h2.frame(_h2.SETTINGS, 0, 0, struct.pack('>HIHI', 3, 100, 4, 1 << 20))
    ping = _h2.frame(_h2.PING, 0, 0, b'12345678')
    update = _h2.frame(_h2.WINDOW_UPDATE, 0, 0, b'\x00\x00\x10\x00')
    for size, piece, frame_size, head, padded in ((3000, 1000, 16384, 0, False), (20000, 4096, 1000, 1, True),
                                                  (40000, 32768, 16384, 0xc2, False), (0, 1, 100, 0, False)):
        stream = _grpc_stream(size, piece) if size else b''
        body = settings + HEADERS + ping + update + b''.join(data_frames(stream, frame_size, padded)) + TRAILERS
        count = 1 + (head & 3)
        yield bytes([head]) + struct.pack('<%dH' % count, *([4095, 12, 65535, 0][:count])) + body
    # header blocks in CONTINUATIONs, a GOAWAY, a reset
    continued = _h2.frame(_h2.HEADERS, 0, 1, HEADERS[9:12])
    continued += _h2.frame(_h2.CONTINUATION, _h2.END_HEADERS, 1, HEADERS[12:])
    goaway = _h2.frame(_h2.GOAWAY, 0, 0, b'\x00\x00\x00\x01\x00\x00\x00\x00')
    yield b'\x00\xff\x0f' + continued + b''.join(data_frames(_grpc_stream(500, 100), 200)) + goaway + TRAILERS
    yield b'\x00\xff\x0f' + HEADERS + _h2.frame(_h2.RST_STREAM, 0, 1, b'\x00\x00\x00\x08')


TARGET = Target('h2', one_input, seeds, allowed=(_h2.H2Error,), max_len=128 * 1024)
