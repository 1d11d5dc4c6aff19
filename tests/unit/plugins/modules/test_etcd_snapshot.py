# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_snapshot with the client faked: save from a follower, fail over when it dies, keep an existing file
unless forced, check mode that writes nothing, status of a file, and every returned key documented."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import shutil

import pytest
import yaml


from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError
from ansible_collections.etcdops.etcd.plugins.modules import etcd_snapshot
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import ModuleExit, capture_exit, module_args

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'snapshots')
IDS = dict(m1='a1', m2='b2', m3='c3')


def fixture_bytes(name='etcd-3.6.db'):
    with open(os.path.join(FIXTURES, name), 'rb') as handle:
        return handle.read()


def etcdutl_said(name='etcd-3.6.db'):
    with open(os.path.join(FIXTURES, 'etcdutl-status.json')) as handle:
        return json.load(handle)[name]


@pytest.fixture(autouse=True)
def exit_capture(monkeypatch):
    return capture_exit(monkeypatch)


class FakeClient(object):
    """Three members, m1 the leader; `dies` break mid-stream, `down` do not answer."""

    def __init__(self, dies=(), down=()):
        self.dies = set(dies)
        self.down = set(down)
        self.asked = []
        self.closed = False
        self.db = fixture_bytes()[:-32]

    @staticmethod
    def url(name):
        return 'https://10.0.0.%s:2379' % name[1]

    def member_list(self):
        return dict(cluster_id='cdf818194e3a8c32', members=[
            dict(id=IDS[n], name=n, peer_urls=[], client_urls=[self.url(n)], is_learner=False)
            for n in ('m1', 'm2', 'm3')])

    def status(self, url):
        name = 'm' + url.split('.')[3][0]
        if name in self.down:
            raise EtcdClientError('%s: connection refused' % url, kind='connection_refused')
        return dict(endpoint=url, member_id=IDS[name], leader=IDS['m1'], errors=[], version='3.6.16',
                    raft_applied_index=dict(m1=10, m2=12, m3=11)[name])

    def snapshot(self, endpoint, timeout=None):
        name = 'm' + endpoint.split('.')[3][0]
        self.asked.append(name)
        data = self.db + hashlib.sha256(self.db).digest()
        yield data[:8192], len(self.db) - 8192
        if name in self.dies:
            raise EtcdClientError('%s: connection reset by peer' % endpoint, kind='unavailable')
        yield data[8192:], 0

    def close(self):
        self.closed = True


def run(monkeypatch, client, check=False, diff=False, **args):
    monkeypatch.setattr(etcd_snapshot, 'client_from_module', lambda module: client)
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with module_args(args):
        with pytest.raises(ModuleExit) as caught:
            etcd_snapshot.main()
    return caught.value


def documented():
    doc = yaml.safe_load(etcd_snapshot.RETURN)
    return doc


def assert_documented(result):
    doc = documented()
    extra = set(result) - set(doc) - set(['changed', 'msg', 'diff', 'error_kind', 'failed'])
    assert not extra, 'returned but not documented: %s' % sorted(extra)
    for key, entry in doc.items():
        if key in result and 'contains' in entry:
            items = result[key] if isinstance(result[key], list) else [result[key]]
            for item in items:
                assert set(item) == set(entry['contains']), (key, item)


