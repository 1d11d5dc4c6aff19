# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The etcd connection layer without an etcd: TLS defaults, endpoints, fail-over order, error messages.

The gRPC texts below are the ones grpcio 1.66 to 1.85 returned against a real etcd 3.4 on loopback
(tests/functional provokes the same cases for real).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils import _client, _etcd_proto
from ansible_collections.etcdops.etcd.plugins.module_utils._client import (
    EtcdClient,
    EtcdClientError,
    EtcdUnreachableError,
    TLSFiles,
    check_tls_files,
    parse_endpoint,
    parse_member_id,
    prefix_range_end,
    resolve_tls,
    translate_rpc_error,
)

needs_library = pytest.mark.skipif(not _client.HAS_ETCD_CLIENT, reason='etcd-sdk-python, grpcio or protobuf missing')

PEM_CERT = b'-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
PEM_KEY = b'-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'


def write_pki(directory, *names):
    for name in names:
        directory.joinpath(name).write_bytes(PEM_KEY if name.endswith('.key') else PEM_CERT)
    return str(directory)


# -- TLS defaults ------------------------------------------------------------------------------------

def test_kubeadm_healthcheck_client_pair_is_preferred(tmp_path):
    pki = write_pki(tmp_path, 'ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key', 'server.crt', 'server.key')
    tls = resolve_tls(pki_dir=pki)
    assert tls.ca_cert == pki + '/ca.crt'
    assert tls.client_cert == pki + '/healthcheck-client.crt'
    assert tls.client_key == pki + '/healthcheck-client.key'
    assert set(tls.defaulted) == {'ca_cert', 'client_cert', 'client_key'}


def test_server_pair_is_used_when_no_healthcheck_client_pair(tmp_path):
    pki = write_pki(tmp_path, 'ca.crt', 'healthcheck-client.crt', 'server.crt', 'server.key')  # half a pair is no pair
    tls = resolve_tls(pki_dir=pki)
    assert (tls.client_cert, tls.client_key) == (pki + '/server.crt', pki + '/server.key')


def test_given_files_win_over_kubeadm_defaults(tmp_path):
    pki = write_pki(tmp_path, 'ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key')
    tls = resolve_tls(ca_cert='/x/ca.pem', client_cert='/x/me.pem', client_key='/x/me.key', pki_dir=pki)
    assert (tls.ca_cert, tls.client_cert, tls.client_key, tls.defaulted) == ('/x/ca.pem', '/x/me.pem', '/x/me.key', ())


def test_nothing_defaults_without_kubeadm_files(tmp_path):
    tls = resolve_tls(pki_dir=str(tmp_path))
    assert (tls.ca_cert, tls.client_cert, tls.client_key) == (None, None, None)


def test_a_given_ca_keeps_the_default_client_pair(tmp_path):
    pki = write_pki(tmp_path, 'server.crt', 'server.key')
    tls = resolve_tls(ca_cert='/x/ca.pem', pki_dir=pki)
    assert tls.client_cert == pki + '/server.crt'
    assert tls.describe('client_cert') == pki + '/server.crt (client_cert, kubeadm default)'
    assert tls.describe('ca_cert') == '/x/ca.pem (ca_cert)'


def test_missing_file_is_named(tmp_path):
    with pytest.raises(EtcdClientError) as caught:
        check_tls_files(TLSFiles(ca_cert=str(tmp_path / 'nope.crt')))
    assert caught.value.kind == 'file_missing'
    assert str(caught.value) == '%s (ca_cert) does not exist' % (tmp_path / 'nope.crt')


def test_a_key_that_is_not_pem_is_named(tmp_path):
    write_pki(tmp_path, 'ca.crt', 'me.crt')
    tmp_path.joinpath('me.key').write_text('hello')
    tls = TLSFiles(str(tmp_path / 'ca.crt'), str(tmp_path / 'me.crt'), str(tmp_path / 'me.key'))
    with pytest.raises(EtcdClientError) as caught:
        check_tls_files(tls)
    assert caught.value.kind == 'file_invalid'
    assert '%s (client_key) is not a PEM private key' % (tmp_path / 'me.key') == str(caught.value)


