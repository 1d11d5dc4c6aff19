"""Suite-wide: how tests are shared out among pytest-xdist workers (`make test` runs `pytest -n JOBS --dist loadgroup`).

A unit of work is a test module, except a lab test module, which is one unit per etcd line: each (module,
line) brings up its own lab under its own prefix, so labs of different lines run side by side while tests
that share one lab stay on one worker. The slowest units (labs, sanity, molecule) are handed out first.
"""

import pytest

# Lower sorts first: what takes longest starts first, so no worker is left with a long unit at the end.
_WEIGHT = {"lab": 0, "molecule": 0, "quality": 1, "functional": 2}


def _group(item):
    group = item.nodeid.split("::", 1)[0]
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "lab" in callspec.params:
        group += "#" + str(callspec.params["lab"])  # not "@": xdist splits group names at the last "@"
    return group


def _weight(item):
    return min([_WEIGHT[m.name] for m in item.iter_markers() if m.name in _WEIGHT] or [3])


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_group(item)))
    # By the weight of the item's module, stable: the order inside a module (module-scoped fixtures,
    # scenarios that build on each other) is kept.
    module_weight = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        module_weight[module] = min(module_weight.get(module, 3), _weight(item))
    items.sort(key=lambda item: module_weight[item.nodeid.split("::", 1)[0]])