def test_save_from_the_most_applied_follower(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    client = FakeClient()
    done = run(monkeypatch, client, path=str(target))
    result = done.result
    assert not done.failed, result
    assert result['changed'] is True and result['saved'] is True
    assert result['member'] == dict(name='m2', id='b2', endpoint='https://10.0.0.2:2379')
    assert result['tried'] == [dict(name='m2', id='b2', endpoint='https://10.0.0.2:2379', error=None)]
    assert result['cluster_id'] == 'cdf818194e3a8c32' and result['etcd_version'] == '3.6.16'
    expected = etcdutl_said()
    assert (result['hash'], result['revision'], result['total_key'], result['total_size'], result['version']) == (
        expected['hash'], expected['revision'], expected['totalKey'], expected['totalSize'], expected['version'])
    assert target.read_bytes() == fixture_bytes()
    assert result['sha256'] == hashlib.sha256(fixture_bytes()).hexdigest() and result['size'] == len(fixture_bytes())
    assert result['trailer'] == 'valid' and result['duration_seconds'] >= 0 and result['mb_per_second'] >= 0
    assert os.stat(str(target)).st_mode & 0o777 == 0o600
    assert client.closed
    assert_documented(result)


def test_the_chosen_member_dies_and_the_next_one_serves(monkeypatch, tmp_path):
    client = FakeClient(dies=['m2'])
    result = run(monkeypatch, client, path=str(tmp_path / 'snap.db')).result
    assert client.asked == ['m2', 'm3']
    assert result['member']['name'] == 'm3'
    assert [t['name'] for t in result['tried']] == ['m2', 'm3']
    assert 'connection reset' in result['tried'][0]['error'] and result['tried'][1]['error'] is None
    assert sorted(os.listdir(str(tmp_path))) == ['snap.db']


def test_every_member_dies_fails_clearly_and_leaves_nothing(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(dies=['m1', 'm2', 'm3']), path=str(tmp_path / 'snap.db'))
    assert done.failed
    assert 'no snapshot saved' in done.result['msg'] and all(n in done.result['msg'] for n in ('m1', 'm2', 'm3'))
    assert [t['name'] for t in done.result['tried']] == ['m2', 'm3', 'm1']
    assert os.listdir(str(tmp_path)) == []


def test_an_existing_file_is_kept_without_force(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    shutil.copy(os.path.join(FIXTURES, 'etcd-3.5.db'), str(target))
    client = FakeClient()
    done = run(monkeypatch, client, path=str(target))
    assert not done.failed and done.result['changed'] is False and done.result['saved'] is False
    assert done.result['hash'] == etcdutl_said('etcd-3.5.db')['hash'] and client.asked == []
    assert target.read_bytes() == fixture_bytes('etcd-3.5.db')
    assert_documented(done.result)


def test_an_existing_file_that_is_not_a_snapshot_fails_without_force(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    target.write_bytes(b'not a snapshot')
    done = run(monkeypatch, FakeClient(), path=str(target))
    assert done.failed and 'force=true' in done.result['msg']
    assert target.read_bytes() == b'not a snapshot'


def test_an_existing_file_with_a_wrong_trailer_fails_without_force(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    target.write_bytes(fixture_bytes()[:-32] + b'\0' * 32)
    client = FakeClient()
    done = run(monkeypatch, client, path=str(target))
    assert done.failed and 'damaged' in done.result['msg'] and 'force=true' in done.result['msg']
    assert client.asked == []


def test_force_replaces_the_file_and_diff_shows_both(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    shutil.copy(os.path.join(FIXTURES, 'etcd-3.5.db'), str(target))
    done = run(monkeypatch, FakeClient(), diff=True, path=str(target), force=True)
    assert done.result['changed'] is True and target.read_bytes() == fixture_bytes()
    diff = done.result['diff']
    assert diff['before']['sha256'] == hashlib.sha256(fixture_bytes('etcd-3.5.db')).hexdigest()
    assert diff['after']['sha256'] == hashlib.sha256(fixture_bytes()).hexdigest()


def test_check_mode_names_the_member_and_writes_nothing(monkeypatch, tmp_path):
    client = FakeClient()
    done = run(monkeypatch, client, check=True, path=str(tmp_path / 'snap.db'), member='leader')
    assert done.result['changed'] is True and done.result['saved'] is False
    assert done.result['member']['name'] == 'm1' and client.asked == []
    assert os.listdir(str(tmp_path)) == []
    assert_documented(done.result)


def test_check_mode_with_an_existing_file_is_not_a_change(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    shutil.copy(os.path.join(FIXTURES, 'etcd-3.6.db'), str(target))
    done = run(monkeypatch, FakeClient(), check=True, path=str(target))
    assert done.result['changed'] is False


def test_a_named_member_that_is_down_is_passed_over(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(down=['m3']), path=str(tmp_path / 'snap.db'), member='m3')
    assert done.result['member']['name'] == 'm2'
    assert done.result['unhealthy'][0]['name'] == 'm3' and 'refused' in done.result['unhealthy'][0]['error']


def test_an_unknown_member_name_fails_with_the_names(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(), path=str(tmp_path / 'snap.db'), member='m9')
    assert done.failed and 'm1, m2, m3' in done.result['msg']


def test_a_missing_directory_fails_before_connecting(monkeypatch, tmp_path):
    client = FakeClient()
    done = run(monkeypatch, client, path=str(tmp_path / 'nope' / 'snap.db'))
    assert done.failed and 'does not exist' in done.result['msg'] and client.asked == []


@pytest.mark.parametrize('mode,expected', [('0640', 0o640), ('600', 0o600), (0o644, 0o644)])
def test_mode(monkeypatch, tmp_path, mode, expected):
    target = tmp_path / 'snap.db'
    run(monkeypatch, FakeClient(), path=str(target), mode=mode)
    assert os.stat(str(target)).st_mode & 0o7777 == expected


def test_a_bad_mode_fails(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(), path=str(tmp_path / 'snap.db'), mode='rw-r')
    assert done.failed and 'octal' in done.result['msg']


def test_status_of_a_file(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(), state='status', path=os.path.join(FIXTURES, 'etcd-3.5.db'))
    expected = etcdutl_said('etcd-3.5.db')
    assert not done.failed and done.result['changed'] is False
    assert (done.result['hash'], done.result['total_key'], done.result['version']) == (
        expected['hash'], expected['totalKey'], '')
    assert_documented(done.result)


def test_status_of_a_missing_file_fails(monkeypatch, tmp_path):
    done = run(monkeypatch, FakeClient(), state='status', path=str(tmp_path / 'none.db'))
    assert done.failed and 'does not exist' in done.result['msg']


def test_status_of_a_file_with_a_wrong_trailer_fails(monkeypatch, tmp_path):
    target = tmp_path / 'snap.db'
    target.write_bytes(fixture_bytes()[:-32] + b'\0' * 32)
    done = run(monkeypatch, FakeClient(), state='status', path=str(target))
    assert done.failed and done.result['trailer'] == 'mismatch' and 'damaged' in done.result['msg']


def test_password_is_not_logged():
    spec = etcd_snapshot.connection_argument_spec()
    assert spec['password']['no_log'] is True