# -- endpoints --------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, secure, url, netloc', [
    ('https://10.0.0.1:2379', True, 'https://10.0.0.1:2379', '10.0.0.1:2379'),
    ('10.0.0.1:2379', True, 'https://10.0.0.1:2379', '10.0.0.1:2379'),
    ('10.0.0.1', False, 'http://10.0.0.1', '10.0.0.1:2379'),
    ('http://etcd-a:12379', True, 'http://etcd-a:12379', 'etcd-a:12379'),
    ('https://[fd00::1]:2379', True, 'https://[fd00::1]:2379', '[fd00::1]:2379'),
])
def test_endpoint_parsing(text, secure, url, netloc):
    endpoint = parse_endpoint(text, default_secure=secure)
    assert (endpoint.url, endpoint.netloc) == (url, netloc)
    assert endpoint.secure == url.startswith('https')


@pytest.mark.parametrize('text', ['https://10.0.0.1:notaport', 'unix:///run/etcd.sock', 'https://'])
def test_bad_endpoint_is_named(text):
    with pytest.raises(EtcdClientError) as caught:
        parse_endpoint(text)
    assert caught.value.kind == 'bad_endpoint'
    assert text in str(caught.value)


def test_member_ids_are_hex_like_etcdctl():
    assert parse_member_id('8e9e05c52164694d') == 0x8e9e05c52164694d
    assert parse_member_id(42) == 42
    with pytest.raises(EtcdClientError):
        parse_member_id('master-1')


def test_prefix_range_end():
    assert prefix_range_end(b'/registry/') == b'/registry0'
    assert prefix_range_end(b'a\xff') == b'b'
    assert prefix_range_end(b'\xff\xff') == b'\0'


# -- error translation ------------------------------------------------------------------------------

EP = parse_endpoint('https://10.0.0.2:2379')
TLS = TLSFiles('/pki/ca.crt', '/pki/healthcheck-client.crt', '/pki/healthcheck-client.key')
LAST = 'failed to connect to all addresses; last error: '


@pytest.mark.parametrize('code, details, kind, needles', [
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: '
     'error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK',
     'server_cert_untrusted', ['https://10.0.0.2:2379', 'not signed by the CA in /pki/ca.crt (ca_cert)']),
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: '
     'error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED',
     'server_cert_untrusted', ['/pki/ca.crt']),
    ('UNAVAILABLE', LAST + 'UNAVAILABLE: ipv4:10.0.0.2:2379: Unwrap failed (TSI_DATA_CORRUPTED)',
     'client_cert_rejected', ['rejected the client certificate /pki/healthcheck-client.crt (client_cert)']),
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Custom verification check failed with error: '
     'UNAUTHENTICATED: Hostname Verification Check failed.',
     'server_name_mismatch', ['does not name 10.0.0.2']),
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Failed to create security handshaker.',
     'tls_setup', ['/pki/healthcheck-client.key (client_key) is the key']),
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Failed to connect to remote host: Connection refused',
     'connection_refused', ['https://10.0.0.2:2379: connection refused', 'crictl ps --name etcd']),
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Failed to connect to remote host: connect: '
     'Connection refused (111)', 'connection_refused', ['nothing listens on 10.0.0.2:2379']),
    ('UNAVAILABLE', LAST + 'UNKNOWN: ipv4:10.0.0.2:2379: Failed to connect to remote host: No route to host',
     'unreachable', ['cannot reach 10.0.0.2']),
    ('DEADLINE_EXCEEDED', 'Deadline Exceeded', 'timeout', ['no answer within 5.0s (command_timeout)']),
    ('UNAVAILABLE', 'etcdserver: no leader', 'no_leader', ['etcdserver: no leader']),
    ('UNAVAILABLE', 'etcdserver: request timed out', 'request_timeout', ['could not commit in time']),
    ('UNAVAILABLE', 'etcdserver: unhealthy cluster', 'unhealthy_cluster', ['connected for 5 seconds']),
    ('RESOURCE_EXHAUSTED', 'etcdserver: mvcc: database space exceeded', 'no_space', ['NOSPACE alarm']),
    ('INVALID_ARGUMENT', 'etcdserver: authentication failed, invalid user ID or password', 'auth_failed',
     ["authentication failed for user 'root'"]),
    ('PERMISSION_DENIED', 'etcdserver: permission denied', 'permission_denied', ["permission denied for user 'root'"]),
    ('UNKNOWN', 'auth: permission denied', 'permission_denied', ['permission denied']),
    ('UNAUTHENTICATED', 'etcdserver: invalid auth token', 'auth_required', ['set user and password']),
    ('FAILED_PRECONDITION', 'etcdserver: member not found', 'other', ['FAILED_PRECONDITION: etcdserver: member not found']),
])
def test_grpc_errors_become_operator_messages(code, details, kind, needles):
    error = translate_rpc_error(code, details, EP, tls=TLS, user='root', timeout=5.0)
    assert error.kind == kind
    assert error.endpoint == 'https://10.0.0.2:2379'
    assert error.details == details
    for needle in needles:
        assert needle in error.msg


