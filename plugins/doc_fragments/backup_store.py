# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Where backups are stored (plugins/module_utils/_backup.py store_argument_spec).
    DOCUMENTATION = r'''
options:
  store:
    description:
      - V(s3) keeps backups in an S3 bucket (AWS or any S3-compatible object store); O(bucket) is required.
      - V(local) keeps them in O(directory) on the host the module runs on (a mounted share, a second disk).
      - The layout is the same in both, relative to the bucket and O(prefix) or to the directory
        C(<cluster_name>/backups/etcd/<etcd_cluster>/<backup_id>/) for the snapshot and its C(metadata.json), and
        C(<cluster_name>/resources/<backup_id>/) for the /etc/kubernetes resources.
    type: str
    choices: [s3, local]
    default: s3
  cluster_name:
    description:
      - The name of the Kubernetes cluster in the store; backups of different clusters stay apart.
      - Letters, digits, C(.), C(_) and C(-), starting with a letter or digit.
    type: str
    required: true
  etcd_cluster:
    description:
      - Which etcd cluster of the Kubernetes cluster, as kops names them (V(main), V(events)).
    type: str
    default: main
  directory:
    description:
      - With O(store=local), the directory that holds the backups. Directories are created with mode 0700 and
        files 0600.
    type: path
  bucket:
    description:
      - With O(store=s3), the bucket.
    type: str
  prefix:
    description:
      - With O(store=s3), a key prefix inside the bucket (for example V(backups/prod)).
    type: str
    default: ''
  endpoint_url:
    description:
      - With O(store=s3), the URL of an S3-compatible endpoint (MinIO, Ceph RGW ...); AWS S3 when not set.
    type: str
  region:
    description:
      - With O(store=s3), the region of the bucket.
    type: str
  path_style:
    description:
      - With O(store=s3), address the bucket in the path (V(https://host/bucket/key)) rather than the host name;
        most S3-compatible stores need it.
    type: bool
    default: false
  sse:
    description:
      - With O(store=s3), server-side encryption of the objects, V(AES256) (SSE-S3) or V(aws:kms) (SSE-KMS).
    type: str
    choices: [AES256, 'aws:kms']
  kms_key_id:
    description:
      - With O(sse=aws:kms), the KMS key id or ARN; the bucket's default key when not set.
    type: str
  storage_class:
    description:
      - With O(store=s3), the storage class of the data objects (metadata objects stay in the default class, so
        that listing can read them).
    type: str
  access_key:
    description:
      - S3 access key id; the host's AWS configuration, environment or instance profile when not set.
    type: str
  secret_key:
    description:
      - S3 secret access key.
    type: str
  session_token:
    description:
      - S3 session token, for temporary credentials.
    type: str
  ca_bundle:
    description:
      - PEM file of the CA of an S3-compatible endpoint served with a private CA.
    type: path
  validate_certs:
    description:
      - Whether to check the S3 endpoint's TLS certificate.
    type: bool
    default: true
'''

    # The store modules need no etcd connection, but take its options so that module_defaults set for the
    # action group group/etcdops.etcd.etcd apply to them as well.
    UNUSED_CONNECTION = r'''
options:
  endpoints:
    description:
      - Not used; accepted so that C(module_defaults) for C(group/etcdops.etcd.etcd) apply to this module too.
    type: list
    elements: str
  ca_cert:
    description: Not used (see O(endpoints)).
    type: path
  client_cert:
    description: Not used (see O(endpoints)).
    type: path
  client_key:
    description: Not used (see O(endpoints)).
    type: path
  user:
    description: Not used (see O(endpoints)).
    type: str
  password:
    description: Not used (see O(endpoints)).
    type: str
  dial_timeout:
    description: Not used (see O(endpoints)).
    type: float
  command_timeout:
    description: Not used (see O(endpoints)).
    type: float
'''
