"""Retention: which backups survive a pruning run (kops' defaults: every backup of the last hour, the oldest
of each UTC hour for 7 days, the oldest of each UTC day for 365 days; the newest verified one always)."""

import datetime
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.etcdops.etcd.plugins.module_utils import _retention
from ansible_collections.etcdops.etcd.plugins.module_utils._retention import (
    RetentionError, explain, normalize_policy, parse_duration, select, timestamp,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 10, 50, 32, tzinfo=UTC)
MINUTE = datetime.timedelta(minutes=1)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def backup(when, verified=True, expect=None, name=None):
    record = {'id': name or when.strftime('%Y-%m-%dT%H-%M-%SZ'), 'time': when, 'verified': verified}
    if expect is not None:
        record['expect'] = expect
    return record


def ids(records):
    return [r['id'] for r in records]


def fresh():
    """A backup a minute old: kept by keep_all_within and the newest verified one, so that the safety net
    does not hide the rule a test is about."""
    return backup(NOW - MINUTE, name='fresh')


# -- the bar: 400 synthetic backups over two years ------------------------------------------------------

def two_years_of_backups():
    """400 backups; each carries `expect`, derived from how it was placed, not from the code under test.

    A  5 backups in the last hour (the two newest not yet checked): all kept              -> 5 kept
    B  100 hours between 2 h and 101 h ago, two backups each at :05 and :35:                -> 100 kept
       the :05 one is kept, except in 10 hours where it failed verification and in 5 hours where it is
       unchecked while the :35 one is verified: then the :35 one is kept instead
    C  80 days between 8 and 324 days ago (every 4th day), two backups each at 03:00 and 15:00 -> 80 kept
       03:00 is kept, except in 10 days where it failed: then 15:00 is kept
    D  35 backups older than a year: the day exactly 365 days ago (03:00 is 365d 7h50m old, 15:00 is
       364d 19h50m old: the day's representative is 03:00, expired, so the day goes) and 33 single
       backups every 10 days from 366 to 686 days ago                                      -> 0 kept
    """
    records = []
    # A: ages 1, 16, 31, 46 minutes and 59 min 59 s.
    for n, age in enumerate([MINUTE, 16 * MINUTE, 31 * MINUTE, 46 * MINUTE, 59 * MINUTE + datetime.timedelta(seconds=59)]):
        records.append(backup(NOW - age, verified=None if n < 2 else True, expect=True))
    # B: hour k (k = 2..101) starts at 10:00 - k h.
    this_hour = NOW.replace(minute=0, second=0)
    for k in range(2, 102):
        start = this_hour - k * HOUR
        first, second = start + 5 * MINUTE, start + 35 * MINUTE
        if k % 10 == 3:  # 10 hours: the :05 backup failed verification
            records += [backup(first, verified=False, expect=False), backup(second, expect=True)]
        elif k % 20 == 7:  # 5 hours: :05 unchecked, :35 verified: the verified one represents the hour
            records += [backup(first, verified=None, expect=False), backup(second, expect=True)]
        else:
            records += [backup(first, expect=True), backup(second, expect=False)]
    # C: day j (j = 8, 12, ..., 324) days before today.
    today = NOW.replace(hour=0, minute=0, second=0)
    for i in range(80):
        day = today - (8 + 4 * i) * DAY
        early, late = day + 3 * HOUR, day + 15 * HOUR
        if i % 8 == 5:  # 10 days: the 03:00 backup failed
            records += [backup(early, verified=False, expect=False), backup(late, expect=True)]
        else:
            records += [backup(early, expect=True), backup(late, expect=False)]
    # D: older than a year.
    boundary = today - 365 * DAY
    records += [backup(boundary + 3 * HOUR, expect=False), backup(boundary + 15 * HOUR, expect=False)]
    for i in range(33):
        records.append(backup(today - (366 + 10 * i) * DAY + 12 * HOUR, expect=False))
    return records


def test_400_backups_over_two_years_keep_exactly_the_expected_set():
    records = two_years_of_backups()
    assert len(records) == 400
    assert len(set(ids(records))) == 400
    assert (NOW - min(r['time'] for r in records)) < 730 * DAY
    expected_keep = set(r['id'] for r in records if r['expect'])
    assert len(expected_keep) == 5 + 100 + 80

    random.Random(7).shuffle(records)
    keep, prune = select(records, NOW)  # the defaults: 1h / 7d / 365d

    assert set(ids(keep)) == expected_keep
    assert set(ids(prune)) == set(r['id'] for r in records) - expected_keep
    assert len(keep) == 185 and len(prune) == 215
    assert [r['time'] for r in keep] == sorted((r['time'] for r in keep), reverse=True)
    assert [r['time'] for r in prune] == sorted((r['time'] for r in prune), reverse=True)


