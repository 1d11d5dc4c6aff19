#!/usr/bin/env python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run fuzz targets with atheris: ``run.py [--seconds N] [--jobs 1] [NAME ...]`` (default: every target).

Each target runs in a process of its own (libFuzzer exits the process when its time is up): its corpus grows
in tests/fuzz/corpus/<name>/ (not committed: .gitignore), findings go to tests/fuzz/crashers/<name>/. The exit
status is non-zero when any target found something; the summary line says how many inputs each one ran.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import glob
import importlib.util
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def target_names():
    return sorted(os.path.basename(p)[len('fuzz_'):-3] for p in glob.glob(os.path.join(HERE, 'fuzz_*.py')))


def load(name):
    spec = importlib.util.spec_from_file_location('fuzz_' + name, os.path.join(HERE, 'fuzz_%s.py' % name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TARGET


def fuzz_one(name, seconds):
    """In this process: atheris over the target for seconds (does not return: libFuzzer exits)."""
    import atheris  # pylint: disable=import-outside-toplevel
    with atheris.instrument_imports(include=['ansible_collections.etcdops.etcd']):
        target = load(name)
    os.makedirs(target.corpus_dir, exist_ok=True)
    os.makedirs(target.crashers_dir, exist_ok=True)
    if not os.listdir(target.corpus_dir):
        for index, seed in enumerate(target.seeds()):
            with open(os.path.join(target.corpus_dir, 'seed-%03d' % index), 'wb') as handle:
                handle.write(seed[:target.max_len])
    args = [sys.argv[0], target.corpus_dir, '-max_total_time=%d' % seconds, '-max_len=%d' % target.max_len,
            '-rss_limit_mb=%d' % target.rss_limit_mb, '-timeout=%d' % target.timeout,
            '-artifact_prefix=%s/' % target.crashers_dir, '-print_final_stats=1']
    atheris.Setup(args, target)
    atheris.Fuzz()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('names', nargs='*')
    parser.add_argument('--seconds', type=int, default=int(os.environ.get('FUZZ_SECONDS', '600')))
    parser.add_argument('--one', help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        fuzz_one(options.one, options.seconds)
        return 0
    names = options.names or target_names()
    unknown = sorted(set(names) - set(target_names()))
    if unknown:
        parser.error('no such target: %s (targets: %s)' % (', '.join(unknown), ', '.join(target_names())))
    failed = []
    for name in names:
        started = time.time()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--one', name, '--seconds',
                               str(options.seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        output = proc.stdout.decode('utf-8', 'replace')
        runs = re.findall(r'stat::number_of_executed_units:\s*(\d+)', output)
        verdict = 'ok' if proc.returncode == 0 else 'FINDING (exit %d)' % proc.returncode
        print('fuzz %-14s %5.0f s  %s inputs  %s' % (name, time.time() - started, runs[-1] if runs else '?', verdict))
        if proc.returncode != 0:
            failed.append(name)
            sys.stdout.write(output[-4000:])
    print('%d passed, %d failed' % (len(names) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
