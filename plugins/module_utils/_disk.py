# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: free space before writing, standard library only (python_wheels runs it on a bare host)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

MIB = 1024 * 1024


def free_bytes(directory):
    """Free bytes for us in directory, or in its nearest existing parent."""
    while not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    info = os.statvfs(directory)
    return info.f_bavail * info.f_frsize


def shortfall(directory, needed, what):
    """None when directory has needed bytes free, else the sentence to fail with (what: what needs them)."""
    free = free_bytes(directory)
    if free >= needed:
        return None
    return '%s has %d MiB free; %s need %d MiB: free some space or give another dest' % (
        directory, free // MIB, what, needed // MIB + 1)