def test_permission_denied_without_user_names_the_certificate():
    error = translate_rpc_error('PERMISSION_DENIED', 'etcdserver: permission denied', EP, tls=TLS)
    assert 'the user named by the CN of /pki/healthcheck-client.crt (client_cert)' in error.msg


def test_missing_client_certificate_says_which_options_to_set():
    error = translate_rpc_error('UNAVAILABLE', LAST + 'Unwrap failed (TSI_DATA_CORRUPTED)', EP, tls=TLSFiles('/pki/ca.crt'))
    assert error.kind == 'client_cert_rejected'
    assert 'requires a client certificate: set client_cert and client_key' in error.msg


def test_plain_endpoint_against_tls_server():
    error = translate_rpc_error('UNAVAILABLE', LAST + 'UNAVAILABLE: ipv4:10.0.0.2:2379: Socket closed',
                                parse_endpoint('http://10.0.0.2:2379'))
    assert error.kind == 'not_tls'
    assert 'use https://10.0.0.2:2379' in error.msg


# -- fail-over --------------------------------------------------------------------------------------

class FakeRpcError(Exception):
    def __init__(self, code, details):
        super(FakeRpcError, self).__init__(details)
        self._code = code
        self._details = details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.fixture
def no_kubeadm(monkeypatch, tmp_path):
    monkeypatch.setattr(_client, 'KUBEADM_ETCD_PKI_DIR', str(tmp_path))
    return tmp_path


def scripted_client(mocker, outcomes, endpoints=('https://a:2379', 'https://b:2379', 'https://c:2379')):
    """An EtcdClient whose _call answers per endpoint from outcomes ('answer...' or the kind of error to raise)."""
    client = EtcdClient(list(endpoints), pki_dir='/nonexistent')
    tried = []

    def call(endpoint, fn, require_leader=False, timeout=None):
        tried.append(endpoint.url)
        outcome = outcomes[endpoint.url]
        if not outcome.startswith('answer'):
            raise EtcdClientError('%s: %s' % (endpoint.url, outcome), kind=outcome, endpoint=endpoint.url)
        return outcome

    mocker.patch.object(client, '_call', side_effect=call)
    return client, tried


@needs_library
def test_failover_tries_in_order_and_remembers_who_answered(mocker):
    client, tried = scripted_client(mocker, {'https://a:2379': 'connection_refused', 'https://b:2379': 'answer-b',
                                             'https://c:2379': 'answer-c'})
    assert client._any(lambda *a: None) == 'answer-b'
    assert client.answered == 'https://b:2379'
    assert client._any(lambda *a: None) == 'answer-b'
    assert tried == ['https://a:2379', 'https://b:2379', 'https://b:2379']


@needs_library
def test_all_endpoints_down_lists_each_error(mocker):
    client, tried = scripted_client(mocker, {'https://a:2379': 'connection_refused', 'https://b:2379': 'dial_timeout',
                                             'https://c:2379': 'server_cert_untrusted'})
    with pytest.raises(EtcdUnreachableError) as caught:
        client._any(lambda *a: None)
    assert [e.kind for e in caught.value.errors] == ['connection_refused', 'dial_timeout', 'server_cert_untrusted']
    assert str(caught.value).startswith('no etcd endpoint answered (3 tried): https://a:2379: connection_refused; ')
    assert client.answered is None


@needs_library
def test_single_endpoint_failure_keeps_its_own_message(mocker):
    client, dummy = scripted_client(mocker, {'https://a:2379': 'connection_refused'}, endpoints=['https://a:2379'])
    with pytest.raises(EtcdClientError) as caught:
        client._any(lambda *a: None)
    assert caught.value.kind == 'connection_refused'


@needs_library
def test_permission_denied_does_not_fail_over(mocker):
    client, tried = scripted_client(mocker, {'https://a:2379': 'permission_denied', 'https://b:2379': 'answer'})
    with pytest.raises(EtcdClientError):
        client._any(lambda *a: None)
    assert tried == ['https://a:2379']


