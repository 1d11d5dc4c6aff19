# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: restoring an etcd snapshot into a data dir with the tool of the member's etcd line.

* ``detect_tool(location, runner)``: ``etcdutl`` (3.5 and later), or ``etcdctl`` where the line has no
  etcdutl (3.4: ``ETCDCTL_API=3 etcdctl snapshot restore``). ``location`` is a directory holding the
  binaries or the path of one of them. The result (``Tool``) says which binary, its version and line, and
  whether its ``snapshot restore`` knows ``--bump-revision``/``--mark-compacted`` (etcdutl 3.5.10+, 3.6, 3.7;
  not the 3.4 etcdctl the lab ships): read from the tool's own ``--help``, not guessed from the version.
* ``restore_argv(tool, snapshot, data_dir, name, ...)``: the command line of one restore, pure.
* ``run_restore(module_or_runner, argv, env)``: runs it, raises ``RestoreError`` with etcd's own words.

The revision bump (etcd's recovery guide: ``--bump-revision 1000000000 --mark-compacted``) keeps the restored
revision above every revision clients (kube-apiserver watch caches, informers) have already seen, and marks the
old ones compacted so watchers re-list instead of waiting for revisions that will never come. etcdutl demands
``--mark-compacted`` with a bump and refuses it without one, so the flag goes with the bump only.

A runner is an ``AnsibleModule`` (``run_command``) or a callable ``runner(argv, env) -> (rc, stdout, stderr)``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import fsync_dir

DEFAULT_BUMP_REVISION = 1000000000  # etcd's recovery guide
DEFAULT_SEARCH_PATH = ('/usr/local/bin', '/usr/bin', '/bin', '/opt/bin')
ETCDCTL_ENV = {'ETCDCTL_API': '3'}

_VERSION = re.compile(r'(etcdutl|etcdctl) version:\s*v?(\d+)\.(\d+)\.(\d+)\S*')


class RestoreError(Exception):
    """A restore could not be prepared or failed; the message says what and what to do."""

    def __init__(self, msg, kind='other', **details):
        super(RestoreError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.details = details


class Tool(object):
    """The binary that restores: path, kind ('etcdutl' or 'etcdctl'), version, line ('3.5') and what it knows."""

    def __init__(self, path, kind, version=None, supports_bump_revision=None):
        self.path = path
        self.kind = kind
        self.version = version
        if supports_bump_revision is None:
            # without asking the binary: etcdutl of 3.6+ has it, 3.4's etcdctl does not
            supports_bump_revision = kind == 'etcdutl'
        self.supports_bump_revision = supports_bump_revision

    @property
    def line(self):
        """major.minor of the version ('3.4'), None when unknown."""
        if not self.version:
            return None
        return '.'.join(self.version.split('.')[:2])

    @property
    def env(self):
        """Environment the tool needs: etcdctl 3.4 restores only with the v3 API selected."""
        return dict(ETCDCTL_ENV) if self.kind == 'etcdctl' else {}

    def as_dict(self):
        return dict(path=self.path, kind=self.kind, version=self.version, line=self.line,
                    supports_bump_revision=self.supports_bump_revision)

    def __repr__(self):
        return 'Tool(%r, %r, %r, %r)' % (self.path, self.kind, self.version, self.supports_bump_revision)


def _as_tool(tool):
    if isinstance(tool, Tool):
        return tool
    if not tool:
        raise RestoreError('no restore tool given: give the path of etcdutl (etcdctl on etcd 3.4)', kind='bad_input')
    base = os.path.basename(str(tool))
    if base.startswith('etcdutl'):
        return Tool(str(tool), 'etcdutl')
    if base.startswith('etcdctl'):
        return Tool(str(tool), 'etcdctl')
    raise RestoreError('%s is neither etcdutl nor etcdctl: give the path of one of them' % tool, kind='bad_input')


# -- the command line ------------------------------------------------------------------------------------

def cluster_string(initial_cluster):
    """'n1=https://a:2380,n2=https://b:2380' from that string, a dict name -> URL(s) or a list of pairs."""
    if isinstance(initial_cluster, dict):
        pairs = sorted(initial_cluster.items())
    elif isinstance(initial_cluster, (list, tuple)):
        pairs = []
        for item in initial_cluster:
            if isinstance(item, dict):
                pairs.append((item.get('name'), item.get('peer_urls') or item.get('url')))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                pairs.append(tuple(item))
            else:
                pairs.extend(_split_cluster(str(item)))
    else:
        pairs = _split_cluster(str(initial_cluster or ''))
    out = []
    for name, urls in pairs:
        for url in ([urls] if not isinstance(urls, (list, tuple)) else urls):
            out.append('%s=%s' % (name, url))
    return ','.join(out)


def _split_cluster(text):
    pairs = []
    for part in [p.strip() for p in text.split(',') if p.strip()]:
        if '=' not in part:
            raise RestoreError('initial cluster entry %r is not name=peer-URL' % part, kind='bad_input')
        name, url = part.split('=', 1)
        pairs.append((name.strip(), url.strip()))
    return pairs


def url_list(urls):
    """A comma-separated string from a list or string of URLs."""
    if isinstance(urls, (list, tuple)):
        return ','.join(str(u).strip() for u in urls if str(u).strip())
    return ','.join(u.strip() for u in str(urls or '').split(',') if u.strip())


def restore_argv(tool, snapshot, data_dir, name, initial_cluster, initial_cluster_token, initial_advertise_peer_urls,
                 bump_revision=None, mark_compacted=True, skip_hash_check=False, wal_dir=None):
    """The argv of ``etcdutl snapshot restore`` (``etcdctl`` on 3.4; run it with ``Tool.env``).

    tool: a Tool (detect_tool) or the path of etcdutl/etcdctl (a bare path is taken to know
    ``--bump-revision`` when it is etcdutl, not when it is etcdctl). bump_revision: None or 0 for no bump,
    else the number of revisions to add; mark_compacted goes with a bump (etcdutl demands it with one and
    refuses it without). Raises RestoreError (kind 'bad_input' or 'unsupported') on input the tool would
    refuse, before anything runs.
    """
    tool = _as_tool(tool)
    for label, value in (('snapshot', snapshot), ('data_dir', data_dir), ('name', name),
                         ('initial_cluster_token', initial_cluster_token)):
        if not value or not str(value).strip():
            raise RestoreError('%s is empty: the restore needs it' % label, kind='bad_input')
    cluster = cluster_string(initial_cluster)
    peers = url_list(initial_advertise_peer_urls)
    if not cluster:
        raise RestoreError('initial_cluster is empty: give every member as name=peer-URL', kind='bad_input')
    if not peers:
        raise RestoreError('initial_advertise_peer_urls is empty: give the peer URL(s) of %s' % name,
                           kind='bad_input')
    mine = set(url for member, url in _split_cluster(cluster) if member == name)
    if not mine:
        raise RestoreError('member %s is not in the initial cluster %s' % (name, cluster), kind='bad_input')
    if not set(peers.split(',')) <= mine:
        raise RestoreError('the peer URLs of %s (%s) are not its URLs in the initial cluster (%s)' % (
            name, peers, ','.join(sorted(mine))), kind='bad_input')
    if bump_revision is not None:
        try:
            bump_revision = int(bump_revision)
        except (TypeError, ValueError):
            raise RestoreError('bump_revision %r is not a whole number' % (bump_revision,), kind='bad_input')
        if bump_revision < 0:
            raise RestoreError('bump_revision %d is negative' % bump_revision, kind='bad_input')
    if bump_revision and not tool.supports_bump_revision:
        raise RestoreError('%s %s cannot bump the revision (no --bump-revision: etcdctl of etcd 3.4 before 3.4.27 '
                           'has none): set bump_revision to 0 or use etcdutl/etcdctl of a line that has it' % (
                               tool.kind, tool.version or tool.path), kind='unsupported')
    if bump_revision and not mark_compacted:
        raise RestoreError('a revision bump needs mark_compacted (etcdutl refuses --bump-revision without '
                           '--mark-compacted): watchers must re-list', kind='bad_input')
    argv = [tool.path, 'snapshot', 'restore', str(snapshot),
            '--data-dir', str(data_dir),
            '--name', str(name),
            '--initial-cluster', cluster,
            '--initial-cluster-token', str(initial_cluster_token),
            '--initial-advertise-peer-urls', peers]
    if wal_dir:
        argv += ['--wal-dir', str(wal_dir)]
    if skip_hash_check:
        argv.append('--skip-hash-check')
    if bump_revision:
        argv += ['--bump-revision', str(bump_revision), '--mark-compacted']
    return argv


# -- running ---------------------------------------------------------------------------------------------

def _run(runner, argv, env=None):
    if runner is None:
        raise RestoreError('no runner: pass the AnsibleModule or a callable(argv, env)', kind='bad_input')
    if hasattr(runner, 'run_command'):
        rc, out, err = runner.run_command(argv, environ_update=env or {})
    else:
        rc, out, err = runner(argv, env or {})
    return rc, out or '', err or ''


def run_restore(module_or_runner, argv, env=None):
    """Run a restore argv; dict(rc, stdout, stderr, seconds, command). Raises RestoreError when it fails."""
    started = time.monotonic()
    try:
        rc, out, err = _run(module_or_runner, argv, env)
    except (OSError, IOError) as exc:
        raise RestoreError('cannot run %s: %s' % (argv[0], exc), kind='tool_failed')
    seconds = time.monotonic() - started
    if rc != 0:
        said = (err.strip() or out.strip()).splitlines()
        raise RestoreError('%s failed (rc %d) after %.1fs: %s' % (
            ' '.join(argv[:3]), rc, seconds, ' / '.join(said[-5:]) or 'no output'),
            kind='tool_failed', rc=rc, stdout=out, stderr=err)
    return dict(rc=rc, stdout=out, stderr=err, seconds=seconds, command=list(argv))


# -- finding the tool ------------------------------------------------------------------------------------

def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def tool_version(runner, path, kind):
    """'3.5.17' from ``<tool> version``; RestoreError when it does not answer."""
    try:
        rc, out, err = _run(runner, [path, 'version'], ETCDCTL_ENV if kind == 'etcdctl' else {})
    except (OSError, IOError) as exc:
        raise RestoreError('cannot run %s: %s' % (path, exc), kind='missing_tool')
    match = _VERSION.search(out + '\n' + err)
    if rc != 0 or not match:
        raise RestoreError('%s version did not answer with a version (rc %d): %s' % (
            path, rc, (err or out).strip()[:300]), kind='missing_tool')
    return '%s.%s.%s' % match.groups()[1:]


def _supports_bump(runner, tool):
    rc, out, err = _run(runner, [tool.path, 'snapshot', 'restore', '--help'], tool.env)
    return '--bump-revision' in out + err


def detect_tool(location=None, runner=None, search_path=DEFAULT_SEARCH_PATH):
    """The Tool that restores on this host.

    location: the path of etcdutl/etcdctl (used as it is), or a directory to look in (etcdutl first, then
    etcdctl), or None for search_path. etcdctl is taken only where it is of the 3.4 line, which has no
    etcdutl; from 3.5 the restore belongs to etcdutl (3.6 etcdctl has no restore at all). With a runner, the
    binary is asked for its version and whether it knows --bump-revision; without one, neither is known.
    Raises RestoreError(kind='missing_tool') saying what was looked for where.
    """
    if location and not os.path.isdir(location):
        if not _executable(location):
            raise RestoreError('%s is not an executable file: give the path of etcdutl (etcdctl on etcd 3.4) or '
                               'the directory holding it' % location, kind='missing_tool')
        tool = _as_tool(location)
        looked = [location]
    else:
        dirs = [location] if location else list(search_path)
        tool, looked = None, []
        for kind in ('etcdutl', 'etcdctl'):
            for directory in dirs:
                path = os.path.join(directory, kind)
                looked.append(path)
                if _executable(path):
                    tool = Tool(path, kind)
                    break
            if tool:
                break
        if tool is None:
            raise RestoreError('neither etcdutl nor etcdctl found (looked at %s): install etcdutl of the line of the '
                               'etcd server (etcdctl on 3.4) or give its path' % ', '.join(looked),
                               kind='missing_tool')
    if runner is None:
        return tool
    tool.version = tool_version(runner, tool.path, tool.kind)
    if tool.kind == 'etcdctl' and tool.line != '3.4':
        raise RestoreError('found %s of etcd %s but no etcdutl beside it (looked at %s): from etcd 3.5 the restore '
                           'is etcdutl\'s, install etcdutl %s or give its path' % (
                               tool.path, tool.version, ', '.join(looked), tool.line), kind='missing_tool')
    tool.supports_bump_revision = _supports_bump(runner, tool)
    return tool


# -- the member's data dir -------------------------------------------------------------------------------

MARKER = '.etcdops-restore.json'   # in the restored data dir: which snapshot it came from (idempotence)
RESTORING_SUFFIX = '.restoring'    # <data_dir>.restoring: etcdutl's output before it takes the data dir's place
MOVED_INFIX = '.moved-'            # <data_dir>.moved-<UTC timestamp>: the data dir that was there before
IDENTITY_FIELDS = ('name', 'initial_cluster', 'initial_cluster_token', 'initial_advertise_peer_urls')


def utc_stamp(now=None):
    return time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now if now is not None else time.time()))


