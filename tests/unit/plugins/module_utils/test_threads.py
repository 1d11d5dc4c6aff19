# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""InThread: the result, or what the function raised, handed back to the caller's thread."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.etcdops.etcd.plugins.module_utils._threads import InThread


class JobError(Exception):
    pass


def test_in_thread_returns_the_result_or_raises_what_the_job_raised():
    seen = []

    def job(value):
        seen.append(threading.current_thread() is not threading.main_thread())
        if value is None:
            raise JobError('no value')
        return value * 2
    first = InThread(job, 21).start()
    assert first.join() == 42 and seen == [True]
    with pytest.raises(JobError):
        InThread(job, None).start().join()


def test_the_thread_never_keeps_the_process_alive():
    release = threading.Event()
    waiting = InThread(release.wait).start()
    assert waiting._thread.daemon
    release.set()
    assert waiting.join() is True


def test_in_thread_says_how_long_the_job_ran():
    job = InThread(time.sleep, 0.05).start()
    assert job.join() is None and 0.05 <= job.seconds < 5
