# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz target: what a restore reads of a backup before it trusts it: the metadata object's bytes
(``Store._parse_metadata``), the signature object's text (``_signing.parse_signature`` and ``verify`` against one
fixed trusted key, as read_signed hands it over: decoded as ASCII with replacement) and a public key's text
(``parse_public_key``, ``trusted_keys``). The input is the metadata and the signature, split at the first
``SPLIT``; without one, the same bytes are both. Any bytes give a StoreError or a SigningError, or are accepted."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), '.build', 'collections'))

from harness import Target  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.etcdops.etcd.plugins.module_utils._signing import (  # noqa: E402
    SecretKey, SigningError, backup_comment, parse_public_key, trusted_keys, verify)
from ansible_collections.etcdops.etcd.plugins.module_utils._store import LocalStore, StoreError  # noqa: E402

SPLIT = b'\n--minisig--\n'
# A fixed key (seed and public half as cryptography derives them), so that seeds verify and mutations start there.
_SEED = bytes(range(32))
_STORE = LocalStore('/nonexistent/etcdops-fuzz-metadata')
_KEY = []


def signing_key():
    if not _KEY:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
        public = ed25519.Ed25519PrivateKey.from_private_bytes(_SEED).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        secret = SecretKey(b'\x01\x02\x03\x04\x05\x06\x07\x08', _SEED + public)
        _KEY.append((secret, {secret.public.id: secret.public}))
    return _KEY[0]


def one_input(data):
    metadata, found, signature = data.partition(SPLIT)
    if not found:
        signature = data
    dummy, keys = signing_key()
    try:
        _STORE._parse_metadata('prod/etcd/main/2026-01-01T00-00-00Z/metadata.json', metadata)
    except StoreError:
        pass
    text = signature.decode('ascii', 'replace')
    try:
        verify(keys, metadata, text, 'metadata.json')
    except SigningError:
        pass
    try:
        parse_public_key(text)
    except SigningError:
        pass
    trusted_keys([text])


def seeds():
    secret, dummy = signing_key()
    documents = [
        {'layout': 1, 'backup_id': '2026-01-01T00-00-00Z', 'cluster_name': 'prod', 'etcd_cluster': 'main',
         'objects': [{'name': 'snapshot.db.zst.age', 'size': 123456, 'sha256': '0' * 64}],
         'snapshot': {'revision': 42, 'hash': 3735928559, 'total_key': 10, 'size': 20480}},
        {'a': [[[[{'b': None, 'c': True, 'd': -1.5e3, 'e': '\u00e9\\"'}]]]]},
        {},
    ]
    for document in documents:
        data = json.dumps(document, indent=1).encode('utf-8')
        signature = secret.sign(data, backup_comment('prod/etcd/main', '2026-01-01T00-00-00Z', now=0))
        yield data + SPLIT + signature.encode('ascii')
    yield secret.public.text().encode('ascii')
    yield b'["' + b'[' * 40 + b'"]' + SPLIT + b'untrusted comment: x\nRUQ=\ntrusted comment: y\nAAAA\n'
    yield b'{"n": 1' + b'0' * 70 + b'}'


TARGET = Target('metadata', one_input, seeds, allowed=(StoreError, SigningError), max_len=16 * 1024)
