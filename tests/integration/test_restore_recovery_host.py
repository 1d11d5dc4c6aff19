"""Restoring through one recovery host from an encrypted backup in S3, on a 3-host lab, as an operator would:

write keys, `backup.yml` to the lab's S3 encrypted to an age key, write more keys, lose every member's data (each
etcd stopped, its data dir emptied, started again on nothing), then `playbooks/restore_recovery_host.yml` with the
identity on the recovery host only: in check mode (no file changes on any host), for real (exactly the backed-up
keys; 3 healthy voting members, one leader, equal hashkv; every old data dir moved aside, not deleted; the API
server stand-ins running and holding their leases), and a second time with the same inputs (nothing changes,
although the run's own pre-change backup is now the newest in the store).

A second test, not in the default suite (the first one uses most of the suite's time), proves the snapshot source
`controller`: write keys, `etcdctl snapshot save` on the recovery host, the file copied to the controller, write more
keys, lose every member, the playbook with `restore_recovery_host_snapshot_source=controller` (exactly the snapshot's
keys; 3 healthy voting members, one leader, equal hashkv; old data dirs moved aside, not deleted), and a second time
with the same inputs (nothing changes). Run it with:

    ETCDOPS_RECOVERY_HOST_EXTRA=1 ETCDOPS_LINES=3.6 .venv/bin/python -m pytest -q \
        tests/integration/test_restore_recovery_host.py -k controller

Two more, also opt-in, kill the playbook (SIGKILL of ansible-playbook and its connections) while the members join
back, once right after the first is added as a learner and once right after the second, then run it again with the
same inputs: it converges to exactly the snapshot's keys on 3 voting members, and a third run changes nothing
(`-k killed` instead of `-k controller`)."""

import hashlib
import json
import os
import subprocess
import time

import pytest

from ansible_run import run_playbook  # pylint: disable=import-error
from test_restore import (  # pylint: disable=import-error
    PREFIX,
    hashkv_at_one_revision,
    host_state,
    lose_every_member,
    read_prefix,
    run_playbook_killed_when,
    value_of,
    write_keys,
)

pytestmark = pytest.mark.lab

LAB_WITH_S3 = True
# One line in the suite (<= 4 minutes); ETCDOPS_RECOVERY_HOST_LINES="3.5 3.7" (with ETCDOPS_LINES) runs others by hand.
LAB_LINES = os.environ.get("ETCDOPS_RECOVERY_HOST_LINES", "3.6").split()
KEYS = 3000
LATER = 500
CLUSTER = "recovery"
IDENTITY_ON_HOST = "/root/restore-identity.txt"
RECOVERY_HOST = "cp1"
PLAYBOOK = "playbooks/restore_recovery_host.yml"


def store_vars(lab):
    conf = lab.state["s3"]
    return dict(backup_cluster_name=CLUSTER, backup_s3_bucket=conf["bucket"], backup_s3_endpoint_url=conf["endpoint_url"],
                backup_s3_region=conf["region"], backup_s3_path_style=True, backup_s3_access_key=conf["access_key"],
                backup_s3_secret_key=conf["secret_key"], backup_resources=False)


def host_files(lab, host):
    """What check mode must not change: the names under /var/lib/etcd* (etcd itself writes inside its member dir
    while it runs) and the sha256 of every file under /etc/kubernetes and the snapshot directory."""
    script = ("find /var/lib -maxdepth 1 -name 'etcd*' | sort; "
              "find /var/lib/etcd /var/lib/etcd.* /var/lib/etcd-restore -maxdepth 2 2>/dev/null | sort; "
              "find /etc/kubernetes /var/lib/etcd-restore -type f 2>/dev/null | sort | xargs -r sha256sum")
    return lab.exec(host, ["sh", "-c", script]).stdout


def failures(run):
    return run.stderr[-3000:] + json.dumps([r for n, h, r in run.results() if r.get("failed")])[:5000]


