# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: etcd's command-line tools of the cluster's version, staged on a host while the cluster is healthy.

A restore needs ``etcdutl`` (``etcdctl`` on 3.4) of the line the members run, and a kubeadm master has neither on
the host: they live inside the etcd image. This module finds them and copies them into a directory of ours,
``<dest>/<version>/``, where every restore finds them after a disaster:

* ``running``: from the etcd process of the static pod (found in the process table by the manifest's name and
  data dir): its binaries sit beside its executable, in the container's root, which the host reaches as
  ``/proc/<pid>/root``; whatever the container runtime, as long as the member runs;
* ``archive``: from etcd's release tarball (``etcd-v3.6.1-linux-amd64.tar.gz``), a file on the host whose sha256
  the user gives and which is checked before a member is read.

Every copy is asked for its version before it is used (a binary of another version or architecture is refused)
and staged in a new directory next to the target, which takes the target's place by one rename: a failed or
interrupted run leaves nothing half-installed at ``<dest>/<version>``. A target that is there but broken (a tool
missing, of another version) is moved aside with a timestamp, never deleted.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._disk import shortfall
from ansible_collections.etcdops.etcd.plugins.module_utils._restore import RestoreError, tool_version

DEFAULT_DEST = '/var/lib/etcdops/tools'
MAX_TOOL_BYTES = 256 * 1024 * 1024       # an etcd binary is 16-30 MB
MAX_ARCHIVE_MEMBERS = 1000                # etcd's tarball has fewer than 20
MAX_ARCHIVE_READ = 1024 * 1024 * 1024     # what reading the tarball may decompress in all
MARGIN_BYTES = 16 * 1024 * 1024
_VERSION = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)$')
_STAGING = '.staging-'
_MOVED = '.moved-'


class ToolsError(Exception):
    """The tools could not be found or staged; the message says what to provide."""

    def __init__(self, msg, kind='other'):
        super(ToolsError, self).__init__(msg)
        self.msg = msg
        self.kind = kind


def normalize_version(text):
    """'v3.6.1' / '3.6.1' -> '3.6.1'; ToolsError for anything else (a tag with a build suffix included)."""
    match = _VERSION.match(str(text or '').strip())
    if not match:
        raise ToolsError('%r is not an etcd version: give it as 3.6.1 (the etcd image tag 3.6.1-0 names 3.6.1)'
                         % (text,), kind='bad_input')
    return '%s.%s.%s' % match.groups()


def tool_names(version):
    """The tools a restore and the maintenance need of that version: etcdctl, and etcdutl from 3.5."""
    major, minor = [int(part) for part in version.split('.')[:2]]
    return ('etcdctl',) if (major, minor) < (3, 5) else ('etcdctl', 'etcdutl')


def _asked_version(runner, path, name):
    try:
        return tool_version(runner, path, name)
    except RestoreError as exc:
        return exc


def check_tools(runner, paths, version):
    """None when every tool in paths (name -> path) answers with version, else what is wrong (a sentence)."""
    for name, path in sorted(paths.items()):
        if not os.path.isfile(path):
            return '%s is missing' % path
        answer = _asked_version(runner, path, name)
        if isinstance(answer, Exception):
            return answer.msg
        if answer != version:
            return '%s is version %s, not %s' % (path, answer, version)
    return None


def installed(runner, dest, version):
    """(paths, problem): the tools at <dest>/<version>; problem None when they are all there and answer."""
    target = os.path.join(dest, version)
    paths = dict((name, os.path.join(target, name)) for name in tool_names(version))
    if not os.path.lexists(target):
        return paths, 'not installed'
    if not os.path.isdir(target) or os.path.islink(target):
        return paths, '%s is not a directory' % target
    return paths, check_tools(runner, paths, version)


# -- sources --------------------------------------------------------------------------------------------------

def running_sources(processes, proc_root='/proc'):
    """Directories holding the running member's binaries, as the host reaches them: /proc/<pid>/root plus the
    directory of the process's executable inside its container, one per process (pid order)."""
    found = []
    for process in processes:
        pid = process['pid']
        try:
            exe = os.readlink(os.path.join(proc_root, str(pid), 'exe'))
        except OSError:
            continue  # gone, or not ours to read
        if exe.endswith(' (deleted)') or not exe.startswith('/'):
            continue
        found.append((pid, os.path.join(proc_root, str(pid), 'root') + os.path.dirname(exe)))
    return found


def sha256_of(path, limit=MAX_ARCHIVE_READ):
    digest = hashlib.sha256()
    total = 0
    try:
        with open(path, 'rb') as handle:
            while True:
                block = handle.read(1024 * 1024)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise ToolsError('%s is larger than %d bytes: not an etcd release tarball' % (path, limit),
                                     kind='bad_input')
                digest.update(block)
    except (IOError, OSError) as exc:
        raise ToolsError('cannot read %s: %s' % (path, exc.strerror or exc), kind='bad_input')
    return digest.hexdigest()


