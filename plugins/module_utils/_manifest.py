# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: reading and editing a static pod manifest (kubeadm's /etc/kubernetes/manifests/etcd.yaml).

What is here:

* ``StaticPodManifest(text, path, container=None)``: a parsed manifest (``kind: Pod``) and one of its
  containers (by name; the first one when no name is given).  Read: ``argv`` (command followed by args),
  ``flags`` / ``get_flag(name)`` (what etcd would see: the last occurrence of a flag wins, a bare boolean
  flag reads ``True``), ``image``, ``image_tag``, ``etcd_version``, ``host_paths`` (hostPath volumes by name)
  and ``host_path(container_path)`` (where a path inside the container lives on the host).
* ``StaticPodManifest.edit_flags(set_flags, remove_flags)``: the manifest's text with container command
  flags set or removed, and nothing else touched: a changed flag changes its own line, an added flag adds
  one line to the list (at its sorted place when the list is sorted, as kubeadm writes it), a removed flag
  removes its line.  Comments, key order, indentation, quoting and line endings elsewhere stay
  byte-identical.  The result is parsed again and must equal the original document except for the intended
  change; anything the line editor cannot edit safely (flow-style lists, multi-line items, a shell wrapper,
  duplicated flags) is refused with a ``ManifestError`` that names the file and what is wrong.
* ``flag_item(name, value)``: how a flag is written (``--name=value``, or ``--name`` for ``True``).
* ``ManifestFiles(module)``: atomic writes (a dot-named temp file in the target directory, which the kubelet
  never runs, renamed over the target with mode and owner kept) and moves (a rename; a copy + rename + unlink
  across file systems).
* ``PodWatcher`` and ``wait_for_pod``: whether the pod's container runs, asked of ``crictl ps -o json`` and of
  the process table (``/proc``: same program name, same ``--name`` and ``--data-dir``); ``crictl`` missing or
  failing falls back to the process table alone.

Every manifest is read as untrusted text (a backup, a parked copy, a disk that may be damaged): at most
``MANIFEST_MAX_BYTES``, YAML nested at most ``MANIFEST_MAX_DEPTH`` deep and at most ``MANIFEST_MAX_NODES`` nodes
with aliases counted as the copies every reader of the document walks (no billion laughs), integers of at most
``MANIFEST_MAX_NUMBER`` characters, safe tags only; beyond that, a ``ManifestLimitError`` before any work that
grows with the input.

