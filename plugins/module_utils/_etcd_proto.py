# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: etcd v3 RPC messages that the client distribution's generated code lacks.

etcd-sdk-python ships protobuf code generated from an old rpc.proto: no ``Member.isLearner``,
no ``MemberAddRequest.isLearner``, no ``MemberPromote``, a ``StatusResponse`` without
``raftAppliedIndex``/``errors``/``dbSizeInUse``/``isLearner``/``storageVersion``/``dbSizeQuota``,
an ``AlarmType`` without ``CORRUPT``, and a ``HashKVResponse`` without ``hash_revision``.

This file describes those messages as data, with etcd's own field numbers (api/etcdserverpb/rpc.proto
of etcd 3.6), and builds message classes from it at run time in a private descriptor pool.
Why this way and not a vendored ``rpc_pb2.py``:

* generated code pins the protobuf runtime (``ValidateProtobufRuntimeVersion``) and breaks on the
  next major protobuf; a ``FileDescriptorProto`` built with ``descriptor_pb2`` is public, stable API
  from protobuf 3 to 7;
* a private pool cannot clash with the ``rpc.proto`` that the distribution registers in the default pool;
* the wire format depends only on field numbers and types, so the classes speak to etcd 3.4 to 3.7
  (a field an older server does not know is absent and reads as its zero value).

The RPCs are called through the distribution's gRPC channel (see ``_client.py``), by method path.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# (message name, [(field name, number, type)]); type 'x*' is a repeated x, '.Name' a message or enum of this file.
MESSAGES = (
    ('ResponseHeader', [('cluster_id', 1, 'uint64'), ('member_id', 2, 'uint64'),
                        ('revision', 3, 'int64'), ('raft_term', 4, 'uint64')]),
    ('Member', [('ID', 1, 'uint64'), ('name', 2, 'string'), ('peerURLs', 3, 'string*'),
                ('clientURLs', 4, 'string*'), ('isLearner', 5, 'bool')]),
    ('MemberListRequest', [('linearizable', 1, 'bool')]),
    ('MemberListResponse', [('header', 1, '.ResponseHeader'), ('members', 2, '.Member*')]),
    ('MemberAddRequest', [('peerURLs', 1, 'string*'), ('isLearner', 2, 'bool')]),
    ('MemberAddResponse', [('header', 1, '.ResponseHeader'), ('member', 2, '.Member'), ('members', 3, '.Member*')]),
    ('MemberRemoveRequest', [('ID', 1, 'uint64')]),
    ('MemberRemoveResponse', [('header', 1, '.ResponseHeader'), ('members', 2, '.Member*')]),
    ('MemberUpdateRequest', [('ID', 1, 'uint64'), ('peerURLs', 2, 'string*')]),
    ('MemberUpdateResponse', [('header', 1, '.ResponseHeader'), ('members', 2, '.Member*')]),
    ('MemberPromoteRequest', [('ID', 1, 'uint64')]),
    ('MemberPromoteResponse', [('header', 1, '.ResponseHeader'), ('members', 2, '.Member*')]),
    ('StatusRequest', []),
    ('DowngradeInfo', [('enabled', 1, 'bool'), ('targetVersion', 2, 'string')]),
    ('StatusResponse', [('header', 1, '.ResponseHeader'), ('version', 2, 'string'), ('dbSize', 3, 'int64'),
                        ('leader', 4, 'uint64'), ('raftIndex', 5, 'uint64'), ('raftTerm', 6, 'uint64'),
                        ('raftAppliedIndex', 7, 'uint64'), ('errors', 8, 'string*'), ('dbSizeInUse', 9, 'int64'),
                        ('isLearner', 10, 'bool'), ('storageVersion', 11, 'string'), ('dbSizeQuota', 12, 'int64'),
                        ('downgradeInfo', 13, '.DowngradeInfo')]),
    ('AlarmRequest', [('action', 1, '.AlarmAction'), ('memberID', 2, 'uint64'), ('alarm', 3, '.AlarmType')]),
    ('AlarmMember', [('memberID', 1, 'uint64'), ('alarm', 2, '.AlarmType')]),
    ('AlarmResponse', [('header', 1, '.ResponseHeader'), ('alarms', 2, '.AlarmMember*')]),
    ('HashKVRequest', [('revision', 1, 'int64')]),
    ('HashKVResponse', [('header', 1, '.ResponseHeader'), ('hash', 2, 'uint32'), ('compact_revision', 3, 'int64'),
                        ('hash_revision', 4, 'int64')]),
)