def test_400_backups_same_answer_with_the_policy_spelled_as_strings_and_now_as_text():
    records = two_years_of_backups()
    keep, dummy = select(records, '2026-11-23T10:50:32Z',
                         {'keep_all_within': '1h', 'hourly_for': '7d', 'daily_for': '365d'})
    assert set(ids(keep)) == set(r['id'] for r in records if r['expect'])


def test_reasons_name_the_rule_that_keeps_each_backup():
    reasons = dict((r['id'], reason) for r, reason in explain(two_years_of_backups(), NOW))
    counts = {}
    for reason in reasons.values():
        counts[reason] = counts.get(reason, 0) + 1
    # The hour 09 bucket's only backup is 59m59s old: kept_all; B's 100 hours; C's 80 days.
    assert counts == {'keep_all_within': 5, 'hourly': 100, 'daily': 80, None: 215}


# -- the rules one by one --------------------------------------------------------------------------------

def test_every_backup_of_the_last_hour_is_kept_and_an_hour_old_one_only_as_representative():
    records = [backup(NOW - n * 10 * MINUTE, name=str(n)) for n in range(7)]  # 0..60 min old
    keep, prune = select(records, NOW)
    # 60 min old (09:50:32) is not "within" the hour, and 10:00:32/09:50:32: 09:50:32 is the oldest of hour 09.
    assert ids(keep) == ['0', '1', '2', '3', '4', '5', '6']
    assert prune == []
    records.append(backup(NOW - 80 * MINUTE, name='old'))  # 09:30:32, now the oldest of hour 09
    keep, prune = select(records, NOW)
    assert ids(prune) == ['6']
    assert 'old' in ids(keep)


def test_representative_is_the_oldest_of_the_bucket():
    base = datetime.datetime(2026, 11, 20, 14, 0, 0, tzinfo=UTC)
    records = [backup(base + n * 15 * MINUTE, name='m%d' % (15 * n)) for n in range(4)] + [fresh()]
    keep, prune = select(records, NOW)
    assert ids(keep) == ['fresh', 'm0']
    assert ids(prune) == ['m45', 'm30', 'm15']


def test_hour_and_day_buckets_are_utc():
    # 23:30 and 00:10 are in different UTC days; both are oldest of their hour, 20 days ago only days count.
    late = datetime.datetime(2026, 11, 2, 23, 30, tzinfo=UTC)
    early = datetime.datetime(2026, 11, 3, 0, 10, tzinfo=UTC)
    keep, dummy = select([backup(late, name='late'), backup(early, name='early')], NOW)
    assert sorted(ids(keep)) == ['early', 'late']


def test_tiers_expire():
    at = NOW - 7 * DAY - HOUR  # 7 days 1 hour old, oldest of its day? no: the day has an older backup
    day_start = at.replace(hour=0, minute=0, second=0)
    records = [backup(day_start + MINUTE, name='day-rep'), backup(at, name='hour-rep-expired'),
               backup(NOW - 365 * DAY - MINUTE, name='year-old'), fresh()]
    keep, prune = select(records, NOW)
    assert ids(keep) == ['fresh', 'day-rep']
    assert ids(prune) == ['hour-rep-expired', 'year-old']


def test_exact_limits_are_exclusive():
    records = [backup(NOW - HOUR, name='1h', verified=False), backup(NOW - 7 * DAY, name='7d'),
               backup(NOW - 365 * DAY, name='365d'), backup(NOW, name='now')]
    reasons = dict((r['id'], reason) for r, reason in explain(records, NOW))
    assert reasons == {'now': 'keep_all_within', '1h': None, '7d': 'daily', '365d': None}


def test_failed_backups_are_kept_only_within_the_last_hour_and_never_represent_a_bucket():
    fresh = backup(NOW - 5 * MINUTE, verified=False, name='fresh-failed')
    old_failed = backup(NOW - 3 * HOUR, verified=False, name='old-failed')  # 07:50:32, oldest of hour 07
    old_good = backup(NOW - 3 * HOUR + 5 * MINUTE, name='old-good')
    keep, prune = select([fresh, old_failed, old_good], NOW)
    assert ids(keep) == ['fresh-failed', 'old-good']
    assert ids(prune) == ['old-failed']


def test_verified_backups_represent_a_bucket_before_unchecked_ones():
    start = datetime.datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    records = [backup(start, verified=None, name='unchecked'), backup(start + MINUTE, name='verified'),
               backup(start + 2 * MINUTE, name='later')]
    keep, dummy = select(records + [fresh()], NOW)
    assert ids(keep) == ['fresh', 'verified']
    # Without a verified backup in the hour, the oldest unchecked one holds it.
    keep, dummy = select([dict(r, verified=None) for r in records] + [fresh()], NOW)
    assert ids(keep) == ['fresh', 'unchecked']