@needs_library
def test_a_change_is_not_sent_twice_after_a_timeout(mocker):
    client, tried = scripted_client(mocker, {'https://a:2379': 'timeout', 'https://b:2379': 'answer'})
    with pytest.raises(EtcdClientError):
        client._any(lambda *a: None, change=True)
    assert tried == ['https://a:2379']
    client, tried = scripted_client(mocker, {'https://a:2379': 'timeout', 'https://b:2379': 'answer'})
    assert client._any(lambda *a: None) == 'answer'  # a read may go elsewhere


@needs_library
def test_statuses_reports_each_endpoint(mocker):
    client = EtcdClient(['https://a:2379', 'https://b:2379'], pki_dir='/nonexistent')

    def status(endpoint):
        if endpoint.url == 'https://a:2379':
            raise EtcdClientError('https://a:2379: connection refused', kind='connection_refused')
        return dict(endpoint=endpoint.url, version='3.5.21')

    mocker.patch.object(client, 'status', side_effect=status)
    assert client.statuses() == [
        dict(endpoint='https://a:2379', error='https://a:2379: connection refused', error_kind='connection_refused'),
        dict(endpoint='https://b:2379', version='3.5.21'),
    ]


# -- one call on one endpoint: auth, dial, translation ----------------------------------------------

class FakeConnection(object):
    def __init__(self):
        self.token = None
        self.dialed = True


@needs_library
def test_expired_token_is_renewed_once(mocker):
    client = EtcdClient(['https://a:2379'], user='root', password='pw', pki_dir='/nonexistent')
    connection = FakeConnection()
    mocker.patch.object(client, '_connection', return_value=connection)
    tokens = iter(['t1', 't2'])

    def authenticate(conn):
        conn.token = next(tokens)

    mocker.patch.object(client, '_authenticate', side_effect=authenticate)
    seen = []

    def call(conn, timeout, metadata):
        seen.append(metadata)
        if len(seen) == 1:
            raise FakeRpcError(_client.grpc.StatusCode.UNAUTHENTICATED, 'etcdserver: invalid auth token')
        return 'ok'

    mocker.patch.object(_client.grpc, 'RpcError', FakeRpcError)
    assert client._call('https://a:2379', call, require_leader=True) == 'ok'
    assert seen == [[('token', 't1'), ('hasleader', 'true')], [('token', 't2'), ('hasleader', 'true')]]


@needs_library
def test_call_errors_are_translated_with_the_timeout(mocker):
    client = EtcdClient(['https://a:2379'], command_timeout=7, pki_dir='/nonexistent')
    connection = FakeConnection()
    mocker.patch.object(client, '_connection', return_value=connection)
    mocker.patch.object(_client.grpc, 'RpcError', FakeRpcError)

    def call(conn, timeout, metadata):
        raise FakeRpcError(_client.grpc.StatusCode.DEADLINE_EXCEEDED, 'Deadline Exceeded')

    with pytest.raises(EtcdClientError) as caught:
        client._call('https://a:2379', call)
    assert caught.value.kind == 'timeout'
    assert 'https://a:2379: no answer within 7.0s (command_timeout)' in caught.value.msg


@needs_library
def test_connection_errors_make_the_next_call_dial_again(mocker):
    client = EtcdClient(['https://a:2379'], pki_dir='/nonexistent')
    connection = FakeConnection()
    mocker.patch.object(client, '_connection', return_value=connection)
    mocker.patch.object(_client.grpc, 'RpcError', FakeRpcError)

    def call(conn, timeout, metadata):
        raise FakeRpcError(_client.grpc.StatusCode.UNAVAILABLE, LAST + 'Connection refused')

    with pytest.raises(EtcdClientError):
        client._call('https://a:2379', call)
    assert connection.dialed is False


@needs_library
def test_options_that_go_together():
    with pytest.raises(EtcdClientError, match='user and password go together'):
        EtcdClient(user='root', pki_dir='/nonexistent')
    with pytest.raises(EtcdClientError, match='client_cert and client_key go together'):
        EtcdClient(client_cert='/x.crt', pki_dir='/nonexistent')


@needs_library
def test_defaults_are_kubeadm_and_local_member(tmp_path):
    pki = write_pki(tmp_path, 'ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key')
    client = EtcdClient(pki_dir=pki)
    assert [e.url for e in client.endpoints] == ['https://127.0.0.1:2379']
    assert client.tls.client_cert == pki + '/healthcheck-client.crt'
    assert (client.dial_timeout, client.command_timeout) == (2.0, 5.0)


