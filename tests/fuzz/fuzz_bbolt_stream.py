# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz target: the status of a snapshot read as it streams (``_bbolt_stream.StreamStatus``, as etcd_backup reads
it), the bytes cut into chunks whose sizes the input's first bytes give. Where the stream gives a status, the file
walk of the same bytes must give the same one (the stream refuses more, never less: see _bbolt_stream)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), '.build', 'collections'))

from harness import Target, chunks_of  # noqa: E402  pylint: disable=wrong-import-position
from fuzz_bbolt_file import memory_path, seeds as file_seeds  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt import BboltError  # noqa: E402
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt_stream import StreamStatus  # noqa: E402
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (  # noqa: E402
    SnapshotError, database_status)


def split(data):
    """(chunk sizes, stream): byte 0 says how many sizes (1-4) follow as u16s."""
    count = 1 + (data[0] & 3) if data else 1
    head = 1 + 2 * count
    sizes = [1 + size for size in struct.unpack('<%dH' % count, data[1:head].ljust(2 * count, b'\0'))]
    return sizes, data[head:]


def one_input(data):
    sizes, stream = split(data)
    tee = StreamStatus(iter(chunks_of(stream, sizes)), source='the fuzzed stream')
    passed = b''.join(tee)
    assert passed == stream, 'the stream was not passed through unchanged'
    status = tee.status()
    assert database_status(memory_path(stream)) == status, 'the stream and the file walk differ'


def seeds():
    for data in file_seeds():
        for sizes in ([4096], [7, 4097], [65535]):
            yield bytes([len(sizes) - 1]) + struct.pack('<%dH' % len(sizes), *[size - 1 for size in sizes]) + data


TARGET = Target('bbolt_stream', one_input, seeds, allowed=(SnapshotError, BboltError), max_len=128 * 1024 + 9)