def read_marker(data_dir):
    """What the last restore into data_dir recorded, or None (no marker, or not readable as one)."""
    import json
    try:
        with open(os.path.join(data_dir, MARKER)) as handle:
            marker = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_marker(directory, record):
    import json
    path = os.path.join(directory, MARKER)
    with open(path, 'w') as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
        handle.write('\n')
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)


def _same_identity(marker, identity):
    return bool(marker) and all(marker.get(field) == identity.get(field) for field in IDENTITY_FIELDS)


def marker_matches(marker, sha256, identity):
    """True when the marker says data_dir was restored from this snapshot for this member identity."""
    return _same_identity(marker, identity) and marker.get('snapshot_sha256') == sha256


def marker_may_match(marker, fingerprint, identity):
    """False when the marker certainly is not of this snapshot and member identity: another identity, or a quick
    fingerprint (_snapshot.file_fingerprint) that differs from the file's. True when only the sha256 of the whole
    file can tell (the fingerprints are equal, or the marker is older than fingerprints and has none)."""
    if not _same_identity(marker, identity):
        return False
    recorded = marker.get('snapshot_fingerprint')
    return recorded is None or recorded == fingerprint


def _flag_value(argv, name):
    for index, item in enumerate(argv):
        for dashes in ('--', '-'):
            if item == dashes + name and index + 1 < len(argv):
                return argv[index + 1]
            if item.startswith(dashes + name + '='):
                return item.split('=', 1)[1]
    return None