@needs_library
def test_schemeless_endpoint_is_plain_without_a_ca():
    client = EtcdClient(['127.0.0.1:2379'], pki_dir='/nonexistent')
    assert client.endpoints[0].url == 'http://127.0.0.1:2379'


# -- messages the distribution lacks ----------------------------------------------------------------

@needs_library
def test_extension_messages_read_what_old_generated_code_drops():
    from pyetcd.etcdrpc import rpc_pb2

    classes = _etcd_proto.message_classes()
    wire = classes['StatusResponse'](version='3.6.4', dbSize=40960, dbSizeInUse=16384, isLearner=True,
                                     raftAppliedIndex=9, errors=['NOSPACE'], storageVersion='3.6.0').SerializeToString()
    old = rpc_pb2.StatusResponse.FromString(wire)
    assert (old.version, old.dbSize) == ('3.6.4', 40960)
    assert not hasattr(old, 'dbSizeInUse')
    status = _client.status_to_dict('https://a:2379', classes['StatusResponse'].FromString(wire))
    assert (status['db_size_in_use'], status['is_learner'], status['raft_applied_index'], status['errors'],
            status['storage_version'], status['leader']) == (16384, True, 9, ['NOSPACE'], '3.6.0', None)


@needs_library
def test_member_learner_flag_and_hex_id():
    classes = _etcd_proto.message_classes()
    member = classes['Member'](ID=0x8e9e05c52164694d, name='m1', peerURLs=['https://a:2380'], isLearner=True)
    assert _client.member_to_dict(member) == dict(id='8e9e05c52164694d', name='m1', peer_urls=['https://a:2380'],
                                                  client_urls=[], is_learner=True)


@needs_library
def test_learner_add_request_carries_the_flag_on_the_wire():
    from pyetcd.etcdrpc import rpc_pb2

    classes = _etcd_proto.message_classes()
    wire = classes['MemberAddRequest'](peerURLs=['https://a:2380'], isLearner=True).SerializeToString()
    assert wire.endswith(b'\x10\x01')  # field 2 (isLearner), varint 1
    assert list(rpc_pb2.MemberAddRequest.FromString(wire).peerURLs) == ['https://a:2380']


def test_alarm_names():
    assert [_etcd_proto.alarm_name(n) for n in (0, 1, 2, 7)] == ['NONE', 'NOSPACE', 'CORRUPT', 'ALARM_7']
    assert _etcd_proto.alarm_number('corrupt') == 2
    with pytest.raises(ValueError):
        _etcd_proto.alarm_number('FULL')


# -- missing library --------------------------------------------------------------------------------

class FailJson(Exception):
    pass


class FakeModule(object):
    params = dict(endpoints=['https://127.0.0.1:2379'], ca_cert=None, client_cert=None, client_key=None, user=None,
                  password=None, dial_timeout=2.0, command_timeout=5.0)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)


def test_missing_library_fails_with_missing_required_lib(monkeypatch):
    monkeypatch.setattr(_client, 'HAS_ETCD_CLIENT', False)
    monkeypatch.setattr(_client, 'ETCD_CLIENT_IMPORT_ERROR', 'Traceback: No module named pyetcd')
    with pytest.raises(FailJson) as caught:
        _client.client_from_module(FakeModule())
    result = caught.value.args[0]
    assert 'Failed to import the required Python library (etcd-sdk-python (with grpcio and protobuf))' in result['msg']
    assert result['exception'] == 'Traceback: No module named pyetcd'


def test_connection_argument_spec_is_a_fresh_copy_with_secret_password():
    spec = _client.connection_argument_spec()
    spec['endpoints']['default'].append('https://x:2379')
    assert _client.connection_argument_spec()['endpoints']['default'] == ['https://127.0.0.1:2379']
    assert spec['password']['no_log'] is True
    assert set(spec) == {'endpoints', 'ca_cert', 'client_cert', 'client_key', 'user', 'password', 'dial_timeout',
                         'command_timeout'}