def test_newest_verified_backup_survives_any_policy():
    records = [backup(NOW - (800 + n) * DAY, name='v%d' % n) for n in range(5)]
    records.append(backup(NOW - 700 * DAY, verified=None, name='unchecked-newer'))
    records.append(backup(NOW - 600 * DAY, verified=False, name='failed-newest'))
    keep, prune = select(records, NOW, {'keep_all_within': 0, 'hourly_for': 0, 'daily_for': 0})
    assert ids(keep) == ['v0']
    assert len(prune) == 6
    assert dict((r['id'], reason) for r, reason in explain(records, NOW))['v0'] == 'newest_verified'


def test_without_any_verified_backup_the_newest_unchecked_one_is_kept():
    records = [backup(NOW - (800 + n) * DAY, verified=None, name='u%d' % n) for n in range(3)]
    records.append(backup(NOW - 10 * DAY, verified=False, name='failed'))
    keep, dummy = select(records, NOW, {'daily_for': 0})
    assert ids(keep) == ['u0']
    reasons = dict((r['id'], reason) for r, reason in explain(records, NOW, {'daily_for': 0}))
    assert reasons['u0'] == 'newest_unchecked'


def test_only_failed_backups_are_all_pruned_once_older_than_the_hour():
    records = [backup(NOW - n * DAY, verified=False, name=str(n)) for n in range(1, 4)]
    assert select(records, NOW) == ([], records)


def test_empty_and_future_backups():
    assert select([], NOW) == ([], [])
    future = backup(NOW + 2 * HOUR, name='skewed')
    assert select([future], NOW) == ([future], [])


def test_same_second_backups_are_ordered_by_id_whatever_the_input_order():
    when = NOW - 3 * DAY
    a, b = backup(when, name='2026-11-20T10-50-32Z-aaaa'), backup(when, name='2026-11-20T10-50-32Z-bbbb')
    c = fresh()
    assert select([a, b, c], NOW) == select([c, b, a], NOW) == ([c, a], [b])


def test_records_use_backup_id_or_id_and_any_time_format():
    records = [
        {'backup_id': 'x', 'time': '2026-11-23T10:40:00Z', 'verified': True},
        {'backup_id': 'y', 'time': timestamp('2026-11-23T10:41:00Z')},
        {'id': 'z', 'time': datetime.datetime(2026, 11, 23, 10, 42)},  # naive: UTC
    ]
    keep, prune = select(records, NOW)
    assert [r.get('id') or r.get('backup_id') for r in keep] == ['z', 'y', 'x'] and prune == []


# -- policy and time parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize('text, seconds', [
    (3600, 3600.0), (1.5, 1.5), ('90', 90.0), ('45s', 45.0), ('90m', 5400.0), ('1h', 3600.0), ('7d', 604800.0),
    ('365d', 31536000.0), ('2w', 1209600.0), ('1y', 31536000.0), ('1d12h', 129600.0), ('1.5h', 5400.0),
    (' 7D ', 604800.0), ('0', 0.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['', 'h', '7 days', '-1h', -5, '1h-', 'P7D', True, '1x'])
def test_parse_duration_refuses(text):
    with pytest.raises(RetentionError) as err:
        parse_duration(text, 'hourly_for')
    assert 'hourly_for' in str(err.value)


def test_policy_defaults_and_unknown_keys():
    assert normalize_policy() == {'keep_all_within': 3600.0, 'hourly_for': 604800.0, 'daily_for': 31536000.0}
    assert normalize_policy({'daily_for': '30d', 'hourly_for': None})['daily_for'] == 30 * 86400.0
    with pytest.raises(RetentionError, match='unknown retention setting .weekly_for'):
        normalize_policy({'weekly_for': '4w'})


def test_timestamps():
    assert timestamp('2026-11-23T10:50:32Z') == timestamp(NOW) == timestamp(NOW.replace(tzinfo=None))
    assert timestamp('2026-11-23T10-50-32Z') == timestamp(NOW)  # a backup id's spelling
    assert timestamp('2026-11-23T10:50:32.5+00:00') == timestamp(NOW) + 0.5
    other_zone = datetime.timezone(datetime.timedelta(hours=2))
    assert timestamp(NOW.astimezone(other_zone)) == timestamp(NOW)
    with pytest.raises(RetentionError):
        timestamp('yesterday')


# -- properties --------------------------------------------------------------------------------------------

T0 = timestamp(NOW)
YEAR = 365 * 86400

verified_flags = st.sampled_from([True, True, True, None, False])


