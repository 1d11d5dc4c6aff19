# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the kube-apiserver master leases (``/registry/masterleases/<address>``) through an ``EtcdClient``.

Each API server keeps one key per advertise address, bound to an etcd lease it renews (15 s TTL). A key whose
lease is gone (a restore, a key put without a lease) or whose API server is gone lingers, and every client of the
``kubernetes`` Service keeps being sent to a dead address (kops: "stale master leases").

* ``read_leases(client, prefix)``: every key under the prefix with its address, mod revision, lease id and the
  lease's remaining TTL (``None`` without a lease, ``-1`` for a lease that no longer exists).
* ``delete_if_unchanged(client, key, mod_revision)``: one transaction that deletes the key only while it is the
  version that was read, so a key an API server has just put again is never removed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.etcdops.etcd.plugins.module_utils._client import prefix_range_end

try:
    from pyetcd import etcdrpc
except ImportError:  # the module fails on the client's own import check first
    etcdrpc = None

DEFAULT_PREFIX = '/registry/masterleases/'


def _text(value):
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)


def lease_hex(lease_id):
    """etcdctl's spelling of a lease id (hex), None for 0 (no lease)."""
    return '%x' % lease_id if lease_id else None


def read_leases(client, prefix=DEFAULT_PREFIX):
    """[dict(key, address, mod_revision, lease_id, ttl)] of every key under prefix, sorted by key."""
    key = prefix.encode('utf-8')

    def get_range(connection, timeout, metadata):
        # not keys_only: etcd 3.7 leaves the lease id out of a keys-only range (etcd-io/etcd#22209), and the
        # values under the prefix are a few small Endpoints objects
        request = etcdrpc.RangeRequest(key=key, range_end=prefix_range_end(key))
        return connection.stub('KVStub').Range(request, timeout=timeout, metadata=metadata)

    response = client._any(get_range)  # pylint: disable=protected-access
    found = []
    for kv in response.kvs:
        name = _text(kv.key)
        entry = dict(key=name, address=name[len(prefix):], mod_revision=kv.mod_revision,
                     lease_id=lease_hex(kv.lease), ttl=None)
        if kv.lease:
            entry['ttl'] = lease_ttl(client, kv.lease)
        found.append(entry)
    return sorted(found, key=lambda e: e['key'])


def lease_ttl(client, lease_id):
    """Seconds left on a lease; -1 when etcd no longer knows it."""
    def time_to_live(connection, timeout, metadata):
        request = etcdrpc.LeaseTimeToLiveRequest(ID=lease_id)
        return connection.stub('LeaseStub').LeaseTimeToLive(request, timeout=timeout, metadata=metadata)
    return int(client._any(time_to_live).TTL)  # pylint: disable=protected-access


def delete_if_unchanged(client, key, mod_revision):
    """Delete key if its mod revision is still mod_revision; True when it was deleted."""
    raw = key.encode('utf-8')

    def txn(connection, timeout, metadata):
        request = etcdrpc.TxnRequest(
            compare=[etcdrpc.Compare(result=etcdrpc.Compare.EQUAL, target=etcdrpc.Compare.MOD, key=raw,
                                     mod_revision=mod_revision)],
            success=[etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=raw))])
        return connection.stub('KVStub').Txn(request, timeout=timeout, metadata=metadata)

    response = client._any(txn, change=True)  # pylint: disable=protected-access
    return bool(response.succeeded and response.responses and response.responses[0].response_delete_range.deleted)


def plan(leases, keep):
    """Split leases into (stale, kept) by whether their address is one of keep (the live API servers)."""
    keep = set(str(a).strip() for a in keep if str(a).strip())
    stale = [entry for entry in leases if entry['address'] not in keep]
    kept = [entry for entry in leases if entry['address'] in keep]
    return stale, kept