def etcd_users(data_dir, proc_root='/proc', ignore=()):
    """Processes using data_dir: an etcd whose --data-dir is it, or any process with a file open under it.

    [dict(pid, why)]; reading other processes' file descriptors needs root, as the restore does. Files open
    under a path of ignore (the restoring dir inside a mount point, which another restore writes) do not count.
    """
    data_dir = os.path.realpath(data_dir)
    inside = data_dir.rstrip('/') + '/'
    ignored = tuple(os.path.realpath(p).rstrip('/') + '/' for p in ignore)
    found = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return found
    own = os.getpid()
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        base = os.path.join(proc_root, entry)
        try:
            with open(os.path.join(base, 'cmdline'), 'rb') as handle:
                cmdline = handle.read()
        except (IOError, OSError):
            continue
        argv = [a.decode('utf-8', 'replace') for a in cmdline.rstrip(b'\0').split(b'\0')] if cmdline else []
        if argv and os.path.basename(argv[0]) == 'etcd':
            value = _flag_value(argv, 'data-dir')
            if value and os.path.realpath(value) == data_dir:
                found.append(dict(pid=int(entry), why='etcd --data-dir=%s' % value))
                continue
        try:
            fds = os.listdir(os.path.join(base, 'fd'))
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(base, 'fd', fd))
            except OSError:
                continue
            if (target == data_dir or target.startswith(inside)) and not (target + '/').startswith(ignored or ('\0',)):
                name = os.path.basename(argv[0]) if argv else '?'
                found.append(dict(pid=int(entry), why='%s has %s open' % (name, target)))
                break
    return sorted(found, key=lambda p: p['pid'])