@st.composite
def backup_sets(draw, max_size=60):
    """Backups spread over three years before NOW (and a little after, for skewed clocks)."""
    offsets = draw(st.lists(st.one_of(
        st.integers(min_value=-3 * YEAR, max_value=3600),        # anywhere
        st.integers(min_value=-2 * 86400, max_value=0),          # dense recent ones: shared hour buckets
        # around the default tiers' edges (1 h, 7 d, 365 d): several backups in the bucket an edge cuts
        st.sampled_from([3600, 7 * 86400, YEAR]).flatmap(
            lambda edge: st.integers(min_value=-edge - 86400, max_value=-edge + 86400)),
    ), max_size=max_size))
    return [{'id': 'b%03d' % n, 'time': T0 + offset, 'verified': draw(verified_flags)}
            for n, offset in enumerate(offsets)]


policies = st.one_of(
    st.just(None),
    st.fixed_dictionaries({
        'keep_all_within': st.integers(min_value=0, max_value=3 * 86400),
        'hourly_for': st.integers(min_value=0, max_value=30 * 86400),
        'daily_for': st.integers(min_value=0, max_value=2 * YEAR),
    }),
)

PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def key_set(records):
    return set(r['id'] for r in records)


@PROPERTY_SETTINGS
@given(backup_sets(), policies)
def test_keep_and_prune_partition_the_input(records, policy):
    keep, prune = select(records, T0, policy)
    assert len(keep) + len(prune) == len(records)
    assert key_set(keep) | key_set(prune) == key_set(records)
    assert not key_set(keep) & key_set(prune)
    assert all(any(r is k for r in records) for k in keep + prune)  # the very records given, not copies


@PROPERTY_SETTINGS
@given(backup_sets(), policies)
def test_selecting_again_over_what_was_kept_prunes_nothing(records, policy):
    keep, dummy = select(records, T0, policy)
    again_keep, again_prune = select(keep, T0, policy)
    assert again_prune == []
    assert again_keep == keep


@PROPERTY_SETTINGS
@given(backup_sets(), policies)
def test_the_newest_verified_backup_is_always_kept(records, policy):
    keep, dummy = select(records, T0, policy)
    verified = [r for r in records if r['verified'] is True]
    if verified:
        newest = max(verified, key=lambda r: (r['time'], r['id']))
        assert newest in keep
    else:
        unchecked = [r for r in records if r['verified'] is None]
        if unchecked:
            assert max(unchecked, key=lambda r: (r['time'], r['id'])) in keep


@PROPERTY_SETTINGS
@given(backup_sets(), policies, st.integers(min_value=0, max_value=2 * YEAR))
def test_a_later_run_keeps_a_subset_of_what_an_earlier_run_kept(records, policy, later):
    keep_now, dummy = select(records, T0, policy)
    keep_later, dummy = select(records, T0 + later, policy)
    assert key_set(keep_later) <= key_set(keep_now)


@PROPERTY_SETTINGS
@given(backup_sets(), policies, st.integers(min_value=1, max_value=YEAR), st.data())
def test_pruning_early_never_loses_what_a_later_run_would_keep(records, policy, later, data):
    """Prune at t1, take new backups until t2, prune at t2: everything a single run at t2 over all backups
    would keep is still there."""
    records = [r for r in records if r['time'] <= T0]
    new = [{'id': 'n%03d' % n, 'time': T0 + offset, 'verified': flag} for n, (offset, flag) in enumerate(
        data.draw(st.lists(st.tuples(st.integers(min_value=1, max_value=later), verified_flags), max_size=20)))]
    pruned_early, dummy = select(records, T0, policy)
    keep_after_early_prune, dummy = select(pruned_early + new, T0 + later, policy)
    keep_without_early_prune, dummy = select(records + new, T0 + later, policy)
    assert key_set(keep_without_early_prune) <= key_set(keep_after_early_prune)


@PROPERTY_SETTINGS
@given(backup_sets(), policies, st.randoms(use_true_random=False))
def test_input_order_does_not_matter(records, policy, rnd):
    shuffled = list(records)
    rnd.shuffle(shuffled)
    assert select(shuffled, T0, policy) == select(records, T0, policy)


@PROPERTY_SETTINGS
@given(backup_sets(), policies)
def test_results_are_newest_first_and_recent_or_representative(records, policy):
    limits = _retention.normalize_policy(policy)
    for record, reason in explain(records, T0, policy):
        age = T0 - record['time']
        if reason == 'keep_all_within':
            assert age < limits['keep_all_within']
        elif reason == 'hourly':
            assert age < limits['hourly_for'] and record['verified'] is not False
        elif reason == 'daily':
            assert age < limits['daily_for'] and record['verified'] is not False
        elif reason is None:
            assert age >= limits['keep_all_within']
    keep, prune = select(records, T0, policy)
    for part in (keep, prune):
        assert [(r['time'], r['id']) for r in part] == sorted(((r['time'], r['id']) for r in part), reverse=True)
