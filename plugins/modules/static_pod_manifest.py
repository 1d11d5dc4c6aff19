#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: static_pod_manifest
short_description: Park, put back and edit the command flags of a static pod manifest (etcd's on kubeadm hosts)
version_added: 0.1.0
description:
  - Stops a static pod by moving its manifest out of the kubelet's manifests directory into a parking directory
    (O(state=absent)), and starts it again by moving it back (O(state=present)); the content is kept byte for byte.
    This is the C(mv /etc/kubernetes/manifests/etcd.yaml ...) step of the etcd restore runbooks.
  - Sets and removes command-line flags of one container (O(flags), O(remove_flags)), for example
    C(--force-new-cluster) or C(--initial-cluster-state). A flag change rewrites only the line of that flag
    (an added flag adds one line, a removed flag removes its line); comments, key order and indentation stay as
    they are. The result is parsed again and must equal the original document except for the flags.
  - Waits until the pod's container is stopped or running (O(wait)), asking the container runtime with
    C(crictl) and the process table, or the process table alone where C(crictl) is missing or fails.
  - Never leaves a file in the manifests directory that the kubelet would run. The kubelet runs every file there
    whose name does not start with a dot, so a parked manifest and a backup go to O(parking_dir), and the
    temporary file of an atomic write is a dot file renamed over the manifest.
  - A manifest that is not valid YAML, not a Pod (C(kind) other than C(Pod)), has no such container, or whose command list the line
    editor cannot edit safely (flow style, multi-line items, a shell wrapper, a duplicated flag) is refused with
    an error that names the file and the problem; nothing is changed then.
author:
  - etcdops maintainers (@etcdops)
requirements:
  - PyYAML
extends_documentation_fragment:
  - etcdops.etcd.attributes
  - etcdops.etcd.attributes.changing_module
attributes:
  check_mode:
    details:
      - When the manifest would change, the wait (O(wait)) is skipped, since the pod after a change that was not
        made cannot be observed. When nothing would change, the wait runs, as it only reads.
  diff_mode:
    details:
      - The manifest's content before and after, with its path as header; a move shows the file leaving one path
        and arriving at the other.
options:
  name:
    description:
      - The manifest's file name without C(.yaml), for example C(etcd) or C(kube-apiserver).
      - The file is C(<manifests_dir>/<name>.yaml), parked as C(<parking_dir>/<name>.yaml).
      - Exactly one of O(name) and O(path) is required.
    type: str
  path:
    description:
      - The manifest's full path; its directory is the manifests directory. Parked as C(<parking_dir>/<file name>).
      - Mutually exclusive with O(name) and O(manifests_dir).
    type: path
  manifests_dir:
    description:
      - The directory the kubelet runs static pods from (its C(staticPodPath)).
    type: path
    default: /etc/kubernetes/manifests
  parking_dir:
    description:
      - Where O(state=absent) moves the manifest and where O(backup) files go.
      - Must not be O(manifests_dir) or inside it; created with mode C(0700) when first needed.
    type: path
    default: /etc/kubernetes/manifests-parked
  state:
    description:
      - V(present) - the manifest is in O(manifests_dir) and the kubelet runs it. A parked manifest is moved back.
        When both the manifest and a parked copy exist, an identical parked copy is removed and a different one
        makes the task fail (compare them and delete the one that is stale).
      - V(absent) - the manifest is parked in O(parking_dir) with its content, mode and owner kept; the kubelet
        stops the pod. When the manifest is neither there nor parked, nothing is done (with a warning).
      - O(flags) and O(remove_flags) edit the manifest where O(state) puts it.
    type: str
    choices: [present, absent]
    default: present
  container:
    description:
      - The container whose flags to edit and wait for. Defaults to the pod's first container (C(etcd) in kubeadm's
        etcd manifest).
    type: str
  flags:
    description:
      - Flags to set, as flag name (with or without leading dashes) and value.
      - V(true) writes a bare boolean flag (C(--force-new-cluster)); an existing C(--flag) or C(--flag=true) is
        left as it is. V(false) writes C(--flag=false). Strings and numbers are written as C(--flag=value).
      - An existing flag is changed on its line (its C(--flag value) two-item form keeps that form); a new one is
        added as one line at its alphabetical place when the list is sorted (as kubeadm writes it), else at the
        end. Flags go to the container's C(args) list when it has one, else to C(command).
      - To remove a flag use O(remove_flags); V(null) is refused.
    type: dict
  remove_flags:
    description:
      - Names of flags to remove (every occurrence, with the value item of a C(--flag value) pair).
    type: list
    elements: str
  backup:
    description:
      - Keep the previous content when the content changes, as C(<parking_dir>/<file name>.<timestamp>.bak)
        (never next to the manifest, where the kubelet would run it).
    type: bool
    default: false
  wait:
    description:
      - V(stopped) - wait until C(crictl ps) lists no running container of the pod (when C(crictl) answers) and no
        process runs the container's command (same program name, same C(--name) and C(--data-dir)).
      - V(running) - wait until a container of the pod runs (C(crictl)), or without C(crictl) such a process,
        and stays up for O(wait_settle) seconds; after a change made by this task it must have started after the
        change.
      - V(none) - do not wait.
      - V(stopped) goes with O(state=absent) and V(running) with O(state=present).
    type: str
    choices: [stopped, running, none]
    default: none
  wait_timeout:
    description:
      - Seconds to wait before failing. The kubelet notices manifest changes within about 20 seconds.
    type: int
    default: 120
  wait_settle:
    description:
      - Seconds a container (or process) must stay up before O(wait=running) accepts it, so that a crash loop is
        not mistaken for a running pod.
    type: int
    default: 3
