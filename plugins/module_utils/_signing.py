# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: minisign signatures (Ed25519) of backups, made on the masters and checked before a restore uses a byte.

Why minisign: its keys are one line of base64, its signatures four lines of text, and the standard ``minisign``
tool (Debian, Homebrew, Windows builds; ``minisign -Vm metadata.json -p backup.pub``) verifies what this file
writes, so an operator can check a backup by hand with nothing of this collection. Ed25519 comes from
``cryptography``; BLAKE2b from hashlib. The formats (minisign's own documentation):

* public key: ``untrusted comment: ...`` then base64(``Ed`` + key id (8 bytes) + public key (32));
* secret key: ``untrusted comment: ...`` then base64(``Ed`` + KDF algorithm (2) + ``B2`` + salt (32) + opslimit
  (8) + memlimit (8) + key id (8) + secret key (64: seed and public key) + BLAKE2b-256 checksum (32)). Only keys
  without a password (KDF ``\\0\\0``, ``minisign -G -W``) are read: a backup timer runs unattended, so a password
  would have to be stored next to the key anyway, and minisign's scrypt parameters need 1 GiB of memory on a
  master whose backup must stay under 100 MiB. The key file is protected by its mode (0600, root) instead;
* signature: ``untrusted comment: ...``, base64(``ED`` + key id + Ed25519 signature of BLAKE2b-512(data)),
  ``trusted comment: <text>``, base64(Ed25519 signature of (the signature + the trusted comment's text)).
  Legacy ``Ed`` signatures (of the data itself) are verified too.

What a backup's signature covers: the bytes of its ``metadata.json`` as first written, which name the backup id,
the cluster, the etcd cluster, and the size and sha256 of every object (the stored object and the snapshot in
it). ``metadata.json.minisig`` is written before the metadata, so a backup exists only signed. Restores read the
metadata's bytes, check the signature against trusted public keys, and take every digest they check from the
verified bytes, never from the listing.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time

try:
    from importlib.util import find_spec
    HAS_CRYPTOGRAPHY = find_spec('cryptography') is not None
except (ImportError, ValueError):  # pragma: no cover
    HAS_CRYPTOGRAPHY = False
CRYPTOGRAPHY_IMPORT_ERROR = None if HAS_CRYPTOGRAPHY else 'No module named cryptography'

SIGNATURE_SUFFIX = '.minisig'
ALG = b'Ed'
ALG_PREHASHED = b'ED'
KDF_NONE = b'\x00\x00'
KDF_SCRYPT = b'Sc'
CHECKSUM_ALG = b'B2'
_PUBLIC_LEN = 2 + 8 + 32
_SECRET_LEN = 2 + 2 + 2 + 32 + 8 + 8 + 8 + 64 + 32
_SIGNATURE_LEN = 2 + 8 + 64
# Bounds on what is read from a store or a file before parsing: a key is ~100 bytes, a signature ~300.
MAX_KEY_TEXT = 64 * 1024
MAX_SIGNATURE_TEXT = 4096
MAX_TRUSTED_COMMENT = 1024


def _ed25519():
    """cryptography's Ed25519 classes, imported when a signature is made or checked, not with this file: they cost
    a process ~8 MiB, which a backup to S3 (at most 100 MiB of RSS) can afford only once its upload is done."""
    _need_cryptography()
    from cryptography.exceptions import InvalidSignature  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ed25519  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    return ed25519, serialization, InvalidSignature


class SigningError(Exception):
    """A key or signature cannot be used; the message says what to do. kind: key, unsigned, unknown_signer,
    bad_signature, mismatch."""

    def __init__(self, msg, kind='key'):
        super(SigningError, self).__init__(msg)
        self.msg = msg
        self.kind = kind


def key_id_text(key_id):
    """A key id as minisign prints it: 16 upper-case hex digits of the little-endian number."""
    return '%016X' % struct.unpack('<Q', key_id)[0]


def _need_cryptography():
    if not HAS_CRYPTOGRAPHY:
        raise SigningError('the Python package cryptography is needed for backup signatures (pip install '
                           'cryptography on the host that runs the module)')


def _b64_line(text, what, length):
    """The one base64 line of a minisign key or signature text, decoded and of the expected length."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith('untrusted comment:')]
    if not lines:
        raise SigningError('%s holds no key: expected the base64 line of a minisign key' % what)
    try:
        raw = base64.b64decode(lines[0].encode('ascii'), validate=True)
    except (ValueError, binascii.Error, UnicodeError):
        raise SigningError('%s is not a minisign key: its key line is not base64' % what)
    if len(raw) != length:
        raise SigningError('%s is not a minisign key of the expected kind: %d bytes where %d are expected' % (
            what, len(raw), length))
    return raw


class PublicKey(object):
    """A trusted minisign public key: key_id (8 bytes), its text id, the Ed25519 key."""

    def __init__(self, key_id, raw):
        self.key_id = key_id
        self.id = key_id_text(key_id)
        self.raw = raw

    def line(self):
        return base64.b64encode(ALG + self.key_id + self.raw).decode('ascii')

    def text(self):
        """The content of a minisign .pub file."""
        return 'untrusted comment: minisign public key %s\n%s\n' % (self.id, self.line())

    def verify_raw(self, signature, data):
        ed25519, dummy, invalid = _ed25519()
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, data)
        except invalid:
            return False
        return True


def parse_public_key(text, what='the public key'):
    if len(text) > MAX_KEY_TEXT:
        raise SigningError('%s is %d bytes long: not a minisign public key' % (what, len(text)))
    raw = _b64_line(text, what, _PUBLIC_LEN)
    if raw[:2] != ALG:
        raise SigningError('%s is not an Ed25519 minisign public key' % what)
    return PublicKey(raw[2:10], raw[10:])


def trusted_keys(keys=None, key_file=None):
    """{key id: PublicKey} from a list of key texts (a .pub file's content or its base64 line) and/or a file
    holding one or more of them (one base64 line per key, comments allowed)."""
    texts = [str(k) for k in (keys or [])]
    if key_file:
        try:
            with open(key_file, 'r') as handle:
                content = handle.read(MAX_KEY_TEXT + 1)
        except (IOError, OSError) as exc:
            raise SigningError('cannot read the trusted keys file %s: %s' % (key_file, exc.strerror or exc))
        texts.append(content)
    found = {}
    for text in texts:
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith('#')
                 and not line.startswith('untrusted comment:')]
        for line in lines:
            key = parse_public_key(line, 'trusted key %s...' % line[:12])
            found[key.id] = key
    return found


class SecretKey(object):
    """A minisign secret key without password: key_id, the seed and public key (secret64), its public half.

    Reading one needs no cryptography (the checksum is BLAKE2b); signing checks that the public half is the seed's."""

    def __init__(self, key_id, secret64):
        self.key_id = key_id
        self.id = key_id_text(key_id)
        self._secret64 = bytes(secret64)
        self.public = PublicKey(key_id, self._secret64[32:])

    def _private(self):
        ed25519, serialization, dummy = _ed25519()
        key = ed25519.Ed25519PrivateKey.from_private_bytes(self._secret64[:32])
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if raw != self.public.raw:
            raise SigningError('the secret key %s is damaged: its public half does not match its seed' % self.id)
        return key

    def sign(self, data, trusted_comment):
        """The text of a minisign signature (prehashed, as minisign makes by default) of data."""
        comment = _comment(trusted_comment)
        key = self._private()
        signature = key.sign(hashlib.blake2b(data, digest_size=64).digest())
        global_signature = key.sign(signature + comment.encode('utf-8'))
        return 'untrusted comment: signature from etcdops.etcd secret key %s\n%s\ntrusted comment: %s\n%s\n' % (
            self.id, base64.b64encode(ALG_PREHASHED + self.key_id + signature).decode('ascii'), comment,
            base64.b64encode(global_signature).decode('ascii'))

    def text(self):
        """The content of a minisign secret key file without password (what ``minisign -G -W`` writes)."""
        checksum = hashlib.blake2b(ALG + self.key_id + self._secret64, digest_size=32).digest()
        raw = (ALG + KDF_NONE + CHECKSUM_ALG + b'\x00' * 32 + b'\x00' * 8 + b'\x00' * 8 + self.key_id
               + self._secret64 + checksum)
        return 'untrusted comment: minisign secret key %s (no password: keep this file 0600)\n%s\n' % (
            self.id, base64.b64encode(raw).decode('ascii'))


def _comment(text):
    comment = ' '.join(str(text).split())
    if len(comment) > MAX_TRUSTED_COMMENT:
        raise SigningError('a trusted comment is limited to %d characters' % MAX_TRUSTED_COMMENT)
    return comment


def parse_secret_key(text, what='the signing key'):
    if len(text) > MAX_KEY_TEXT:
        raise SigningError('%s is %d bytes long: not a minisign secret key' % (what, len(text)))
    raw = _b64_line(text, what, _SECRET_LEN)
    if raw[:2] != ALG or raw[4:6] != CHECKSUM_ALG:
        raise SigningError('%s is not an Ed25519 minisign secret key' % what)
    if raw[2:4] == KDF_SCRYPT:
        raise SigningError('%s is protected by a password, which an unattended backup cannot type: make a key '
                           'without one (minisign -G -W, or the etcdops.etcd.etcd_signing_key module) and protect '
                           'the file by its mode (0600, root)' % what)
    if raw[2:4] != KDF_NONE:
        raise SigningError('%s uses an unknown key derivation: not a minisign secret key' % what)
    key_id = raw[54:62]
    secret64 = raw[62:126]
    checksum = hashlib.blake2b(ALG + key_id + secret64, digest_size=32).digest()
    # minisign 0.11 writes a zero checksum into keys without password; signing checks the key's halves anyway
    if raw[126:158] != b'\x00' * 32 and not hmac.compare_digest(checksum, raw[126:158]):
        raise SigningError('%s is damaged: its checksum does not match' % what)
    return SecretKey(key_id, secret64)


def read_secret_key(path):
    """The SecretKey in a file; SigningError (never the key's bytes) when it cannot be used."""
    try:
        with open(path, 'r') as handle:
            text = handle.read(MAX_KEY_TEXT + 1)
        mode = os.stat(path).st_mode & 0o777
    except (IOError, OSError) as exc:
        raise SigningError('cannot read the signing key %s: %s' % (path, exc.strerror or exc))
    if mode & 0o077:
        raise SigningError('the signing key %s has mode %04o: others could read it; make it 0600 (chmod 600 %s)' % (
            path, mode, path))
    return parse_secret_key(text, 'the signing key %s' % path)


def generate():
    """A new SecretKey (from the operating system's CSPRNG)."""
    ed25519, serialization, dummy = _ed25519()
    seed = os.urandom(32)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SecretKey(os.urandom(8), seed + raw)


def parse_signature(text, what='the signature'):
    """(algorithm, key id, signature, trusted comment, global signature) of a minisign signature text."""
    if len(text) > MAX_SIGNATURE_TEXT:
        raise SigningError('%s is %d bytes long: not a minisign signature' % (what, len(text)), 'bad_signature')
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].startswith('untrusted comment:') or \
            not lines[2].startswith('trusted comment: '):
        raise SigningError('%s is not a minisign signature (four lines: untrusted comment, signature, trusted '
                           'comment, global signature)' % what, 'bad_signature')
    try:
        raw = base64.b64decode(lines[1].strip().encode('ascii'), validate=True)
        global_signature = base64.b64decode(lines[3].strip().encode('ascii'), validate=True)
    except (ValueError, binascii.Error, UnicodeError):
        raise SigningError('%s is not a minisign signature: not base64' % what, 'bad_signature')
    if len(raw) != _SIGNATURE_LEN or raw[:2] not in (ALG, ALG_PREHASHED) or len(global_signature) != 64:
        raise SigningError('%s is not an Ed25519 minisign signature' % what, 'bad_signature')
    return raw[:2], raw[2:10], raw[10:], lines[2][len('trusted comment: '):], global_signature


def verify(keys, data, signature_text, what='the data'):
    """Check a minisign signature of data against trusted keys ({id: PublicKey}); (key id, trusted comment).

    SigningError kinds: unknown_signer (signed by a key not trusted), bad_signature (does not verify)."""
    algorithm, key_id, signature, comment, global_signature = parse_signature(
        signature_text, 'the signature of %s' % what)
    key = keys.get(key_id_text(key_id))
    if key is None:
        raise SigningError('%s is signed by key %s, which is not among the trusted keys (%s)' % (
            what, key_id_text(key_id), ', '.join(sorted(keys)) or 'none given'), 'unknown_signer')
    message = hashlib.blake2b(data, digest_size=64).digest() if algorithm == ALG_PREHASHED else data
    if not key.verify_raw(signature, message):
        raise SigningError('%s does not match its signature by key %s: it was altered after it was signed' % (
            what, key.id), 'bad_signature')
    if not key.verify_raw(global_signature, signature + comment.encode('utf-8')):
        raise SigningError('the trusted comment of the signature of %s was altered' % what, 'bad_signature')
    return key.id, comment


def backup_comment(location_path, backup_id, now=None):
    """The trusted comment of a backup's signature: what minisign -V prints, bound to the backup."""
    return 'etcdops.etcd backup %s/%s signed %s' % (location_path, backup_id, time.strftime(
        '%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() if now is None else now)))
