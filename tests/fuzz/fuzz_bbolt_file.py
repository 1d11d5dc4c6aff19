# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz target: the status walk of a bbolt file (``_snapshot.database_status``: ``BboltFile.walk`` under
``_StatusWalk``), the bytes written to an in-memory file (memfd) read by its /proc path, as etcd_snapshot
state=status, the drill and etcd_backup_fetch read a snapshot file."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), '.build', 'collections'))

from harness import Target  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.etcdops.etcd.plugins.module_utils._bbolt import BboltError  # noqa: E402
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import (  # noqa: E402
    SnapshotError, database_status)
from ansible_collections.etcdops.etcd.tests.unit.plugins.module_utils import (  # noqa: E402
    test_bbolt as files, test_bbolt_stream as streams)

FIXTURES = ['etcd-3.5.db', 'etcd-3.6.db']
_FD = []


def memory_path(data):
    """A path whose file holds data, in memory (one memfd, rewritten for each input)."""
    if not _FD:
        _FD.append(os.memfd_create('fuzz-bbolt'))
    fd = _FD[0]
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return '/proc/self/fd/%d' % fd


def one_input(data):
    database_status(memory_path(data))


def hand_built():
    """Small hand-built files (test_bbolt's and test_bbolt_stream's builders): a freelist, inline buckets,
    overflow, a key bucket of large values, a stale freed page over live ones, nesting, many references."""
    import tempfile  # pylint: disable=import-outside-toplevel
    directory = tempfile.mkdtemp(prefix='fuzz-bbolt-seeds-')
    try:
        out = []
        for index, make in enumerate([
                files.build, lambda path: files.build(path, meta0_damage=True),
                lambda path: streams.key_bucket_file(path, [(b'/a', b'1', False), (b'/b', b'2' * 70000, False),
                                                            (b'/a', b'', True)], storage_version=b'3.6.0'),
                lambda path: streams.key_bucket_file(path, [(b'/a', b'1', False), (b'/b', b'2', False),
                                                            (b'/c', b'3', False)], stale=True)]):
            path = os.path.join(directory, 'seed%d.db' % index)
            make(path)
            with open(path, 'rb') as handle:
                out.append(handle.read())
            os.unlink(path)
        out += [files.branch_chain(3), files.inline_file(3), files.many_references(20),
                streams.live_page_over_headers(7), streams.overlapping(8, files.LEAF)]
        return out
    finally:
        os.rmdir(directory)


def seeds():
    for name in FIXTURES:
        with open(os.path.join(files.FIXTURES, name), 'rb') as handle:
            yield handle.read()
    yield from hand_built()


TARGET = Target('bbolt_file', one_input, seeds, allowed=(SnapshotError, BboltError), max_len=128 * 1024)