Flags are ``--name=value`` items; ``-name=value`` (Go's single dash) and the two-item form ``--name`` ``value``
are read too.  An item without ``=`` followed by an item that does not start with ``-`` is read as the
two-item form (etcd takes no positional arguments).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import errno
import json
import os
import re
import stat
import tempfile
import time
import traceback

YAML_IMPORT_ERROR = None
try:
    import yaml
except ImportError:
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_YAML = True

FLAG_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_FLAG_ITEM_RE = re.compile(r'^(--?)([A-Za-z0-9][A-Za-z0-9._-]*)(?:=(.*))?$', re.DOTALL)
_ITEM_PREFIX_RE = re.compile(r'^[ ]*-[ ]+$')
_ITEM_SUFFIX_RE = re.compile(r'^[ \t]*(#.*)?$')
# A container whose command is a shell carries its flags inside one string: not editable item by item.
_SHELLS = ('sh', 'bash', 'ash', 'dash', 'zsh', 'busybox')


# A kubeadm etcd.yaml is 2-3 KiB, ~150 YAML nodes nested 8 deep. PyYAML's composer and constructor recurse once per
# level, and an alias is one node to PyYAML but a full copy to whoever walks the document (comparison, JSON).
MANIFEST_MAX_BYTES = 1024 * 1024
MANIFEST_MAX_DEPTH = 32
MANIFEST_MAX_NODES = 100000
# Python converts a long integer in time quadratic in its digits (base 60 '1:2:3...' too); 3.11+ refuses 4300.
MANIFEST_MAX_NUMBER = 64
_DAMAGED = ('it is damaged or not a static pod manifest: look at it, then put back a good copy (a backup, the '
            'parked copy) or write it again (kubeadm init phase etcd local)')


class ManifestError(Exception):
    """A manifest that cannot be read or edited safely; the message names the file and what is wrong."""


class ManifestLimitError(ManifestError):
    """A manifest beyond what any real one is (size, nesting, nodes with aliases expanded, a number's length)."""


class _Bound(Exception):
    """Raised inside the loader; load_yaml turns it into a ManifestLimitError that names the file."""


if HAS_YAML:
    class _BoundedLoader(yaml.SafeLoader):
        """PyYAML's SafeLoader that counts every event before the composer sees it: nesting and nodes, an alias
        counted as the nodes and the height of what it names; recursive aliases refused."""

        def __init__(self, stream):
            yaml.SafeLoader.__init__(self, stream)
            self._open = []       # per open collection: [anchor, nodes before it, height of its highest child]
            self._anchors = {}    # anchor -> (nodes, height) of the node it names, aliases expanded
            self._nodes = 0

        def get_event(self):
            event = yaml.SafeLoader.get_event(self)
            self._count(event)
            return event

        def _count(self, event):
            if isinstance(event, yaml.DocumentStartEvent):
                self._anchors = {}
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                self._add(event, 1, 1)
                self._open.append([event.anchor, self._nodes - 1, 0])
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, before, highest = self._open.pop()
                height = highest + 1
                if self._open:
                    self._open[-1][2] = max(self._open[-1][2], height)
                if anchor is not None:
                    self._anchors[anchor] = (self._nodes - before, height)
            elif isinstance(event, yaml.ScalarEvent):
                self._add(event, 1, 1)
                if self._open:
                    self._open[-1][2] = max(self._open[-1][2], 1)
                if event.anchor is not None:
                    self._anchors[event.anchor] = (1, 1)
            elif isinstance(event, yaml.AliasEvent):
                if any(entry[0] == event.anchor for entry in self._open):
                    raise _Bound('the alias *%s at %s is inside the node it names (a recursive structure)'
                                 % (event.anchor, _where(event)))
                if event.anchor not in self._anchors:
                    raise _Bound('the alias *%s at %s names no anchor before it' % (event.anchor, _where(event)))
                nodes, height = self._anchors[event.anchor]
                self._add(event, nodes, height)
                if self._open:
                    self._open[-1][2] = max(self._open[-1][2], height)

        def _add(self, event, nodes, height):
            self._nodes += nodes
            if self._nodes > MANIFEST_MAX_NODES:
                raise _Bound('it has more than %d YAML nodes (aliases counted as the copies they stand for) at %s'
                             % (MANIFEST_MAX_NODES, _where(event)))
            if len(self._open) + height > MANIFEST_MAX_DEPTH:
                raise _Bound('it nests more than %d levels deep (aliases expanded) at %s'
                             % (MANIFEST_MAX_DEPTH, _where(event)))

        def _number(self, node, construct):
            if isinstance(node, yaml.ScalarNode) and len(node.value) > MANIFEST_MAX_NUMBER:
                raise _Bound('it has a number of %d characters (at most %d are read) at %s'
                             % (len(node.value), MANIFEST_MAX_NUMBER, _where(node)))
            try:
                return construct(self, node)
            except (ValueError, OverflowError) as exc:  # '!!int x', '!!float .', a timestamp in month 13
                raise yaml.constructor.ConstructorError(None, None, 'cannot read %r: %s' % (node.value, exc),
                                                        node.start_mark)

        def construct_yaml_int(self, node):
            return self._number(node, yaml.SafeLoader.construct_yaml_int)

        def construct_yaml_float(self, node):
            return self._number(node, yaml.SafeLoader.construct_yaml_float)

        def construct_yaml_timestamp(self, node):
            return self._number(node, yaml.SafeLoader.construct_yaml_timestamp)

    _BoundedLoader.add_constructor('tag:yaml.org,2002:int', _BoundedLoader.construct_yaml_int)
    _BoundedLoader.add_constructor('tag:yaml.org,2002:float', _BoundedLoader.construct_yaml_float)
    _BoundedLoader.add_constructor('tag:yaml.org,2002:timestamp', _BoundedLoader.construct_yaml_timestamp)


def _where(thing):
    mark = getattr(thing, 'start_mark', None)
    return 'line %d, column %d' % (mark.line + 1, mark.column + 1) if mark is not None else 'the end'


def load_yaml(text, path='<manifest>', compose=False):
    """The one YAML document in text (its node graph when compose), read within the bounds above.

    ManifestLimitError beyond them, ManifestError when it is not YAML; both name path and what to do."""
    if not HAS_YAML:
        raise ManifestError('PyYAML is required to read %s' % path)
    if len(text) > MANIFEST_MAX_BYTES:
        raise ManifestLimitError('%s has %d characters, more than the %d a static pod manifest may have: %s'
                                 % (path, len(text), MANIFEST_MAX_BYTES, _DAMAGED))
    loader = None
    try:
        loader = _BoundedLoader(text)
        return loader.get_single_node() if compose else loader.get_single_data()
    except _Bound as exc:
        raise ManifestLimitError('%s is beyond what a static pod manifest can be: %s; %s' % (path, exc, _DAMAGED))
    except yaml.YAMLError as exc:
        raise ManifestError('%s is not valid YAML; %s. PyYAML says: %s' % (path, _DAMAGED, exc))
    finally:
        if loader is not None:
            loader.dispose()


def read_manifest_bytes(path, limit=MANIFEST_MAX_BYTES):
    """The bytes of a manifest file, at most limit of them (ManifestLimitError above: from its size before
    reading, else once limit + 1 were read); a fifo, a device or a directory is refused before reading."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        raise ManifestError('cannot read %s: %s' % (path, exc.strerror or exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ManifestError('%s is not a regular file (a directory, fifo or device?): a manifest is a file; '
                                'look at it by hand' % path)
        if info.st_size > limit:
            raise ManifestLimitError('%s is %d bytes, more than the %d a static pod manifest may have: %s'
                                     % (path, info.st_size, limit, _DAMAGED))
        parts = []
        total = 0
        while total <= limit:
            part = os.read(fd, min(65536, limit + 1 - total))
            if not part:
                break
            parts.append(part)
            total += len(part)
        if total > limit:
            raise ManifestLimitError('%s grew beyond %d bytes while it was read: %s' % (path, limit, _DAMAGED))
        return b''.join(parts)
    except OSError as exc:
        raise ManifestError('cannot read %s: %s' % (path, exc.strerror or exc))
    finally:
        os.close(fd)


def normalize_flag_name(name):
    """``--data-dir`` / ``-data-dir`` / ``data-dir`` -> ``data-dir``; refuses what is not a flag name."""
    stripped = str(name).lstrip('-')
    if not FLAG_NAME_RE.match(stripped) or len(str(name)) - len(stripped) > 2:
        raise ManifestError("%r is not a flag name: use the name etcd documents, e.g. 'data-dir' or '--data-dir'" % (name,))
    return stripped


def flag_value_text(value):
    """The text of a flag value as it goes after ``=``; ``True`` means a bare boolean flag (returns None)."""
    if value is True:
        return None
    if value is False:
        return 'false'
    if value is None or isinstance(value, (list, dict, tuple, set)):
        raise ManifestError("flag value %r is not a string, number or boolean (to remove a flag, use remove_flags)" % (value,))
    text = str(value)
    if '\n' in text or '\r' in text:
        raise ManifestError("flag value %r spans several lines: a command-line flag value cannot" % (text,))
    return text


def flag_item(name, value, dashes='--'):
    """The command list item for a flag: ``--name=value``, or ``--name`` for ``True``."""
    text = flag_value_text(value)
    return dashes + name if text is None else '%s%s=%s' % (dashes, name, text)


def _parse_flags(items, start):
    """Flags in ``items[start:]`` as dicts: name, value (True for a bare flag), index, value_index, dashes."""
    found = []
    i = start
    while i < len(items):
        item = items[i]
        match = _FLAG_ITEM_RE.match(item) if isinstance(item, str) else None
        if not match:
            i += 1
            continue
        dashes, name, value = match.group(1), match.group(2), match.group(3)
        flag = {'name': name, 'value': value, 'index': i, 'value_index': None, 'dashes': dashes}
        if value is None:
            following = items[i + 1] if i + 1 < len(items) else None
            if isinstance(following, str) and following and not following.startswith('-'):
                flag['value'] = following
                flag['value_index'] = i + 1
                i += 1
            else:
                flag['value'] = True
        found.append(flag)
        i += 1
    return found


def _is_true(value):
    return value is True or (isinstance(value, str) and value.lower() == 'true')


def split_image(image):
    """``registry:5000/etcd:3.5.16-0@sha256:...`` -> (``registry:5000/etcd``, ``3.5.16-0``, ``sha256:...``)."""
    digest = None
    if '@' in image:
        image, digest = image.split('@', 1)
    tag = None
    last = image.rsplit('/', 1)[-1]
    if ':' in last:
        image, tag = image.rsplit(':', 1)
    return image, tag, digest


def etcd_version_of_tag(tag):
    """kubeadm's image tags carry a build suffix: ``3.5.16-0`` -> ``3.5.16``; ``v3.6.0`` -> ``3.6.0``."""
    if not tag:
        return None
    match = re.match(r'^v?(\d+\.\d+\.\d+)', tag)
    return match.group(1) if match else None


def _mapping_value(node, key):
    """The value node of ``key`` in a composed mapping node (the last one, as safe_load would take)."""
    found = None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                found = value_node
    return found


class _ListItem(object):
    """One item of a block-style list as it sits in the text: where its line and its scalar start and end."""

    def __init__(self, text, node, description):
        if not isinstance(node, yaml.ScalarNode) or node.style not in (None, "'", '"'):
            raise ManifestError('%s: an item is a block scalar, a nested list or a mapping; '
                                'the flag editor edits one-line items only' % description)
        start, end = node.start_mark.index, node.end_mark.index
        if node.start_mark.line != node.end_mark.line:
            raise ManifestError('%s: item %r spans several lines (line %d); the flag editor edits one-line items only'
                                % (description, node.value, node.start_mark.line + 1))
        self.line_start = text.rfind('\n', 0, start) + 1
        newline = text.find('\n', end)
        self.content_end = len(text) if newline < 0 else newline
        if self.content_end > self.line_start and text[self.content_end - 1] == '\r':
            self.content_end -= 1
        self.line_end = len(text) if newline < 0 else newline + 1
        self.eol = text[self.content_end:self.line_end] or '\n'
        self.prefix = text[self.line_start:start]
        if not _ITEM_PREFIX_RE.match(self.prefix) or not _ITEM_SUFFIX_RE.match(text[end:self.content_end]):
            raise ManifestError('%s: line %d holds more than one list item (%r); the flag editor edits '
                                'lists with one "- item" per line only' % (description, node.start_mark.line + 1,
                                                                           text[self.line_start:self.content_end]))
        self.start = start
        self.end = end
        self.style = node.style
        self.value = node.value


def _render_scalar(value, style=None):
    """A one-line YAML scalar for a list item: plain when that reads back unchanged, else quoted."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None:
        try:
            if load_yaml('- ' + value) == [value]:
                return value
        except ManifestError:
            pass
    return json.dumps(value)


class StaticPodManifest(object):
    """A static pod manifest and one of its containers."""

    def __init__(self, text, path='<manifest>', container=None):
        self.text = text
        self.path = path
        self.document = load_yaml(text, path)
        document = self.document
        if not isinstance(document, dict):
            raise ManifestError('%s is not a Kubernetes object (it holds %s, not a mapping)'
                                % (path, 'nothing' if document is None else type(document).__name__))
        if document.get('kind') != 'Pod':
            raise ManifestError('%s is not a Pod manifest (kind: %s); a static pod manifest has kind: Pod'
                                % (path, document.get('kind')))
        spec = document.get('spec')
        containers = spec.get('containers') if isinstance(spec, dict) else None
        if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
            raise ManifestError('%s has no spec.containers list' % path)
        names = [c.get('name') for c in containers]
        if container is None:
            self.container_index = 0
        elif container in names:
            self.container_index = names.index(container)
        else:
            raise ManifestError('%s has no container named %r (containers: %s)'
                                % (path, container, ', '.join(str(n) for n in names)))
        self.container = containers[self.container_index]
        self.container_name = self.container.get('name')
        for key in ('command', 'args'):
            value = self.container.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ManifestError('%s: container %s has a %s that is not a list of strings'
                                    % (path, self.container_name, key))

    @classmethod
    def from_file(cls, path, container=None):
        data = read_manifest_bytes(path)
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise ManifestError('%s is not UTF-8 text: %s' % (path, exc))
        return cls(text, path=path, container=container)

    # Reading

    @property
    def metadata(self):
        value = self.document.get('metadata')
        return value if isinstance(value, dict) else {}

    @property
    def pod_name(self):
        """metadata.name; kubelet names the running pod ``<pod_name>-<node name>``."""
        value = self.metadata.get('name')
        return value if isinstance(value, str) else None

    @property
    def namespace(self):
        value = self.metadata.get('namespace')
        return value if isinstance(value, str) and value else 'default'

    @property
    def command(self):
        return list(self.container.get('command') or [])

    @property
    def args(self):
        return list(self.container.get('args') or [])

    @property
    def argv(self):
        """What the container runs: command followed by args."""
        return self.command + self.args

    @property
    def program(self):
        """The executable the container runs (command[0]); None when the image's entrypoint is used."""
        command = self.command
        return command[0] if command else None

    def _flag_lists(self):
        """(key, start) of the lists that carry flags: command after the program, then args."""
        lists = []
        if self.command:
            lists.append(('command', 1))
        if self.args:
            lists.append(('args', 0))
        return lists

    def _occurrences(self):
        found = []
        for key, start in self._flag_lists():
            for flag in _parse_flags(self.container.get(key), start):
                flag['list'] = key
                found.append(flag)
        return found

    @property
    def flags(self):
        """Flag name -> value as etcd reads them (the last occurrence wins; True for a bare flag)."""
        result = {}
        for flag in self._occurrences():
            result[flag['name']] = flag['value']
        return result

    def get_flag(self, name, default=None):
        return self.flags.get(normalize_flag_name(name), default)

    @property
    def image(self):
        """The container's image (None when it is not a string)."""
        value = self.container.get('image')
        return value if isinstance(value, str) else None

    @property
    def image_tag(self):
        return split_image(self.image)[1] if self.image else None

    @property
    def etcd_version(self):
        """The etcd version the image tag names (``registry.k8s.io/etcd:3.5.16-0`` -> ``3.5.16``), or None."""
        return etcd_version_of_tag(self.image_tag)

    @property
    def host_paths(self):
        """hostPath volumes: name -> {'path': ..., 'type': ...}."""
        spec = self.document.get('spec') or {}
        volumes = spec.get('volumes') if isinstance(spec, dict) else None
        result = {}
        for volume in volumes if isinstance(volumes, list) else []:
            if not isinstance(volume, dict) or not isinstance(volume.get('hostPath'), dict):
                continue
            name, path = volume.get('name'), volume['hostPath'].get('path')
            if isinstance(name, str) and isinstance(path, str):
                result[name] = {'path': path, 'type': volume['hostPath'].get('type')}
        return result

    def host_path(self, container_path):
        """Where a path inside the container lives on the host (through its hostPath mounts), or None."""
        if not container_path:
            return None
        container_path = os.path.normpath(container_path)
        volumes = self.host_paths
        best = None
        mounts = self.container.get('volumeMounts')
        for mount in mounts if isinstance(mounts, list) else []:
            if not isinstance(mount, dict):
                continue
            name, mount_path = mount.get('name'), mount.get('mountPath')
            if not isinstance(name, str) or name not in volumes or not isinstance(mount_path, str) or not mount_path:
                continue
            mount_path = os.path.normpath(mount_path)
            if container_path == mount_path or container_path.startswith(mount_path.rstrip('/') + '/'):
                if best is None or len(mount_path) > len(best[0]):
                    best = (mount_path, volumes[name]['path'])
        if best is None or not best[1]:
            return None
        rest = container_path[len(best[0]):].lstrip('/')
        return os.path.join(best[1], rest) if rest else best[1]

    @property
    def data_dir(self):
        """--data-dir as the container sees it (None when the flag is not set)."""
        value = self.get_flag('data-dir')
        return value if isinstance(value, str) else None

    # Editing

    def _describe(self, key):
        return '%s: container %s, %s list' % (self.path, self.container_name, key)

    def _list_nodes(self, touched):
        """Composed nodes of the container's command and args lists that the edit touches: key -> SequenceNode."""
        root = load_yaml(self.text, self.path, compose=True)
        containers = _mapping_value(_mapping_value(root, 'spec'), 'containers')
        if not isinstance(containers, yaml.SequenceNode) or len(containers.value) <= self.container_index:
            raise ManifestError('%s: spec.containers is not a plain list; the flag editor cannot locate it' % self.path)
        container = containers.value[self.container_index]
        result = {}
        for key in touched:
            node = _mapping_value(container, key)
            if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(':null')):
                continue
            if not isinstance(node, yaml.SequenceNode):
                raise ManifestError('%s is not a list' % self._describe(key))
            if node.flow_style:
                raise ManifestError('%s is written in flow style ([a, b, ...]); the flag editor edits block lists '
                                    '(one "- item" per line, as kubeadm writes them) only: rewrite it as a block list '
                                    'or edit it by hand' % self._describe(key))
            result[key] = node
        return result

    def edit_flags(self, set_flags=None, remove_flags=None):
        """The manifest's text with flags set and removed; the same text when nothing changes.

        ``set_flags``: flag name -> value (True: a bare boolean flag; False: ``=false``; anything else: its text).
        ``remove_flags``: flag names to remove (every occurrence, with the value item of a two-item flag).
        """
        set_flags = dict((normalize_flag_name(k), v) for k, v in (set_flags or {}).items())
        remove = [normalize_flag_name(n) for n in (remove_flags or [])]
        both = sorted(set(set_flags) & set(remove))
        if both:
            raise ManifestError('flags both set and removed: %s; choose one' % ', '.join(both))
        for name, value in set_flags.items():
            flag_value_text(value)
        if not set_flags and not remove:
            return self.text
        program = self.program
        if program and os.path.basename(program) in _SHELLS:
            raise ManifestError('%s: container %s runs a shell (%s); flags inside a shell command string cannot '
                                'be edited safely: edit the manifest by hand' % (self.path, self.container_name, program))

        occurrences = self._occurrences()
        replace = {}      # (list, index) -> new item text
        drop = set()      # (list, index)
        additions = []    # new item texts, in the order given
        for name in remove:
            for flag in occurrences:
                if flag['name'] == name:
                    drop.add((flag['list'], flag['index']))
                    if flag['value_index'] is not None:
                        drop.add((flag['list'], flag['value_index']))
        for name, value in set_flags.items():
            mine = [f for f in occurrences if f['name'] == name]
            wanted = flag_value_text(value)
            if len(mine) > 1:
                raise ManifestError('%s: flag --%s appears %d times in container %s (%s); etcd reads the last one. '
                                    'Remove the duplicates by hand (or with remove_flags) before setting it'
                                    % (self.path, name, len(mine), self.container_name,
                                       ', '.join(repr(self.container[f['list']][f['index']]) for f in mine)))
            if not mine:
                additions.append((name, flag_item(name, value)))
                continue
            flag = mine[0]
            if wanted is None:
                if _is_true(flag['value']) and flag['value_index'] is None:
                    continue
                if flag['value_index'] is not None:
                    raise ManifestError('%s: flag --%s is written as two items (%r, %r) in container %s; setting it '
                                        'to a bare boolean would leave the second one behind: give it a value or '
                                        'remove it first' % (self.path, name, self.container[flag['list']][flag['index']],
                                                             flag['value'], self.container_name))
                replace[(flag['list'], flag['index'])] = flag['dashes'] + name
            elif flag['value_index'] is not None:
                if flag['value'] != wanted:
                    replace[(flag['list'], flag['value_index'])] = wanted
            elif flag['value'] is True or flag['value'] != wanted:
                replace[(flag['list'], flag['index'])] = '%s%s=%s' % (flag['dashes'], name, wanted)
        if not replace and not drop and not additions:
            return self.text
        return self._apply(replace, drop, additions)

    def _apply(self, replace, drop, additions):
        text = self.text
        target = 'args' if self.args else 'command'
        touched = set(key for key, _index in list(replace) + list(drop))
        if additions:
            touched.add(target)
        nodes = self._list_nodes(sorted(touched))
        if additions and target not in nodes:
            raise ManifestError('%s: container %s has no command or args list to add flags to; adding one would '
                                'replace the image entrypoint\'s arguments: edit the manifest by hand'
                                % (self.path, self.container_name))
        edits = []  # (start, end, order, replacement)
        expected_lists = {}
        for key, node in nodes.items():
            description = self._describe(key)
            items = [_ListItem(text, item, description) for item in node.value]
            values = list(self.container[key])
            if [item.value for item in items] != values:
                raise ManifestError('%s: the list in the text does not match the parsed document (anchors, tags or '
                                    'merge keys?); edit the manifest by hand' % description)
            before = dict((i, []) for i in range(len(items) + 1))
            if key == target and additions:
                start = 1 if key == 'command' else 0
                present = _parse_flags(values, start)
                names = [f['name'] for f in present]
                anchors = [f for f in present if (key, f['index']) not in drop]
                for name, item_text in additions:
                    slot = len(items)
                    if names and names == sorted(names):
                        later = [f['index'] for f in anchors if f['name'] > name]
                        if later:
                            slot = later[0]
                    before[slot].append(item_text)
            new_values = []
            for index, item in enumerate(items):
                for added in before[index]:
                    new_values.append(added)
                    edits.append((item.line_start, item.line_start, len(edits),
                                  item.prefix + _render_scalar(added) + item.eol))
                if (key, index) in drop:
                    start, end = item.line_start, item.line_end
                    if end == len(text) and not text[item.content_end:end]:
                        # the last line of a file without a final newline: take the newline before it instead
                        start = max(0, item.line_start - 1)
                        if start > 0 and text[start - 1] == '\r':
                            start -= 1
                    edits.append((start, end, len(edits), ''))
                    continue
                if (key, index) in replace:
                    value = replace[(key, index)]
                    new_values.append(value)
                    if value != item.value:
                        edits.append((item.start, item.end, len(edits), _render_scalar(value, item.style)))
                    continue
                new_values.append(item.value)
            last = items[-1]
            for added in before[len(items)]:
                new_values.append(added)
                edits.append((last.content_end, last.content_end, len(edits),
                              last.eol + last.prefix + _render_scalar(added)))
            if new_values != values:
                expected_lists[key] = new_values
            if key in expected_lists and not expected_lists[key]:
                raise ManifestError('%s would become empty; edit the manifest by hand' % description)

        out = []
        cursor = 0
        for start, end, _order, replacement in sorted(edits):
            out.append(text[cursor:start])
            out.append(replacement)
            cursor = max(cursor, end)
        out.append(text[cursor:])
        new_text = ''.join(out)

        expected = copy.deepcopy(self.document)
        container = expected['spec']['containers'][self.container_index]
        for key, values in expected_lists.items():
            container[key] = values
        try:
            edited = load_yaml(new_text, self.path)
        except ManifestError as exc:
            edited = exc
        if edited != expected:
            raise ManifestError('%s: editing the flags of container %s as lines would change more than the flags '
                                '(%s); nothing was changed: edit the manifest by hand'
                                % (self.path, self.container_name,
                                   edited if isinstance(edited, Exception) else 'the document reads differently'))
        return new_text