def _unescape_mount(text):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), text)


def is_mount_point(path, mountinfo='/proc/self/mountinfo'):
    """True when path is a mount point: os.path.ismount, or listed in mountinfo (a bind mount or a container
    volume on the same device, which ismount does not see but rename(2) refuses to cross)."""
    path = os.path.realpath(path)
    if os.path.ismount(path):
        return True
    try:
        with open(mountinfo) as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and _unescape_mount(fields[4]) == path:
                    return True
    except (IOError, OSError):
        pass
    return False


def restoring_dir(data_dir):
    """Where etcdutl writes: beside data_dir on the same file system, or inside it when data_dir is a mount."""
    data_dir = data_dir.rstrip('/')
    if is_mount_point(data_dir):
        return os.path.join(data_dir, MARKER.replace('.json', '') + RESTORING_SUFFIX)
    return data_dir + RESTORING_SUFFIX


def moved_path(data_dir, stamp):
    """Where the old data dir goes: <data_dir>.moved-<stamp>, or <data_dir>/moved-<stamp> for a mount point."""
    data_dir = data_dir.rstrip('/')
    if is_mount_point(data_dir):
        base = os.path.join(data_dir, 'moved-' + stamp)
    else:
        base = data_dir + MOVED_INFIX + stamp
    path, count = base, 1
    while os.path.lexists(path):  # two restores in one second: never onto what an earlier one moved aside
        path, count = '%s-%d' % (base, count), count + 1
    return path


