# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: a restore drill of one stored backup, which proves that it restores, and its record in the metadata.

    store --get_object--> sha256 (stored object) --> age decrypt --> zstd decompress --> sha256 (snapshot)
        --> <work>/snapshot.db --> etcdutl snapshot restore (etcdctl on 3.4) --> <work>/data
        --> etcd on 127.0.0.1 (free client and peer ports, plain HTTP, its own cluster token)
        --> revision, live key count, HashKV at the backup's revision == the metadata's --> stopped, <work> removed

``<work>`` is a fresh 0700 directory under the drill's scratch directory: the decrypted snapshot holds every
Secret of the cluster, so it is removed at the end whatever happened. Nothing of the cluster is touched: the
throwaway member has its own name, token and loopback ports, and never learns of the real members.

The result is recorded beside the backup's metadata, in ``verification.json`` (``verified`` true/false, at,
error, checks, host; the signed metadata is never rewritten), which ``etcd_backup_info`` lists and retention reads (a failed backup is not kept as an hour's or
day's representative). ``DrillError`` carries the message, always naming the backup.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import signal
import socket
import tempfile
import time

from ansible_collections.etcdops.etcd.plugins.module_utils._fetch import FetchError, fetch_snapshot
from ansible_collections.etcdops.etcd.plugins.module_utils._restore import (
    RestoreError,
    detect_tool,
    restore_argv,
    run_restore,
)

DEFAULT_DRILL_DIR = '/var/lib/etcd-backup-drill'
DRILL_NAME = 'drill'
NO_PKI = '/nonexistent/etcdops-drill-no-tls'  # the throwaway member speaks plain HTTP on loopback


# Failures that say nothing about the backup (the drill's host, tools or access): not recorded in its metadata.
ENVIRONMENT_KINDS = ('missing_tool', 'scratch', 'identity', 'fetch')


class DrillError(Exception):
    """The drill failed; msg names the backup and what failed, kind is short ('fetch', 'sha256', 'restore' ...)."""

    def __init__(self, msg, kind='other'):
        super(DrillError, self).__init__(msg)
        self.msg = msg
        self.kind = kind


def free_port():
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def _iso(epoch):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))


class Drill(object):
    """One drill: ``run()`` returns the checks (raises DrillError); ``record()`` writes the result."""

    def __init__(self, store, location, backup_id, document, identities=None, scratch_dir=DEFAULT_DRILL_DIR,
                 tool=None, etcd_binary=None, runner=None, start_timeout=60.0, client_factory=None):
        self.store = store
        self.location = location
        self.backup_id = backup_id
        self.document = document
        self.identities = identities
        self.scratch_dir = scratch_dir
        self.tool_location = tool
        self.etcd_binary = etcd_binary
        self.runner = runner
        self.start_timeout = start_timeout
        self.client_factory = client_factory
        self.checks = {}
        self.timings = {}

    def fail(self, what, kind):
        raise DrillError('backup %s failed the restore drill: %s' % (self.backup_id, what), kind=kind)

    # -- the steps -------------------------------------------------------------------------------------

    def run(self):
        try:
            os.makedirs(self.scratch_dir, 0o700)
        except OSError:
            if not os.path.isdir(self.scratch_dir):
                self.fail('cannot create the scratch directory %s: set scratch_dir to a directory with room for '
                          'two copies of the database' % self.scratch_dir, 'scratch')
        work = tempfile.mkdtemp(prefix='.%s-' % self.backup_id, dir=self.scratch_dir)  # mode 0700
        try:
            snapshot = os.path.join(work, 'snapshot.db')
            started = time.monotonic()
            self.fetch(snapshot)
            self.timings['fetch_seconds'] = round(time.monotonic() - started, 3)
            data_dir = os.path.join(work, 'data')
            started = time.monotonic()
            self.restore(snapshot, data_dir)
            self.timings['restore_seconds'] = round(time.monotonic() - started, 3)
            started = time.monotonic()
            self.serve_and_compare(work, data_dir)
            self.timings['compare_seconds'] = round(time.monotonic() - started, 3)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.checks

    def fetch(self, target):
        def write(chunks, verify):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'wb') as out:
                for chunk in chunks:
                    out.write(chunk)
            verify()

        try:
            self.checks.update(fetch_snapshot(self.store, self.location, self.backup_id, self.document,
                                              self.identities, write))
        except FetchError as exc:
            if exc.kind == 'write':
                self.fail('cannot write the scratch copy %s: %s; check free space in %s' % (
                    target, exc.cause, self.scratch_dir), 'scratch')
            self.fail(exc.msg, exc.kind)

    def restore(self, snapshot, data_dir):
        try:
            tool = detect_tool(self.tool_location, runner=self.runner)
            self.peer_port = free_port()
            self.peer_url = 'http://127.0.0.1:%d' % self.peer_port
            argv = restore_argv(tool, snapshot, data_dir, DRILL_NAME, '%s=%s' % (DRILL_NAME, self.peer_url),
                                'etcdops-drill-%s' % self.backup_id, self.peer_url)
            run_restore(self.runner, argv, tool.env)
        except RestoreError as exc:
            self.fail('the restore failed: %s' % exc.msg, 'missing_tool' if exc.kind == 'missing_tool' else 'restore')
        self.tool = tool
        self.checks['tool'] = '%s %s' % (tool.kind, tool.version or '')

    def _etcd(self):
        if self.etcd_binary:
            return self.etcd_binary
        beside = os.path.join(os.path.dirname(self.tool.path), 'etcd')
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
        found = shutil.which('etcd')
        if found:
            return found
        self.fail('no etcd binary beside %s nor on PATH: give etcd_binary (the etcd of the backup\'s line)'
                  % self.tool.path, 'missing_tool')

    def serve_and_compare(self, work, data_dir):
        etcd = self._etcd()
        client_url = 'http://127.0.0.1:%d' % free_port()
        argv = [etcd, '--name', DRILL_NAME, '--data-dir', data_dir,
                '--listen-client-urls', client_url, '--advertise-client-urls', client_url,
                '--listen-peer-urls', self.peer_url, '--initial-advertise-peer-urls', self.peer_url,
                '--initial-cluster', '%s=%s' % (DRILL_NAME, self.peer_url),
                '--initial-cluster-token', 'etcdops-drill-%s' % self.backup_id,
                '--quota-backend-bytes', str(8 * 1024 * 1024 * 1024)]
        log_path = os.path.join(work, 'etcd.log')
        process = Background(self.runner, argv, log_path, data_dir)
        try:
            process.start()
        except DrillError as exc:
            self.fail(exc.msg, 'missing_tool')  # the binary did not run: nothing said about the backup
        client = None
        try:
            client = self.client_factory(client_url)
            status = self._wait(process, client, client_url, log_path)
            self.compare(client, client_url, status)
        finally:
            if client is not None:
                client.close()
            process.stop()

    def _wait(self, process, client, client_url, log_path):
        from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError
        deadline = time.monotonic() + self.start_timeout
        last = None
        while time.monotonic() < deadline:
            if not process.alive():
                self.fail('the restored etcd exited: %s' % _tail(log_path), 'etcd')
            try:
                status = client.status(client_url)
                if status.get('leader'):
                    return status
            except EtcdClientError as exc:
                last = exc.msg
            time.sleep(0.3)
        self.fail('the restored etcd did not answer within %.0f s (%s): %s' % (
            self.start_timeout, last or 'no leader', _tail(log_path)), 'etcd')

    def compare(self, client, client_url, status):
        from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClientError
        document = self.document
        revision = document.get('revision')
        try:
            counted = client.count()
            hashkv = client.hashkv(client_url, revision) if revision else None
        except EtcdClientError as exc:
            self.fail('the restored etcd did not answer: %s' % exc.msg, 'etcd')
        self.checks['revision'] = counted['revision']
        if counted['revision'] != revision:
            self.fail('the restored revision is %s, the metadata says %s' % (counted['revision'], revision),
                      'revision')
        expected_keys = document.get('live_keys')
        self.checks['keys'] = counted['count']
        if expected_keys is not None and counted['count'] != expected_keys:
            self.fail('the restored etcd holds %d keys, the metadata says %d' % (counted['count'], expected_keys),
                      'keys')
        recorded = document.get('hashkv') or {}
        self.checks['hashkv'] = hashkv['hash'] if hashkv else None
        if recorded.get('hash') is not None:
            if hashkv['hash'] != recorded['hash']:
                self.fail('the restored HashKV at revision %s is %s, the backup recorded %s' % (
                    revision, hashkv['hash'], recorded['hash']), 'hashkv')
            self.checks['hashkv_compared'] = True
        else:
            self.checks['hashkv_compared'] = False  # older backup, or a compaction unfinished in the snapshot
        self.checks['etcd_version'] = status.get('version')


