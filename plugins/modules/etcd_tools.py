#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: etcd_tools
short_description: Stage etcdctl and etcdutl of the cluster's etcd version on a control-plane host
version_added: 0.2.0
description:
  - Makes sure C(<dest>/<version>/) holds C(etcdctl) and C(etcdutl) (only C(etcdctl) on etcd 3.4, which has no
    C(etcdutl)) of exactly the version the cluster's etcd runs, so that a restore finds a version-matched tool
    after a disaster. A kubeadm master has them only inside the etcd image; stage them while the cluster is
    healthy.
  - From the running member (O(source=running)) its binaries are copied out of its container through
    C(/proc/<pid>/root), whatever the container runtime; the process is found by the manifest's C(--name) and
    C(--data-dir). From etcd's release tarball (O(source=archive)) the two tools are read out of O(archive) after
    its sha256 matched O(archive_sha256).
  - Every tool is asked for its version before it is used; one of another version or architecture is refused.
    The tools are copied into a new directory beside the target that takes its place by one rename, so a failed
    run leaves nothing half-installed. A target that is there but broken (a tool missing or of another version)
    is moved aside as C(<version>.moved-<UTC time>), never deleted.
author:
  - etcdops maintainers (@etcdops)
extends_documentation_fragment:
  - etcdops.etcd.attributes
