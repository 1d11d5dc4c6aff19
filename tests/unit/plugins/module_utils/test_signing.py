# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""minisign signatures: keys and signatures made here verify with the minisign tool and the other way round; every
damage to a key, a signature, the data or the trusted comment is refused with the kind that says what it is."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import os
import shutil
import subprocess

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils._signing import (
    SigningError,
    generate,
    parse_public_key,
    parse_secret_key,
    parse_signature,
    read_secret_key,
    trusted_keys,
    verify,
)

MINISIGN = shutil.which('minisign')
needs_minisign = pytest.mark.skipif(MINISIGN is None and not os.environ.get('ETCDOPS_REQUIRE_ALL_LINES'),
                                    reason='the minisign tool is not installed (scripts/bootstrap.sh installs it)')


def test_a_signature_verifies_and_names_its_key_and_comment():
    key = generate()
    text = key.sign(b'metadata', 'etcdops.etcd backup lab/backups/etcd/main/x')
    assert verify({key.id: key.public}, b'metadata', text) == (key.id, 'etcdops.etcd backup lab/backups/etcd/main/x')


def test_the_key_texts_read_back():
    key = generate()
    again = parse_secret_key(key.text())
    assert again.id == key.id and again.public.raw == key.public.raw
    assert parse_public_key(key.public.text()).raw == key.public.raw
    assert list(trusted_keys([key.public.line()])) == [key.id]
    assert list(trusted_keys([key.public.text()])) == [key.id]


@pytest.mark.parametrize('change', ['data', 'signature', 'comment', 'global'])
def test_every_alteration_is_refused(change):
    key = generate()
    keys = {key.id: key.public}
    text = key.sign(b'metadata', 'comment')
    lines = text.splitlines()
    data = b'metadata'
    if change == 'data':
        data = b'metadatA'
    elif change == 'signature':
        raw = bytearray(base64.b64decode(lines[1]))
        raw[-1] ^= 1
        lines[1] = base64.b64encode(bytes(raw)).decode()
    elif change == 'comment':
        lines[2] = 'trusted comment: another backup'
    else:
        raw = bytearray(base64.b64decode(lines[3]))
        raw[0] ^= 1
        lines[3] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SigningError) as caught:
        verify(keys, data, '\n'.join(lines) + '\n')
    assert caught.value.kind == 'bad_signature'


def test_a_signature_by_another_key_is_an_unknown_signer():
    key, other = generate(), generate()
    with pytest.raises(SigningError, match='not among the trusted keys') as caught:
        verify({other.id: other.public}, b'x', key.sign(b'x', 'c'))
    assert caught.value.kind == 'unknown_signer'


@pytest.mark.parametrize('text', ['', 'untrusted comment: x\n', 'not base64 !!!', base64.b64encode(b'Ed' + b'x' * 10).decode(),
                                  'a' * 70000])
def test_garbage_is_not_a_key(text):
    with pytest.raises(SigningError):
        parse_public_key(text)
    with pytest.raises(SigningError):
        parse_secret_key(text)


@pytest.mark.parametrize('text', ['', 'x\ny\nz\nw\n', 'untrusted comment: a\n!!\ntrusted comment: b\n!!\n', 'a' * 5000])
def test_garbage_is_not_a_signature(text):
    with pytest.raises(SigningError) as caught:
        parse_signature(text)
    assert caught.value.kind == 'bad_signature'


def test_a_damaged_secret_key_is_refused_by_its_checksum():
    key = generate()
    lines = key.text().splitlines()
    raw = bytearray(base64.b64decode(lines[1]))
    raw[70] ^= 1  # inside the secret key
    with pytest.raises(SigningError, match='damaged'):
        parse_secret_key(base64.b64encode(bytes(raw)).decode())


def test_a_password_protected_key_is_refused_saying_why():
    key = generate()
    raw = bytearray(base64.b64decode(key.text().splitlines()[1]))
    raw[2:4] = b'Sc'
    with pytest.raises(SigningError, match='password'):
        parse_secret_key(base64.b64encode(bytes(raw)).decode())


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / 'k.key'
    path.write_text(generate().text())
    path.chmod(0o644)
    with pytest.raises(SigningError, match='chmod 600'):
        read_secret_key(str(path))
    path.chmod(0o600)
    assert read_secret_key(str(path)).id


@needs_minisign
def test_minisign_verifies_what_we_sign_and_we_verify_what_it_signs(tmp_path):
    key = generate()
    (tmp_path / 'data').write_bytes(b'{"backup_id": "x"}\n')
    (tmp_path / 'data.minisig').write_text(key.sign(b'{"backup_id": "x"}\n', 'etcdops.etcd backup x'))
    (tmp_path / 'k.pub').write_text(key.public.text())
    out = subprocess.run([MINISIGN, '-V', '-m', str(tmp_path / 'data'), '-p', str(tmp_path / 'k.pub')],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and 'etcdops.etcd backup x' in out.stdout, out.stdout + out.stderr
    # a key made by minisign (no password) signs; we read its key and verify its signature
    subprocess.run([MINISIGN, '-G', '-W', '-s', str(tmp_path / 'm.key'), '-p', str(tmp_path / 'm.pub')],
                   check=True, capture_output=True)
    subprocess.run([MINISIGN, '-S', '-s', str(tmp_path / 'm.key'), '-m', str(tmp_path / 'data'), '-t', 'by minisign'],
                   check=True, capture_output=True)
    keys = trusted_keys(key_file=str(tmp_path / 'm.pub'))
    assert verify(keys, (tmp_path / 'data').read_bytes(), (tmp_path / 'data.minisig').read_text())[1] == 'by minisign'
    theirs = parse_secret_key((tmp_path / 'm.key').read_text())
    assert theirs.id in keys
    (tmp_path / 'data.minisig').write_text(theirs.sign(b'{"backup_id": "x"}\n', 'ours with their key'))
    out = subprocess.run([MINISIGN, '-V', '-m', str(tmp_path / 'data'), '-p', str(tmp_path / 'm.pub')],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    # and minisign signs with a key file we made
    (tmp_path / 'ours.key').write_text(key.text())
    subprocess.run([MINISIGN, '-S', '-s', str(tmp_path / 'ours.key'), '-m', str(tmp_path / 'data'), '-t', 'ours'],
                   check=True, capture_output=True)
    assert verify({key.id: key.public}, (tmp_path / 'data').read_bytes(),
                  (tmp_path / 'data.minisig').read_text())[1] == 'ours'
