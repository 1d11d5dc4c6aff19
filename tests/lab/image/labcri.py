"""Container records shared by the kubelet stand-in (writer) and the crictl stand-in (reader).

The kubelet stand-in runs each static pod container as a plain process; what a CRI runtime would
keep about it (id, pod, state, pid, exit code, log path) lives here as one JSON file per container
and per pod sandbox, so crictl can answer without talking to the kubelet.
"""

import json
import os
import time
from datetime import datetime, timezone

STATE_DIR = os.environ.get("ETCDOPS_LAB_CRI_DIR", "/run/etcdops-cri")
CONTAINERS_DIR = os.path.join(STATE_DIR, "containers")
PODS_DIR = os.path.join(STATE_DIR, "pods")

CONTAINER_CREATED = "CONTAINER_CREATED"
CONTAINER_RUNNING = "CONTAINER_RUNNING"
CONTAINER_EXITED = "CONTAINER_EXITED"
SANDBOX_READY = "SANDBOX_READY"
SANDBOX_NOTREADY = "SANDBOX_NOTREADY"


def now_ns():
    return time.time_ns()


def rfc3339(ns):
    """CRI timestamps as crictl inspect prints them; 0 means 'never' (Go's zero time)."""
    if not ns:
        return "0001-01-01T00:00:00Z"
    seconds, frac = divmod(int(ns), 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return "%s.%09dZ" % (stamp, frac)


def _write(directory, record):
    # Write then rename, so a reader never sees half a record.
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, record["id"] + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read_all(directory):
    records = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return records
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as handle:
                records.append(json.load(handle))
        except (OSError, ValueError):
            continue  # removed or being replaced right now
    return records


def save_container(record):
    _write(CONTAINERS_DIR, record)


def save_pod(record):
    _write(PODS_DIR, record)


def containers():
    return _read_all(CONTAINERS_DIR)


def pods():
    return _read_all(PODS_DIR)


def remove_container(container_id):
    try:
        os.unlink(os.path.join(CONTAINERS_DIR, container_id + ".json"))
    except FileNotFoundError:
        pass


def remove_pod(pod_id):
    try:
        os.unlink(os.path.join(PODS_DIR, pod_id + ".json"))
    except FileNotFoundError:
        pass


def container_exists(container_id):
    return os.path.exists(os.path.join(CONTAINERS_DIR, container_id + ".json"))


def find(records, id_prefix):
    """Records whose id starts with id_prefix (crictl accepts any unambiguous prefix)."""
    exact = [r for r in records if r["id"] == id_prefix]
    if exact:
        return exact
    return [r for r in records if id_prefix and r["id"].startswith(id_prefix)]