def remove_restoring(path):
    """A <data_dir>.restoring left by an interrupted run: only ever etcdutl's output from the snapshot."""
    import shutil
    if os.path.lexists(path):
        shutil.rmtree(path)


def _is_moved_aside(entry):
    return entry.startswith('moved-')


def data_entries(data_dir, restoring=None):
    """The entries of data_dir that are the member's data: not lost+found, not a moved-<stamp> dir an earlier
    restore left inside a mount point, not the restoring dir (inside the data dir when it is a mount point)."""
    try:
        entries = os.listdir(data_dir)
    except OSError:
        return []
    skip = set(['lost+found', os.path.basename(restoring.rstrip('/')) if restoring else None])
    return sorted(e for e in entries if e not in skip and not _is_moved_aside(e))


def _move_entries(source, target, entries):
    """Rename entries of source into target; the restore marker last, so that a run killed half-way never leaves
    a data dir that says it was restored while part of it is still in the restoring dir."""
    for entry in sorted(entries, key=lambda e: (e == MARKER, e)):
        os.rename(os.path.join(source, entry), os.path.join(target, entry))


def _fill(restored, data_dir):
    """Move the restored entries into the (empty) data_dir that keeps its place, then drop the restoring dir."""
    _move_entries(restored, data_dir, os.listdir(restored))
    os.rmdir(restored)
    os.chmod(data_dir, 0o700)
    fsync_dir(data_dir)


