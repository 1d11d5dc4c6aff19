# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the collection's only connection to etcd (etcd v3 gRPC API).

What is here:

* ``connection_argument_spec()`` and ``CONNECTION_REQUIRED_TOGETHER``: the options of every module that talks
  to etcd (documented once in ``plugins/doc_fragments/connection.py``); modules extend the spec.
* ``client_from_module(module)``: checks the Python library (``missing_required_lib``) and builds an
  ``EtcdClient`` from the module's options.
* ``EtcdClient``: a list of endpoints with fail-over (tried in order, the one that answered is remembered and
  tried first next time), TLS with kubeadm's files as defaults (``resolve_tls``), user/password auth, a dial
  timeout and a command timeout.  Read: ``member_list`` (with learners), ``status``/``statuses`` (one result per
  endpoint, an ``error`` where it did not answer), ``alarm_list``, ``hashkv``, ``get``/``put``/``count``.
  Change: ``member_add`` (as learner), ``member_promote``, ``member_remove``, ``member_update``,
  ``alarm_disarm``, ``defragment``, ``compact``.  Stream: ``snapshot`` (read off HTTP/2 by ``_h2``, through
  grpcio when that reader gets nothing).
* ``EtcdClientError``/``EtcdUnreachableError`` and ``translate_rpc_error``: gRPC failures turned into messages
  that name the endpoint or file to check.

The etcd3 API comes from the ``etcd-sdk-python`` distribution (import name ``pyetcd``): its channel (TLS),
its generated stubs for KV, auth, defragment and snapshot.  What its old generated code lacks (learners,
dbSizeInUse, MemberPromote, CORRUPT alarms, hash_revision) is called over the same channel with messages
from ``_etcd_proto.py``.

Why this distribution: it is the python-etcd3 API regenerated with current tools (gencode protobuf 5.27.2,
grpcio 1.66.2), a pure-Python wheel that imports on Python 3.9 to 3.13 with the newest grpcio and protobuf
(checked up to grpcio 1.85.1 and protobuf 7.36.2).  ``etcd3`` 0.12.0 does not import on protobuf >= 4 unless
the slow pure-Python protobuf is forced; ``aetcd`` needs Python >= 3.10 and asyncio and still lacks
dbSizeInUse; ``etcd3gw`` speaks the HTTP gateway, not gRPC.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import ssl
import threading
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.six.moves.urllib.parse import urlparse

from ansible_collections.etcdops.etcd.plugins.module_utils import _etcd_proto
from ansible_collections.etcdops.etcd.plugins.module_utils import _h2

ETCD_CLIENT_IMPORT_ERROR = None
try:
    # grpc's C core logs TLS failures on stderr; we report them ourselves, once, in the module result.
    os.environ.setdefault('GRPC_VERBOSITY', 'NONE')
    # gRPC's EventEngine client (the default in current grpcio) reads the socket on its own threads and hands every
    # message over to the reading thread; the older poller reads on the thread that waits for the message. A
    # snapshot stream of 1.2 GB from a loopback member (grpcio 1.85.4, 2 vCPUs) took 3.7-3.8 s of CPU and 4.4-4.6 s
    # with the default, 2.2-2.4 s of CPU and 3.3-3.7 s with this (the stream is most of a backup's work). Only
    # this process is affected, and only when grpc is first imported here; an operator's own setting is kept.
    os.environ.setdefault('GRPC_EXPERIMENTS', '-event_engine_client')
    import grpc
    from pyetcd import Etcd3Client
    from pyetcd import etcdrpc
    _etcd_proto.message_classes()
except Exception:  # protobuf too old for the generated code raises VersionError, not ImportError
    HAS_ETCD_CLIENT = False
    ETCD_CLIENT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_ETCD_CLIENT = True

# What missing_required_lib() names: pip install etcd-sdk-python grpcio protobuf
ETCD_CLIENT_LIBRARY = 'etcd-sdk-python (with grpcio and protobuf)'

DEFAULT_ENDPOINT = 'https://127.0.0.1:2379'
COMPACTED = 'required revision has been compacted'
DEFAULT_DIAL_TIMEOUT = 2.0     # etcdctl's --dial-timeout
DEFAULT_COMMAND_TIMEOUT = 5.0  # etcdctl's --command-timeout
KUBEADM_ETCD_PKI_DIR = '/etc/kubernetes/pki/etcd'
# kubeadm makes healthcheck-client for clients that check etcd; server.crt also carries clientAuth usage.
KUBEADM_CLIENT_PAIRS = (('healthcheck-client.crt', 'healthcheck-client.key'), ('server.crt', 'server.key'))
MAX_MESSAGE_BYTES = 2 ** 31 - 1  # as etcdctl: a large range or member list must not fail on gRPC's 4 MiB default

CONNECT_KINDS = frozenset(['server_cert_untrusted', 'server_name_mismatch', 'client_cert_rejected', 'tls_setup',
                           'not_tls', 'connection_refused', 'unreachable', 'dial_timeout', 'unavailable'])