notes:
  - Pods are matched in C(crictl ps -o json) by container name, namespace and the pod name label
    C(io.kubernetes.pod.name) starting with C(<metadata.name>-) (the kubelet appends the node name).
  - The process table is read from C(/proc); no C(psutil) is needed.
seealso:
  - name: Static pods
    description: How the kubelet runs the files of its manifests directory.
    link: https://kubernetes.io/docs/tasks/configure-pod-container/static-pod/
'''

EXAMPLES = r'''
- name: Stop etcd on this member (park its manifest) and wait until it is gone
  etcdops.etcd.static_pod_manifest:
    name: etcd
    state: absent
    wait: stopped

- name: Start etcd again as a new one-member cluster from its data dir
  etcdops.etcd.static_pod_manifest:
    name: etcd
    state: present
    flags:
      force-new-cluster: true
    backup: true
    wait: running

- name: Back to a normal member once the cluster is up
  etcdops.etcd.static_pod_manifest:
    name: etcd
    remove_flags:
      - force-new-cluster
    wait: running

- name: Join a restored member to the existing cluster
  etcdops.etcd.static_pod_manifest:
    name: etcd
    flags:
      initial-cluster-state: existing
      initial-cluster: "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380"
'''

RETURN = r'''
manifest_path:
  description: The manifest's path in the manifests directory (whether or not it is there now).
  returned: always
  type: str
  sample: /etc/kubernetes/manifests/etcd.yaml
parked_path:
  description: Where the manifest is or would be parked.
  returned: always
  type: str
  sample: /etc/kubernetes/manifests-parked/etcd.yaml
state:
  description:
    - Where the manifest is after the task (in check mode, would be) - V(present) in the manifests directory,
      V(absent) parked or nowhere.
  returned: always
  type: str
  sample: present
flags_before:
  description: The container's command line before the task (command followed by args); empty without a manifest.
  returned: always
  type: list
  elements: str
  sample: [etcd, --data-dir=/var/lib/etcd, --name=cp1]
flags_after:
  description: The container's command line after the task (in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: [etcd, --data-dir=/var/lib/etcd, --force-new-cluster, --name=cp1]
backup_file:
  description: The backup of the previous content.
  returned: when O(backup=true) and the content changed (not in check mode)
  type: str
  sample: /etc/kubernetes/manifests-parked/etcd.yaml.20250101T120000.123456.bak
