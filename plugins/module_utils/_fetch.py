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


from ansible_collections.etcdops.etcd.plugins.module_utils._signing import SigningError, trusted_keys, verify
from ansible_collections.etcdops.etcd.plugins.module_utils._snapshot import SnapshotError
from ansible_collections.etcdops.etcd.plugins.module_utils._store import METADATA, SIGNATURE, StoreError
from ansible_collections.etcdops.etcd.plugins.module_utils._streams import (
    Sha256,
    StreamError,
    age_decrypt,
    close_stream,
    zstd_decompress,
)

LATEST = 'latest'
# FetchError kinds of a backup whose signature does not make it trusted: 'latest' passes over such a backup.
UNTRUSTED = ('unsigned', 'unknown_signer', 'bad_signature', 'mismatch')


class FetchError(Exception):
    """The snapshot could not be fetched; msg says why (without naming the backup), kind is short."""

    def __init__(self, msg, kind='other', cause=None):
        super(FetchError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.cause = cause


def choose_backup(listed, backup_id=LATEST):
    """The record of Store.list_backups (newest first) to restore: backup_id, or for 'latest' the newest whose
    metadata reads. A drill's record (verification.json, which is not signed) never decides: anyone who can write
    to the store could write one. None when there is none."""
    readable = [record for record in listed if not record.get('error')]
    if backup_id != LATEST:
        for record in listed:
            if record['id'] == backup_id:
                return record
        return None
    return (readable or [None])[0]


def trust_argument_spec():
    """Options naming the backups a restore may use (doc fragment etcdops.etcd.backup_trust)."""
    return dict(trusted_keys=dict(type='list', elements='str', default=[], no_log=False),
                trusted_keys_file=dict(type='path'),
                accept_unsigned=dict(type='bool', default=False))


def trust_from_params(store, location, params):
    """The Trust the options name (FetchError, kind 'unsigned' or 'key', when they do not make one)."""
    try:
        keys = trusted_keys(params['trusted_keys'], params['trusted_keys_file'])
    except SigningError as exc:
        raise FetchError(exc.msg, 'key')
    return Trust(store, location, keys, params['accept_unsigned'])


class Trust(object):
    """Which backups a restore may use: signed by one of keys ({id: _signing.PublicKey}); with accept_unsigned, also
    unsigned ones and ones signed by a key not among keys (a warning each), never one whose signature does not
    verify. ``document(record)`` returns the metadata to restore from, parsed from the bytes the signature covers."""

    def __init__(self, store, location, keys, accept_unsigned=False):
        self.store = store
        self.location = location
        self.keys = dict(keys or {})
        self.accept_unsigned = bool(accept_unsigned)
        self.warnings = []
        if not self.keys and not self.accept_unsigned:
            raise FetchError('no trusted signing key was given: give trusted_keys (the minisign public keys the '
                             'backups are signed with, etcd_backup\'s signing_key), or accept_unsigned=true to '
                             'restore backups whose origin cannot be checked', 'unsigned')

    def document(self, record):
        """The trusted metadata of a listed backup (FetchError, kind in UNTRUSTED, when it is not trusted)."""
        backup_id = record['id']
        if record.get('error'):
            raise FetchError(record['error'], 'metadata')
        try:
            data, signature = self.store.read_signed(self.location, backup_id)
        except StoreError as exc:
            raise FetchError('cannot read its metadata and signature: %s' % exc, 'fetch')
        what = 'the metadata of backup %s' % backup_id
        signer = None
        if signature is None:
            if not self.accept_unsigned:
                raise FetchError('it is not signed (no %s): restore it only with accept_unsigned=true, if you know '
                                 'where it comes from' % SIGNATURE, 'unsigned')
            self.warnings.append('backup %s is not signed: restored with accept_unsigned' % backup_id)
        else:
            try:
                signer, dummy = verify(self.keys, data, signature, what)
            except SigningError as exc:
                if exc.kind == 'unknown_signer' and self.accept_unsigned:
                    self.warnings.append('%s; restored with accept_unsigned' % exc.msg)
                else:
                    raise FetchError(exc.msg, exc.kind)
        try:
            # bounded as every metadata read (size, nesting, digits): unsigned bytes reach it with accept_unsigned
            document = self.store.parse_metadata(self.location.key(backup_id, METADATA), data)
        except StoreError as exc:
            raise FetchError('its metadata cannot be used: %s' % exc, 'metadata')
        claimed = (document.get('backup_id'), document.get('cluster_name'), document.get('kind'),
                   document.get('etcd_cluster') if self.location.kind == 'etcd' else None)
        expected = (backup_id, self.location.cluster_name, self.location.kind, self.location.etcd_cluster)
        if signer is not None and claimed != expected:
            raise FetchError('its signed metadata is of backup %s of %s/%s (%s), not of this one: a signed backup was '
                             'copied to another place in the store' % (claimed[0], claimed[1], claimed[3] or '-',
                                                                       claimed[2]), 'mismatch')
        trusted = dict(document)
        for field in ('id', 'time', 'stored_objects', 'stored_bytes', 'signed', 'verified', 'verification'):
            if field in record:
                trusted[field] = record[field]
        trusted['signed_by'] = signer
        return trusted


def choose_trusted(listed, backup_id, trust):
    """(record chosen, its trusted document, [{backup_id, error}] of newer backups passed over for 'latest').

    A named backup must be trusted (FetchError otherwise); 'latest' is the newest trusted backup (its id checked
    against its signed metadata), so a forged or unsigned newer backup is passed over, never restored.
    (None, None, skipped) when no backup qualifies."""
    if backup_id != LATEST:
        record = choose_backup(listed, backup_id)
        if record is None:
            return None, None, []
        return record, trust.document(record), []
    readable = [record for record in listed if not record.get('error')]
    skipped = []
    for record in readable:
        try:
            return record, trust.document(record), skipped
        except FetchError as exc:
            if exc.kind not in UNTRUSTED:
                raise
            skipped.append(dict(backup_id=record['id'], error=exc.msg))
    return None, None, skipped


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