# Moving and writing manifest files


def is_inside(path, directory):
    """True when path is directory or lies under it (symlinks resolved)."""
    path = os.path.realpath(path)
    directory = os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def read_bytes(path):
    """The content of a file."""
    with open(path, 'rb') as handle:
        return handle.read()


def fsync_dir(directory):
    """Make a rename or unlink in directory durable (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ManifestFiles(object):
    """File operations that never put a file the kubelet would run into the manifests directory.

    ``module``: the AnsibleModule (its atomic_move keeps the replaced file's SELinux context; warn()).
    """

    def __init__(self, module):
        self.module = module

    def ensure_dir(self, directory):
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
            os.chmod(directory, 0o700)

    def write(self, dest, data, like):
        """Write data to dest atomically: a dot-named temp file in dest's directory, renamed over dest.

        The kubelet ignores dot files, so the temp file is never run, not even when the task dies half-way.
        ``like``: the os.stat_result whose mode and owner the new file gets.
        """
        directory = os.path.dirname(dest)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(dest), suffix='.tmp', dir=directory)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, like.st_mode & 0o7777)
            try:
                os.chown(tmp, like.st_uid, like.st_gid)
            except OSError as exc:
                if exc.errno != errno.EPERM:
                    raise
                self.module.warn('could not give %s the owner %d:%d of the original (not root?)' % (dest, like.st_uid, like.st_gid))
            if os.path.exists(dest):
                # In the same directory this is a rename; atomic_move also keeps dest's SELinux context.
                self.module.atomic_move(tmp, dest, unsafe_writes=False, keep_dest_attrs=True)
            else:
                os.rename(tmp, dest)
            fsync_dir(directory)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def move(self, src, dest):
        """Move a file with its content, mode and owner; a rename when both are on one file system."""
        try:
            os.rename(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            stat = os.stat(src)
            self.write(dest, read_bytes(src), stat)
            os.utime(dest, (stat.st_atime, stat.st_mtime))
            os.unlink(src)
            fsync_dir(os.path.dirname(src))
        else:
            fsync_dir(os.path.dirname(dest))
            fsync_dir(os.path.dirname(src))

    def backup(self, parking_dir, file_name, data, like):
        stamp = time.strftime('%Y%m%dT%H%M%S', time.localtime()) + '.%06d' % (time.time() % 1 * 1e6)
        dest = os.path.join(parking_dir, '%s.%s.bak' % (file_name, stamp))
        self.write(dest, data, like)
        return dest


# Waiting for the pod of a manifest

CRICTL_RUNTIME = 'crictl'
PROCESS_TABLE = 'process table'
CONTAINER_RUNNING = 'CONTAINER_RUNNING'
# Flags that tell one etcd from another one on the same host (a temporary restore etcd, say).
IDENTIFYING_FLAGS = ('name', 'data-dir')


class RuntimeUnavailable(Exception):
    """crictl is missing or did not answer; the process table is asked instead."""


def _read_proc_file(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return None


class PodWatcher(object):
    """Running containers and processes of a static pod's container, as the runtime and /proc tell.

    ``manifests``: the manifest(s) whose container to look for (the first one names it; a process matches
    when it matches any of them, so a wait for "stopped" after an edit also sees the old command line).
    ``run_command``: ``AnsibleModule.run_command``; ``crictl``: its path, or None when it is not installed.
    """

    def __init__(self, manifests, run_command, crictl=None, proc_root='/proc'):
        self.manifest = manifests[0]
        self.manifests = manifests
        self.run_command = run_command
        self.crictl = crictl
        self.proc_root = proc_root
        self.runtime_error = None if crictl else 'crictl is not installed'

    @property
    def runtime(self):
        return PROCESS_TABLE if self.runtime_error else CRICTL_RUNTIME

    def containers(self):
        """Running containers of the pod per ``crictl ps -o json``: dicts id, created_ns, restarts, pod."""
        name = self.manifest.container_name
        pod_prefix = '%s-' % (self.manifest.pod_name or name)
        rc, out, err = self.run_command([self.crictl, 'ps', '-o', 'json', '--name', '^%s$' % name])
        if rc != 0:
            raise RuntimeUnavailable('crictl ps failed (exit %s): %s' % (rc, (err or out).strip()))
        try:
            listed = json.loads(out).get('containers') or []
        except (ValueError, AttributeError) as exc:
            raise RuntimeUnavailable('crictl ps -o json printed something that is not its JSON: %s' % exc)
        found = []
        for container in listed:
            if not isinstance(container, dict) or container.get('state') != CONTAINER_RUNNING:
                continue
            labels = container.get('labels') or {}
            metadata = container.get('metadata') or {}
            if labels.get('io.kubernetes.container.name', metadata.get('name')) != name:
                continue
            pod = labels.get('io.kubernetes.pod.name')
            if pod is not None and not pod.startswith(pod_prefix):
                continue
            namespace = labels.get('io.kubernetes.pod.namespace')
            if namespace is not None and namespace != self.manifest.namespace:
                continue
            annotations = container.get('annotations') or {}
            restarts = annotations.get('io.kubernetes.container.restartCount', metadata.get('attempt', 0))
            try:
                created_ns = int(container.get('createdAt'))
            except (TypeError, ValueError):
                created_ns = None
            try:
                restarts = int(restarts)
            except (TypeError, ValueError):
                restarts = None
            found.append({'id': container.get('id'), 'created_ns': created_ns, 'restarts': restarts, 'pod': pod})
        return found

    def _identities(self):
        """(program basename, {flag: accepted values}) per manifest."""
        result = []
        for manifest in self.manifests:
            if not manifest.program:
                continue
            wanted = {}
            for flag in IDENTIFYING_FLAGS:
                value = manifest.flags.get(flag)
                if isinstance(value, str):
                    # Where the kubelet translates paths (the lab), the process shows the host-side path.
                    wanted[flag] = set(v for v in (value, manifest.host_path(value) if value.startswith('/') else None) if v)
            result.append((os.path.basename(manifest.program), wanted))
        return result

    @property
    def can_read_processes(self):
        return bool(self._identities())

    def processes(self):
        """Live processes (not zombies) that run the container's command: dicts pid, started (epoch seconds)."""
        identities = self._identities()
        uptime = _read_proc_file(os.path.join(self.proc_root, 'uptime'))
        uptime = float(uptime.split()[0]) if uptime else None
        ticks = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
        now = time.time()
        found = []
        try:
            entries = os.listdir(self.proc_root)
        except OSError:
            return found
        own = os.getpid()
        for entry in entries:
            if not entry.isdigit() or int(entry) == own:
                continue
            cmdline = _read_proc_file(os.path.join(self.proc_root, entry, 'cmdline'))
            if not cmdline:
                continue
            argv = [a.decode('utf-8', 'replace') for a in cmdline.rstrip(b'\0').split(b'\0')]
            if not any(self._matches(argv, program, wanted) for program, wanted in identities):
                continue
            stat = _read_proc_file(os.path.join(self.proc_root, entry, 'stat'))
            if not stat:
                continue
            fields = stat.rsplit(b')', 1)[-1].split()
            if not fields or fields[0] in (b'Z', b'X'):
                continue
            started = None
            if uptime is not None and len(fields) > 19:
                started = now - (uptime - int(fields[19]) / float(ticks))
            found.append({'pid': int(entry), 'started': started})
        return sorted(found, key=lambda p: p['pid'])

    @staticmethod
    def _matches(argv, program, wanted):
        if not argv or os.path.basename(argv[0]) != program:
            return False
        flags = dict((f['name'], f['value']) for f in _parse_flags(argv, 1))
        return all(flags.get(flag) in values for flag, values in wanted.items())

    def observe(self):
        """One look: {'runtime', 'containers', 'processes'}; falls back to the process table for good."""
        containers = []
        if not self.runtime_error:
            try:
                containers = self.containers()
            except RuntimeUnavailable as exc:
                self.runtime_error = str(exc)
        if self.runtime_error and not self.can_read_processes:
            raise RuntimeUnavailable('%s, and container %s of %s has no command to look for in the process table'
                                     % (self.runtime_error, self.manifest.container_name, self.manifest.path))
        return {'runtime': self.runtime, 'containers': containers,
                'processes': self.processes() if self.can_read_processes else []}


def wait_for_pod(watcher, state, timeout, settle=3.0, since=None, interval=1.0, clock=None, sleep=None):
    """Wait until the pod's container is ``stopped`` or ``running``; returns (ok, details).

    stopped: crictl lists no running container of the pod (when crictl answers) and no process runs its command.
    running: a running container (crictl) or, without crictl, a process; created after ``since`` (epoch seconds,
    when the manifest was just written) and still the same container/process ``settle`` seconds later.
    details: runtime, container_ids, pids, waited, restarts (running only: the highest restart count crictl
    reported while waiting, or how often the process was replaced), plus 'reason' when not ok.
    """
    clock = clock or time.time
    sleep = sleep or time.sleep
    started = clock()
    deadline = started + timeout
    candidate = None
    candidate_since = None
    replaced = 0
    most_restarts = None
    while True:
        seen = watcher.observe()
        now = clock()
        running = seen['containers']
        pids = seen['processes']
        if state == 'stopped':
            if not running and not pids:
                return True, _details(seen, [], [], now - started)
            reason = 'still running: %s' % ', '.join(
                ['container %s' % (c['id'] or '?')[:13] for c in running] + ['pid %d' % p['pid'] for p in pids])
            details = _details(seen, running, pids, now - started)
        else:
            if seen['runtime'] == CRICTL_RUNTIME:
                fresh = [c for c in running if since is None or c['created_ns'] is None or c['created_ns'] >= since * 1e9]
                current = fresh[0]['id'] if fresh else None
            else:
                fresh = [p for p in pids if since is None or p['started'] is None or p['started'] >= since - 0.05]
                current = fresh[0]['pid'] if fresh else None
            if current is None:
                if candidate is not None:
                    replaced += 1
                candidate = None
                reason = ('no running container or process' if not running and not pids else
                          'only the container/process that ran before the manifest changed is running')
            elif current != candidate:
                if candidate is not None:
                    replaced += 1
                candidate, candidate_since = current, now
                reason = 'just started'
            else:
                reason = 'up for %.1fs of the %ss settle time' % (now - candidate_since, settle)
            details = _details(seen, fresh if seen['runtime'] == CRICTL_RUNTIME else [],
                               fresh if seen['runtime'] == PROCESS_TABLE else pids, now - started)
            if seen['runtime'] == CRICTL_RUNTIME:
                counts = [c['restarts'] for c in fresh if c['restarts'] is not None]
                if counts:
                    most_restarts = max(counts + [most_restarts or 0])
                details['restarts'] = most_restarts
            else:
                details['restarts'] = replaced
            if candidate is not None and now - candidate_since >= settle:
                return True, details
        if now >= deadline:
            details['reason'] = reason
            if state == 'running' and replaced:
                details['reason'] += ' (it was replaced %d times while waiting: a crash loop?)' % replaced
            return False, details
        sleep(max(0.0, min(interval, deadline - now)))


def _details(seen, containers, processes, waited):
    return {'runtime': seen['runtime'],
            'container_ids': [c['id'] for c in containers],
            'pids': [p['pid'] for p in processes],
            'waited': round(waited, 1)}
