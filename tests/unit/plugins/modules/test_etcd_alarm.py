# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_alarm with the client mocked: list, disarm NOSPACE (all or one member), never CORRUPT."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import yaml

from ansible_collections.etcdops.etcd.plugins.modules import etcd_alarm
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import (
    IDS,
    FakeClient,
    capture_exit,
    rpc_error,
    run,
)

NOSPACE_1 = dict(member_id=IDS[0], alarm='NOSPACE')
NOSPACE_2 = dict(member_id=IDS[1], alarm='NOSPACE')
CORRUPT_3 = dict(member_id=IDS[2], alarm='CORRUPT')


def named(alarm, name):
    return dict(alarm, member_name=name)


@pytest.fixture(autouse=True)
def warnings(monkeypatch):
    return capture_exit(monkeypatch)


def alarm_run(monkeypatch, client, **args):
    done = run(monkeypatch, etcd_alarm, client, **args)
    assert client.closed
    return done


def test_listing_changes_nothing(monkeypatch):
    client = FakeClient(alarms=[NOSPACE_1])
    result = alarm_run(monkeypatch, client).result
    assert client.changes == [] and result['changed'] is False
    assert result['alarms'] == [named(NOSPACE_1, 'master-1')] == result['alarms_after']
    doc = yaml.safe_load(etcd_alarm.RETURN)
    assert set(result) - {'changed'} == set(doc)
    assert set(result['alarms'][0]) == set(doc['alarms']['contains'])


def test_nospace_of_every_member_is_disarmed(monkeypatch):
    client = FakeClient(alarms=[NOSPACE_1, NOSPACE_2])
    result = alarm_run(monkeypatch, client, state='disarmed').result
    assert client.changes == [('disarm', IDS[0], 'NOSPACE'), ('disarm', IDS[1], 'NOSPACE')]
    assert result['changed'] is True and result['alarms_after'] == []
    assert result['disarmed'] == [named(NOSPACE_1, 'master-1'), named(NOSPACE_2, 'master-2')]


def test_one_member_by_name_or_id(monkeypatch):
    client = FakeClient(alarms=[NOSPACE_1, NOSPACE_2])
    result = alarm_run(monkeypatch, client, state='disarmed', member='master-2').result
    assert client.changes == [('disarm', IDS[1], 'NOSPACE')]
    assert result['alarms_after'] == [named(NOSPACE_1, 'master-1')]
    client = FakeClient(alarms=[NOSPACE_1, NOSPACE_2])
    alarm_run(monkeypatch, client, state='disarmed', member=IDS[0].upper())
    assert client.changes == [('disarm', IDS[0], 'NOSPACE')]


def test_unknown_member_is_named(monkeypatch):
    done = alarm_run(monkeypatch, FakeClient(alarms=[NOSPACE_1]), state='disarmed', member='master-9')
    assert done.failed and done.result['msg'].startswith('no member is named master-9, and it is not a member id')


def test_nothing_to_disarm_is_no_change(monkeypatch):
    client = FakeClient()
    result = alarm_run(monkeypatch, client, state='disarmed').result
    assert client.changes == [] and result['changed'] is False and result['disarmed'] == []


def test_corrupt_is_never_disarmed(monkeypatch):
    for check_mode in (False, True):
        client = FakeClient(alarms=[CORRUPT_3])
        done = alarm_run(monkeypatch, client, state='disarmed', alarm='CORRUPT', _ansible_check_mode=check_mode)
        assert done.failed and client.changes == []
        assert done.result['msg'].startswith('CORRUPT alarms are never disarmed by this module')
        assert "etcdctl endpoint hashkv --cluster" in done.result['msg']
        assert done.result['alarms'] == [named(CORRUPT_3, 'master-3')]


def test_nospace_is_disarmed_and_an_active_corrupt_kept_and_warned(monkeypatch, warnings):
    client = FakeClient(alarms=[NOSPACE_1, CORRUPT_3])
    result = alarm_run(monkeypatch, client, state='disarmed').result
    assert client.changes == [('disarm', IDS[0], 'NOSPACE')]
    assert result['alarms_after'] == [named(CORRUPT_3, 'master-3')]
    assert warnings[0].startswith('CORRUPT alarm active on master-3 (%s): CORRUPT alarms are never disarmed' % IDS[2])


def test_check_mode_predicts_and_disarms_nothing(monkeypatch):
    client = FakeClient(alarms=[NOSPACE_1, CORRUPT_3])
    result = alarm_run(monkeypatch, client, state='disarmed', _ansible_check_mode=True).result
    assert client.changes == [] and result['changed'] is True
    assert result['disarmed'] == [named(NOSPACE_1, 'master-1')]
    assert result['alarms_after'] == [named(CORRUPT_3, 'master-3')]


def test_an_alarm_raised_again_is_warned(monkeypatch, warnings):
    class Reraising(FakeClient):
        def alarm_disarm(self, member_id=None, alarm=None):
            self.changes.append(('disarm', member_id, alarm))
            return []

    client = Reraising(alarms=[NOSPACE_1])
    result = alarm_run(monkeypatch, client, state='disarmed').result
    assert result['alarms_after'] == [named(NOSPACE_1, 'master-1')]
    assert warnings == ['NOSPACE is active again on master-1: the database is still above its quota; compact, '
                        'defragment every member, then disarm']


def test_no_leader_is_reported(monkeypatch):
    client = FakeClient(failures={'alarm_list': [rpc_error('no_leader', 'etcdserver: no leader')]})
    done = alarm_run(monkeypatch, client)
    assert done.failed and done.result['msg'] == 'etcd alarms: https://10.0.0.11:2379: etcdserver: no leader'
