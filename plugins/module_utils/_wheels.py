# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: the collection's Python packages installed on a host from wheels, with nothing but the host's python3.

A kubeadm master has python3 and often neither pip nor venv. A wheel is a zip archive whose files go, as they
are, into a directory on ``sys.path`` (``<name>.data/purelib`` and ``platlib`` too); that is all an install of
these packages needs. The controller brings the wheels (built for this host's Python, architecture and glibc),
this module checks that each one fits the host, unpacks them with bounds into a new directory, imports the
collection's packages from it, and switches ``<dest>/current`` to it by one rename; ``<dest>/bin/python3`` runs the
host's python3 with that directory first on ``sys.path``, and is the interpreter the collection's modules then
run with. The system Python is never touched.

Only the standard library is used here: this runs before anything else is installed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile

from ansible_collections.etcdops.etcd.plugins.module_utils._disk import shortfall

MIN_PYTHON = (3, 9)
MAX_MEMBERS = 50000                      # botocore, the largest, has about 4,000 files
MAX_TOTAL_BYTES = 1024 * 1024 * 1024     # unpacked, all wheels together (about 150 MB in practice)
MARGIN_BYTES = 32 * 1024 * 1024
# The packages the modules import: every one must import from the new directory before it is switched to.
DEFAULT_IMPORTS = ('pyetcd', 'grpc', 'google.protobuf', 'boto3', 'zstandard', 'pyrage', 'yaml', 'cryptography',
                   'google_crc32c')
_WHEEL = re.compile(r'^(?P<name>[^-]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?-(?P<python>[^-]+)-(?P<abi>[^-]+)-'
                    r'(?P<platform>[^-]+)\.whl$')
_MANYLINUX = re.compile(r'^manylinux_(\d+)_(\d+)_(.+)$')
_LEGACY = {'manylinux1': (2, 5), 'manylinux2010': (2, 12), 'manylinux2014': (2, 17)}
_STAGING = '.staging-'


class WheelError(Exception):
    """The packages cannot be installed; the message says what to provide."""

    def __init__(self, msg, kind='other'):
        super(WheelError, self).__init__(msg)
        self.msg = msg
        self.kind = kind


class Host(object):
    """What a wheel must fit: the Python version (3, 11), the machine ('x86_64') and glibc (2, 36) or None."""

    def __init__(self, python, machine, glibc):
        self.python = tuple(python[:2])
        self.machine = machine
        self.glibc = tuple(glibc) if glibc else None

    @classmethod
    def this(cls):
        import platform  # pylint: disable=import-outside-toplevel
        libc, version = platform.libc_ver()
        glibc = None
        if libc == 'glibc' and re.match(r'^\d+\.\d+', version or ''):
            glibc = tuple(int(part) for part in version.split('.')[:2])
        return cls(sys.version_info[:2], platform.machine(), glibc)

    def describe(self):
        return 'Python %d.%d on %s%s' % (self.python[0], self.python[1], self.machine,
                                         ' with glibc %d.%d' % self.glibc if self.glibc else ' without glibc')


def check_python(host):
    if host.python < MIN_PYTHON:
        raise WheelError('this host\'s python3 is %d.%d; the collection needs Python %d.%d or newer: install a newer '
                         'python3 (the distribution\'s package) and point ansible_python_interpreter at it'
                         % (host.python + MIN_PYTHON), kind='python')


def parse_wheel_name(filename):
    """dict(name, version, python, abi, platform) from a wheel's file name; WheelError when it is not one."""
    match = _WHEEL.match(filename)
    if not match:
        raise WheelError('%s is not a wheel file name (name-version-python-abi-platform.whl)' % filename,
                         kind='bad_input')
    out = match.groupdict()
    out['project'] = re.sub(r'[-_.]+', '_', out['name']).lower()
    return out


def _python_fits(tag, abi, host):
    cp = 'cp%d%d' % host.python
    for python in tag.split('.'):
        if python in ('py3', 'py%d%d' % host.python) or (python == cp and abi in (cp, 'none', 'abi3')):
            return True
        match = re.match(r'^cp3(\d+)$', python)
        if match and abi == 'abi3' and int(match.group(1)) <= host.python[1]:
            return True
    return False


def _platform_fits(tag, host):
    for platform in tag.split('.'):
        if platform == 'any':
            return True
        arch = None
        needed = None
        match = _MANYLINUX.match(platform)
        if match:
            needed, arch = (int(match.group(1)), int(match.group(2))), match.group(3)
        else:
            for legacy, version in _LEGACY.items():
                if platform.startswith(legacy + '_'):
                    needed, arch = version, platform[len(legacy) + 1:]
        if arch == host.machine and host.glibc and host.glibc >= needed:
            return True
    return False


def fits(info, host):
    """True when the wheel (parse_wheel_name) can be installed for host."""
    abi = info['abi']
    if abi not in ('none', 'abi3') and abi != 'cp%d%d' % host.python:
        return False
    return _python_fits(info['python'], abi, host) and _platform_fits(info['platform'], host)


def choose_wheels(directory, host):
    """The wheel files in directory that fit host, one per project: [(path, info)] sorted by project. WheelError
    naming what does not fit (a wheel for another Python or architecture) or is there twice."""
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith('.whl'))
    except OSError as exc:
        raise WheelError('cannot read the wheelhouse %s: %s' % (directory, exc.strerror or exc), kind='bad_input')
    if not names:
        raise WheelError('the wheelhouse %s holds no wheel: build it on the controller for %s (see the '
                         'prerequisites runbook)' % (directory, host.describe()), kind='bad_input')
    chosen = {}
    misfits = []
    for name in names:
        info = parse_wheel_name(name)
        if not fits(info, host):
            misfits.append(name)
            continue
        if info['project'] in chosen:
            raise WheelError('the wheelhouse %s holds two wheels of %s (%s, %s) for %s: keep one' % (
                directory, info['name'], os.path.basename(chosen[info['project']][0]), name, host.describe()),
                kind='bad_input')
        chosen[info['project']] = (os.path.join(directory, name), info)
    if misfits:
        raise WheelError('%d wheels in %s do not fit this host (%s): %s; build the wheelhouse for this host\'s '
                         'Python, architecture and glibc (an architecture without wheels for these packages '
                         'cannot run the collection)'
                         % (len(misfits), directory, host.describe(), ', '.join(misfits[:5])), kind='wheel')
    return [chosen[project] for project in sorted(chosen)]


