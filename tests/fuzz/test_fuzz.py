# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every fuzz target in the suite: its seeds and kept findings replayed (nothing but the collection's own errors
escapes), then a short atheris run (FUZZ_SECONDS_IN_SUITE, default 5 s a target; ``make fuzz`` runs longer)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.fuzz
NAMES = run.target_names()
SECONDS = int(os.environ.get('FUZZ_SECONDS_IN_SUITE', '5'))


def test_there_are_targets():
    assert NAMES, 'no tests/fuzz/fuzz_*.py target'


@pytest.mark.parametrize('name', NAMES)
def test_seeds_and_kept_findings_raise_only_the_collections_errors(name):
    target = run.load(name)
    seeds = list(target.seeds())
    assert seeds, 'target %s has no seed' % name
    for seed in seeds:
        target(seed)
    for dummy, data in target.regression_inputs():
        target(data)


@pytest.mark.parametrize('name', NAMES)
def test_a_short_fuzz_run_finds_nothing(name, tmp_path):
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'run.py'), '--seconds', str(SECONDS), name],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False,
                          timeout=SECONDS * 3 + 120)
    output = proc.stdout.decode('utf-8', 'replace')
    assert proc.returncode == 0, output[-6000:]
    assert '1 passed, 0 failed' in output, output[-6000:]
