#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: python_wheels
short_description: Install the collection's Python packages on a host from wheels, with only its python3
version_added: 0.2.0
description:
  - Installs the Python packages the collection's modules need (C(requirements.txt)) on a control-plane host that
    has python3 and nothing else (no pip, no venv, no network). The wheels come from O(wheelhouse), a directory on
    the host that the controller filled with wheels built for this host's Python version, architecture and glibc.
  - Every wheel is checked against the host before anything is written (one of another Python or architecture,
    or a project there twice, is refused), unpacked with bounds (no name leaving the directory, no links, at most
    1 GiB in all) into C(<dest>/trees/<fingerprint>), and each module of O(imports) imported from there. Then
    C(<dest>/current) is switched to it by one rename, and C(<dest>/bin/python3) runs the host's python3 with it
    first on C(sys.path), the interpreter to give the collection's modules as C(ansible_python_interpreter).
    The system Python is never changed; earlier trees are kept.
  - Runs on any python3 from 3.9 with the standard library only.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.attributes
attributes:
  check_mode:
    support: full
    details:
      - Checks the wheels and the free space as a real run would and reports whether it would install; unpacks and
        writes nothing.
  diff_mode:
    support: none
options:
  wheelhouse:
    description:
      - The directory on this host holding the wheels (C(*.whl)), one per project.
    type: path
    required: true
  dest:
    description:
      - The directory the collection owns for its Python packages.
    type: path
    default: /opt/etcdops/python
  imports:
    description:
      - The modules that must import from the new tree before it is switched to.
    type: list
    elements: str
    default: [pyetcd, grpc, google.protobuf, boto3, zstandard, pyrage, yaml, cryptography, google_crc32c]
seealso:
  - module: etcdops.etcd.etcd_tools
'''

EXAMPLES = r'''
- name: Install the collection's packages from the wheels copied to the host
  etcdops.etcd.python_wheels:
    wheelhouse: /var/cache/etcdops/wheels/cp311-x86_64
  vars:
    ansible_python_interpreter: /usr/bin/python3
  register: wheels

- name: Run the collection's modules with them
  ansible.builtin.set_fact:
    ansible_python_interpreter: "{{ wheels.interpreter }}"
'''

RETURN = r'''
interpreter:
  description: The interpreter to run the collection's modules with.
  returned: always
  type: str
  sample: /opt/etcdops/python/bin/python3
tree:
  description: The directory holding the unpacked packages.
  returned: always
  type: str
  sample: /opt/etcdops/python/trees/3f1c0a9e2b7d4c51
host:
  description: What the wheels had to fit.
  returned: always
  type: str
  sample: Python 3.11 on x86_64 with glibc 2.36
wheels:
  description: The wheel files installed.
  returned: always
  type: list
  elements: str
  sample: [grpcio-1.76.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl]
'''

import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._wheels import (
    Host, WheelError, check_python, choose_wheels, fingerprint, import_check, make_staging, need_space,
    plan_members, remove_staging, switch_link, unpack, wrapper_text, write_atomic)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read(65536)
    except (IOError, OSError):
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            wheelhouse=dict(type='path', required=True),
            dest=dict(type='path', default='/opt/etcdops/python'),
            imports=dict(type='list', elements='str',
                         default=['pyetcd', 'grpc', 'google.protobuf', 'boto3', 'zstandard', 'pyrage', 'yaml',
                                  'cryptography', 'google_crc32c']),
        ),
        supports_check_mode=True,
    )
    params = module.params
    dest = params['dest']
    host = Host.this()
    python = os.path.realpath(sys.executable)
    interpreter = os.path.join(dest, 'bin', 'python3')
    current = os.path.join(dest, 'current')
    result = dict(changed=False, interpreter=interpreter, host=host.describe())
    try:
        check_python(host)
        wheels = choose_wheels(params['wheelhouse'], host)
        result['wheels'] = [os.path.basename(path) for path, dummy in wheels]
        name = fingerprint(wheels)
        tree = os.path.join(dest, 'trees', name)
        result['tree'] = tree
        wrapper = wrapper_text(python, current)
        linked = os.path.islink(current) and os.readlink(current) == os.path.join('trees', name)
        if linked and _read(interpreter) == wrapper and import_check(module, python, current, params['imports']) is None:
            module.exit_json(msg='the collection\'s Python packages are installed for %s' % host.describe(), **result)
        built = os.path.isdir(tree) and import_check(module, python, tree, params['imports']) is None
        plans = None
        if not built:
            plans, size = plan_members(wheels)
            need_space(dest, size)
    except WheelError as exc:
        module.fail_json(msg=exc.msg, kind=exc.kind, **result)
    result['changed'] = True
    if module.check_mode:
        module.exit_json(msg='would install %d wheels into %s for %s' % (len(wheels), tree, host.describe()),
                         **result)
    staging = None
    try:
        if not built:
            if os.path.lexists(tree):
                # a tree of these wheels that does not import (an interrupted copy, a damaged disk): kept aside
                os.rename(tree, '%s.broken-%d' % (tree, os.getpid()))
            staging = make_staging(os.path.dirname(tree))
            unpack(plans, staging)
            problem = import_check(module, python, staging, params['imports'])
            if problem is not None:
                raise WheelError('the packages from %s do not import on %s (%s): build the wheelhouse for this '
                                 'host again; nothing was switched' % (params['wheelhouse'], host.describe(),
                                                                       problem), kind='import')
            os.chmod(staging, 0o755)
            os.rename(staging, tree)
            staging = None
        switch_link(current, os.path.join('trees', name))
        write_atomic(interpreter, wrapper, 0o755)
    except WheelError as exc:
        remove_staging(staging)
        module.fail_json(msg=exc.msg, kind=exc.kind, **result)
    except (IOError, OSError) as exc:
        remove_staging(staging)
        module.fail_json(msg='cannot install the Python packages into %s: %s; the interpreter was not switched' % (
            dest, exc.strerror or exc), kind='io', **result)
    module.exit_json(msg='installed %d wheels into %s for %s' % (len(wheels), tree, host.describe()), **result)


if __name__ == '__main__':
    main()
