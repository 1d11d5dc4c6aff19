# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: a stored backup's snapshot, fetched back into a snapshot file (the restore drill and restores share it).

    store --get_object--> sha256 (stored object) --> age decrypt --> zstd decompress --> sha256 (snapshot) --> write

One pass, no copy but the one ``write`` makes: the digests are checked by ``verify``, which ``write`` calls after
the last byte and before it makes its file count (``_snapshot.write_file`` renames only after it; the drill's
scratch file is removed with its work directory). ``FetchError`` says what failed, its ``kind`` in a word:
metadata, fetch, identity, decrypt, sha256, write.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import SnapshotError
from ansible_collections.etcdops.etcd.plugins.module_utils._store import StoreError
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import (
    Sha256,
    StreamError,
    age_decrypt,
    close_stream,
    zstd_decompress,
)

LATEST = 'latest'


class FetchError(Exception):
    """The snapshot could not be fetched; msg says why (without naming the backup), kind is short."""

    def __init__(self, msg, kind='other', cause=None):
        super(FetchError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.cause = cause


def choose_backup(listed, backup_id=LATEST):
    """The record of Store.list_backups (newest first) to restore: backup_id, or for 'latest' the newest backup a
    restore drill verified, else the newest whose metadata reads. None when there is none."""
    readable = [record for record in listed if not record.get('error')]
    if backup_id != LATEST:
        for record in listed:
            if record['id'] == backup_id:
                return record
        return None
    verified = [record for record in readable if record.get('verified') is True]
    return (verified or readable or [None])[0]


def snapshot_object(document):
    """(object name, its stored entry, the snapshot's sha256) from a backup's metadata."""
    objects = document.get('objects') or []
    if not objects or not isinstance(objects[0], dict) or not objects[0].get('name'):
        raise FetchError('its metadata lists no snapshot object', 'metadata')
    expected = (document.get('snapshot') or {}).get('sha256')
    if not expected:
        raise FetchError('its metadata has no snapshot sha256 to check against', 'metadata')
    return objects[0]['name'], objects[0], expected


def fetch_snapshot(store, location, backup_id, document, identities, write):
    """Stream the backup's snapshot into write(chunks, verify); return the checks {stored_sha256, snapshot_sha256,
    snapshot_size}. write must call verify() after consuming every chunk and before its output counts."""
    name, stored_meta, expected = snapshot_object(document)
    encrypted = bool(document.get('encrypted')) or name.endswith('.age')
    if encrypted and not identities:
        raise FetchError('it is encrypted with age and no identity was given: give identity_file', 'identity')
    try:
        stored = Sha256(store.get_object(location, backup_id, name))
    except StoreError as exc:
        raise FetchError('cannot fetch %s: %s' % (name, exc), 'fetch')
    data = stored
    if encrypted:
        data = age_decrypt(data, identities)
    if name.endswith('.zst') or name.endswith('.zst.age'):
        data = zstd_decompress(data)
    plain = Sha256(data)
    checks = {}

    def verify(*_ignored):
        if stored_meta.get('sha256') and stored.hexdigest() != stored_meta['sha256']:
            raise FetchError('the stored object %s has sha256 %s, the metadata says %s: it was altered in the store' % (
                name, stored.hexdigest(), stored_meta['sha256']), 'sha256')
        checks['stored_sha256'] = stored.hexdigest()
        if plain.hexdigest() != expected:
            raise FetchError('the snapshot read back has sha256 %s, the metadata says %s' % (
                plain.hexdigest(), expected), 'sha256')
        checks['snapshot_sha256'] = plain.hexdigest()
        checks['snapshot_size'] = plain.size

    try:
        write(plain, verify)
    except FetchError:
        close_stream(plain)
        raise
    except StreamError as exc:
        close_stream(plain)
        if 'not encrypted to the given identity' in str(exc):
            raise FetchError(str(exc), 'identity')
        raise FetchError('%s does not decrypt or decompress: %s' % (name, exc), 'decrypt')
    except StoreError as exc:
        close_stream(plain)
        raise FetchError('the download of %s broke off: %s' % (name, exc), 'fetch')
    except SnapshotError as exc:
        close_stream(plain)
        raise FetchError(exc.msg, 'write', cause=exc.msg)
    except (IOError, OSError) as exc:
        close_stream(plain)
        cause = exc.strerror or str(exc)
        raise FetchError('cannot write the snapshot: %s' % cause, 'write', cause=cause)
    return checks
