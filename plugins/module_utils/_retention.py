# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: which backups to keep. A pure function of (backups, now, policy); no I/O, no clock.

``select(backups, now, policy=None)`` returns ``(keep, prune)``: two lists of the very records it was given,
each newest first, disjoint, together exactly the input.

A backup record is a mapping with:

* ``time``: when the backup was taken: a timezone-aware ``datetime``, an ISO 8601 UTC string
  (``2026-11-23T10:50:32Z``) or seconds since the epoch. Naive datetimes are read as UTC.
* ``verified``: ``True`` (its content was checked: the snapshot's sha256 trailer matched and the objects
  were stored completely), ``False`` (a check ran and failed: the backup is known to be bad), or missing /
  ``None`` (not checked yet).
* ``id`` (or ``backup_id``): used only to order backups taken in the same second, so results do not depend
  on the order of the input.

The policy (kops/etcd-manager defaults) is a mapping of durations; each is seconds (int/float) or a string
such as ``"90m"``, ``"1h"``, ``"7d"``, ``"2w"``, ``"1y"`` (365d), ``"1d12h"``:

* ``keep_all_within`` (``1h``): every backup younger than this is kept.
* ``hourly_for`` (``7d``): for each UTC hour, its representative is kept while younger than this.
* ``daily_for`` (``365d``): for each UTC day, its representative is kept while younger than this.

A bucket's representative is its OLDEST usable backup, as in etcd-manager. Why the oldest: backups only
arrive later in time, so the representative of an hour or a day is fixed as soon as that bucket has its
first backup; a backup kept as a representative is never displaced by a newer one and pruning never deletes
what a later run would have wanted. The oldest backup of a day is also the oldest of its hour, so the daily
representative is one the hourly rule already kept: moving from the hourly to the daily tier deletes, it
never needs what is gone. A bucket expires with its representative: the others in it were pruned before.

Usable means: verified backups are preferred (the oldest verified one of the bucket), then not-yet-checked
ones (``verified`` missing/None) when the bucket has no verified backup. A failed backup (``verified`` is
``False``) is never a representative: it is kept only while younger than ``keep_all_within`` (so that an
operator can look at what just failed) and then pruned.

Safety net, whatever the policy: the newest verified backup is never pruned; when no backup is verified,
the newest not-yet-checked one is kept instead, so a run never leaves a cluster without a backup to restore.
Backups dated in the future (clock skew) have a negative age and are kept by ``keep_all_within``.

Properties (tests/unit/plugins/module_utils/test_retention.py proves them with hypothesis): the result is a
partition of the input; ``select`` over the kept set prunes nothing (idempotent); for the same backups a later
``now`` keeps a subset of what an earlier ``now`` kept (nothing pruned would have come back).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import datetime
import math
import re

HOUR = 3600
DAY = 86400

DEFAULT_POLICY = {
    'keep_all_within': HOUR,
    'hourly_for': 7 * DAY,
    'daily_for': 365 * DAY,
}

_UNITS = {'s': 1, 'm': 60, 'h': HOUR, 'd': DAY, 'w': 7 * DAY, 'y': 365 * DAY}
_DURATION_PART = re.compile(r'(\d+(?:\.\d+)?)([smhdwy])')
_ISO_TIME = re.compile(r'^(\d{4})-(\d{2})-(\d{2})[T ](\d{2})[:-](\d{2})[:-](\d{2})(\.\d+)?(Z|[+-]00:?00)?$')

KEEP_ALL = 'keep_all_within'
HOURLY = 'hourly'
DAILY = 'daily'
NEWEST_VERIFIED = 'newest_verified'
NEWEST_UNCHECKED = 'newest_unchecked'


class RetentionError(ValueError):
    """A policy or a backup record that cannot be read; the message says which value and why."""