def swap_in(restored, data_dir, stamp):
    """Put the restored dir in data_dir's place; the old data dir (if any) moves aside, never deleted.

    Returns the path the old data dir went to (None when there was none: data_dir absent, or present with no
    data in it, as after a run killed between moving the old data aside and moving the restored data in).
    data_dir a mount point: its entries move into <data_dir>/moved-<stamp>/ and the restored entries take their
    place; moved-<stamp> dirs of earlier restores stay where they are.
    """
    data_dir = data_dir.rstrip('/')
    if os.path.isdir(data_dir) and not os.path.islink(data_dir) and not data_entries(data_dir, restored):
        _fill(restored, data_dir)
        fsync_dir(os.path.dirname(data_dir) or '/')
        return None
    moved = moved_path(data_dir, stamp)
    if is_mount_point(data_dir):
        os.mkdir(moved, 0o700)
        _move_entries(data_dir, moved, [e for e in data_entries(data_dir, restored) if e != os.path.basename(moved)])
        fsync_dir(moved)
        _fill(restored, data_dir)
        return moved
    if not os.path.lexists(data_dir):
        moved = None
        os.rename(restored, data_dir)
    else:
        try:
            os.rename(data_dir, moved)
            os.rename(restored, data_dir)
        except OSError as exc:
            if exc.errno != errno.EXDEV or os.path.lexists(moved):
                raise
            # overlayfs (a container's root) refuses to rename a directory of a lower layer: move what is inside
            os.mkdir(moved, 0o700)
            _move_entries(data_dir, moved, os.listdir(data_dir))
            fsync_dir(moved)
            _fill(restored, data_dir)
    fsync_dir(os.path.dirname(data_dir) or '/')
    return moved


def interrupted_swap(restoring, data_dir, sha256, identity):
    """True when a run was killed after its restore was complete and before the restored dir took data_dir's
    place: the restoring dir holds the marker of this snapshot and identity, and data_dir holds no data (it
    was moved aside). swap_in finishes such a run without restoring again."""
    if not marker_matches(read_marker(restoring), sha256, identity):
        return False
    return not os.path.lexists(data_dir) or (os.path.isdir(data_dir) and not data_entries(data_dir, restoring))


LOCK_SUFFIX = '.etcdops-restore.lock'


class RestoreLock(object):
    """An exclusive flock beside data_dir (<parent>/.<name>.etcdops-restore.lock), held while a restore writes.

    A run killed on the controller leaves its module running on the host; a second run waits for it here
    instead of removing the restoring dir under it. The file holds the pid of the holder; the holder removes it
    when done (a waiter checks that the file it locked is still the one at the path).
    """

    def __init__(self, data_dir, wait_seconds=900, poll=0.5):
        data_dir = data_dir.rstrip('/')
        name = '.%s%s' % (os.path.basename(data_dir), LOCK_SUFFIX)
        self.path = os.path.join(os.path.dirname(data_dir) or '/', name)
        self.wait_seconds = wait_seconds
        self.poll = poll
        self.handle = None
        self.waited = 0.0

    def holder(self):
        try:
            with open(self.path) as handle:
                return handle.read().strip() or '?'
        except (IOError, OSError):
            return '?'

    def _try(self, fcntl):
        """The locked handle of the lock file, or None when another process holds it."""
        handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), 'r+')
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return None
        try:
            same = os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
        except OSError:
            same = False
        if not same:  # the holder removed the file as we opened it: lock the new one
            handle.close()
            return None
        return handle

    def __enter__(self):
        import fcntl
        started = time.monotonic()
        while True:
            self.handle = self._try(fcntl)
            if self.handle is not None:
                break
            if time.monotonic() - started >= self.wait_seconds:
                what = (self.holder(), self.path, self.wait_seconds)
                raise RestoreError('another restore of this data dir (pid %s, lock %s) still runs after %ds: wait for '
                                   'it to end (or stop it), then run again' % what, kind='locked')
            time.sleep(self.poll)
        self.waited = time.monotonic() - started
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write('%d\n' % os.getpid())
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            try:
                os.unlink(self.path)  # while still held: nothing is left beside the data dir
            except OSError:
                pass
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None
        return False