# Errors after which another endpoint may answer; a read is retried on those, a change only on CONNECT_KINDS.
FAILOVER_KINDS = CONNECT_KINDS | frozenset(['timeout', 'no_leader', 'request_timeout'])


def connection_argument_spec():
    """The options every module that talks to etcd takes (see doc fragment etcdops.etcd.connection)."""
    return dict(
        endpoints=dict(type='list', elements='str', default=[DEFAULT_ENDPOINT]),
        ca_cert=dict(type='path'),
        client_cert=dict(type='path'),
        client_key=dict(type='path', no_log=False),
        user=dict(type='str'),
        password=dict(type='str', no_log=True),
        dial_timeout=dict(type='float', default=DEFAULT_DIAL_TIMEOUT),
        command_timeout=dict(type='float', default=DEFAULT_COMMAND_TIMEOUT),
    )


CONNECTION_REQUIRED_TOGETHER = [['user', 'password'], ['client_cert', 'client_key']]


class EtcdClientError(Exception):
    """A failure an operator can act on: ``str(error)`` says what to check.

    ``kind`` is a short name for tests and callers (``connection_refused``, ``no_leader`` ...),
    ``endpoint`` the URL it happened on (None for configuration errors), ``details`` gRPC's own words.
    """

    def __init__(self, msg, kind='other', endpoint=None, code=None, details=None):
        super(EtcdClientError, self).__init__(msg)
        self.msg = msg
        self.kind = kind
        self.endpoint = endpoint
        self.code = code
        self.details = details


class EtcdUnreachableError(EtcdClientError):
    """No endpoint answered; ``errors`` holds one EtcdClientError per endpoint, in the order tried."""

    def __init__(self, errors):
        msg = 'no etcd endpoint answered (%d tried): %s' % (len(errors), '; '.join(e.msg for e in errors))
        super(EtcdUnreachableError, self).__init__(msg, kind='unreachable_all')
        self.errors = errors


class TLSFiles(object):
    """The CA, client certificate and key in use, and which of them came from kubeadm's defaults."""

    def __init__(self, ca_cert=None, client_cert=None, client_key=None, defaulted=()):
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.defaulted = tuple(defaulted)

    def describe(self, option):
        path = getattr(self, option)
        return '%s (%s%s)' % (path, option, ', kubeadm default' if option in self.defaulted else '')


def resolve_tls(ca_cert=None, client_cert=None, client_key=None, pki_dir=KUBEADM_ETCD_PKI_DIR):
    """Options given win; where not given, kubeadm's files are used when they exist.

    The client pair defaults to healthcheck-client.crt/.key, else server.crt/.key, only as a pair and only
    when neither client_cert nor client_key was given.
    """
    defaulted = []
    if ca_cert is None:
        candidate = os.path.join(pki_dir, 'ca.crt')
        if os.path.isfile(candidate):
            ca_cert = candidate
            defaulted.append('ca_cert')
    if client_cert is None and client_key is None:
        for cert_name, key_name in KUBEADM_CLIENT_PAIRS:
            cert, key = os.path.join(pki_dir, cert_name), os.path.join(pki_dir, key_name)
            if os.path.isfile(cert) and os.path.isfile(key):
                client_cert, client_key = cert, key
                defaulted.extend(['client_cert', 'client_key'])
                break
    return TLSFiles(ca_cert, client_cert, client_key, defaulted)


def check_tls_files(tls):
    """Fail early, naming the file, when a TLS file is missing, unreadable or not PEM."""
    markers = (('ca_cert', b'-----BEGIN CERTIFICATE-----', 'a PEM certificate'),
               ('client_cert', b'-----BEGIN CERTIFICATE-----', 'a PEM certificate'),
               ('client_key', b'PRIVATE KEY-----', 'a PEM private key'))
    for option, marker, what in markers:
        path = getattr(tls, option)
        if path is None:
            continue
        if not os.path.exists(path):
            raise EtcdClientError('%s does not exist' % tls.describe(option), kind='file_missing')
        try:
            with open(path, 'rb') as handle:
                content = handle.read()
        except (IOError, OSError) as exc:
            raise EtcdClientError('cannot read %s: %s (run as root, become: true)' % (tls.describe(option), exc),
                                  kind='file_unreadable')
        if marker not in content:
            raise EtcdClientError('%s is not %s' % (tls.describe(option), what), kind='file_invalid')