def moved_aside(lab, run):
    """{host: where its old data dir went} from a real run, each checked to be a directory holding a member dir."""
    restored = run.result("Restore the snapshot on the recovery host as a one-member cluster (the old data dir is "
                          "moved aside)", RECOVERY_HOST)
    assert restored["restored"] and restored["initial_cluster"].count("=") == 1, restored
    moved = {RECOVERY_HOST: restored["moved_to"]}
    for host in lab.members:
        if host != RECOVERY_HOST:
            result = run.result("Move the data directories of the members that join back aside (timestamped, never "
                                "deleted)", host)
            assert result["changed"] and result["moved_to"], result
            moved[host] = result["moved_to"]
    for host, path in moved.items():
        # beside the data dir, or inside it where /var/lib/etcd is a mount point (the lab's is a Docker volume)
        assert path.startswith(("/var/lib/etcd.moved-", "/var/lib/etcd/moved-")), (host, path)
        assert lab.exec(host, ["test", "-d", path + "/member"], check=False).returncode == 0, (host, path)
    return moved


def assert_three_voters_one_leader_one_hashkv(lab):
    members = json.loads(lab.etcdctl(RECOVERY_HOST, "member", "list", "-w", "json").stdout)["members"]
    assert len(members) == 3 and not any(m.get("isLearner") for m in members), members
    statuses = lab.endpoint_status()
    assert len(statuses) == 3 and len({s["Status"]["leader"] for s in statuses}) == 1
    assert sum(1 for s in statuses if s["Status"]["leader"] == s["Status"]["header"]["member_id"]) == 1
    revision, hashes = hashkv_at_one_revision(lab, RECOVERY_HOST)
    assert len(hashes) == 3 and len(set(hashes.values())) == 1, (revision, hashes)


def assert_snapshot_on_the_recovery_host_only(lab):
    for host in lab.members:
        if host != RECOVERY_HOST:
            assert lab.exec(host, ["test", "-e", "/var/lib/etcd-restore/snapshot.db"], check=False).returncode != 0