runtime:
  description:
    - What the wait asked - V(crictl) (with the process table as well for V(stopped)) or V(process table) when
      C(crictl) is missing or failed (the reason is in the task's warnings).
  returned: when O(wait) is not V(none) and the wait ran
  type: str
  sample: crictl
container_ids:
  description: IDs of the running containers that satisfied V(running) (empty for V(stopped) or without crictl).
  returned: when O(wait) is not V(none) and the wait ran
  type: list
  elements: str
  sample: [3f5d0e3c1b2a4f6e8d9c0b1a2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e]
pids:
  description: PIDs of the processes that run the container's command (empty for V(stopped)).
  returned: when O(wait) is not V(none) and the wait ran
  type: list
  elements: int
  sample: [4242]
waited:
  description: Seconds the wait took.
  returned: when O(wait) is not V(none) and the wait ran
  type: float
  sample: 12.3
restarts:
  description:
    - For V(running) - the highest restart count crictl reported for the pod's container while waiting, or without
      crictl how many times the process was replaced while waiting; V(null) for V(stopped).
  returned: when O(wait) is not V(none) and the wait ran
  type: int
  sample: 0
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.etcdops.etcd.plugins.module_utils._manifest import (
    HAS_YAML,
    YAML_IMPORT_ERROR,
    ManifestError,
    ManifestFiles,
    PodWatcher,
    RuntimeUnavailable,
    StaticPodManifest,
    flag_value_text,
    fsync_dir,
    is_inside,
    normalize_flag_name,
    read_manifest_bytes,
    wait_for_pod,
)


def argument_spec():
    return dict(
        name=dict(type='str'),
        path=dict(type='path'),
        manifests_dir=dict(type='path', default='/etc/kubernetes/manifests'),
        parking_dir=dict(type='path', default='/etc/kubernetes/manifests-parked'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        container=dict(type='str'),
        flags=dict(type='dict'),
        remove_flags=dict(type='list', elements='str'),
        backup=dict(type='bool', default=False),
        wait=dict(type='str', choices=['stopped', 'running', 'none'], default='none'),
        wait_timeout=dict(type='int', default=120),
        wait_settle=dict(type='int', default=3),
    )


def _paths(module):
    params = module.params
    if params['path']:
        manifest_path = os.path.abspath(params['path'])
        manifests_dir = os.path.dirname(manifest_path)
        file_name = os.path.basename(manifest_path)
    else:
        name = params['name']
        if not name or '/' in name or name.startswith('.') or name.endswith(('.yaml', '.yml')):
            module.fail_json(msg="name=%r: give the manifest's file name without .yaml and without a directory, "
                                 "e.g. name=etcd (or give path)" % name)
        manifests_dir = os.path.abspath(params['manifests_dir'])
        file_name = name + '.yaml'
        manifest_path = os.path.join(manifests_dir, file_name)
    if file_name.startswith('.'):
        module.fail_json(msg='%s is a dot file, which the kubelet never runs: give the manifest itself' % manifest_path)
    parking_dir = os.path.abspath(params['parking_dir'])
    if is_inside(parking_dir, manifests_dir):
        module.fail_json(msg='parking_dir %s is inside the manifests directory %s, where the kubelet would run what is '
                             'parked: choose a directory outside it (default /etc/kubernetes/manifests-parked)'
                             % (parking_dir, manifests_dir))
    if os.path.exists(parking_dir) and not os.path.isdir(parking_dir):
        module.fail_json(msg='parking_dir %s exists and is not a directory' % parking_dir)
    return manifest_path, manifests_dir, file_name, parking_dir, os.path.join(parking_dir, file_name)


def _check_flags(module):
    params = module.params
    try:
        flags = dict((normalize_flag_name(k), v) for k, v in (params['flags'] or {}).items())
        remove = [normalize_flag_name(n) for n in (params['remove_flags'] or [])]
        for name, value in flags.items():
            try:
                flag_value_text(value)
            except ManifestError as exc:
                raise ManifestError('flags.%s: %s' % (name, exc))
    except ManifestError as exc:
        module.fail_json(msg=to_native(exc))
    return flags, remove


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('name', 'path'), ('path', 'manifests_dir')],
        required_one_of=[('name', 'path')],
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib('PyYAML'), exception=YAML_IMPORT_ERROR)

    params = module.params
    state = params['state']
    wait = params['wait']
    if (state, wait) in (('absent', 'running'), ('present', 'stopped')):
        module.fail_json(msg='wait=%s does not go with state=%s: a parked pod does not run and a pod in the manifests '
                             'directory is started by the kubelet (use wait=%s)'
                             % (wait, state, 'stopped' if state == 'absent' else 'running'))
    if params['wait_timeout'] < 0 or params['wait_settle'] < 0:
        module.fail_json(msg='wait_timeout and wait_settle are seconds and cannot be negative')
    manifest_path, manifests_dir, file_name, parking_dir, parked_path = _paths(module)
    set_flags, remove_flags = _check_flags(module)

    result = dict(changed=False, manifest_path=manifest_path, parked_path=parked_path, state=state,
                  flags_before=[], flags_after=[])
    try:
        in_dir = os.path.isfile(manifest_path)
        parked = os.path.isfile(parked_path)
        for candidate in (manifest_path, parked_path):
            if os.path.lexists(candidate) and not os.path.isfile(candidate):
                module.fail_json(msg='%s exists and is not a regular file; look at it by hand' % candidate, **result)
        in_dir_data = read_manifest_bytes(manifest_path) if in_dir else None
        parked_data = read_manifest_bytes(parked_path) if parked else None
    except ManifestError as exc:
        module.fail_json(msg='%s; nothing was changed' % to_native(exc), **result)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read the manifest: %s' % to_native(exc), **result)

    duplicate = False
    if in_dir and parked and in_dir_data != parked_data:
        module.fail_json(msg='%s and the parked %s both exist and differ: compare them (diff %s %s), delete the stale '
                             'one (keep the one with the flags this member should run with), then run again'
                             % (manifest_path, parked_path, manifest_path, parked_path), **result)
    if state == 'present':
        dest = manifest_path
        if in_dir:
            source, duplicate = manifest_path, parked
        elif parked:
            source = parked_path
        else:
            module.fail_json(msg='no manifest at %s and none parked at %s: nothing to put back (this module moves and '
                                 'edits manifests that kubeadm wrote; it does not create them)'
                                 % (manifest_path, parked_path), **result)
    else:
        dest = parked_path
        source = manifest_path if in_dir else (parked_path if parked else None)
    if source is None:
        if set_flags or remove_flags or wait != 'none':
            module.fail_json(msg='no manifest at %s and none parked at %s: no flags to edit and no pod to wait for'
                                 % (manifest_path, parked_path), **result)
        module.warn('no manifest at %s and none parked at %s: nothing to park' % (manifest_path, parked_path))
        result['state'] = 'absent'
        module.exit_json(**result)

    data = in_dir_data if source == manifest_path else parked_data
    try:
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise ManifestError('%s is not UTF-8 text: %s' % (source, exc))
        before = StaticPodManifest(text, source, params['container'])
        new_text = before.edit_flags(set_flags, remove_flags)
        after = StaticPodManifest(new_text, dest, params['container'])
    except ManifestError as exc:
        module.fail_json(msg='%s; nothing was changed' % to_native(exc), **result)
    new_data = new_text.encode('utf-8')
    content_changed = new_data != data
    moved = source != dest
    result.update(changed=content_changed or moved or duplicate, flags_before=before.argv, flags_after=after.argv)

    if module._diff:
        result['diff'] = _diff(source, dest, data, new_data, duplicate, parked_path)

    written_at = None
    if result['changed'] and not module.check_mode:
        files = ManifestFiles(module)
        try:
            like = os.stat(source)
            if moved or (content_changed and params['backup']):
                files.ensure_dir(parking_dir)
            if content_changed and params['backup']:
                result['backup_file'] = files.backup(parking_dir, file_name, data, like)
            if dest == manifest_path and (content_changed or moved):
                written_at = time.time()
            if content_changed:
                files.write(dest, new_data, like)
                if moved:
                    os.unlink(source)
                    fsync_dir(os.path.dirname(source))
            elif moved:
                files.move(source, dest)
            if duplicate:
                os.unlink(parked_path)
        except (IOError, OSError) as exc:
            module.fail_json(msg='could not write %s: %s' % (dest, to_native(exc)), **result)

    if wait != 'none' and not (module.check_mode and result['changed']):
        # stopped: neither the old nor the new command line may run; running: the new one must.
        watcher = PodWatcher([after, before] if wait == 'stopped' else [after], module.run_command,
                             crictl=module.get_bin_path('crictl'))
        try:
            ok, details = wait_for_pod(watcher, wait, params['wait_timeout'], settle=params['wait_settle'],
                                       since=written_at)
        except RuntimeUnavailable as exc:
            module.fail_json(msg='cannot wait for the pod: %s' % to_native(exc), **result)
        reason = details.pop('reason', None)
        if wait == 'stopped':
            details['restarts'] = None
        if watcher.runtime_error and watcher.crictl:
            module.warn('asked the process table instead of crictl: %s' % watcher.runtime_error)
        result.update(details)
        if not ok:
            module.fail_json(msg=_wait_failure(wait, after, reason, details, params['wait_timeout']), **result)
    module.exit_json(**result)


