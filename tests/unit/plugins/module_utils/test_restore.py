# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore command line for each etcd line, the tool found on a host (etcdutl, or etcdctl on 3.4) and the
runner, without etcd: fake binaries in a temporary directory and a fake runner that answers as they would."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils._restore import (
    DEFAULT_BUMP_REVISION, RestoreError, Tool, cluster_string, detect_tool, marker_may_match,
    restore_argv, run_restore,
)

CLUSTER = 'cp1=https://10.0.0.1:2380,cp2=https://10.0.0.2:2380,cp3=https://10.0.0.3:2380'


def args(**over):
    base = dict(snapshot='/var/backups/etcd.db', data_dir='/var/lib/etcd.restore', name='cp1',
                initial_cluster=CLUSTER, initial_cluster_token='etcd-cluster',
                initial_advertise_peer_urls='https://10.0.0.1:2380')
    base.update(over)
    return base


def flag(argv, name):
    return argv[argv.index(name) + 1]


# -- the command line ------------------------------------------------------------------------------------

def test_etcdutl_restore_with_the_member_identity():
    argv = restore_argv('/usr/local/bin/etcdutl', **args())
    assert argv[:4] == ['/usr/local/bin/etcdutl', 'snapshot', 'restore', '/var/backups/etcd.db']
    assert flag(argv, '--data-dir') == '/var/lib/etcd.restore'
    assert flag(argv, '--name') == 'cp1'
    assert flag(argv, '--initial-cluster') == CLUSTER
    assert flag(argv, '--initial-cluster-token') == 'etcd-cluster'
    assert flag(argv, '--initial-advertise-peer-urls') == 'https://10.0.0.1:2380'
    for absent in ('--bump-revision', '--mark-compacted', '--skip-hash-check', '--wal-dir'):
        assert absent not in argv


def test_a_bump_brings_mark_compacted():
    argv = restore_argv('/usr/local/bin/etcdutl', bump_revision=DEFAULT_BUMP_REVISION, **args())
    assert flag(argv, '--bump-revision') == '1000000000'
    assert '--mark-compacted' in argv


def test_mark_compacted_without_a_bump_is_left_out_as_etcdutl_refuses_it():
    argv = restore_argv('/usr/local/bin/etcdutl', bump_revision=0, mark_compacted=True, **args())
    assert '--mark-compacted' not in argv and '--bump-revision' not in argv


def test_a_bump_without_mark_compacted_is_refused():
    with pytest.raises(RestoreError) as err:
        restore_argv('/usr/local/bin/etcdutl', bump_revision=5, mark_compacted=False, **args())
    assert err.value.kind == 'bad_input' and 'mark_compacted' in err.value.msg


def test_etcdctl_34_restores_without_a_bump_and_says_why_it_cannot_bump():
    tool = Tool('/usr/local/bin/etcdctl', 'etcdctl', '3.4.23', supports_bump_revision=False)
    argv = restore_argv(tool, **args())
    assert argv[:3] == ['/usr/local/bin/etcdctl', 'snapshot', 'restore']
    assert tool.env == {'ETCDCTL_API': '3'}
    with pytest.raises(RestoreError) as err:
        restore_argv(tool, bump_revision=1000, **args())
    assert err.value.kind == 'unsupported' and '3.4.23' in err.value.msg


def test_an_etcdctl_that_knows_the_bump_may_bump():
    tool = Tool('/usr/bin/etcdctl', 'etcdctl', '3.4.30', supports_bump_revision=True)
    assert '--bump-revision' in restore_argv(tool, bump_revision=10, **args())


def test_skip_hash_check_and_wal_dir():
    argv = restore_argv('/x/etcdutl', skip_hash_check=True, wal_dir='/var/lib/etcd-wal', **args())
    assert '--skip-hash-check' in argv and flag(argv, '--wal-dir') == '/var/lib/etcd-wal'


@pytest.mark.parametrize('given', [
    CLUSTER,
    {'cp1': 'https://10.0.0.1:2380', 'cp2': 'https://10.0.0.2:2380', 'cp3': 'https://10.0.0.3:2380'},
    [('cp1', 'https://10.0.0.1:2380'), ('cp2', 'https://10.0.0.2:2380'), ('cp3', 'https://10.0.0.3:2380')],
    [{'name': 'cp1', 'peer_urls': ['https://10.0.0.1:2380']}, {'name': 'cp2', 'peer_urls': ['https://10.0.0.2:2380']},
     {'name': 'cp3', 'peer_urls': ['https://10.0.0.3:2380']}],
])
def test_the_initial_cluster_as_string_dict_or_list(given):
    assert cluster_string(given) == CLUSTER


