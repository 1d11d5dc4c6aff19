# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private: one function run in a thread beside the work that needs its result.

* ``InThread(function, *args).start()``, then ``join()``: the function's result, or what it raised, raised in
  the caller's thread. A restore reads the snapshot's status this way while etcdutl runs; a backup walks the
  snapshot's database this way once it is written, while the last parts of the upload go out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time


class InThread(object):
    """Run function(*args) in a daemon thread; join() returns its result or raises what it raised.

    The thread never keeps the process alive: a module that exits (or fails) while it runs does not wait for it.
    """

    def __init__(self, function, *args):
        self.result = None
        self.error = None
        self.seconds = None  # how long the function ran, once it returned or raised
        self._function = function
        self._args = args
        self._thread = threading.Thread(target=self._run, name='etcdops-%s' % getattr(function, '__name__', 'job'))
        self._thread.daemon = True

    def _run(self):
        started = time.monotonic()
        try:
            self.result = self._function(*self._args)
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc
        finally:
            self.seconds = time.monotonic() - started

    def start(self):
        self._thread.start()
        return self

    def join(self):
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result
