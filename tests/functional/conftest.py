# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real etcd members on loopback, TLS everywhere, for each etcd line whose binary is on this machine.

Certificates are made per session with openssl in kubeadm's layout (ca.crt, server.*, peer.*,
healthcheck-client.*), plus a second CA and a client certificate it signed, for the failure cases.
Ports are picked free at start, so concurrent runs do not collide; every process is killed at the end.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

ETCD_CACHE = os.environ.get('ETCDOPS_ETCD_CACHE', '/var/cache/etcdops/etcd')
# ETCDOPS_LINES="3.6" narrows a local run to one line (as for the lab tests).
LINES = tuple(os.environ.get('ETCDOPS_LINES', '3.4 3.5 3.6 3.7').split())
_PROCESSES = []
_PORTS_GIVEN = set()


def etcd_tools(line):
    """{'etcd': path, 'etcdctl': path, 'etcdutl': path or None} for a line, or None when its etcd is absent."""
    directory = os.path.join(ETCD_CACHE, line)
    tools = dict((name, os.path.join(directory, name)) for name in ('etcd', 'etcdctl', 'etcdutl'))
    if not os.access(tools['etcd'], os.X_OK) and line == '3.4':
        tools = dict(etcd='/usr/bin/etcd', etcdctl='/usr/bin/etcdctl', etcdutl=None)  # Debian's package
    if not os.access(tools['etcd'], os.X_OK):
        return None
    version = subprocess.run([tools['etcd'], '--version'], stdout=subprocess.PIPE, check=False).stdout.decode()
    if 'etcd Version: %s.' % line not in version:
        return None
    for name in ('etcdctl', 'etcdutl'):
        if tools[name] and not os.access(tools[name], os.X_OK):
            tools[name] = None
    return tools


def free_port():
    while True:
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def _kill_all():
    for process in _PROCESSES:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            process.wait()


atexit.register(_kill_all)


