# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A member list that answers like EtcdClient, and a way to run a module's main() and read its result.

Used by the unit tests of etcd_member, etcd_defrag and etcd_alarm (mocks live in tests/unit only).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json
import os
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.etcdops.etcd.plugins.module_utils import _client
from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError

IDS = ['8e9e05c52164694d', 'fd422379fda50e48', '91bc3c398fb3c146', '2be1eb8f84b7f63e', '1e7a8c0f37bd4dd1',
       '5c3b9ad4e1f20a17', '6d2f0c1b7a9e4c33']
NEW_ID = 'a1b2c3d4e5f60718'
MIB = 1024 * 1024


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super(ModuleExit, self).__init__(result)
        self.result = result
        self.failed = failed


@contextlib.contextmanager
def module_args(args):
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        @contextlib.contextmanager
        def patch_module_args(args):
            old = basic._ANSIBLE_ARGS
            basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
            try:
                yield
            finally:
                basic._ANSIBLE_ARGS = old
    with patch_module_args(args):
        yield


def capture_exit(monkeypatch):
    """Make exit_json/fail_json raise ModuleExit; return the list that collects the module's warnings."""
    warnings = []

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, failed=False)

    def fail_json(self, **kwargs):
        raise ModuleExit(kwargs, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    monkeypatch.setattr(basic.AnsibleModule, 'warn', lambda self, text: warnings.append(text))
    monkeypatch.setattr(basic.AnsibleModule, 'log', lambda self, *args, **kwargs: None)
    return warnings


def listing(root):
    """Every path under root with its size: what 'nothing changed' is checked against."""
    found = {}
    for directory, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, str(root))] = os.path.getsize(path) if os.path.isfile(path) else None
    return found


def member(index, name=None, learner=False, started=True):
    """Member number index (1-based) at 10.0.0.1<index>; a member not started has no name or client URL."""
    return dict(id=IDS[index - 1], name=(name or 'master-%d' % index) if started else '',
                peer_urls=['https://10.0.0.1%d:2380' % index],
                client_urls=['https://10.0.0.1%d:2379' % index] if started else [], is_learner=learner)


def cluster(size=3, learners=()):
    return [member(i, learner=i in learners) for i in range(1, size + 1)]


def rpc_error(kind, details, endpoint='https://10.0.0.11:2379'):
    return EtcdClientError('%s: %s' % (endpoint, details), kind=kind, endpoint=endpoint, details=details)