class Background(object):
    """The throwaway etcd, started through the module's run_command by a shell that puts it in the background
    (output to log_path, stdin from /dev/null, so run_command returns at once with its pid) and stopped by that
    pid, only while its command line still names data_dir (a pid is never signalled once it may be another
    process's)."""

    def __init__(self, runner, argv, log_path, data_dir):
        self.runner = runner
        self.argv = argv
        self.log_path = log_path
        self.marker = data_dir
        self.pid = None

    def start(self):
        script = 'log=$1; shift; "$@" </dev/null >"$log" 2>&1 & echo $!'
        rc, out, err = self.runner.run_command(['/bin/sh', '-c', script, 'etcd-drill', self.log_path] + self.argv)
        try:
            self.pid = int(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DrillError('cannot start %s (rc %s): %s' % (self.argv[0], rc, (err or out).strip()[:300]))

    def _cmdline(self):
        try:
            with open('/proc/%d/cmdline' % self.pid, 'rb') as handle:
                return handle.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            return None

    def alive(self):
        """Running (not gone, not a zombie) and still our etcd."""
        cmdline = self._cmdline()
        if not cmdline or self.marker not in cmdline:
            return False
        try:
            with open('/proc/%d/stat' % self.pid, 'rb') as handle:
                state = handle.read().rsplit(b')', 1)[1].split()[0]
        except (IOError, OSError, IndexError):
            return False
        return state not in (b'Z', b'X')

    def stop(self, grace=15.0):
        if self.pid is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self.alive():
                return
            try:
                os.kill(self.pid, sig)
            except OSError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.1)


def _tail(path, lines=5):
    try:
        with open(path, 'rb') as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4000))
            text = handle.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return 'no log'
    return ' / '.join(line.strip() for line in text.splitlines()[-lines:]) or 'no output'


def record(store, location, backup_id, verified, error, checks, now=None):
    """Write the drill's result beside the backup (verification.json; the signed metadata is never rewritten)."""
    verification = dict(verified=bool(verified), at=_iso(time.time() if now is None else now),
                        error=error, checks=checks, host=socket.gethostname())
    store.write_verification(location, backup_id, verification)
    return dict(verified=bool(verified), verification=verification)
