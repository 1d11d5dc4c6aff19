# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_master_leases with an in-memory keyspace behind the client's RPC stubs: stale keys (no lease, an expired
lease, a live lease of a gone API server) are removed, the live API servers' keys kept; a second run changes
nothing; check mode deletes nothing; a key written again meanwhile is left alone; bad input and etcd errors fail
with what to do."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from types import SimpleNamespace

from ansible_collections.etcdops.etcd.plugins.module_utils import _leases
from ansible_collections.etcdops.etcd.plugins.modules import etcd_master_leases
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
    capture_exit,
    rpc_error,
    run,
)

PREFIX = '/registry/masterleases/'


class Stubs(object):
    """KVStub and LeaseStub over a dict key -> (mod_revision, lease); leases: id -> ttl."""

    def __init__(self, owner):
        self.owner = owner

    def Range(self, request, timeout=None, metadata=None):  # noqa: N802 (gRPC method name)
        # the values too: etcd 3.7 drops the lease id from a keys-only range (etcd-io/etcd#22209)
        assert not request.keys_only
        kvs = [SimpleNamespace(key=k.encode(), mod_revision=rev, lease=lease)
               for k, (rev, lease) in sorted(self.owner.keys.items())
               if request.key <= k.encode() < request.range_end]
        return SimpleNamespace(kvs=kvs)

    def LeaseTimeToLive(self, request, timeout=None, metadata=None):  # noqa: N802
        return SimpleNamespace(TTL=self.owner.leases.get(request.ID, -1))

    def Txn(self, request, timeout=None, metadata=None):  # noqa: N802
        key = request.compare[0].key.decode()
        if self.owner.before_delete:
            self.owner.before_delete(self.owner, key)
        current = self.owner.keys.get(key)
        if current is None or current[0] != request.compare[0].mod_revision:
            return SimpleNamespace(succeeded=False, responses=[])
        del self.owner.keys[key]
        self.owner.deleted.append(key)
        return SimpleNamespace(succeeded=True, responses=[
            SimpleNamespace(response_delete_range=SimpleNamespace(deleted=1))])


class LeaseClient(object):
    def __init__(self, keys, leases=None, before_delete=None, error=None):
        self.keys = dict(keys)
        self.leases = dict(leases or {})
        self.before_delete = before_delete
        self.error = error
        self.deleted = []
        self.closed = False

    def _any(self, call, require_leader=True, change=False, timeout=None):
        if self.error:
            raise self.error
        connection = SimpleNamespace(stub=lambda name: Stubs(self))
        return call(connection, 5, [])

    def close(self):
        self.closed = True


def lab_keys():
    return {PREFIX + '10.0.0.11': (100, 0x11), PREFIX + '10.0.0.12': (101, 0x12),
            PREFIX + '10.0.0.99': (50, 0),       # no lease: never expires
            PREFIX + '10.0.0.98': (51, 0x98),    # its lease is gone
            PREFIX + '10.0.0.97': (52, 0x97),    # a live lease of an API server that is not in keep
            '/registry/masterleasesX': (53, 0)}  # outside the prefix


def leases():
    return {0x11: 12, 0x12: 9, 0x97: 14}


def test_removes_stale_keys_and_keeps_the_live_ones(monkeypatch):
    capture_exit(monkeypatch)
    client = LeaseClient(lab_keys(), leases())
    out = run(monkeypatch, etcd_master_leases, client, keep=['10.0.0.11', '10.0.0.12', '10.0.0.13'], _ansible_diff=True)
    assert not out.failed and out.result['changed']
    assert sorted(client.deleted) == [PREFIX + '10.0.0.97', PREFIX + '10.0.0.98', PREFIX + '10.0.0.99']
    assert sorted(client.keys) == [PREFIX + '10.0.0.11', PREFIX + '10.0.0.12', '/registry/masterleasesX']
    assert out.result['kept'] == [PREFIX + '10.0.0.11', PREFIX + '10.0.0.12']
    assert out.result['missing'] == ['10.0.0.13']
    by_key = dict((e['key'], e) for e in out.result['removed'])
    assert by_key[PREFIX + '10.0.0.99']['lease_id'] is None and by_key[PREFIX + '10.0.0.99']['ttl'] is None
    assert by_key[PREFIX + '10.0.0.98']['lease_id'] == '98' and by_key[PREFIX + '10.0.0.98']['ttl'] == -1
    assert by_key[PREFIX + '10.0.0.97']['ttl'] == 14
    assert 'removed 3 stale master leases' in out.result['msg'] and 'no lease' in out.result['msg']
    assert 'expired' in out.result['msg']
    assert out.result['diff']['after'] == PREFIX + '10.0.0.11\n' + PREFIX + '10.0.0.12\n'
    assert client.closed

    again = run(monkeypatch, etcd_master_leases, client, keep=['10.0.0.11', '10.0.0.12', '10.0.0.13'])
    assert not again.failed and not again.result['changed'] and again.result['removed'] == []
    assert 'no stale master lease' in again.result['msg']


