# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Which stored backups may be used (plugins/module_utils/_fetch.py trust_argument_spec).
    DOCUMENTATION = r'''
options:
  trusted_keys:
    description:
      - minisign public keys (the content of a C(.pub) file, or its base64 line) whose signatures make a backup
        trusted, that is the keys of M(etcdops.etcd.etcd_backup)'s O(etcdops.etcd.etcd_backup#module:signing_key).
      - A backup's metadata (which holds the sha256 of each of its objects) is checked against its signature before
        a byte of the backup is used, and every digest checked later comes from those verified bytes. A backup that
        is not signed, signed by another key, altered after signing or signed for another place in the store is
        refused; V(latest) passes over it to the newest trusted backup.
      - One of O(trusted_keys) and O(trusted_keys_file) is required unless O(accept_unsigned=true).
    type: list
    elements: str
    default: []
  trusted_keys_file:
    description:
      - A file on the host with minisign public keys, one a line (C(#) comments and minisign's C(untrusted
        comment:) lines allowed), added to O(trusted_keys).
    type: path
  accept_unsigned:
    description:
      - Also use backups that are not signed, or signed by a key not among the trusted ones (each is named in a
        warning). A backup whose signature does not verify against a trusted key is refused even so.
      - Only for a store that nobody but the cluster's administrators can write to, or for backups taken with
        O(etcdops.etcd.etcd_backup#module:signing=none).
    type: bool
    default: false
'''
