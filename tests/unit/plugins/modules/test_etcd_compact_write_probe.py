# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_compact and etcd_write_probe with the client mocked: compact once, then no change; a future revision is
refused; check mode changes nothing; the probe writes, reads back and deletes, and fails with etcd's reason."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import yaml

from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError
from ansible_collections.etcdops.etcd.plugins.modules import etcd_compact, etcd_write_probe
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
    FakeClient,
    capture_exit,
    rpc_error,
    run,
)


class KeysClient(FakeClient):
    """FakeClient with a keyspace, a revision and a compaction revision."""

    def __init__(self, revision=100, compact_revision=0, put_error=None, lose_writes=False, **kwargs):
        super(KeysClient, self).__init__(**kwargs)
        self.revision = revision
        self.compact_revision = compact_revision
        self.put_error = put_error
        self.lose_writes = lose_writes
        self.keys = {}

    def count(self, prefix=b''):
        return dict(count=len(self.keys), revision=self.revision)

    def compacted(self, revision):
        return self.compact_revision >= revision

    def compact(self, revision, physical=False):
        if revision <= self.compact_revision:
            raise EtcdClientError('https://127.0.0.1:2379: OUT_OF_RANGE: etcdserver: mvcc: required revision has '
                                  'been compacted', details='etcdserver: mvcc: required revision has been compacted')
        self.changes.append(('compact', revision, physical))
        self.compact_revision = revision

    def put(self, key, value):
        if self.put_error:
            raise self.put_error
        self.changes.append(('put', key))
        self.revision += 1
        if not self.lose_writes:
            self.keys[key] = value.encode()
        return self.revision

    def get(self, key):
        return self.keys.get(key)

    def delete(self, key):
        self.changes.append(('delete', key))
        self.revision += 1
        return 1 if self.keys.pop(key, None) is not None else 0


@pytest.fixture(autouse=True)
def warnings(monkeypatch):
    return capture_exit(monkeypatch)


def test_compacts_to_the_current_revision_once(monkeypatch):
    client = KeysClient(revision=100, compact_revision=40)
    result = run(monkeypatch, etcd_compact, client).result
    assert client.changes == [('compact', 100, True)] and client.closed
    assert result['changed'] is True and result['compacted'] is True and result['revision'] == 100
    assert set(result) - {'changed'} == set(yaml.safe_load(etcd_compact.RETURN))
    again = run(monkeypatch, etcd_compact, client).result
    assert again['changed'] is False and client.changes == [('compact', 100, True)]
    assert 'nothing to do' in again['msg']


def test_compact_check_mode_and_explicit_revision(monkeypatch):
    client = KeysClient(revision=100, compact_revision=40)
    checked = run(monkeypatch, etcd_compact, client, _ansible_check_mode=True, revision=70).result
    assert checked['changed'] is True and checked['revision'] == 70 and client.changes == []
    done = run(monkeypatch, etcd_compact, client, revision=70, physical=False).result
    assert done['changed'] is True and client.changes == [('compact', 70, False)]


def test_compact_refuses_the_future_and_negative(monkeypatch):
    client = KeysClient(revision=100)
    done = run(monkeypatch, etcd_compact, client, revision=101)
    assert done.failed and 'above the current revision 100' in done.result['msg'] and client.changes == []
    done = run(monkeypatch, etcd_compact, client, revision=-1)
    assert done.failed and 'positive revision' in done.result['msg']


def test_compacted_meanwhile_is_no_change(monkeypatch):
    client = KeysClient(revision=100, compact_revision=40)
    client.compacted = lambda revision: False  # the API server compacts between the check and the call
    client.compact_revision = 100
    result = run(monkeypatch, etcd_compact, client).result
    assert result['changed'] is False and 'meanwhile' in result['msg']


def test_probe_writes_reads_and_deletes(monkeypatch):
    client = KeysClient()
    result = run(monkeypatch, etcd_write_probe, client).result
    assert result['writable'] is True and result['changed'] is False
    assert [c[0] for c in client.changes] == ['put', 'delete'] and client.keys == {}
    assert result['key'].startswith('/etcdops/write-probe/') and result['revision'] == 101
    assert set(result) - {'changed'} == set(yaml.safe_load(etcd_write_probe.RETURN))


def test_probe_in_check_mode_writes_nothing(monkeypatch):
    client = KeysClient()
    result = run(monkeypatch, etcd_write_probe, client, _ansible_check_mode=True).result
    assert result['writable'] is None and client.changes == []


def test_probe_fails_with_nospace(monkeypatch):
    client = KeysClient(put_error=rpc_error('no_space', 'etcdserver: mvcc: database space exceeded'))
    done = run(monkeypatch, etcd_write_probe, client)
    assert done.failed and done.result['writable'] is False
    assert done.result['msg'].startswith('the cluster does not take writes: put of /etcdops/write-probe/')
    assert done.result['error_kind'] == 'no_space'


def test_probe_fails_when_the_value_does_not_come_back(monkeypatch):
    client = KeysClient(lose_writes=True)
    done = run(monkeypatch, etcd_write_probe, client)
    assert done.failed and 'read back missing' in done.result['msg']
    assert [c[0] for c in client.changes] == ['put', 'delete']


def test_empty_prefix_is_refused(monkeypatch):
    done = run(monkeypatch, etcd_write_probe, KeysClient(), key_prefix='')
    assert done.failed and 'key_prefix must not be empty' in done.result['msg']