def fingerprint(wheels):
    """sha256 over the wheels' names and contents: the name of the directory they are installed into."""
    digest = hashlib.sha256()
    for path, dummy in wheels:
        digest.update(os.path.basename(path).encode('utf-8') + b'\0')
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b''):
                digest.update(block)
    return digest.hexdigest()[:16]


def _member_target(name, data_prefix):
    """Where a wheel member goes in the tree (relative), or None for what is not installed (scripts, headers)."""
    if name.startswith(data_prefix):
        rest = name[len(data_prefix):]
        for kind in ('purelib/', 'platlib/'):
            if rest.startswith(kind):
                return rest[len(kind):] or None
        return None
    return name


def plan_members(wheels):
    """[(wheel path, [(ZipInfo, relative target)])] and the total size, every name checked; WheelError on a
    name that leaves the tree, a link, too many members or too many bytes (before anything is written)."""
    plans = []
    total = 0
    count = 0
    for path, info in wheels:
        data_prefix = '%s-%s.data/' % (info['name'], info['version'])
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (zipfile.BadZipfile, IOError, OSError, ValueError) as exc:
            raise WheelError('%s is not a readable wheel: %s' % (path, exc), kind='bad_input')
        plan = []
        for member in members:
            count += 1
            if count > MAX_MEMBERS:
                raise WheelError('the wheels hold more than %d files: not the collection\'s packages' % MAX_MEMBERS,
                                 kind='bad_input')
            name = member.filename
            if name.endswith('/'):
                continue
            parts = name.split('/')
            if name.startswith('/') or '\\' in name or any(part in ('', '.', '..') for part in parts):
                raise WheelError('%s has a member named %r, outside the install directory' % (path, name),
                                 kind='bad_input')
            kind = stat.S_IFMT(member.external_attr >> 16)
            if kind and kind != stat.S_IFREG:  # a link or a device; no type bits at all is a plain file
                raise WheelError('%s: %s is not a regular file' % (path, name), kind='bad_input')
            target = _member_target(name, data_prefix)
            if target is None:
                continue
            total += member.file_size
            if total > MAX_TOTAL_BYTES:
                raise WheelError('the wheels unpack to more than %d bytes: not the collection\'s packages'
                                 % MAX_TOTAL_BYTES, kind='bad_input')
            plan.append((member, target))
        plans.append((path, plan))
    return plans, total


def need_space(dest, size):
    problem = shortfall(dest, size + MARGIN_BYTES, 'the collection\'s Python packages')
    if problem:
        raise WheelError(problem, kind='no_space')


def unpack(plans, into):
    """Write every planned member under into, each no larger than its directory entry says."""
    seen = set()
    for path, plan in plans:
        with zipfile.ZipFile(path) as archive:
            for member, target in plan:
                if target in seen:
                    continue  # the same file in two wheels (a namespace's __init__): the first one stays
                seen.add(target)
                full = os.path.join(into, *target.split('/'))
                parent = os.path.dirname(full)
                if not os.path.isdir(parent):
                    os.makedirs(parent, 0o755)
                left = member.file_size
                with archive.open(member) as source, open(full, 'wb') as handle:
                    while True:
                        block = source.read(min(1024 * 1024, left + 1))
                        if not block:
                            break
                        left -= len(block)
                        if left < 0:
                            raise WheelError('%s: %s is larger than its entry says' % (path, member.filename),
                                             kind='bad_input')
                        handle.write(block)
                os.chmod(full, 0o644)


def import_check(module, python, tree, imports):
    """None when python imports every module of imports with tree first on sys.path, else what failed.
    module: what runs commands (AnsibleModule.run_command's signature)."""
    code = 'import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n'
    try:
        rc, dummy, err = module.run_command([python, '-c', code] + list(imports), environ_update={'PYTHONPATH': tree})
    except (OSError, IOError) as exc:
        return 'cannot run %s: %s' % (python, exc)
    if rc != 0:
        lines = (err or '').strip().splitlines()
        return lines[-1] if lines else 'exit %d' % rc
    return None


def wrapper_text(python, current):
    return ('#!/bin/sh\n'
            '# The collection\'s Python packages (etcdops.etcd.python_wheels) in front of this host\'s python3.\n'
            'PYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH}\n'
            'export PYTHONPATH\n'
            'exec %s "$@"\n' % (current, python))


def make_staging(trees):
    if not os.path.isdir(trees):
        os.makedirs(trees, 0o755)
    return tempfile.mkdtemp(prefix=_STAGING, dir=trees)


def write_atomic(path, text, mode):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, temp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.rename(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def switch_link(link, target):
    """Point the symlink link at target by one rename (a new link beside it)."""
    temp = '%s.new-%d' % (link, os.getpid())
    if os.path.lexists(temp):
        os.unlink(temp)
    os.symlink(target, temp)
    os.rename(temp, link)


def remove_staging(staging):
    """Our own staging directory (unpacked wheels, never etcd data) goes when a run fails."""
    if staging and os.path.basename(staging).startswith(_STAGING):
        shutil.rmtree(staging, ignore_errors=True)