def test_peer_urls_as_a_list():
    argv = restore_argv('/x/etcdutl', **args(initial_advertise_peer_urls=['https://10.0.0.1:2380']))
    assert flag(argv, '--initial-advertise-peer-urls') == 'https://10.0.0.1:2380'


@pytest.mark.parametrize('over,words', [
    (dict(name='cp9'), 'not in the initial cluster'),
    (dict(initial_advertise_peer_urls='https://10.0.0.2:2380'), 'are not its URLs'),
    (dict(initial_cluster='cp1'), 'name=peer-URL'),
    (dict(initial_cluster=''), 'initial_cluster is empty'),
    (dict(snapshot=''), 'snapshot is empty'),
    (dict(data_dir=' '), 'data_dir is empty'),
    (dict(initial_cluster_token=None), 'initial_cluster_token is empty'),
    (dict(initial_advertise_peer_urls=[]), 'initial_advertise_peer_urls is empty'),
])
def test_bad_input_is_refused_before_anything_runs(over, words):
    with pytest.raises(RestoreError) as err:
        restore_argv('/x/etcdutl', **args(**over))
    assert err.value.kind == 'bad_input' and words in err.value.msg


def test_bad_bump_values():
    for bad in ('many', -1):
        with pytest.raises(RestoreError):
            restore_argv('/x/etcdutl', bump_revision=bad, **args())


def test_a_tool_that_is_neither():
    with pytest.raises(RestoreError) as err:
        restore_argv('/usr/bin/etcd', **args())
    assert 'neither etcdutl nor etcdctl' in err.value.msg


# -- running ---------------------------------------------------------------------------------------------

class FakeModule(object):
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def run_command(self, argv, environ_update=None):
        self.calls.append((list(argv), dict(environ_update or {})))
        for (match, answer) in self.answers:
            if match(argv):
                return answer
        return 127, '', 'not faked: %s' % ' '.join(argv)


def test_run_restore_through_a_module_passes_the_environment():
    module = FakeModule([(lambda a: True, (0, 'restored', ''))])
    result = run_restore(module, ['/x/etcdctl', 'snapshot', 'restore', 's.db'], {'ETCDCTL_API': '3'})
    assert result['rc'] == 0 and result['stdout'] == 'restored' and result['seconds'] >= 0
    assert module.calls == [(['/x/etcdctl', 'snapshot', 'restore', 's.db'], {'ETCDCTL_API': '3'})]


def test_run_restore_failure_carries_etcds_words():
    def runner(argv, env):
        return 1, '', 'Error: snapshot file integrity check failed. 2 errors occurred\n'
    with pytest.raises(RestoreError) as err:
        run_restore(runner, ['/x/etcdutl', 'snapshot', 'restore', 's.db'], {})
    assert err.value.kind == 'tool_failed' and 'integrity check failed' in err.value.msg
    assert err.value.details['rc'] == 1


def test_run_restore_tool_that_cannot_start():
    def runner(argv, env):
        raise OSError(2, 'No such file or directory')
    with pytest.raises(RestoreError) as err:
        run_restore(runner, ['/nope/etcdutl', 'snapshot', 'restore', 's.db'])
    assert 'cannot run /nope/etcdutl' in err.value.msg


# -- finding the tool ------------------------------------------------------------------------------------

def make_bin(directory, *names):
    for name in names:
        path = os.path.join(str(directory), name)
        with open(path, 'w') as handle:
            handle.write('#!/bin/sh\nexit 0\n')
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def answering(version, bump):
    """A runner answering as etcdutl/etcdctl of that version would."""
    def runner(argv, env):
        kind = os.path.basename(argv[0])[:7]  # etcdutl-3.6 answers as etcdutl
        if argv[1:] == ['version']:
            if kind == 'etcdctl' and env.get('ETCDCTL_API') != '3' and version.startswith('3.4'):
                return 0, 'etcdctl version: %s\nAPI version: 2\n' % version, ''
            return 0, '%s version: %s\nAPI version: %s\n' % (kind, version, version[:3]), ''
        if argv[1:] == ['snapshot', 'restore', '--help']:
            return 0, '      --data-dir=""\n' + ('      --bump-revision=0\n      --mark-compacted\n' if bump else ''), ''
        return 127, '', 'unexpected'
    return runner