def test_check_mode_deletes_nothing(monkeypatch):
    capture_exit(monkeypatch)
    client = LeaseClient(lab_keys(), leases())
    out = run(monkeypatch, etcd_master_leases, client, keep=['10.0.0.11', '10.0.0.12'], _ansible_check_mode=True)
    assert not out.failed and out.result['changed']
    assert client.deleted == [] and len(client.keys) == 6
    assert sorted(e['key'] for e in out.result['removed']) == [PREFIX + '10.0.0.97', PREFIX + '10.0.0.98',
                                                               PREFIX + '10.0.0.99']
    assert out.result['msg'].startswith('would remove 3')


def test_a_key_written_again_meanwhile_is_left(monkeypatch):
    capture_exit(monkeypatch)

    def rewrite(owner, key):
        if key.endswith('10.0.0.97'):
            owner.keys[key] = (999, 0x97)
    client = LeaseClient(lab_keys(), leases(), before_delete=rewrite)
    out = run(monkeypatch, etcd_master_leases, client, keep=['10.0.0.11', '10.0.0.12'])
    assert not out.failed and out.result['changed']
    assert out.result['changed_meanwhile'] == [PREFIX + '10.0.0.97']
    assert PREFIX + '10.0.0.97' in client.keys
    assert 'written again meanwhile' in out.result['msg']


def test_empty_keep_removes_every_lease_as_the_runbook_does(monkeypatch):
    capture_exit(monkeypatch)
    client = LeaseClient(lab_keys(), leases())
    out = run(monkeypatch, etcd_master_leases, client, keep=[])
    assert not out.failed and len(client.deleted) == 5 and list(client.keys) == ['/registry/masterleasesX']


def test_nothing_under_the_prefix(monkeypatch):
    capture_exit(monkeypatch)
    out = run(monkeypatch, etcd_master_leases, LeaseClient({}), keep=['10.0.0.11'])
    assert not out.failed and not out.result['changed'] and out.result['missing'] == ['10.0.0.11']


def test_a_prefix_without_trailing_slash_is_refused(monkeypatch):
    capture_exit(monkeypatch)
    client = LeaseClient(lab_keys(), leases())
    for prefix in ('/registry/masterleases', '/', ''):
        out = run(monkeypatch, etcd_master_leases, client, keep=[], prefix=prefix)
        assert out.failed and 'ending with /' in out.result['msg'], prefix
    assert client.deleted == []


def test_etcd_error_says_what_was_removed(monkeypatch):
    capture_exit(monkeypatch)
    client = LeaseClient(lab_keys(), leases(), error=rpc_error('no_leader', 'etcdserver: no leader'))
    out = run(monkeypatch, etcd_master_leases, client, keep=['10.0.0.11'])
    assert out.failed and 'no leader' in out.result['msg'] and 'removed so far: nothing' in out.result['msg']
    assert client.closed


def test_plan_splits_by_address():
    entries = [dict(address='a'), dict(address='b')]
    stale, kept = _leases.plan(entries, [' b ', ''])
    assert stale == [dict(address='a')] and kept == [dict(address='b')]
    assert _leases.lease_hex(0) is None and _leases.lease_hex(255) == 'ff'