def test_restore_on_one_recovery_host_from_an_encrypted_backup_in_s3(lab, tmp_path):
    begun = time.monotonic()
    key_file = tmp_path / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(key_file)], check=True, capture_output=True, text=True).stdout.strip()
    # Only the recovery host holds the identity.
    lab.exec(RECOVERY_HOST, ["sh", "-c", "umask 077 && cat > %s" % IDENTITY_ON_HOST], input=key_file.read_text())

    write_keys(lab, RECOVERY_HOST, [(PREFIX + "k%05d" % i, value_of(i)) for i in range(KEYS)])
    backed = run_playbook(lab, "playbooks/backup.yml", dict(store_vars(lab), backup_recipients=[public],
                                                            backup_prune=False))
    assert backed.rc == 0, failures(backed)
    taken = backed.result("Back up etcd and the Kubernetes resources to the store")
    assert taken["encrypted"] is True
    write_keys(lab, RECOVERY_HOST, [(PREFIX + "later%04d" % i, "later") for i in range(LATER)])
    lose_every_member(lab)
    assert read_prefix(lab, RECOVERY_HOST) == {}
    print("keys written, backed up to S3, every member lost: %.1fs" % (time.monotonic() - begun))

    extra = dict(store_vars(lab), restore_recovery_host_identity_file=IDENTITY_ON_HOST)

    # check mode: the plan host by host, and no file changes on any host
    before = {h: host_files(lab, h) for h in lab.members}
    check = run_playbook(lab, PLAYBOOK, extra, check=True)
    assert check.rc == 0, failures(check)
    plans = {h: r["msg"] for n, h, r in check.results("Show the plan host by host")}
    assert "fetch backup %s" % taken["backup_id"] in plans[RECOVERY_HOST], plans
    assert all("join %s's cluster" % RECOVERY_HOST in plans[h] for h in lab.members if h != RECOVERY_HOST), plans
    assert {h: host_files(lab, h) for h in lab.members} == before
    print("check mode: %.1fs" % (time.monotonic() - begun))

    refused = run_playbook(lab, PLAYBOOK, extra)
    assert refused.rc != 0 and "restore_recovery_host_confirm" in json.dumps(refused.data)
    assert {h: host_files(lab, h) for h in lab.members} == before

    started = time.monotonic()
    done = run_playbook(lab, PLAYBOOK, dict(extra, restore_recovery_host_confirm=True))
    print("restore_recovery_host.yml took %.1fs" % (time.monotonic() - started))
    assert done.rc == 0, failures(done)
    fetched = done.result("Fetch the chosen backup into the snapshot file on each host (download, age, zstd, "
                          "sha256; one pass)", RECOVERY_HOST)
    assert fetched["fetched"] and fetched["backup_id"] == taken["backup_id"]
    assert fetched["snapshot_sha256"] == taken["snapshot_sha256"]
    moved_aside(lab, done)

    # exactly the backed-up keys, on 3 healthy voting members with one leader and one hashkv
    lab.wait_healthy(timeout=60)
    got = read_prefix(lab, RECOVERY_HOST)
    assert len(got) == KEYS and got == {PREFIX + "k%05d" % i: value_of(i) for i in range(KEYS)}
    assert_three_voters_one_leader_one_hashkv(lab)
    lab.wait_leases(timeout=90)
    # the snapshot was fetched on the recovery host only
    assert_snapshot_on_the_recovery_host_only(lab)

    # the second run with the same inputs changes nothing (latest is now the first run's pre-change backup)
    started = time.monotonic()
    again = run_playbook(lab, PLAYBOOK, dict(extra, restore_recovery_host_confirm=True))
    print("second run: %.1fs; whole test %.1fs" % (time.monotonic() - started, time.monotonic() - begun))
    assert again.rc == 0, failures(again)
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert "nothing to do" in again.result("Show the plan host by host", RECOVERY_HOST)["msg"]
    assert len(read_prefix(lab, RECOVERY_HOST)) == KEYS


CONTROLLER_KEYS = 2000
CONTROLLER_LATER = 300
SNAPSHOT_SAVED_ON_HOST = "/root/recovery-host-test-snapshot.db"
MARK = "/var/lib/etcd/.etcdops-restore.json"  # the recovery host's record of the snapshot it was restored from


@pytest.mark.skipif(os.environ.get("ETCDOPS_RECOVERY_HOST_EXTRA") != "1",
                    reason="not in the default suite (time budget): ETCDOPS_RECOVERY_HOST_EXTRA=1 ETCDOPS_LINES=3.6 "
                           "pytest tests/integration/test_restore_recovery_host.py -k controller runs it")