def parse_duration(value, name='duration'):
    """Seconds (a float) from seconds or a string like "1h", "7d", "1d12h", "90m", "1y" (365 days)."""
    if isinstance(value, bool):
        raise RetentionError('%s: %r is not a duration' % (name, value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(' ', '')
        if re.match(r'^\d+(\.\d+)?$', text):
            seconds = float(text)
        else:
            parts = _DURATION_PART.findall(text)
            if not text or ''.join(n + u for n, u in parts) != text:
                raise RetentionError('%s: %r is not a duration: use seconds or a number with a unit '
                                     '(s, m, h, d, w, y), e.g. "1h", "7d", "365d"' % (name, value))
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0 or math.isnan(seconds):
        raise RetentionError('%s: %r must not be negative' % (name, value))
    return seconds


def normalize_policy(policy=None):
    """The policy with defaults filled in and every duration in seconds; unknown keys are an error."""
    result = dict(DEFAULT_POLICY)
    for key, value in (policy or {}).items():
        if key not in DEFAULT_POLICY:
            raise RetentionError('unknown retention setting %r: expected %s' % (key, ', '.join(sorted(DEFAULT_POLICY))))
        if value is not None:
            result[key] = parse_duration(value, key)
    return dict((key, float(value)) for key, value in result.items())


def timestamp(value):
    """Seconds since the epoch (UTC) of a datetime, an ISO 8601 UTC string or a number."""
    if isinstance(value, bool):
        raise RetentionError('backup time %r is not a time' % (value,))
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return calendar.timegm(value.timetuple()) + value.microsecond / 1e6
    match = _ISO_TIME.match(str(value).strip())
    if not match:
        raise RetentionError('backup time %r is not a UTC time like 2026-11-23T10:50:32Z' % (value,))
    fields = [int(g) for g in match.groups()[:6]]
    fraction = float(match.group(7)) if match.group(7) else 0.0
    return calendar.timegm(tuple(fields) + (0, 0, 0)) + fraction


def _identity(record):
    for key in ('id', 'backup_id'):
        if key in record and record[key] is not None:
            return str(record[key])
    return ''


def _state(record):
    verified = record.get('verified')
    if verified is True:
        return 'verified'
    if verified is False:
        return 'failed'
    return 'unchecked'


_PRIORITY = (KEEP_ALL, HOURLY, DAILY, NEWEST_VERIFIED, NEWEST_UNCHECKED)


def _grant(reasons, position, reason):
    """Record why a backup is kept; when several rules keep it, the first in _PRIORITY names it."""
    current = reasons.get(position)
    if current is None or _PRIORITY.index(reason) < _PRIORITY.index(current):
        reasons[position] = reason


def explain(backups, now, policy=None):
    """[(record, reason or None)] newest first; the reason says why a backup is kept, None means pruned.

    Reasons: 'keep_all_within', 'hourly', 'daily', 'newest_verified', 'newest_unchecked'.
    """
    settings = normalize_policy(policy)
    now = timestamp(now)
    # (time, id, input position, state, record), oldest first: the first usable backup met in a bucket
    # is its representative; ties on time are broken by id, then by input position.
    entries = sorted((timestamp(record['time']), _identity(record), position, _state(record), record)
                     for position, record in enumerate(backups))

    representative = {}
    for when, unused_id, position, state, unused_record in entries:
        if state == 'failed':
            continue
        for tier, size in ((HOURLY, HOUR), (DAILY, DAY)):
            bucket = (tier, int(when // size))
            current = representative.get(bucket)
            # The oldest verified backup wins; an unchecked one holds a bucket until a verified one shows up.
            if current is None or (current[1] == 'unchecked' and state == 'verified'):
                representative[bucket] = (position, state, when)

    reasons = {}
    limits = {HOURLY: settings['hourly_for'], DAILY: settings['daily_for']}
    for (tier, unused_bucket), (position, unused_state, when) in representative.items():
        if now - when < limits[tier]:
            _grant(reasons, position, tier)

    newest = {}
    for when, unused_id, position, state, unused_record in entries:
        if now - when < settings['keep_all_within']:
            _grant(reasons, position, KEEP_ALL)
        newest[state] = position
    if 'verified' in newest:
        _grant(reasons, newest['verified'], NEWEST_VERIFIED)
    elif 'unchecked' in newest:
        _grant(reasons, newest['unchecked'], NEWEST_UNCHECKED)

    return [(entry[4], reasons.get(entry[2])) for entry in reversed(entries)]


def select(backups, now, policy=None):
    """(keep, prune): the given records split by the policy, each list newest first."""
    keep = []
    prune = []
    for record, reason in explain(backups, now, policy):
        (keep if reason else prune).append(record)
    return keep, prune