@pytest.mark.parametrize('version', ['3.5.21', '3.6.4', '3.7.0'])
def test_etcdutl_is_chosen_before_etcdctl(tmp_path, version):
    make_bin(tmp_path, 'etcdctl', 'etcdutl')
    tool = detect_tool(str(tmp_path), answering(version, True))
    assert tool.kind == 'etcdutl' and tool.path == str(tmp_path / 'etcdutl')
    assert tool.version == version and tool.line == version[:3] and tool.supports_bump_revision
    assert tool.env == {}
    assert tool.as_dict()['line'] == version[:3]


def test_etcdctl_on_34_without_the_bump(tmp_path):
    make_bin(tmp_path, 'etcdctl')
    tool = detect_tool(str(tmp_path), answering('3.4.23', False))
    assert tool.kind == 'etcdctl' and tool.line == '3.4' and not tool.supports_bump_revision
    assert tool.env == {'ETCDCTL_API': '3'}


def test_an_etcdctl_of_35_without_etcdutl_is_refused(tmp_path):
    make_bin(tmp_path, 'etcdctl')
    with pytest.raises(RestoreError) as err:
        detect_tool(str(tmp_path), answering('3.5.21', False))
    assert err.value.kind == 'missing_tool' and 'install etcdutl 3.5' in err.value.msg


def test_nothing_found_says_where_it_looked(tmp_path):
    with pytest.raises(RestoreError) as err:
        detect_tool(str(tmp_path), answering('3.6.4', True))
    assert err.value.kind == 'missing_tool' and str(tmp_path / 'etcdutl') in err.value.msg


def test_an_explicit_path(tmp_path):
    make_bin(tmp_path, 'etcdutl-3.6')
    tool = detect_tool(str(tmp_path / 'etcdutl-3.6'), answering('3.6.4', True))
    assert tool.kind == 'etcdutl' and tool.version == '3.6.4'
    with pytest.raises(RestoreError):
        detect_tool(str(tmp_path / 'missing'), answering('3.6.4', True))


def test_the_search_path_without_a_runner(tmp_path):
    first, second = tmp_path / 'a', tmp_path / 'b'
    first.mkdir()
    second.mkdir()
    make_bin(first, 'etcdctl')
    make_bin(second, 'etcdutl')
    tool = detect_tool(None, None, search_path=(str(first), str(second)))
    assert tool.path == str(second / 'etcdutl') and tool.version is None and tool.supports_bump_revision


def test_a_binary_that_does_not_answer(tmp_path):
    make_bin(tmp_path, 'etcdutl')
    with pytest.raises(RestoreError) as err:
        detect_tool(str(tmp_path), lambda argv, env: (1, '', 'exec format error'))
    assert err.value.kind == 'missing_tool' and 'exec format error' in err.value.msg


# -- the marker's quick test and the status read in the background ------------------------------------------------

IDENTITY = dict(name='cp1', initial_cluster='cp1=https://10.0.0.1:2380', initial_cluster_token='etcd-cluster',
                initial_advertise_peer_urls='https://10.0.0.1:2380')


def test_a_marker_may_match_only_with_the_same_identity_and_no_other_fingerprint():
    marker = dict(IDENTITY, snapshot_sha256='ab' * 32, snapshot_fingerprint='v1:10:h:t')
    assert marker_may_match(marker, 'v1:10:h:t', IDENTITY)
    assert not marker_may_match(marker, 'v1:10:h:u', IDENTITY)  # another file for sure: no sha256 needed
    assert not marker_may_match(dict(marker, name='cp2'), 'v1:10:h:t', IDENTITY)
    older = dict(marker)
    del older['snapshot_fingerprint']
    assert marker_may_match(older, 'v1:10:h:u', IDENTITY)  # a marker without one: only the sha256 can tell
    assert not marker_may_match(None, 'v1:10:h:t', IDENTITY)