def _openssl(*args):
    subprocess.run(('openssl',) + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(directory):
    """kubeadm's /etc/kubernetes/pki/etcd layout in directory/etcd, and a foreign CA in directory/other."""
    etcd_dir, other_dir = os.path.join(directory, 'etcd'), os.path.join(directory, 'other')
    os.makedirs(etcd_dir)
    os.makedirs(other_dir)

    def ca(where):
        _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=etcd-ca',
                 '-keyout', os.path.join(where, 'ca.key'), '-out', os.path.join(where, 'ca.crt'))

    def cert(where, name, usage, ca_dir):
        key, csr, crt = (os.path.join(where, name + suffix) for suffix in ('.key', '.csr', '.crt'))
        ext = os.path.join(where, name + '.ext')
        with open(ext, 'w') as handle:
            handle.write('subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=%s\n' % usage)
        _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + name, '-keyout', key, '-out', csr)
        _openssl('x509', '-req', '-in', csr, '-CA', os.path.join(ca_dir, 'ca.crt'), '-CAkey',
                 os.path.join(ca_dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-out', crt, '-extfile', ext)

    ca(etcd_dir)
    ca(other_dir)
    cert(etcd_dir, 'server', 'serverAuth,clientAuth', etcd_dir)
    cert(etcd_dir, 'peer', 'serverAuth,clientAuth', etcd_dir)
    cert(etcd_dir, 'healthcheck-client', 'clientAuth', etcd_dir)
    cert(other_dir, 'rogue-client', 'clientAuth', other_dir)
    return dict(dir=etcd_dir, ca=os.path.join(etcd_dir, 'ca.crt'), cert=os.path.join(etcd_dir, 'healthcheck-client.crt'),
                key=os.path.join(etcd_dir, 'healthcheck-client.key'), other_ca=os.path.join(other_dir, 'ca.crt'),
                rogue_cert=os.path.join(other_dir, 'rogue-client.crt'),
                rogue_key=os.path.join(other_dir, 'rogue-client.key'))


class EtcdCluster(object):
    """size members named m1..mN on 127.0.0.1, client and peer TLS with client certificate auth."""

    def __init__(self, line, tools, pki, workdir, size=3, extra_args=()):
        self.line = line
        self.tools = tools
        self.pki = pki
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.token = 'etcdops-' + uuid.uuid4().hex[:8]
        self.members = [self._member('m%d' % (index + 1)) for index in range(size)]

    def _member(self, name):
        return dict(name=name, client_port=free_port(), peer_port=free_port(), process=None,
                    data_dir=os.path.join(self.workdir, name), log=os.path.join(self.workdir, name + '.log'))

    @staticmethod
    def client_url(member):
        return 'https://127.0.0.1:%d' % member['client_port']

    @staticmethod
    def peer_url(member):
        return 'https://127.0.0.1:%d' % member['peer_port']

    @property
    def endpoints(self):
        return [self.client_url(m) for m in self.members]

    def initial_cluster(self, members=None):
        return ','.join('%s=%s' % (m['name'], self.peer_url(m)) for m in (members or self.members))

    def start_member(self, member, initial_cluster=None, state='new'):
        pki = self.pki['dir']
        args = [self.tools['etcd'], '--name', member['name'], '--data-dir', member['data_dir'],
                '--listen-client-urls', self.client_url(member), '--advertise-client-urls', self.client_url(member),
                '--listen-peer-urls', self.peer_url(member), '--initial-advertise-peer-urls', self.peer_url(member),
                '--initial-cluster', initial_cluster or self.initial_cluster(), '--initial-cluster-state', state,
                '--initial-cluster-token', self.token,
                '--cert-file', pki + '/server.crt', '--key-file', pki + '/server.key', '--client-cert-auth',
                '--trusted-ca-file', pki + '/ca.crt',
                '--peer-cert-file', pki + '/peer.crt', '--peer-key-file', pki + '/peer.key', '--peer-client-cert-auth',
                '--peer-trusted-ca-file', pki + '/ca.crt'] + self.extra_args
        with open(member['log'], 'ab') as log:
            member['process'] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _PROCESSES.append(member['process'])

    def start(self):
        for member in self.members:
            self.start_member(member)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout=60):
        """Until every member answers Status and one leader is seen by all."""
        from ansible_collections.etcdops.etcd.plugins.module_utils._client import EtcdClient

        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            for member in self.members:
                if member['process'] is not None and member['process'].poll() is not None:
                    raise RuntimeError('etcd %s exited: %s' % (member['name'], self.log_tail(member)))
            with EtcdClient(self.endpoints, **self.tls()) as client:
                last = client.statuses()
            leaders = set(s.get('leader') for s in last)
            if all('error' not in s for s in last) and len(leaders) == 1 and None not in leaders:
                return
            time.sleep(0.3)
        raise RuntimeError('etcd %s cluster not healthy in %ss: %s' % (self.line, timeout, last))

    def tls(self, **override):
        options = dict(ca_cert=self.pki['ca'], client_cert=self.pki['cert'], client_key=self.pki['key'],
                       pki_dir='/nonexistent')
        options.update(override)
        return options

    def stop_member(self, member, sig=signal.SIGKILL):
        os.killpg(member['process'].pid, sig)
        if sig == signal.SIGKILL:
            member['process'].wait()
        elif sig == signal.SIGSTOP:  # delivery is asynchronous: wait until the kernel shows it stopped
            deadline = time.time() + 5
            while time.time() < deadline and self._state(member) != 'T':
                time.sleep(0.05)

    @staticmethod
    def _state(member):
        with open('/proc/%d/stat' % member['process'].pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0]

    def log_tail(self, member, lines=20):
        with open(member['log'], 'rb') as handle:
            return b''.join(handle.readlines()[-lines:]).decode('utf-8', 'replace')

    def etcdctl(self, *args, **kwargs):
        endpoint = kwargs.pop('endpoint', self.endpoints[0])
        env = dict(os.environ, ETCDCTL_API='3')
        command = [self.tools['etcdctl'], '--endpoints', endpoint, '--cacert', self.pki['ca'], '--cert', self.pki['cert'],
                   '--key', self.pki['key']] + list(args)
        return subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout

    def close(self):
        for member in self.members:
            process = member['process']
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# `make test` sets this: a line whose binary is missing is then a failure, not a silent skip.
REQUIRE_ALL_LINES = os.environ.get('ETCDOPS_REQUIRE_ALL_LINES') == '1'


def missing_line(line):
    message = 'no etcd %s binary on this machine (scripts/install-etcd.sh %s installs it)' % (line, line)
    if REQUIRE_ALL_LINES:
        pytest.fail(message)
    pytest.skip(message)


def available_lines():
    if REQUIRE_ALL_LINES:
        return list(LINES)
    absent = 'no etcd %s binary on this machine'
    return [pytest.param(line, marks=pytest.mark.skipif(etcd_tools(line) is None, reason=absent % line)) for line in LINES]


@pytest.fixture(scope='session')
def pki():
    directory = tempfile.mkdtemp(prefix='etcdops-pki-')
    try:
        yield make_pki(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope='session')
def workroot():
    directory = tempfile.mkdtemp(prefix='etcdops-functional-')
    try:
        yield directory
    finally:
        _kill_all()
        shutil.rmtree(directory, ignore_errors=True)


class _Factory(object):
    """Makes started clusters: factory(line, size=3, extra_args=()); close() kills every one it made."""

    def __init__(self, pki, workroot):
        self.pki = pki
        self.workroot = workroot
        self.made = []

    def __call__(self, line, size=3, extra_args=()):
        tools = etcd_tools(line)
        if tools is None:
            missing_line(line)
        workdir = tempfile.mkdtemp(prefix='etcd-%s-' % line, dir=self.workroot)
        cluster = EtcdCluster(line, tools, self.pki, workdir, size=size, extra_args=extra_args)
        self.made.append(cluster)
        return cluster.start()

    def close(self):
        for cluster in self.made:
            cluster.close()


@pytest.fixture
def cluster_factory(pki, workroot):
    """A test's own clusters, killed when the test ends (idle members still cost CPU: heartbeats)."""
    factory = _Factory(pki, workroot)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope='module')
def module_cluster_factory(pki, workroot):
    """Clusters shared by the tests of one module, killed when the module ends."""
    factory = _Factory(pki, workroot)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope='session')
def _shared_factory(pki, workroot):
    factory = _Factory(pki, workroot)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope='session', params=available_lines())
def cluster(request, _shared_factory):
    """A healthy 3-member cluster per etcd line, shared by the tests that only read."""
    return _shared_factory(request.param)


@pytest.fixture(params=available_lines())
def line(request):
    return request.param