# AlarmRequest.AlarmAction is nested in etcd's file; on the wire an enum is its number, so top level is the same.
ENUMS = (
    ('AlarmType', (('NONE', 0), ('NOSPACE', 1), ('CORRUPT', 2))),
    ('AlarmAction', (('GET', 0), ('ACTIVATE', 1), ('DEACTIVATE', 2))),
)

# (gRPC method path, request message, response message)
METHODS = {
    'member_list': ('/etcdserverpb.Cluster/MemberList', 'MemberListRequest', 'MemberListResponse'),
    'member_add': ('/etcdserverpb.Cluster/MemberAdd', 'MemberAddRequest', 'MemberAddResponse'),
    'member_remove': ('/etcdserverpb.Cluster/MemberRemove', 'MemberRemoveRequest', 'MemberRemoveResponse'),
    'member_update': ('/etcdserverpb.Cluster/MemberUpdate', 'MemberUpdateRequest', 'MemberUpdateResponse'),
    'member_promote': ('/etcdserverpb.Cluster/MemberPromote', 'MemberPromoteRequest', 'MemberPromoteResponse'),
    'status': ('/etcdserverpb.Maintenance/Status', 'StatusRequest', 'StatusResponse'),
    'alarm': ('/etcdserverpb.Maintenance/Alarm', 'AlarmRequest', 'AlarmResponse'),
    'hashkv': ('/etcdserverpb.Maintenance/HashKV', 'HashKVRequest', 'HashKVResponse'),
}

PACKAGE = 'etcdserverpb'
FILE_NAME = 'etcdops/etcd/rpc_extension.proto'

_SCALARS = ('uint64', 'int64', 'string', 'bool', 'uint32', 'bytes')
_classes = {}


def _file_descriptor_proto(descriptor_pb2):
    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax='proto3')
    field = descriptor_pb2.FieldDescriptorProto
    enum_names = set(name for name, dummy in ENUMS)
    for name, values in ENUMS:
        enum = fdp.enum_type.add(name=name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for name, fields in MESSAGES:
        message = fdp.message_type.add(name=name)
        for field_name, number, type_name in fields:
            repeated = type_name.endswith('*')
            type_name = type_name.rstrip('*')
            spec = message.field.add(name=field_name, number=number, json_name=field_name)
            spec.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
            if type_name in _SCALARS:
                spec.type = getattr(field, 'TYPE_' + type_name.upper())
            else:
                spec.type = field.TYPE_ENUM if type_name[1:] in enum_names else field.TYPE_MESSAGE
                spec.type_name = '.' + PACKAGE + type_name
    return fdp


def message_classes():
    """Return {message name: class}, built once per process in a private descriptor pool."""
    if not _classes:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(_file_descriptor_proto(descriptor_pb2).SerializeToString())
        get_class = getattr(message_factory, 'GetMessageClass', None)
        if get_class is None:  # protobuf < 4.22
            get_class = message_factory.MessageFactory(pool).GetPrototype
        for name, dummy in MESSAGES:
            _classes[name] = get_class(pool.FindMessageTypeByName(PACKAGE + '.' + name))
    return _classes


class Truncated(ValueError):
    """The bytes end inside a protobuf field."""


def read_varint(data, pos):
    """The protobuf varint at pos of data (bytes, bytearray): (value, position after it).

    Truncated when data ends inside it, ValueError when it runs over 10 bytes. Used where messages are read by
    hand: the key of each KeyValue in a snapshot's key bucket (_snapshot).
    """
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise Truncated('a varint runs past the end of the bytes')
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7f) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError('a varint longer than 10 bytes')


def alarm_name(number):
    """'NOSPACE' for 1; an alarm a later etcd adds reads as 'ALARM_<n>'."""
    for name, value in ENUMS[0][1]:
        if value == number:
            return name
    return 'ALARM_%d' % number


def alarm_number(name):
    for alarm, value in ENUMS[0][1]:
        if alarm == name.upper():
            return value
    raise ValueError('unknown alarm %r (known: NOSPACE, CORRUPT)' % name)