def test_restore_on_one_recovery_host_from_a_snapshot_on_the_controller(lab, tmp_path):
    begun = time.monotonic()
    if lab.exec(RECOVERY_HOST, ["test", "-e", MARK], check=False).returncode == 0:
        # The test before restored this lab: cp1's manifest now starts a one-member cluster and the others' join it
        # (--initial-cluster-state=existing), so lose_every_member's empty data dirs would never make 3 members
        # again. A new lab, as `up` makes it.
        line = lab.state["etcd_line"]
        lab.down()
        lab.up(hosts=3, etcd_line=line, with_s3=True)
    write_keys(lab, RECOVERY_HOST, [(PREFIX + "c%05d" % i, value_of(i)) for i in range(CONTROLLER_KEYS)])
    # what the snapshot holds (keys an earlier test of this module left under PREFIX included)
    expected = read_prefix(lab, RECOVERY_HOST)
    assert all(expected.get(PREFIX + "c%05d" % i) == value_of(i) for i in range(CONTROLLER_KEYS))
    lab.etcdctl(RECOVERY_HOST, "snapshot", "save", SNAPSHOT_SAVED_ON_HOST, timeout=120)
    snapshot = tmp_path / "snapshot.db"
    subprocess.run(["docker", "cp", "%s:%s" % (lab.container(RECOVERY_HOST), SNAPSHOT_SAVED_ON_HOST), str(snapshot)],
                   check=True, capture_output=True)
    lab.exec(RECOVERY_HOST, ["rm", "-f", SNAPSHOT_SAVED_ON_HOST])  # only the controller's copy is left
    snapshot_sha256 = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    write_keys(lab, RECOVERY_HOST, [(PREFIX + "after%04d" % i, "after") for i in range(CONTROLLER_LATER)])
    lose_every_member(lab)
    assert read_prefix(lab, RECOVERY_HOST) == {}
    print("keys written, snapshot on the controller, every member lost: %.1fs" % (time.monotonic() - begun))

    # the store's variables only for the run's own pre-change backup
    extra = dict(store_vars(lab), restore_recovery_host_confirm=True,
                 restore_recovery_host_snapshot_source="controller",
                 restore_recovery_host_snapshot_controller_path=str(snapshot))
    started = time.monotonic()
    done = run_playbook(lab, PLAYBOOK, extra)
    print("restore_recovery_host.yml took %.1fs" % (time.monotonic() - started))
    assert done.rc == 0, failures(done)
    assert "use the snapshot" in done.result("Show the plan host by host", RECOVERY_HOST)["msg"]
    copied = done.result("Copy the snapshot from the controller to the recovery host", RECOVERY_HOST)
    assert copied["changed"] and copied["checksum"], copied
    on_host = lab.exec(RECOVERY_HOST, ["sha256sum", "/var/lib/etcd-restore/snapshot.db"]).stdout.split()[0]
    assert on_host == snapshot_sha256
    mark = json.loads(lab.exec(RECOVERY_HOST, ["cat", MARK]).stdout)
    assert mark["snapshot_sha256"] == snapshot_sha256, mark
    moved = moved_aside(lab, done)
    assert_snapshot_on_the_recovery_host_only(lab)

    # exactly the snapshot's keys with their values, on 3 healthy voting members with one leader and one hashkv
    lab.wait_healthy(timeout=60)
    got = read_prefix(lab, RECOVERY_HOST)
    assert got == expected and not any(key.startswith(PREFIX + "after") for key in got), (len(got), len(expected))
    assert_three_voters_one_leader_one_hashkv(lab)
    lab.wait_leases(timeout=90)

    # the second run with the same inputs changes nothing: the mark names the same snapshot, every member votes
    started = time.monotonic()
    again = run_playbook(lab, PLAYBOOK, extra)
    print("second run: %.1fs; whole test %.1fs" % (time.monotonic() - started, time.monotonic() - begun))
    assert again.rc == 0, failures(again)
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert "nothing to do" in again.result("Show the plan host by host", RECOVERY_HOST)["msg"]
    assert read_prefix(lab, RECOVERY_HOST) == expected
    for host, path in moved.items():
        assert lab.exec(host, ["test", "-d", path + "/member"], check=False).returncode == 0, (host, path)


def members_in_list(lab):
    """The members etcd on the recovery host lists (0 while it does not answer)."""
    listed = lab.etcdctl(RECOVERY_HOST, "member", "list", "-w", "json", check=False)
    if listed.returncode != 0:
        return []
    try:
        return json.loads(listed.stdout).get("members", [])
    except ValueError:
        return []


@pytest.mark.skipif(os.environ.get("ETCDOPS_RECOVERY_HOST_EXTRA") != "1",
                    reason="not in the default suite (time budget): ETCDOPS_RECOVERY_HOST_EXTRA=1 ETCDOPS_LINES=3.6 "
                           "pytest tests/integration/test_restore_recovery_host.py -k killed runs it")
