# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_backup_info and etcd_backup_prune on a local store seeded with metadata objects: listing newest first,
a retention preview equal to _retention.select, pruning that deletes exactly that set (never the newest verified),
check mode that deletes nothing, and leftovers of interrupted runs removed only when older than a day."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import time

import pytest


from ansible_collections.etcdops.etcd.plugins.module_utils._retention import select
from ansible_collections.etcdops.etcd.plugins.module_utils._store import (
    LocalStore, etcd_location, new_backup_id, resources_location)
from ansible_collections.etcdops.etcd.plugins.modules import etcd_backup_info, etcd_backup_prune
from ansible_collections.etcdops.etcd.tests.unit.plugins.modules.etcd_fakes import ModuleExit, capture_exit, module_args


@pytest.fixture(autouse=True)
def exit_capture(monkeypatch):
    return capture_exit(monkeypatch)


def run(module, tmp_path, check=False, **args):
    base = dict(cluster_name='lab', store='local', directory=str(tmp_path))
    base.update(args)
    if check:
        base['_ansible_check_mode'] = True
    with module_args(base):
        with pytest.raises(ModuleExit) as caught:
            module.main()
    return caught.value


def seed(tmp_path, count=400, span_days=730, verified_every=7, now=None):
    """count backups spread over span_days, every verified_every-th verified, one failed; ids newest first."""
    store = LocalStore(str(tmp_path))
    now = now or time.time()
    ids = []
    for number in range(count):
        when = now - 60 - number * (span_days * 86400.0 / count)
        backup_id = new_backup_id(when, suffix='%04x' % number)
        store.put_object(etcd_location('lab'), backup_id, 'snapshot.db.zst', iter([b'x' * 10]))
        verified = True if number % verified_every == 3 else (False if number == 1 else None)
        document = dict(member=dict(name='cp2'), revision=number, encrypted=False, verified=verified)
        store.write_metadata(etcd_location('lab'), backup_id, document)
        store.put_object(resources_location('lab'), backup_id, 'kubernetes.tar.zst', iter([b'r']))
        store.write_metadata(resources_location('lab'), backup_id, dict(verified=None))
        ids.append(backup_id)
    return store, ids


def test_info_lists_newest_first_and_previews_what_select_prunes(tmp_path):
    store, ids = seed(tmp_path, count=60, span_days=30)
    result = run(etcd_backup_info, tmp_path, retention={}).result
    assert [b['backup_id'] for b in result['backups']] == ids
    first = result['backups'][0]
    assert first['member'] == 'cp2' and first['encrypted'] is False and first['verified'] is None
    now = calendar.timegm(time.strptime(result['now'], '%Y-%m-%dT%H:%M:%SZ'))
    keep, prune = select(store.list_backups(etcd_location('lab')), now)
    assert result['prune'] == [r['id'] for r in prune] and prune
    assert [k['backup_id'] for k in result['keep']] == [r['id'] for r in keep]


def test_prune_deletes_what_select_prunes_and_check_mode_nothing(tmp_path):
    store, ids = seed(tmp_path)
    checked = run(etcd_backup_prune, tmp_path, check=True).result
    assert checked['pruned'] and len(store.list_backups(etcd_location('lab'))) == 400
    before = store.list_backups(etcd_location('lab'))
    done = run(etcd_backup_prune, tmp_path).result
    now = calendar.timegm(time.strptime(done['now'], '%Y-%m-%dT%H:%M:%SZ'))
    keep, prune = select(before, now)
    assert done['pruned'] == [r['id'] for r in prune] == checked['pruned']
    assert [r['id'] for r in store.list_backups(etcd_location('lab'))] == [r['id'] for r in keep] == done['kept']
    newest_verified = [r['id'] for r in before if r.get('verified') is True][0]
    assert newest_verified in done['kept']
    assert done['changed'] is True and done['resources_pruned']
    again = run(etcd_backup_prune, tmp_path).result
    assert again['pruned'] == [] and again['changed'] is False


def test_prune_removes_old_leftovers_of_interrupted_runs_only(tmp_path):
    store = LocalStore(str(tmp_path))
    old = new_backup_id(time.time() - 3 * 86400)
    fresh = new_backup_id(time.time() - 60)
    for backup_id in (old, fresh):
        store.put_object(etcd_location('lab'), backup_id, 'snapshot.db.zst', iter([b'x']))
    result = run(etcd_backup_prune, tmp_path).result
    assert result['incomplete_removed'] == [old]
    assert store.incomplete_backups(etcd_location('lab')) == [fresh]


def test_a_bad_policy_fails_naming_the_setting(tmp_path):
    seed(tmp_path, count=3)
    done = run(etcd_backup_prune, tmp_path, retention=dict(hourly_for='a week'))
    assert done.failed and 'hourly_for' in done.result['msg']
