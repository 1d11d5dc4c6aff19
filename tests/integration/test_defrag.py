"""etcd_defrag on a 3-host lab for each etcd line, with kubeadm's TLS files as the only configuration, read like
the OpenShift runbook: fragment the database (100 KB values written over one key, then compacted), see the default
thresholds skip it, then defragment each member on its own host through https://127.0.0.1:2379, the leader last,
and see with `etcdctl endpoint status` that every file shrank; check mode changes nothing."""

import json
import time

import pytest

import lab as lablib  # pylint: disable=import-error
from ansible_run import run_module  # pylint: disable=import-error

pytestmark = pytest.mark.lab
# Leaves the lab as up made it (the fixture checks): the next shared module of the line takes it over.
LAB_SHARED = True

MODULE = "etcdops.etcd.etcd_defrag"
MIB = 1024 * 1024
LOWERED = {"min_fragmentation_bytes": "4M", "min_fragmentation_ratio": 0.3}


def sizes(lab):
    """{host: (dbSize, dbSizeInUse)} from `etcdctl endpoint status -w json`."""
    by_ip = {lab.ip(h): h for h in lab.hosts}
    return {by_ip[s["Endpoint"].split("//")[1].split(":")[0]]: (s["Status"]["dbSize"], s["Status"]["dbSizeInUse"])
            for s in lab.endpoint_status()}


def fragment(lab):
    """Write 120 values of 100 KB over one key, compact to the last revision: the old values become free pages."""
    etcdctl = "%s/etcdctl %s" % (lab.state["etcd_bin_dir"], " ".join(lablib.ETCDCTL_TLS))
    script = ("head -c 102400 /dev/zero | tr '\\0' x > /tmp/value && "
              "for i in $(seq 120); do ETCDCTL_API=3 %s put /etcdops/fragment < /tmp/value >/dev/null || exit 1; done"
              % etcdctl)
    lab.exec("cp1", ["sh", "-c", script], timeout=300)
    revision = json.loads(lab.etcdctl("cp1", "get", "/etcdops/fragment", "-w", "json", "--keys-only").stdout)
    lab.etcdctl("cp1", "compact", "--physical", str(revision["header"]["revision"]))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bbolt counts freed pages once a later write has begun
        lab.etcdctl("cp1", "put", "/etcdops/fragment-done", "x")
        time.sleep(0.5)
        if all(in_use * 2 < size for size, in_use in sizes(lab).values()):
            return
    raise AssertionError("compaction freed nothing: %s" % sizes(lab))


def test_thresholds_skip_then_every_member_shrinks_the_leader_last(lab):
    fragment(lab)
    before = sizes(lab)

    skipped = run_module(lab, "cp1", MODULE, {"member": "cp2"})
    assert not skipped.get("failed"), skipped.get("msg")
    assert skipped["changed"] is False and skipped["defragmented"] is False
    assert skipped["fragmented_bytes"] > 8 * MIB and skipped["msg"].endswith("not worth blocking the member")

    checked = run_module(lab, "cp2", MODULE, dict(LOWERED, member="https://127.0.0.1:2379"), check=True)
    assert checked["changed"] is True and checked["member"]["name"] == "cp2"
    assert sizes(lab)["cp2"][0] == before["cp2"][0]

    leader = [h for h in lab.hosts if run_module(lab, h, MODULE, dict(LOWERED, member="https://127.0.0.1:2379"),
                                                 check=True)["member"]["is_leader"]]
    assert len(leader) == 1
    for host in [h for h in lab.hosts if h not in leader] + leader:
        done = run_module(lab, host, MODULE, dict(LOWERED, member="https://127.0.0.1:2379"))
        assert not done.get("failed"), done.get("msg")
        assert done["defragmented"] is True and done["member"]["name"] == host
        assert done["db_size_after"] < done["db_size_before"] - 8 * MIB
        lab.wait_healthy(timeout=60)
    after = sizes(lab)
    for host in lab.hosts:
        assert after[host][0] < before[host][0] - 8 * MIB, (host, before, after)
    again = run_module(lab, "cp1", MODULE, dict(LOWERED, member="cp1"))
    assert again["changed"] is False