def check_archive(path, sha256):
    """The archive's sha256 against the one given (lower-case hex; 'sha256:' prefix allowed)."""
    wanted = str(sha256 or '').strip().lower()
    if wanted.startswith('sha256:'):
        wanted = wanted[len('sha256:'):]
    if not re.match(r'^[0-9a-f]{64}$', wanted):
        raise ToolsError('archive_sha256 %r is not a sha256 (64 hex digits): give the one etcd publishes in the '
                         'release\'s SHA256SUMS' % (sha256,), kind='bad_input')
    if not os.path.isfile(path):
        raise ToolsError('the archive %s is not a file on the host: copy etcd\'s release tarball there first'
                         % path, kind='bad_input')
    found = sha256_of(path)
    if found != wanted:
        raise ToolsError('the archive %s has sha256 %s, not the %s given: a damaged download or another file; '
                         'nothing was installed' % (path, found, wanted), kind='checksum')
    return found


def extract_tools(path, names, into):
    """Copy the members <top>/<name> for names out of the tarball at path into the directory into (mode 0755).

    Read as a stream, with bounds: at most MAX_ARCHIVE_MEMBERS members and MAX_ARCHIVE_READ bytes, each tool a
    regular file of at most MAX_TOOL_BYTES; nothing but those files is written. Returns name -> path."""
    out = {}
    total = 0
    try:
        with tarfile.open(path, 'r|*') as archive:
            for count, member in enumerate(archive, 1):
                if count > MAX_ARCHIVE_MEMBERS:
                    raise ToolsError('%s has more than %d members: not an etcd release tarball' % (
                        path, MAX_ARCHIVE_MEMBERS), kind='bad_input')
                total += max(0, member.size)
                if total > MAX_ARCHIVE_READ:
                    raise ToolsError('%s holds more than %d bytes: not an etcd release tarball' % (
                        path, MAX_ARCHIVE_READ), kind='bad_input')
                parts = [part for part in member.name.split('/') if part not in ('', '.')]
                if len(parts) != 2 or parts[1] not in names or parts[1] in out:
                    continue
                if not member.isreg():
                    raise ToolsError('%s: %s is not a regular file' % (path, member.name), kind='bad_input')
                if member.size > MAX_TOOL_BYTES:
                    raise ToolsError('%s: %s has %d bytes, more than an etcd tool has' % (
                        path, member.name, member.size), kind='bad_input')
                source = archive.extractfile(member)
                target = os.path.join(into, parts[1])
                with open(target, 'wb') as handle:
                    shutil.copyfileobj(source, handle, 1024 * 1024)
                os.chmod(target, 0o755)
                out[parts[1]] = target
    except (tarfile.TarError, EOFError, IOError, OSError, ValueError) as exc:
        raise ToolsError('cannot read %s as a tarball or write its tools into %s: %s' % (path, into, exc),
                         kind='bad_input')
    missing = [name for name in names if name not in out]
    if missing:
        raise ToolsError('%s has no %s at its top directory: give etcd\'s release tarball (etcd-v<version>-linux-'
                         '<arch>.tar.gz)' % (path, ' or '.join(missing)), kind='bad_input')
    return out


# -- staging --------------------------------------------------------------------------------------------------

def need_space(dest, sizes):
    problem = shortfall(dest, sum(sizes) + MARGIN_BYTES, 'the etcd tools')
    if problem:
        raise ToolsError(problem, kind='no_space')


def make_staging(dest, version):
    if not os.path.isdir(dest):
        os.makedirs(dest, 0o755)
    return tempfile.mkdtemp(prefix='.%s%s' % (version, _STAGING), dir=dest)


def copy_tools(sources, into):
    """Copy name -> source path into the staging directory; name -> new path."""
    out = {}
    for name, source in sorted(sources.items()):
        target = os.path.join(into, name)
        shutil.copyfile(source, target)
        os.chmod(target, 0o755)
        out[name] = target
    return out


def fsync_tree(directory):
    for name in os.listdir(directory):
        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def put_in_place(staging, dest, version, now=None):
    """Rename the staging directory to <dest>/<version>; what was there goes aside as <version>.moved-<UTC time>.
    Returns the moved-aside path or None."""
    target = os.path.join(dest, version)
    moved = None
    if os.path.lexists(target):
        stamp = time.strftime('%Y-%m-%dT%H-%M-%SZ', time.gmtime(now))
        moved = '%s%s%s' % (target, _MOVED, stamp)
        suffix = 1
        while os.path.lexists(moved):
            suffix += 1
            moved = '%s%s%s-%d' % (target, _MOVED, stamp, suffix)
        os.rename(target, moved)
    os.rename(staging, target)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return moved


def remove_staging(staging):
    """Our own staging directory (copies of binaries, never etcd data) goes when a run fails."""
    if staging and os.path.basename(staging).startswith('.') and _STAGING in os.path.basename(staging):
        shutil.rmtree(staging, ignore_errors=True)
