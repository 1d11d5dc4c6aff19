# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fuzz targets' shared harness: one ``Target`` per parser of untrusted bytes, run by atheris (coverage-guided,
libFuzzer underneath) from ``tests/fuzz/run.py`` (``make fuzz``) and for a short while in ``make test``.

A target file ``tests/fuzz/fuzz_<name>.py`` defines ``TARGET = Target(name, one_input, seeds, allowed)``:

* ``one_input(data)`` feeds bytes to the parser the way the collection does (a file, a stream in chunks cut
  by the first bytes of data, ...). It returns normally, or raises one of ``allowed`` (the collection's own
  error types: BboltError, H2Error, StoreError...). Anything else escaping (IndexError, RecursionError,
  struct.error, MemoryError...) is a finding.
* ``seeds()`` yields valid inputs (a real snapshot, a recorded frame sequence, an archive the collection
  wrote) that mutations start from: random bytes alone rarely reach deep into a format.
* Bounded memory and linear time are enforced per input by libFuzzer: ``-rss_limit_mb`` (the whole process)
  and ``-timeout`` (seconds per input). Inputs are at most ``max_len`` bytes, so an input that takes seconds is
  super-linear work on a small input. Scaling tests of crafted families (a cycle of n pages, n overlapping
  headers...) live in the unit tests beside each parser.

A finding is written by libFuzzer as ``crash-<sha1>`` (or ``timeout-``/``oom-``) into the crashers directory of
the target, ``tests/fuzz/crashers/<name>/``; kept there once fixed, every file is replayed by
``tests/fuzz/test_fuzz.py`` as a regression test.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

HERE = os.path.dirname(os.path.abspath(__file__))


class Target(object):
    """One fuzz target: see the module docstring."""

    def __init__(self, name, one_input, seeds, allowed, max_len=65536, rss_limit_mb=1024, timeout=10):
        self.name = name
        self.one_input = one_input
        self.seeds = seeds
        self.allowed = tuple(allowed)
        self.max_len = max_len
        self.rss_limit_mb = rss_limit_mb
        self.timeout = timeout

    def __call__(self, data):
        try:
            self.one_input(bytes(data))
        except self.allowed:  # pylint: disable=catching-non-exception
            pass

    @property
    def corpus_dir(self):
        return os.path.join(HERE, 'corpus', self.name)

    @property
    def crashers_dir(self):
        return os.path.join(HERE, 'crashers', self.name)

    def regression_inputs(self):
        """The findings kept as regression inputs: [(file name, bytes)]."""
        directory = self.crashers_dir
        if not os.path.isdir(directory):
            return []
        out = []
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), 'rb') as handle:
                out.append((name, handle.read()))
        return out


def chunks_of(data, sizes):
    """data cut into chunks whose sizes cycle through sizes (each >= 1): a stream as a network hands it over."""
    out = []
    offset = 0
    index = 0
    while offset < len(data):
        size = max(1, sizes[index % len(sizes)])
        out.append(data[offset:offset + size])
        offset += size
        index += 1
    return out