class Endpoint(object):
    """One client URL: https://host:port (or http:// when etcd serves plain gRPC)."""

    def __init__(self, url, host, port, secure):
        self.url = url
        self.host = host
        self.port = port
        self.secure = secure

    @property
    def netloc(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        return '%s:%d' % (host, self.port)

    def __repr__(self):
        return 'Endpoint(%s)' % self.url


def parse_endpoint(text, default_secure=True):
    """'10.0.0.1:2379' -> https://10.0.0.1:2379 (http:// without a CA); the port defaults to 2379."""
    text = text.strip()
    if '://' not in text:
        text = ('https://' if default_secure else 'http://') + text
    parsed = urlparse(text)
    try:
        port = parsed.port or 2379
    except ValueError:
        raise EtcdClientError('endpoint %r has an invalid port' % text, kind='bad_endpoint')
    if parsed.scheme not in ('https', 'http') or not parsed.hostname:
        raise EtcdClientError('endpoint %r is not an http(s)://host:port URL' % text, kind='bad_endpoint')
    return Endpoint('%s://%s' % (parsed.scheme, parsed.netloc), parsed.hostname, port, parsed.scheme == 'https')


# What a closed connection is taken for when nothing was received yet; on a stream already flowing it is a
# member that went away (EtcdClient.snapshot).
MID_STREAM_MISREAD = ('client_cert_rejected', 'not_tls', 'tls_setup')


def _has(details, *needles):
    return any(needle in details for needle in needles)


def translate_rpc_error(code, details, endpoint, tls=None, user=None, timeout=None):
    """Turn a gRPC status (code name such as 'UNAVAILABLE', details text) into an EtcdClientError.

    The texts matched are what grpcio 1.66 to 1.85 report against etcd 3.4 to 3.6 (see
    tests/functional/test_client_functional.py, which provokes each case on loopback).
    """
    tls = tls or TLSFiles()
    text = (details or '').lower()
    url = endpoint.url
    kind = 'other'
    if _has(text, 'certificate_verify_failed', 'certificate verify failed'):
        kind = 'server_cert_untrusted'
        where = tls.describe('ca_cert') if tls.ca_cert else "the system's trust store (no ca_cert given)"
        msg = '%s: TLS: the server certificate is not signed by the CA in %s; set ca_cert to the CA that signed ' \
              "etcd's serving certificate (kubeadm: %s/ca.crt)" % (url, where, KUBEADM_ETCD_PKI_DIR)
    elif _has(text, 'hostname verification', 'peer name', 'not in peer certificate'):
        kind = 'server_name_mismatch'
        msg = '%s: TLS: the server certificate does not name %s; connect to an address listed in its ' \
              'subjectAltName' % (url, endpoint.host)
    elif 'failed to create security handshaker' in text:
        kind = 'tls_setup'
        msg = '%s: TLS could not be set up: check that %s and %s are PEM certificates and that %s is the key of ' \
              'that certificate' % (url, tls.describe('ca_cert'), tls.describe('client_cert'), tls.describe('client_key'))
    elif _has(text, 'wrong_version_number', 'wrong version number', 'http_request', 'http request'):
        kind = 'not_tls'
        msg = '%s: the server does not speak TLS; use http://%s if etcd serves plain gRPC' % (url, endpoint.netloc)
    elif _has(text, 'unwrap failed', 'tsi_data_corrupted', 'bad_certificate', 'bad certificate', 'certificate required',
              'certificate_required', 'unknown_ca', 'unknown ca', 'alert') or (endpoint.secure and 'socket closed' in text):
        kind = 'client_cert_rejected'
        if tls.client_cert:
            msg = '%s: the server rejected the client certificate %s: it must be signed by a CA in etcd\'s ' \
                  '--trusted-ca-file and allow clientAuth' % (url, tls.describe('client_cert'))
        else:
            msg = '%s: the server requires a client certificate: set client_cert and client_key (kubeadm: ' \
                  '%s/healthcheck-client.crt and .key)' % (url, KUBEADM_ETCD_PKI_DIR)
    elif 'socket closed' in text:
        kind = 'not_tls'
        msg = '%s: the server closed the connection: it probably serves TLS; use https://%s' % (url, endpoint.netloc)
    elif 'connection refused' in text:
        kind = 'connection_refused'
        msg = '%s: connection refused: nothing listens on %s; is the etcd static pod running (crictl ps --name etcd) ' \
              'and is the port right?' % (url, endpoint.netloc)
    elif _has(text, 'no route to host', 'network is unreachable', 'dns resolution failed', 'name or service not known',
              'could not resolve', 'host is unreachable'):
        kind = 'unreachable'
        msg = '%s: cannot reach %s: %s' % (url, endpoint.host, details)
    elif 'no leader' in text:
        kind = 'no_leader'
        msg = '%s: etcdserver: no leader: this member sees no leader (quorum lost or election under way); check the ' \
              'other members with etcdops.etcd.etcd_cluster_info' % url
    elif 'database space exceeded' in text:
        kind = 'no_space'
        msg = '%s: %s: the NOSPACE alarm is raised; compact, defragment every member, then disarm the alarm' % (
            url, details)
    elif 'unhealthy cluster' in text:
        kind = 'unhealthy_cluster'
        msg = '%s: etcdserver: unhealthy cluster: etcd refuses a membership change unless every started member has ' \
              'been connected for 5 seconds and the change keeps quorum; check the members with ' \
              'etcdops.etcd.etcd_cluster_info and retry' % url
    elif _has(text, 'request timed out', 'leader changed', 'too many requests'):
        kind = 'request_timeout'
        msg = '%s: %s: the cluster could not commit in time (leader election, slow disk or lost quorum)' % (url, details)
    elif code == 'DEADLINE_EXCEEDED':
        kind = 'timeout'
        msg = '%s: no answer within %ss (command_timeout): etcd is overloaded, stalled on disk, or the host is ' \
              'unreachable' % (url, timeout)
    elif _has(text, 'authentication failed', 'invalid user id or password'):
        kind = 'auth_failed'
        msg = "%s: authentication failed for user '%s': wrong user or password" % (url, user)
    elif _has(text, 'user name is empty', 'invalid auth token', 'user name not found') or code == 'UNAUTHENTICATED':
        kind = 'auth_required'
        msg = '%s: etcd authentication is on and the request carried no valid user (%s): set user and password' % (
            url, details)
    elif code == 'PERMISSION_DENIED' or 'permission denied' in text:
        kind = 'permission_denied'
        if user:
            who = "user '%s'" % user
        elif tls.client_cert:
            who = 'the user named by the CN of %s' % tls.describe('client_cert')
        else:
            who = 'an anonymous client'
        msg = '%s: permission denied for %s: etcd authentication is on; connect as a user with the needed role ' \
              '(for cluster maintenance: root)' % (url, who)
    elif code == 'UNAVAILABLE':
        kind = 'unavailable'
        msg = '%s: unavailable: %s' % (url, details)
    else:
        msg = '%s: %s: %s' % (url, code, details)
    return EtcdClientError(msg, kind=kind, endpoint=url, code=code, details=details)


def member_to_dict(member):
    return dict(
        id=format(member.ID, 'x'),
        name=member.name,
        peer_urls=list(member.peerURLs),
        client_urls=list(member.clientURLs),
        is_learner=bool(member.isLearner),
    )


def status_to_dict(endpoint_url, response):
    return dict(
        endpoint=endpoint_url,
        member_id=format(response.header.member_id, 'x'),
        cluster_id=format(response.header.cluster_id, 'x'),
        revision=response.header.revision,
        version=response.version,
        db_size=response.dbSize,
        db_size_in_use=response.dbSizeInUse,
        leader=format(response.leader, 'x') if response.leader else None,
        raft_index=response.raftIndex,
        raft_term=response.raftTerm,
        raft_applied_index=response.raftAppliedIndex,
        is_learner=bool(response.isLearner),
        errors=list(response.errors),
        storage_version=response.storageVersion or None,
        db_size_quota=response.dbSizeQuota or None,
    )


def parse_member_id(member_id):
    """Member ids are shown in hex as etcdctl does ('8e9e05c52164694d'); ints are taken as they are."""
    if isinstance(member_id, int):
        return member_id
    try:
        return int(str(member_id), 16)
    except ValueError:
        raise EtcdClientError('member id %r is not a hexadecimal etcd member id' % (member_id,), kind='bad_member_id')


def prefix_range_end(prefix):
    """The range_end that selects every key starting with prefix (etcd's clientv3.GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for index in range(len(end) - 1, -1, -1):
        if end[index] < 0xff:
            end[index] += 1
            return bytes(end[:index + 1])
    return b'\0'


def _to_bytes(value):
    return value if isinstance(value, bytes) else value.encode('utf-8')


class _Connection(object):
    """One endpoint's channel, built by the distribution, and its auth token."""

    def __init__(self, endpoint, tls, stream_window=None):
        self.endpoint = endpoint
        options = _channel_options(stream_window)
        ca_cert = tls.ca_cert if endpoint.secure else None
        cert = tls.client_cert if endpoint.secure and ca_cert else None
        key = tls.client_key if endpoint.secure and ca_cert else None
        if endpoint.secure and ca_cert is None:
            # The distribution builds an insecure channel without a CA: TLS on the system trust store instead.
            self.client = None
            creds = grpc.ssl_channel_credentials(None, _read(tls.client_key), _read(tls.client_cert))
            self.channel = grpc.secure_channel(endpoint.netloc, creds, options=options)
        else:
            self.client = Etcd3Client(host=endpoint.netloc.rsplit(':', 1)[0], port=endpoint.port, ca_cert=ca_cert,
                                      cert_key=key, cert_cert=cert, grpc_options=options)
            self.channel = self.client.channel
        self.token = None
        self.dialed = False
        self._stubs = {}

    def ext(self, name):
        """A callable for one of the RPCs defined in _etcd_proto, on this channel."""
        if name not in self._stubs:
            path, request, response = _etcd_proto.METHODS[name]
            classes = _etcd_proto.message_classes()
            self._stubs[name] = (self.channel.unary_unary(path, request_serializer=classes[request].SerializeToString,
                                                          response_deserializer=classes[response].FromString),
                                 classes[request])
        return self._stubs[name]

    def stub(self, name):
        if name not in self._stubs:
            self._stubs[name] = getattr(etcdrpc, name)(self.channel)
        return self._stubs[name]

    def close(self):
        self.channel.close()


def _read(path):
    if path is None:
        return None
    with open(path, 'rb') as handle:
        return handle.read()


def _channel_options(stream_window=None):
    """gRPC channel arguments. stream_window (bytes) bounds what gRPC reads ahead of the consumer of a stream: by
    default HTTP/2 BDP probing grows the window to several MiB, which a slower consumer (the backup's compression
    and upload) leaves buffered in the process: 20-30 MiB measured on a snapshot stream, against 3-5 MiB with a
    512 KiB window, which still streams 70-100 MB/s from a local member.

    Server-streaming calls (Snapshot is the only one used) run on the thread that reads them: gRPC's default hands
    every message from its polling thread to the reader's (etcd sends 32 KiB messages: 36 000 for 1.2 GB, ~3.5
    futex calls each, measured with strace). Single-threaded, the raw stream of 1.2 GB took 3.4-3.6 s of CPU
    instead of 3.7-4.9 s (benchmarks/backup lab, 2026-12-06); the option is read by gRPC's Python layer only."""
    options = [('grpc.max_receive_message_length', MAX_MESSAGE_BYTES),
               ('grpc.max_send_message_length', MAX_MESSAGE_BYTES),
               ('SingleThreadedUnaryStream', 1)]  # grpc.experimental.ChannelOptions.SingleThreadedUnaryStream
    if stream_window:
        options += [('grpc.http2.bdp_probe', 0), ('grpc.http2.lookahead_bytes', int(stream_window))]
    return options


class EtcdClient(object):
    """etcd v3 over gRPC with fail-over between endpoints.

    Calls that any member can answer (member list, alarms, keys, member changes) go to the endpoint that
    answered last, then the others in the order given.  Calls about one member (status, hashkv, defragment,
    snapshot) take that member's endpoint and do not fail over.
    """

    def __init__(self, endpoints=None, ca_cert=None, client_cert=None, client_key=None, user=None, password=None,
                 dial_timeout=DEFAULT_DIAL_TIMEOUT, command_timeout=DEFAULT_COMMAND_TIMEOUT,
                 pki_dir=KUBEADM_ETCD_PKI_DIR, stream_window=None):
        if not HAS_ETCD_CLIENT:
            raise EtcdClientError(missing_required_lib(ETCD_CLIENT_LIBRARY), kind='missing_library')
        if (user is None) != (password is None):
            raise EtcdClientError('user and password go together', kind='bad_option')
        if (client_cert is None) != (client_key is None):
            raise EtcdClientError('client_cert and client_key go together', kind='bad_option')
        self.tls = resolve_tls(ca_cert, client_cert, client_key, pki_dir=pki_dir)
        check_tls_files(self.tls)
        self.endpoints = [parse_endpoint(e, default_secure=self.tls.ca_cert is not None)
                          for e in (endpoints or [DEFAULT_ENDPOINT])]
        if not self.endpoints:
            raise EtcdClientError('no endpoint given', kind='bad_option')
        self.user = user
        self.password = password
        self.dial_timeout = float(dial_timeout)
        self.command_timeout = float(command_timeout)
        self.answered = None  # URL of the endpoint that answered last
        self.stream_window = stream_window  # see _channel_options; None: gRPC's default (BDP probing)
        self._connections = {}
        self._tls_context = None
        # 'http2' (the _h2 reader, grpcio when it gets nothing) or 'grpc' (grpcio only): see snapshot()
        self.snapshot_reader = 'grpc' if os.environ.get('ETCDOPS_SNAPSHOT_READER') == 'grpc' else 'http2'
        self.snapshot_fallback = None  # why the last snapshot() went to grpcio after the _h2 reader, or None

    # -- plumbing -------------------------------------------------------------------------------------

    def close(self):
        for connection in self._connections.values():
            connection.close()
        self._connections = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _endpoint(self, endpoint):
        if isinstance(endpoint, Endpoint):
            return endpoint
        return parse_endpoint(endpoint, default_secure=self.tls.ca_cert is not None)

    def _connection(self, endpoint):
        if endpoint.url not in self._connections:
            self._connections[endpoint.url] = _Connection(endpoint, self.tls, self.stream_window)
        connection = self._connections[endpoint.url]
        if not connection.dialed:
            self._dial(connection)
        return connection

    def _dial(self, connection):
        """Wait up to dial_timeout for the channel to connect or to fail.

        On a failure the next (fail-fast) call reports gRPC's reason, which translate_rpc_error reads.
        """
        settled = threading.Event()
        states = []

        def watch(state):
            states.append(state)
            if state in (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                settled.set()

        connection.channel.subscribe(watch, try_to_connect=True)
        try:
            if not settled.wait(self.dial_timeout):
                url = connection.endpoint.url
                raise EtcdClientError('%s: no connection within %ss (dial_timeout): host down, port filtered, or the '
                                      'TLS handshake stalled' % (url, self.dial_timeout), kind='dial_timeout',
                                      endpoint=url, code='DEADLINE_EXCEEDED')
        finally:
            connection.channel.unsubscribe(watch)
        if states[-1] == grpc.ChannelConnectivity.READY:
            connection.dialed = True

    def _metadata(self, connection, require_leader):
        metadata = []
        if connection.token:
            metadata.append(('token', connection.token))
        if require_leader:
            # etcd answers 'etcdserver: no leader' at once instead of waiting out the deadline
            metadata.append(('hasleader', 'true'))
        return metadata

    def _authenticate(self, connection):
        if self.user is None:
            return
        request = etcdrpc.AuthenticateRequest(name=self.user, password=self.password)
        try:
            response = connection.stub('AuthStub').Authenticate(request, timeout=self.command_timeout)
        except grpc.RpcError as exc:
            if 'authentication is not enabled' in (exc.details() or ''):
                connection.token = ''  # auth is off: the credentials are not needed
                return
            raise
        connection.token = response.token

    def _call(self, endpoint, call, require_leader=False, timeout=None):
        """Run call(connection, timeout, metadata) on one endpoint; gRPC errors become EtcdClientError."""
        endpoint = self._endpoint(endpoint)
        timeout = self.command_timeout if timeout is None else timeout
        connection = self._connection(endpoint)
        for attempt in (1, 2):
            try:
                if connection.token is None and self.user is not None:
                    self._authenticate(connection)
                result = call(connection, timeout, self._metadata(connection, require_leader))
                connection.dialed = True
                return result
            except grpc.RpcError as exc:
                error = self._translate(exc, endpoint, timeout)
                if error.kind == 'auth_required' and self.user is not None and attempt == 1:
                    connection.token = None  # the token expired: authenticate again, once
                    continue
                if error.kind in CONNECT_KINDS:
                    connection.dialed = False
                raise error
        raise AssertionError('unreachable')

    def _translate(self, exc, endpoint, timeout):
        code = exc.code()
        return translate_rpc_error(getattr(code, 'name', str(code)), exc.details(), endpoint, tls=self.tls,
                                   user=self.user, timeout=timeout)

    def _any(self, call, require_leader=True, change=False, timeout=None):
        """Run call on the first endpoint that answers, starting with the one that answered last."""
        order = sorted(self.endpoints, key=lambda e: e.url != self.answered)
        errors = []
        for endpoint in order:
            try:
                result = self._call(endpoint, call, require_leader=require_leader, timeout=timeout)
            except EtcdClientError as error:
                if error.kind not in (CONNECT_KINDS if change else FAILOVER_KINDS):
                    raise
                errors.append(error)
                continue
            self.answered = endpoint.url
            return result
        if len(errors) == 1:
            raise errors[0]
        raise EtcdUnreachableError(errors)

    def _ext(self, name, **fields):
        def call(connection, timeout, metadata):
            method, request = connection.ext(name)
            return method(request(**fields), timeout=timeout, metadata=metadata)
        return call

    # -- cluster membership ---------------------------------------------------------------------------

    def member_list(self):
        """Members as dicts: id (hex), name, peer_urls, client_urls, is_learner; plus cluster_id.

        Served by the member itself (not linearizable), so it answers after quorum is lost too.
        """
        response = self._any(self._ext('member_list'), require_leader=False)
        return dict(cluster_id=format(response.header.cluster_id, 'x'),
                    members=[member_to_dict(m) for m in response.members])

    def member_add(self, peer_urls, is_learner=False):
        response = self._any(self._ext('member_add', peerURLs=list(peer_urls), isLearner=is_learner), change=True)
        return dict(member=member_to_dict(response.member), members=[member_to_dict(m) for m in response.members])

    def member_promote(self, member_id):
        response = self._any(self._ext('member_promote', ID=parse_member_id(member_id)), change=True)
        return dict(members=[member_to_dict(m) for m in response.members])

    def member_remove(self, member_id):
        response = self._any(self._ext('member_remove', ID=parse_member_id(member_id)), change=True)
        return dict(members=[member_to_dict(m) for m in response.members])

    def member_update(self, member_id, peer_urls):
        response = self._any(self._ext('member_update', ID=parse_member_id(member_id), peerURLs=list(peer_urls)),
                             change=True)
        return dict(members=[member_to_dict(m) for m in response.members])

    # -- one member -----------------------------------------------------------------------------------

    def status(self, endpoint):
        """What `etcdctl endpoint status` shows for one endpoint, as a dict; raises EtcdClientError."""
        endpoint = self._endpoint(endpoint)
        return status_to_dict(endpoint.url, self._call(endpoint, self._ext('status')))

    def statuses(self, endpoints=None):
        """status() of each endpoint (default: the configured ones); where one fails: endpoint, error, error_kind."""
        results = []
        for endpoint in endpoints or self.endpoints:
            endpoint = self._endpoint(endpoint)
            try:
                results.append(self.status(endpoint))
            except EtcdClientError as error:
                results.append(dict(endpoint=endpoint.url, error=error.msg, error_kind=error.kind))
        return results

    def hashkv(self, endpoint, revision=0):
        """The hash of the keyspace of one member at revision (0: its latest), as `etcdctl endpoint hashkv`."""
        endpoint = self._endpoint(endpoint)
        response = self._call(endpoint, self._ext('hashkv', revision=revision))
        return dict(endpoint=endpoint.url, member_id=format(response.header.member_id, 'x'), hash=response.hash,
                    compact_revision=response.compact_revision, revision=response.header.revision,
                    hash_revision=response.hash_revision or None)

    def defragment(self, endpoint, timeout=300.0):
        """Defragment one member (it blocks that member's reads and writes while it runs)."""
        def call(connection, call_timeout, metadata):
            return connection.stub('MaintenanceStub').Defragment(etcdrpc.DefragmentRequest(), timeout=call_timeout,
                                                                 metadata=metadata)
        self._call(endpoint, call, timeout=timeout)

    def snapshot(self, endpoint, timeout=None):
        """Yield the snapshot of one member as (chunk, remaining_bytes) pairs, as etcd streams it.

        timeout bounds the whole stream (None: no bound); errors while streaming are EtcdClientError too.
        The stream is read by ``_h2`` (HTTP/2 without the gRPC library: a third of the CPU); when that reader gets
        nothing (refused connection, certificate, auth, an HTTP/2 it does not expect), the call is made again
        through grpcio, whose errors say why. ``snapshot_reader = 'grpc'`` (or ETCDOPS_SNAPSHOT_READER=grpc in the
        module's environment) uses grpcio only. Chunks are bytes or bytearrays.
        """
        endpoint = self._endpoint(endpoint)
        self.snapshot_fallback = None
        if self.snapshot_reader == 'http2':
            call = self._h2_call(endpoint, timeout)
            received = 0
            if call is not None:
                try:
                    for blob, remaining in call:
                        received += len(blob)
                        yield blob, remaining
                    return
                except _h2.H2Error as exc:
                    if received or exc.kind == 'timeout':
                        raise self._h2_error(exc, endpoint, timeout)
                    self.snapshot_fallback = exc.msg  # nothing came: ask grpcio, which reports why
                finally:
                    call.close()
        yield from self._grpc_snapshot(endpoint, timeout)

    def _h2_call(self, endpoint, timeout):
        """The HTTP/2 reader for one endpoint, or None where only grpcio can tell what is wrong."""
        token = None
        if self.user is not None:
            connection = self._connection(endpoint)
            if connection.token is None:
                try:
                    self._authenticate(connection)
                except grpc.RpcError:
                    return None
            token = connection.token or None
        context = None
        if endpoint.secure:
            if self._tls_context is None:
                try:
                    self._tls_context = _h2.tls_context(self.tls.ca_cert, self.tls.client_cert, self.tls.client_key)
                except (ssl.SSLError, OSError, ValueError) as exc:
                    self.snapshot_fallback = 'TLS context: %s' % exc
                    return None
            context = self._tls_context
        return _h2.SnapshotCall(endpoint.host, endpoint.port, context, token=token, dial_timeout=self.dial_timeout,
                                timeout=timeout, window=self.stream_window or _h2.DEFAULT_STREAM_WINDOW)

    @staticmethod
    def _h2_error(exc, endpoint, timeout):
        if exc.kind == 'timeout':
            return EtcdClientError('%s: the snapshot stream did not end within %ss (timeout): etcd is overloaded, '
                                   'stalled on disk, or the host is unreachable' % (endpoint.url, timeout),
                                   kind='timeout', endpoint=endpoint.url, code='DEADLINE_EXCEEDED', details=exc.msg)
        return EtcdClientError('%s: the snapshot stream broke after %d bytes: the member stopped or closed the '
                               'connection (%s)' % (endpoint.url, exc.received, exc.msg), kind='stream_broken',
                               endpoint=endpoint.url, code='UNAVAILABLE', details=exc.msg)

    def _grpc_snapshot(self, endpoint, timeout):
        def call(connection, call_timeout, metadata):
            # timeout, not call_timeout: _call gives None the command_timeout, which would bound the whole stream
            return connection.stub('MaintenanceStub').Snapshot(etcdrpc.SnapshotRequest(), timeout=timeout,
                                                               metadata=metadata)
        stream = self._call(endpoint, call, timeout=timeout)
        received = 0
        try:
            for response in stream:
                received += len(response.blob)
                yield response.blob, response.remaining_bytes
        except grpc.RpcError as exc:
            error = self._translate(exc, endpoint, timeout)
            if received and error.kind in MID_STREAM_MISREAD:
                # The connection was up and carrying the snapshot: a closed socket now is the member going away,
                # not a TLS or certificate problem (what it means before anything was received).
                error = EtcdClientError('%s: the snapshot stream broke after %d bytes: the member stopped or closed '
                                        'the connection (%s)' % (endpoint.url, received, exc.details()),
                                        kind='stream_broken', endpoint=endpoint.url, code=error.code,
                                        details=exc.details())
            raise error

    # -- alarms ---------------------------------------------------------------------------------------

    def alarm_list(self):
        """Active alarms: [{'member_id': hex, 'alarm': 'NOSPACE'|'CORRUPT'}]."""
        response = self._any(self._ext('alarm', action=0, memberID=0, alarm=0))
        return [dict(member_id=format(a.memberID, 'x'), alarm=_etcd_proto.alarm_name(a.alarm)) for a in response.alarms]

    def alarm_disarm(self, member_id=None, alarm=None):
        """Deactivate active alarms (all, or those of one member and/or kind); return the ones disarmed."""
        disarmed = []
        for active in self.alarm_list():
            if member_id is not None and parse_member_id(active['member_id']) != parse_member_id(member_id):
                continue
            if alarm is not None and active['alarm'] != alarm.upper():
                continue
            self._any(self._ext('alarm', action=2, memberID=parse_member_id(active['member_id']),
                                alarm=_etcd_proto.alarm_number(active['alarm'])), change=True)
            disarmed.append(active)
        return disarmed

    # -- keys (tests and checks) ----------------------------------------------------------------------

    def put(self, key, value):
        """Write one key; return the revision of the write."""
        def call(connection, timeout, metadata):
            return connection.stub('KVStub').Put(etcdrpc.PutRequest(key=_to_bytes(key), value=_to_bytes(value)),
                                                 timeout=timeout, metadata=metadata)
        return self._any(call, change=True).header.revision

    def get(self, key):
        """The value of one key as bytes, or None."""
        def call(connection, timeout, metadata):
            return connection.stub('KVStub').Range(etcdrpc.RangeRequest(key=_to_bytes(key)), timeout=timeout,
                                                   metadata=metadata)
        response = self._any(call)
        return response.kvs[0].value if response.kvs else None

    def count(self, prefix=b''):
        """How many keys start with prefix (all keys for b''), and the revision it was counted at."""
        prefix = _to_bytes(prefix)
        key = prefix or b'\0'
        range_end = prefix_range_end(prefix) if prefix else b'\0'

        def call(connection, timeout, metadata):
            return connection.stub('KVStub').Range(etcdrpc.RangeRequest(key=key, range_end=range_end, count_only=True),
                                                   timeout=timeout, metadata=metadata)
        response = self._any(call)
        return dict(count=response.count, revision=response.header.revision)

    def compact(self, revision, physical=False):
        """Compact the key history up to revision (physical: wait until it is removed from the backend)."""
        def call(connection, timeout, metadata):
            return connection.stub('KVStub').Compact(etcdrpc.CompactionRequest(revision=revision, physical=physical),
                                                     timeout=timeout, metadata=metadata)
        self._any(call, change=True)

    def delete(self, key):
        """Delete one key; return how many keys were deleted (0 or 1)."""
        def call(connection, timeout, metadata):
            return connection.stub('KVStub').DeleteRange(etcdrpc.DeleteRangeRequest(key=_to_bytes(key)),
                                                         timeout=timeout, metadata=metadata)
        return self._any(call, change=True).deleted

    def compacted(self, revision):
        """Whether the key history before revision is gone already, i.e. the cluster's compaction revision is at
        least revision: a read at revision - 1 is then refused as compacted."""
        if revision <= 1:
            return True

        def call(connection, timeout, metadata):
            return connection.stub('KVStub').Range(etcdrpc.RangeRequest(key=b'\0', range_end=b'\0', count_only=True,
                                                                        revision=revision - 1),
                                                   timeout=timeout, metadata=metadata)
        try:
            self._any(call)
        except EtcdClientError as error:
            if COMPACTED in (error.details or error.msg):
                return True
            raise
        return False


class Refused(Exception):
    """A module refuses a change (quorum, ambiguity, a revision in the future ...); the message says why and what to do."""


def run_with_client(module, run, result, failure, refused=(Refused,)):
    """Run ``run(module, client, result)`` with a client made from the module's connection options, then exit.

    A refusal (``refused``: exception classes) fails with its own message, an EtcdClientError with
    ``<failure>: <its message>`` and its kind; ``result`` (what was done until then) goes with either. The client is
    closed whatever happens.
    """
    client = client_from_module(module)
    try:
        run(module, client, result)
    except refused as error:
        module.fail_json(msg=str(error), **result)
    except EtcdClientError as error:
        module.fail_json(msg='%s: %s' % (failure, error.msg), error_kind=error.kind, **result)
    finally:
        client.close()
    module.exit_json(**result)


def client_from_module(module, stream_window=None):
    """An EtcdClient from the module's connection options; fails the module with a clear message otherwise."""
    if not HAS_ETCD_CLIENT:
        module.fail_json(msg=missing_required_lib(ETCD_CLIENT_LIBRARY), exception=ETCD_CLIENT_IMPORT_ERROR)
    params = module.params
    try:
        return EtcdClient(endpoints=params['endpoints'], ca_cert=params['ca_cert'], client_cert=params['client_cert'],
                          client_key=params['client_key'], user=params['user'], password=params['password'],
                          dial_timeout=params['dial_timeout'], command_timeout=params['command_timeout'],
                          stream_window=stream_window)
    except EtcdClientError as error:
        module.fail_json(msg=error.msg, error_kind=error.kind)