class FakeClient(object):
    """Answers like EtcdClient from a member list.

    down: member ids that do not answer Status; leaderless: ids that answer without a leader;
    sizes: id -> (db_size, db_size_in_use); failures: method name -> list of errors raised by the next calls.
    Every call that changes something is recorded in `changes`.
    """

    def __init__(self, members=None, down=(), leaderless=(), sizes=None, alarms=None, failures=None,
                 local_url='https://127.0.0.1:2379', local_id=None):
        self.members = [dict(m) for m in (members if members is not None else cluster())]
        self.down = set(down)
        self.leaderless = set(leaderless)
        self.sizes = dict(sizes or {})
        self.alarms = list(alarms or [])
        self.failures = dict((k, list(v)) for k, v in (failures or {}).items())
        self.local_url = local_url
        self.local_id = local_id or self.members[0]['id']
        self.changes = []
        self.closed = False
        self.leader = [m['id'] for m in self.members if not m['is_learner']][0]
        self.defragmented = set()

    def _fail(self, method):
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def _listing(self):
        return [dict(m) for m in self.members]

    def member_list(self):
        self._fail('member_list')
        return dict(cluster_id='cdf818194e3a8c32', members=self._listing())

    def status(self, url):
        self._fail('status')
        if url == self.local_url:
            found = [m for m in self.members if m['id'] == self.local_id][0]
        else:
            matches = [m for m in self.members if url in m['client_urls']]
            if not matches:
                raise rpc_error('connection_refused', 'connection refused: nothing listens', endpoint=url)
            found = matches[0]
        if found['id'] in self.down:
            raise rpc_error('connection_refused', 'connection refused: nothing listens', endpoint=url)
        size, in_use = self.sizes.get(found['id'], (400 * MIB, 100 * MIB))
        if found['id'] in self.defragmented:
            size = in_use
        return dict(endpoint=url, member_id=found['id'], cluster_id='cdf818194e3a8c32', revision=42,
                    version='3.5.21', db_size=size, db_size_in_use=in_use,
                    leader=None if found['id'] in self.leaderless else self.leader, raft_index=100, raft_term=3,
                    raft_applied_index=100, is_learner=found['is_learner'], errors=[], storage_version=None,
                    db_size_quota=None)

    def member_add(self, peer_urls, is_learner=False):
        self._fail('member_add')
        self.changes.append(('add', list(peer_urls), is_learner))
        new = dict(id=NEW_ID, name='', peer_urls=list(peer_urls), client_urls=[], is_learner=is_learner)
        self.members.append(new)
        return dict(member=dict(new), members=self._listing())

    def _by_id(self, member_id):
        return [m for m in self.members if m['id'] == member_id][0]

    def member_promote(self, member_id):
        self._fail('member_promote')
        self.changes.append(('promote', member_id))
        self._by_id(member_id)['is_learner'] = False
        return dict(members=self._listing())

    def member_update(self, member_id, peer_urls):
        self._fail('member_update')
        self.changes.append(('update', member_id, list(peer_urls)))
        self._by_id(member_id)['peer_urls'] = list(peer_urls)
        return dict(members=self._listing())

    def member_remove(self, member_id):
        self._fail('member_remove')
        self.changes.append(('remove', member_id))
        self.members = [m for m in self.members if m['id'] != member_id]
        return dict(members=self._listing())

    def defragment(self, endpoint, timeout=300.0):
        self._fail('defragment')
        self.changes.append(('defragment', endpoint, timeout))
        self.defragmented.add(self.status(endpoint)['member_id'])

    def alarm_list(self):
        self._fail('alarm_list')
        return [dict(a) for a in self.alarms]

    def alarm_disarm(self, member_id=None, alarm=None):
        self._fail('alarm_disarm')
        self.changes.append(('disarm', member_id, alarm))
        disarmed = [a for a in self.alarms if a['member_id'] == member_id and a['alarm'] == alarm]
        self.alarms = [a for a in self.alarms if a not in disarmed]
        return disarmed

    def close(self):
        self.closed = True


def run(monkeypatch, module, client, **args):
    """Run module.main() with args against client; return the ModuleExit (result, failed)."""
    monkeypatch.setattr(module, 'client_from_module', lambda ansible_module: client, raising=False)
    monkeypatch.setattr(_client, 'client_from_module', lambda ansible_module: client)  # run_with_client's
    with module_args(args):
        with pytest.raises(ModuleExit) as caught:
            module.main()
    return caught.value


def call_main(module, args):
    """Run module.main() with args and whatever client it builds (functional tests: a real one).

    Returns the ModuleExit; warnings the module gave are in result['warnings'].
    """
    warnings = []

    def exit_json(self, **kwargs):
        raise ModuleExit(dict(kwargs, warnings=warnings), failed=False)

    def fail_json(self, **kwargs):
        raise ModuleExit(dict(kwargs, warnings=warnings), failed=True)

    with mock.patch.object(basic.AnsibleModule, 'exit_json', exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', fail_json), \
            mock.patch.object(basic.AnsibleModule, 'warn', lambda self, text: warnings.append(text)), \
            mock.patch.object(basic.AnsibleModule, 'log', lambda self, *a, **k: None):
        with module_args(args):
            with pytest.raises(ModuleExit) as caught:
                module.main()
    return caught.value
