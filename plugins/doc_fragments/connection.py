# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # How modules of this collection reach etcd (plugins/module_utils/_client.py connection_argument_spec).
    DOCUMENTATION = r'''
options:
  endpoints:
    description:
      - etcd client URLs, tried in this order until one answers; the one that answered is tried first for the
        rest of the task.
      - A URL without a scheme uses C(https://) when a CA file is known (given in O(ca_cert) or found at
        C(/etc/kubernetes/pki/etcd/ca.crt)), else C(http://). The port defaults to C(2379).
      - Operations on one member (status, hash, defragment, snapshot) use that member's own client URL.
    type: list
    elements: str
    default: ['https://127.0.0.1:2379']
  ca_cert:
    description:
      - PEM file of the CA that signed etcd's serving certificate (etcdctl C(--cacert)).
      - When not given, kubeadm's C(/etc/kubernetes/pki/etcd/ca.crt) is used if it exists, else the system's
        trust store.
    type: path
  client_cert:
    description:
      - PEM client certificate presented to etcd (etcdctl C(--cert)); etcd started with C(--client-cert-auth)
        requires one signed by a CA in its C(--trusted-ca-file).
      - When neither O(client_cert) nor O(client_key) is given, kubeadm's
        C(/etc/kubernetes/pki/etcd/healthcheck-client.crt) and C(.key) are used if both exist, else
        C(server.crt) and C(server.key) from the same directory if both exist.
    type: path
  client_key:
    description:
      - PEM private key of O(client_cert) (etcdctl C(--key)).
    type: path
  user:
    description:
      - etcd user for etcd's own authentication (etcdctl C(--user)); only needed when C(etcdctl auth enable)
        was run. Without it, etcd takes the user name from the client certificate's common name.
    type: str
  password:
    description:
      - Password of O(user).
    type: str
  dial_timeout:
    description:
      - Seconds to wait for a connection (TCP and TLS) to one endpoint before trying the next
        (etcdctl C(--dial-timeout)).
    type: float
    default: 2.0
  command_timeout:
    description:
      - Seconds one request may take once connected (etcdctl C(--command-timeout)). Long operations
        (defragment, snapshot) have their own limits.
    type: float
    default: 5.0
requirements:
  - etcd-sdk-python >= 0.0.7, grpcio >= 1.66.2 and protobuf >= 5.27.2 on the host that runs the module.
notes:
  - O(user) and O(password) go together, and so do O(client_cert) and O(client_key).
  - Failures name what to check, for example the CA file that did not sign the server certificate or the
    endpoint that refused the connection.
'''
