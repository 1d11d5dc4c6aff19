# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fuzz target: a static pod manifest as the collection reads and edits it (``StaticPodManifest``): the YAML
within its bounds, every property a module reads (flags, image, data dir, host paths), then one edit of the
flags as static_pod_manifest and the restore make it, chosen by the input's first byte.

Beyond "only ManifestError": an edit that succeeds must give a manifest that reads back with exactly the flags
asked for, every other flag as it was, and the same container; anything else raises AssertionError (a finding).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, '.build', 'collections'))

from harness import Target  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import (  # noqa: E402
    ManifestError, StaticPodManifest)

PATH = '/etc/kubernetes/manifests/etcd.yaml'
# The edits the collection makes: the restore's (a new data dir, force-new-cluster on and off, a new cluster
# token and state), the repair's, and a user's through static_pod_manifest.
EDITS = [
    ({'data-dir': '/var/lib/etcd-restored-2026-01-01T00-00-00Z'}, []),
    ({'force-new-cluster': True}, []),
    ({}, ['force-new-cluster']),
    ({'initial-cluster-state': 'existing', 'initial-cluster-token': 'restored-1'}, ['initial-cluster']),
    ({'quota-backend-bytes': 8589934592, 'snapshot-count': '10000'}, []),
    ({'experimental-initial-corrupt-check': False}, ['name']),
    ({'--listen-client-urls': 'https://127.0.0.1:2379'}, ['-data-dir']),
    ({}, []),
]


def _expected_flags(before, set_flags, remove_flags):
    wanted = dict(before)
    for name in remove_flags:
        wanted.pop(name.lstrip('-'), None)
    for name, value in set_flags.items():
        wanted[name.lstrip('-')] = True if value is True else ('false' if value is False else str(value))
    return wanted


def one_input(data):
    choice = data[0] if data else 0
    text = data[1:].decode('utf-8', 'replace')
    container = 'etcd' if choice & 0x80 else None
    try:
        manifest = StaticPodManifest(text, path=PATH, container=container)
        for prop in ('pod_name', 'namespace', 'command', 'args', 'argv', 'program', 'flags', 'image',
                     'image_tag', 'etcd_version', 'host_paths', 'data_dir'):
            getattr(manifest, prop)
        manifest.host_path(manifest.data_dir or '/var/lib/etcd')
        manifest.get_flag('--name')
        set_flags, remove_flags = EDITS[choice % len(EDITS)]
        before = manifest.flags
        new_text = manifest.edit_flags(set_flags=set_flags, remove_flags=remove_flags)
    except ManifestError:
        return
    if new_text == text:
        assert before == _expected_flags(before, set_flags, remove_flags), 'unchanged text, flags not as asked'
        return
    edited = StaticPodManifest(new_text, path=PATH, container=container)
    assert edited.flags == _expected_flags(before, set_flags, remove_flags), (edited.flags, before)
    assert edited.container_index == manifest.container_index
    assert edited.image == manifest.image


def seeds():
    fixture = os.path.join(ROOT, 'tests', 'unit', 'fixtures', 'manifests', 'kubeadm-etcd-3.5.manifest')
    with open(fixture, 'rb') as handle:
        kubeadm = handle.read()
    for choice in range(len(EDITS)):
        yield bytes([choice]) + kubeadm
    yield bytes([0x81]) + kubeadm.replace(b'  - command:\n    - etcd\n', b'  - args:\n', 1)
    yield bytes([2]) + kubeadm.replace(b'    - --snapshot-count=10000\n',
                                       b'    - --force-new-cluster\n    - --snapshot-count\n    - "10000"\n', 1)
    yield bytes([1]) + kubeadm.replace(b'\n', b'\r\n')
    yield bytes([3]) + (b'kind: Pod\nspec: {containers: [{name: etcd, image: "etcd:3.6.1", command: [etcd, '
                        b'"--data-dir=/var/lib/etcd", --name, cp1], volumeMounts: [{name: d, mountPath: '
                        b'/var/lib/etcd}]}], volumes: [{name: d, hostPath: {path: /var/lib/etcd}}]}\n')
    yield bytes([4]) + b'kind: Pod\nspec:\n  containers:\n  - &c {name: etcd, command: [etcd, --a=1]}\n  - *c\n'
    yield bytes([5]) + b'a: &a [x, *a]\n'


TARGET = Target('manifest', one_input, seeds, allowed=(ManifestError,), max_len=64 * 1024)