@pytest.mark.parametrize("listed_at_kill", [2, 3], ids=["first-joiner-added", "second-joiner-added"])
def test_restore_on_one_recovery_host_killed_while_a_member_joins_then_run_again(lab, tmp_path, listed_at_kill):
    """The playbook killed (ansible-playbook and its connections, SIGKILL) as soon as the restored recovery host
    lists a second member (the first member added back as a learner, not started yet) or a third one (the second
    member added); run again with the same inputs, it converges: exactly the snapshot's keys on 3 healthy voting
    members, one leader, equal hashkv, every old data dir kept; a third run changes nothing."""
    begun = time.monotonic()
    if lab.exec(RECOVERY_HOST, ["test", "-e", MARK], check=False).returncode == 0:
        line = lab.state["etcd_line"]  # a test before restored this lab: a new one, as `up` makes it
        lab.down()
        lab.up(hosts=3, etcd_line=line, with_s3=True)
    write_keys(lab, RECOVERY_HOST, [(PREFIX + "x%05d" % i, value_of(i)) for i in range(CONTROLLER_KEYS)])
    expected = read_prefix(lab, RECOVERY_HOST)
    lab.etcdctl(RECOVERY_HOST, "snapshot", "save", SNAPSHOT_SAVED_ON_HOST, timeout=120)
    snapshot = tmp_path / "snapshot.db"
    subprocess.run(["docker", "cp", "%s:%s" % (lab.container(RECOVERY_HOST), SNAPSHOT_SAVED_ON_HOST), str(snapshot)],
                   check=True, capture_output=True)
    lab.exec(RECOVERY_HOST, ["rm", "-f", SNAPSHOT_SAVED_ON_HOST])
    write_keys(lab, RECOVERY_HOST, [(PREFIX + "after%04d" % i, "after") for i in range(CONTROLLER_LATER)])
    lose_every_member(lab)
    assert read_prefix(lab, RECOVERY_HOST) == {}
    extra = dict(store_vars(lab), restore_recovery_host_confirm=True,
                 restore_recovery_host_snapshot_source="controller",
                 restore_recovery_host_snapshot_controller_path=str(snapshot))

    def second_member_listed():
        # the lost members still list the old three until the recovery host is restored as a one-member cluster
        if lab.exec(RECOVERY_HOST, ["test", "-e", MARK], check=False).returncode != 0:
            return None
        members = members_in_list(lab)
        return members if len(members) >= listed_at_kill else None
    listed = run_playbook_killed_when(lab, PLAYBOOK, extra, str(tmp_path / "killed-run.log"), second_member_listed)
    print("killed after %.1fs with %s listed" % (time.monotonic() - begun, [
        (m.get("name") or "(not started)", "learner" if m.get("isLearner") else "voter") for m in listed]))
    for host in lab.members:
        print("  %s: %s" % (host, host_state(lab, host)))

    started = time.monotonic()
    done = run_playbook(lab, PLAYBOOK, extra)
    print("the run after the kill took %.1fs" % (time.monotonic() - started))
    assert done.rc == 0, failures(done)
    lab.wait_healthy(timeout=90)
    got = read_prefix(lab, RECOVERY_HOST)
    assert got == expected and not any(key.startswith(PREFIX + "after") for key in got), (len(got), len(expected))
    assert_three_voters_one_leader_one_hashkv(lab)
    lab.wait_leases(timeout=90)
    for host in lab.members:  # every member's old data dir is kept somewhere, none deleted
        kept = lab.exec(host, ["sh", "-c", "ls -d /var/lib/etcd.moved-*/member /var/lib/etcd/moved-*/member "
                                           "2>/dev/null"], check=False).stdout.split()
        assert kept, host

    again = run_playbook(lab, PLAYBOOK, extra)
    print("third run: %.1fs; whole test %.1fs" % (time.monotonic() - started, time.monotonic() - begun))
    assert again.rc == 0, failures(again)
    assert all(stats.get("changed", 0) == 0 for stats in again.stats.values()), again.stats
    assert read_prefix(lab, RECOVERY_HOST) == expected