def _diff(source, dest, data, new_data, duplicate, parked_path):
    before_text = data.decode('utf-8')
    after_text = new_data.decode('utf-8')
    if source == dest:
        diffs = [dict(before_header=source, after_header=dest, before=before_text, after=after_text)]
    else:
        diffs = [dict(before_header=source, after_header='%s (moved to %s)' % (source, dest), before=before_text, after=''),
                 dict(before_header='%s (moved from %s)' % (dest, source), after_header=dest, before='', after=after_text)]
    if duplicate:
        diffs.append(dict(before_header=parked_path, after_header='%s (removed: same content as %s)' % (parked_path, source),
                          before=before_text, after=''))
    return diffs if len(diffs) > 1 else diffs[0]


def _wait_failure(wait, manifest, reason, details, timeout):
    name = manifest.container_name
    where = ('crictl ps -a --name %s, crictl logs <container id>' % name if details['runtime'] == 'crictl'
             else 'ps -ef | grep %s' % (manifest.program or name))
    if wait == 'stopped':
        return ('container %s of pod %s is not stopped after %ss (%s). The kubelet should stop it once the manifest is '
                'gone: check %s and the kubelet\'s log (journalctl -u kubelet)' % (name, manifest.pod_name, timeout, reason, where))
    return ('container %s of pod %s is not running steadily after %ss (%s). Check %s and the kubelet\'s log '
            '(journalctl -u kubelet)' % (name, manifest.pod_name, timeout, reason, where))


if __name__ == '__main__':
    main()
