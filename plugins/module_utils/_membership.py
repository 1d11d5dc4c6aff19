# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: who votes, who is healthy, and which change to the members keeps the cluster's quorum.

The members are the dicts of ``EtcdClient.member_list()`` (id, name, peer_urls, client_urls, is_learner).
Everything here is arithmetic on that list and on ``member_health`` (the one function that asks etcd),
so that etcd_member and etcd_defrag decide the same way and the rules are unit-tested without etcd.

The rule, in the operator's words: a change may take a voting member out (remove it, or block it with a
defragmentation) only when the healthy voting members left are a majority of the voting members there will
be.  Healthy means: answers Status on one of its client URLs within command_timeout and sees a leader.
Learners do not vote, so adding, removing or defragmenting a learner never touches quorum.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError


class MembershipError(Exception):
    """A request that cannot be matched to the member list without guessing (the message says why)."""


def quorum(voters):
    """How many voting members must agree: a majority of voters (etcd's n/2 + 1)."""
    return voters // 2 + 1


def voting(members):
    return [m for m in members if not m['is_learner']]


def label(member):
    """'member master-2 (fd422379fda50e48)', or '(not started)' for a member that has not published its name."""
    return 'member %s (%s)' % (member['name'] or '(not started)', member['id'])


def normalize_url(url):
    return url.strip().rstrip('/').lower()


def member_health(client, members):
    """{member id: dict(status=<status dict or None>, problem=<why it is not healthy, or None>)}.

    A member is healthy when it answers Status through one of its client URLs and sees a leader.
    """
    health = {}
    for member in members:
        status, problem = None, None
        if not member['client_urls']:
            problem = 'has no client URL: it was added but has not started yet'
        else:
            errors = []
            for url in member['client_urls']:
                try:
                    status = client.status(url)
                    break
                except EtcdClientError as error:
                    errors.append(error.msg)
            if status is None:
                problem = 'does not answer: %s' % '; '.join(errors)
            elif not status['leader']:
                problem = 'sees no leader'
        health[member['id']] = dict(status=status, problem=problem)
    return health


def is_healthy(health, member):
    entry = health.get(member['id'])
    return entry is not None and entry['problem'] is None


def _unhealthy_text(members, health):
    sick = ['%s %s' % (label(m), health.get(m['id'], {}).get('problem') or 'was not checked')
            for m in members if not is_healthy(health, m)]
    return '; '.join(sick) if sick else 'none'


def removal_refusal(members, health, target):
    """Why removing target would break quorum (a sentence), or None when it is safe.

    The last voting member is never removable (etcd refuses it too: no voter could ever commit again).
    Otherwise the healthy voting members that stay must be a majority of the voting members that stay.
    """
    if target['is_learner']:
        return None
    voters = voting(members)
    if len(voters) <= 1:
        return ('%s is the last voting member: removing it leaves no member that can commit, and etcd refuses it; '
                'to retire this cluster stop etcd and remove its data directory instead' % label(target))
    staying = [m for m in voters if m['id'] != target['id']]
    healthy = [m for m in staying if is_healthy(health, m)]
    need = quorum(len(staying))
    if len(healthy) >= need:
        return None
    return ('removing %s would leave %d voting members of which %d are healthy, fewer than the quorum of %d: the '
            'cluster could not commit; unhealthy: %s. Bring those members back (or remove the failed ones first, one '
            'at a time) and retry' % (label(target), len(staying), len(healthy), need,
                                      _unhealthy_text(staying, health)))


def voting_add_refusal(members, health):
    """Why adding a voting member (not a learner) would break quorum, or None when it is safe.

    The new member counts in the quorum from the moment it is added but votes only once it has started and
    caught up, so the healthy voting members already there must be a quorum of the membership plus one.
    """
    voters = voting(members)
    healthy = [m for m in voters if is_healthy(health, m)]
    need = quorum(len(voters) + 1)
    if len(healthy) >= need:
        return None
    return ('adding a voting member makes %d voting members, whose quorum of %d needs the new member before it has '
            'started: only %d are healthy (unhealthy: %s). Add it as a learner (learner=true) instead, or repair the '
            'cluster first' % (len(voters) + 1, need, len(healthy), _unhealthy_text(voters, health)))


def blocking_refusal(members, health, target):
    """Why blocking target for a while (defragmentation) would leave the cluster without quorum, or None.

    A defragmenting member stops taking part in raft until it is done, so the other healthy voting members
    must be a quorum of all voting members.  A cluster of one or two voting members never has that margin.
    """
    if target['is_learner']:
        return None
    voters = voting(members)
    others = [m for m in voters if m['id'] != target['id']]
    healthy = [m for m in others if is_healthy(health, m)]
    need = quorum(len(voters))
    if len(healthy) >= need:
        return None
    return ('while %s is blocked by the defragmentation, the other healthy voting members (%d) are fewer than the '
            'quorum of %d of the %d voting members, so the cluster would stop committing writes until it ends; '
            'unhealthy: %s' % (label(target), len(healthy), need, len(voters), _unhealthy_text(others, health)))


def find_member(members, name=None, peer_urls=None):
    """The member that name and/or peer_urls designate, or None; MembershipError when it is ambiguous.

    By name first.  A member added but not started has no name yet: it is found by one of its peer URLs.
    A peer URL that belongs to a member with another name is a conflict, not a match.
    """
    wanted = set(normalize_url(u) for u in (peer_urls or []))
    by_url = [m for m in members if wanted & set(normalize_url(u) for u in m['peer_urls'])]
    if len(by_url) > 1:
        raise MembershipError('peer URLs %s belong to several members: %s' % (
            ', '.join(sorted(peer_urls)), ', '.join(label(m) for m in by_url)))
    if name:
        by_name = [m for m in members if m['name'] == name]
        if len(by_name) > 1:
            raise MembershipError('%d members are named %s (%s): name the one you mean by its peer_urls' % (
                len(by_name), name, ', '.join(m['id'] for m in by_name)))
        if by_name:
            if by_url and by_url[0]['id'] != by_name[0]['id']:
                raise MembershipError('the name %s is %s but peer URLs %s belong to %s' % (
                    name, label(by_name[0]), ', '.join(sorted(peer_urls)), label(by_url[0])))
            return by_name[0]
        if by_url and by_url[0]['name'] and by_url[0]['name'] != name:
            raise MembershipError('peer URLs %s belong to %s, not to a member named %s' % (
                ', '.join(sorted(peer_urls)), label(by_url[0]), name))
    return by_url[0] if by_url else None


def same_urls(left, right):
    return sorted(normalize_url(u) for u in left) == sorted(normalize_url(u) for u in right)


def initial_cluster(members, member_id, name):
    """What the member's --initial-cluster must be, as `etcdctl member add` prints ETCD_INITIAL_CLUSTER:
    name=peer_url for every peer URL of every member, the member itself under the name it will start with."""
    entries = []
    for member in members:
        member_name = name if member['id'] == member_id else member['name']
        entries.extend('%s=%s' % (member_name, url) for url in member['peer_urls'])
    return ','.join(entries)