def test_a_stream_window_bounds_grpcs_read_ahead_and_only_when_asked():
    """etcd_backup asks for a bounded window (BDP probing off, a fixed read-ahead): gRPC's default grows it to
    several MiB, buffered in the process while the backup pipeline is slower than the member. Other clients keep
    gRPC's default."""
    default = dict(_client._channel_options())
    bounded = dict(_client._channel_options(512 * 1024))
    assert 'grpc.http2.bdp_probe' not in default and 'grpc.http2.lookahead_bytes' not in default
    assert bounded['grpc.http2.bdp_probe'] == 0 and bounded['grpc.http2.lookahead_bytes'] == 512 * 1024
    assert all(bounded[name] == value for name, value in default.items())
    client = _client.EtcdClient(endpoints=['http://127.0.0.1:2379'], stream_window=512 * 1024)
    assert client.stream_window == 512 * 1024
    assert _client.EtcdClient(endpoints=['http://127.0.0.1:2379']).stream_window is None


def test_snapshot_streams_are_read_on_the_readers_thread():
    """gRPC's Python layer takes SingleThreadedUnaryStream from the channel options (the constant's value is the
    string given): a server stream is then read on the thread that iterates it, with no hand-off per message."""
    import grpc.experimental
    assert grpc.experimental.ChannelOptions.SingleThreadedUnaryStream == 'SingleThreadedUnaryStream'
    assert dict(_client._channel_options())['SingleThreadedUnaryStream'] == 1
    assert dict(_client._channel_options(512 * 1024))['SingleThreadedUnaryStream'] == 1


@needs_library
@pytest.mark.parametrize('received', [0, 2])
def test_a_socket_closed_mid_snapshot_is_a_broken_stream_not_a_certificate(mocker, received):
    """Before anything arrives a TLS connection closed by the server is how etcd rejects a client certificate;
    once the snapshot flows it is the member going away (killed, restarted), and the message says so."""
    client = EtcdClient(['https://a:2379'], pki_dir='/nonexistent')
    mocker.patch.object(_client.grpc, 'RpcError', FakeRpcError)

    class Response(object):
        blob = b'x' * 1000
        remaining_bytes = 5000

    def stream():
        for dummy in range(received):
            yield Response()
        raise FakeRpcError(_client.grpc.StatusCode.UNAVAILABLE, 'Socket closed')
    mocker.patch.object(client, '_call', return_value=stream())
    chunks = client.snapshot('https://a:2379')
    got = []
    with pytest.raises(EtcdClientError) as caught:
        for chunk in chunks:
            got.append(chunk)
    assert len(got) == received
    if received:
        assert caught.value.kind == 'stream_broken' and 'certificate' not in caught.value.msg
        assert 'the snapshot stream broke after 2000 bytes' in caught.value.msg and 'Socket closed' in caught.value.msg
    else:
        assert caught.value.kind == 'client_cert_rejected'


@needs_library
def test_a_snapshot_without_timeout_has_no_deadline(mocker):
    """timeout=None streams without a deadline: the command_timeout (seconds, for one request) must not cut a
    snapshot of several GB short. A timeout given bounds the whole stream."""
    client = EtcdClient(['https://a:2379'], pki_dir='/nonexistent', command_timeout=5)
    seen = []

    class Stub(object):
        def Snapshot(self, request, timeout=None, metadata=None):  # pylint: disable=invalid-name
            seen.append(timeout)
            return iter(())

    class Connection(object):
        def stub(self, name):
            return Stub()

    def call(endpoint, function, timeout=None, **kwargs):
        return function(Connection(), client.command_timeout if timeout is None else timeout, ())
    mocker.patch.object(client, '_call', side_effect=call)
    assert list(client.snapshot('https://a:2379')) == []
    assert list(client.snapshot('https://a:2379', timeout=30)) == []
    assert seen == [None, 30]


def test_grpc_reads_on_the_waiting_thread_unless_the_operator_chose(tmp_path):
    """Importing the client selects gRPC's older poller (GRPC_EXPERIMENTS=-event_engine_client, read by gRPC's
    core when it starts) for the module's process; a value already in the environment is kept."""
    import subprocess
    import sys
    root = os.path.abspath(os.path.join(os.path.dirname(_client.__file__), '..', '..', '..', '..', '..'))
    code = ('import os; from ansible_collections.etcdops.etcd.plugins.module_utils import _client; '
            'print(os.environ.get("GRPC_EXPERIMENTS"))')
    env = dict((k, v) for k, v in os.environ.items() if k != 'GRPC_EXPERIMENTS')
    env['PYTHONPATH'] = root
    out = subprocess.run([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, check=True).stdout
    assert out.decode().strip() == '-event_engine_client'
    env['GRPC_EXPERIMENTS'] = 'event_engine_client'
    out = subprocess.run([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, check=True).stdout
    assert out.decode().strip() == 'event_engine_client'
