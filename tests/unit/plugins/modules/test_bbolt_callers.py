# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules that read a snapshot's bbolt database fail with a message, not a traceback, on each hostile file of
test_bbolt: etcd_snapshot state=status (the file walk) and etcd_backup (the stream, every member serving it)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.etcdops.etcd.tests.unit.plugins.module_utils.test_bbolt import HOSTILE
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules import test_etcd_backup as backup
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules import test_etcd_snapshot as snapshot
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import capture_exit

NAMES = sorted(HOSTILE)


@pytest.fixture(autouse=True)
def exit_capture(monkeypatch):
    return capture_exit(monkeypatch)


@pytest.mark.parametrize('name', NAMES)
def test_etcd_snapshot_status_of_a_hostile_file_fails_clearly(monkeypatch, tmp_path, name):
    make, words = HOSTILE[name]
    target = tmp_path / 'hostile.db'
    target.write_bytes(make())
    done = snapshot.run(monkeypatch, snapshot.FakeClient(), state='status', path=str(target))
    assert done.failed and done.result['error_kind'] == 'corrupted', done.result
    assert 'is not a readable etcd snapshot' in done.result['msg'] and words in done.result['msg']


@pytest.mark.parametrize('name', [name for name in NAMES if len(HOSTILE[name][0]()) > 8192])
def test_etcd_backup_of_a_hostile_stream_fails_clearly_and_stores_nothing(monkeypatch, tmp_path, name):
    make, words = HOSTILE[name]
    client = backup.FakeClient()
    client.db = make()
    done = backup.run(monkeypatch, client, tmp_path)
    # (a stream cut in a page is refused before its status: its size is not a whole number of sectors)
    assert done.failed and 'no backup taken' in done.result['msg'], done.result
    assert words in done.result['msg'] or 'would not recognise the trailer' in done.result['msg'], done.result
    assert sorted(client.asked) == ['m1', 'm2', 'm3'] and backup.listed(tmp_path) == []