attributes:
  check_mode:
    support: full
    details:
      - Finds the source and checks it exactly as a real run would (the running binaries are asked for their
        version, the archive's sha256 is computed); writes nothing.
  diff_mode:
    support: none
options:
  version:
    description:
      - The etcd version, as C(3.6.16). Default, the version the image tag of O(manifest_path) names
        (C(registry.k8s.io/etcd:3.6.16-0) names C(3.6.16)).
    type: str
  manifest_path:
    description:
      - The etcd static pod manifest, to learn the version and to find the running member.
    type: path
    default: /etc/kubernetes/manifests/etcd.yaml
  source:
    description:
      - Where the tools come from. V(auto), the running member when its tools are of the version, else
        O(archive) when given. V(running) or V(archive) only that source.
    type: str
    choices: [auto, running, archive]
    default: auto
  archive:
    description:
      - etcd's release tarball on this host (C(etcd-v<version>-linux-<arch>.tar.gz)), for a member that does not
        run or an image without the tools. Copy it to the host first (M(ansible.builtin.copy) or
        M(ansible.builtin.get_url) with its checksum).
    type: path
  archive_sha256:
    description:
      - The sha256 of O(archive) as etcd's release lists it (C(SHA256SUMS)); required with O(archive).
    type: str
  dest:
    description:
      - The directory that holds one subdirectory per version.
    type: path
    default: /var/lib/etcdops/tools
notes:
  - The free space needed is checked first (the tools' sizes, or four times the archive's, plus 16 MiB).
  - Give a restore the staged directory, for example O(etcdops.etcd.etcd_snapshot#module:etcdutl) set to
    RV(path).
seealso:
  - module: etcdops.etcd.etcd_snapshot
'''

EXAMPLES = r'''
- name: Stage the tools of the running etcd while the cluster is healthy
  etcdops.etcd.etcd_tools:
  register: tools

- name: Or from etcd's release tarball, for a member that is down
  etcdops.etcd.etcd_tools:
    version: 3.6.16
    archive: /root/etcd-v3.6.16-linux-amd64.tar.gz
    archive_sha256: 0d5b3c5f5e2c0e77a2b4e5c3c1a3f0c9e3a7a4bd5f6d7e8f9a0b1c2d3e4f5a6b
    source: archive
'''

RETURN = r'''
version:
  description: The etcd version the tools are of.
  returned: always
  type: str
  sample: 3.6.16
path:
  description: The directory holding the tools.
  returned: always
  type: str
  sample: /var/lib/etcdops/tools/3.6.16
etcdctl:
  description: The path of etcdctl.
  returned: always
  type: str
  sample: /var/lib/etcdops/tools/3.6.16/etcdctl
etcdutl:
  description: The path of etcdutl; null on etcd 3.4, which has none.
  returned: always
  type: str
  sample: /var/lib/etcdops/tools/3.6.16/etcdutl
source:
  description: Where the tools came from, V(installed) when they were there already.
  returned: always
  type: str
  sample: running
pid:
  description: The etcd process whose binaries were copied.
  returned: when O(source) was the running member
  type: int
  sample: 4242
moved_aside:
  description: Where a broken earlier install went.
  returned: when there was one
  type: str
  sample: /var/lib/etcdops/tools/3.6.16.moved-2026-12-08T02-00-00Z
'''

import os
import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import (
    ManifestError, PodWatcher, StaticPodManifest)
from ansible_collections.etcdops.etcd.plugins.module_utils._tools import (
    ToolsError, check_archive, check_tools, copy_tools, extract_tools, fsync_tree, installed, make_staging,
    need_space, normalize_version, put_in_place, remove_staging, running_sources, tool_names)


def _manifest(path):
    if not path or not os.path.exists(path):
        return None, '%s does not exist' % path
    try:
        return StaticPodManifest.from_file(path), None
    except ManifestError as exc:
        return None, str(exc)


def _from_running(module, manifest, manifest_problem, version, names):
    """(pid, name -> path, None) of a running member's tools of version, or (None, None, why not)."""
    if manifest is None:
        return None, None, 'no running member to copy from: %s' % manifest_problem
    watcher = PodWatcher([manifest], module.run_command, crictl=None)
    if not watcher.can_read_processes:
        return None, None, '%s has no command to find its process by' % manifest.path
    processes = watcher.processes()
    if not processes:
        return None, None, 'no etcd process of %s runs on this host' % manifest.path
    reasons = []
    for pid, directory in running_sources(processes):
        candidate = dict((name, os.path.join(directory, name)) for name in names)
        problem = check_tools(module, candidate, version)
        if problem is None:
            return pid, candidate, None
        reasons.append('process %d: %s' % (pid, problem))
    return None, None, '; '.join(reasons) or 'the etcd process cannot be read (run as root)'


def main():
    module = AnsibleModule(
        argument_spec=dict(
            version=dict(type='str'),
            manifest_path=dict(type='path', default='/etc/kubernetes/manifests/etcd.yaml'),
            source=dict(type='str', choices=['auto', 'running', 'archive'], default='auto'),
            archive=dict(type='path'),
            archive_sha256=dict(type='str'),
            dest=dict(type='path', default='/var/lib/etcdops/tools'),
        ),
        required_if=[('source', 'archive', ('archive',))],
        required_together=[('archive', 'archive_sha256')],
        supports_check_mode=True,
    )
    params = module.params
    dest = params['dest']
    manifest, manifest_problem = _manifest(params['manifest_path'])
    version = None
    try:
        if params['version']:
            version = normalize_version(params['version'])
        elif manifest is not None and manifest.etcd_version:
            version = normalize_version(manifest.etcd_version)
        else:
            raise ToolsError('no version given and none to read from %s (%s): give version, as 3.6.16' % (
                params['manifest_path'], manifest_problem or 'its image tag names none'), kind='bad_input')
    except ToolsError as exc:
        module.fail_json(msg=exc.msg, kind=exc.kind)
    names = tool_names(version)
    target = os.path.join(dest, version)
    paths, problem = installed(module, dest, version)
    result = dict(changed=False, version=version, path=target, etcdctl=paths['etcdctl'],
                  etcdutl=paths.get('etcdutl'))
    if problem is None:
        module.exit_json(source='installed', msg='etcd %s tools at %s' % (version, target), **result)

    try:
        pid, running, why_not = None, None, None
        if params['source'] in ('auto', 'running'):
            pid, running, why_not = _from_running(module, manifest, manifest_problem, version, names)
        if running is None and params['source'] in ('auto', 'archive') and params['archive']:
            check_archive(params['archive'], params['archive_sha256'])
        elif running is None:
            raise ToolsError('no source of etcd %s tools on this host (%s; %s): let this run while the member of '
                             'version %s runs, or give archive and archive_sha256 (etcd\'s release tarball '
                             'etcd-v%s-linux-<arch>.tar.gz, this host is %s)' % (
                                 version, target, '; '.join(r for r in (problem, why_not) if r), version, version,
                                 platform.machine()), kind='no_source')
    except ToolsError as exc:
        module.fail_json(msg=exc.msg, kind=exc.kind, **result)
    source = 'running' if running else 'archive'
    result.update(changed=True, source=source)
    if pid is not None:
        result['pid'] = pid
    if module.check_mode:
        module.exit_json(msg='would stage the etcd %s tools at %s from %s (%s)' % (
            version, target, 'process %d' % pid if pid else params['archive'], problem), **result)

    staging = moved = None
    try:
        if running:
            need_space(dest, [os.path.getsize(path) for path in running.values()])
        else:
            need_space(dest, [4 * os.path.getsize(params['archive'])])
        staging = make_staging(dest, version)
        if running:
            staged = copy_tools(running, staging)
        else:
            staged = extract_tools(params['archive'], names, staging)
        wrong = check_tools(module, staged, version)
        if wrong is not None:
            raise ToolsError('the tools from %s do not answer as etcd %s (%s; this host is %s); nothing was '
                             'installed' % (source if running else params['archive'], version, wrong,
                                            platform.machine()), kind='version')
        fsync_tree(staging)
        moved = put_in_place(staging, dest, version)
        staging = None
    except ToolsError as exc:
        remove_staging(staging)
        module.fail_json(msg=exc.msg, kind=exc.kind, **result)
    except (IOError, OSError) as exc:
        remove_staging(staging)
        module.fail_json(msg='cannot stage the etcd tools in %s: %s; nothing was installed' % (
            dest, exc.strerror or exc), kind='io', **result)
    if moved:
        result['moved_aside'] = moved
    module.exit_json(msg='staged the etcd %s tools at %s from %s' % (
        version, target, 'process %d' % pid if pid else params['archive']), **result)


if __name__ == '__main__':
    main()
