"""Restore drills on a 3-host lab with its S3 server, as docs/runbooks/backup.md says to run them:

back up to S3 encrypted to an age key -> playbooks/verify_backup.yml on cp1 with the identity (fetch, age, zstd,
sha256, the line's etcdutl/etcdctl restore into a scratch dir, a throwaway etcd on loopback, revision, keys and
HashKV compared) -> verified true, and the listing shows it; then one byte of a stored snapshot object flipped in
S3 -> the drill fails naming that backup, and the listing shows it failed. Nothing of the drill stays on cp1."""

import json
import subprocess

import boto3
import pytest

from ansible_run import run_module, run_playbook  # pylint: disable=import-error

pytestmark = pytest.mark.lab

LAB_WITH_S3 = True
# 3.4 (etcdctl restores) and 3.6 in the suite, 68-83 s a line; all four lines were watched passing by hand.
LAB_LINES = ["3.4", "3.6"]
CLUSTER = "drill"
IDENTITY_ON_HOST = "/root/drill-identity.txt"


@pytest.fixture(scope="module")
def identity(lab, tmp_path_factory):
    path = tmp_path_factory.mktemp("age") / "identity.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    public = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout.strip()
    # The drill host holds the identity (in production a restore host, not a control-plane node).
    lab.exec("cp1", ["sh", "-c", "umask 077 && cat > %s" % IDENTITY_ON_HOST], input=path.read_text())
    return public


def store_args(lab):
    conf = lab.state["s3"]
    return dict(cluster_name=CLUSTER, store="s3", bucket=conf["bucket"], endpoint_url=conf["endpoint_url"],
                region=conf["region"], path_style=True, access_key=conf["access_key"], secret_key=conf["secret_key"])


def playbook_vars(lab):
    conf = lab.state["s3"]
    return dict(verify_host="cp1", verify_identity_file=IDENTITY_ON_HOST, backup_cluster_name=CLUSTER,
                verify_tool=lab.state["etcd_bin_dir"],
                backup_s3_bucket=conf["bucket"], backup_s3_endpoint_url=conf["endpoint_url"],
                backup_s3_region=conf["region"], backup_s3_path_style=True, backup_s3_access_key=conf["access_key"],
                backup_s3_secret_key=conf["secret_key"])


def backup(lab, public):
    # A few keys of our own on top of the API server stand-in's, so that the counts mean something.
    for number in range(20):
        lab.etcdctl("cp1", "put", "/drill/key-%02d" % number, "value-%d" % number)
    taken = run_module(lab, "cp1", "etcdops.etcd.etcd_backup", dict(store_args(lab), recipients=[public]))
    assert not taken.get("failed"), taken.get("msg")
    return taken


def lab_trusted_keys(lab):
    """The public key of the lab's signing key (on every host), which restores trust."""
    return [lab.state["keys"]["signing_public_key"]]


def listed(lab, backup_id):
    found = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_info", store_args(lab))
    assert not found.get("failed"), found.get("msg")
    return [b for b in found["backups"] if b["backup_id"] == backup_id][0]


def test_drill_of_a_fresh_backup_verifies_and_the_listing_shows_it(lab, identity):
    taken = backup(lab, identity)
    assert listed(lab, taken["backup_id"])["verified"] is None

    check = run_playbook(lab, "playbooks/verify_backup.yml", playbook_vars(lab), check=True)
    assert check.rc == 0 and "would verify backup %s" % taken["backup_id"] in check.result("Run the restore drill")["msg"]
    assert listed(lab, taken["backup_id"])["verified"] is None

    run = run_playbook(lab, "playbooks/verify_backup.yml", playbook_vars(lab))
    drill = run.result("Run the restore drill")
    assert run.rc == 0 and drill["verified"] is True, (drill.get("msg"), run.stderr[-2000:])
    assert drill["backup_id"] == taken["backup_id"] and drill["changed"] is True
    checks = drill["checks"]
    assert checks["revision"] == taken["revision"] and checks["snapshot_sha256"] == taken["snapshot_sha256"]
    assert checks["keys"] >= 20 and checks["hashkv_compared"] is True
    assert checks["tool"].split()[0] == ("etcdctl" if lab.state["etcd_line"] == "3.4" else "etcdutl")
    entry = listed(lab, taken["backup_id"])
    assert entry["verified"] is True and entry["verified_at"] == drill["verified_at"] and entry["verify_error"] is None
    # The scratch copy (every Secret, decrypted) and the throwaway etcd are gone.
    assert lab.exec("cp1", ["sh", "-c", "ls -A /var/lib/etcd-backup-drill"]).stdout.strip() == ""
    assert "etcdops-drill" not in lab.exec("cp1", ["ps", "-eo", "args"]).stdout
    print("drill: %s" % drill["timings"])


def test_a_flipped_byte_in_the_stored_snapshot_fails_the_drill_naming_the_backup(lab, identity):
    taken = backup(lab, identity)
    conf = lab.state["s3"]
    s3 = boto3.client("s3", endpoint_url=conf["endpoint_url"], aws_access_key_id=conf["access_key"],
                      aws_secret_access_key=conf["secret_key"], region_name=conf["region"])
    key = taken["object_keys"]["snapshot"]
    data = bytearray(s3.get_object(Bucket=conf["bucket"], Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=conf["bucket"], Key=key, Body=bytes(data))

    result = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_verify",
                        dict(store_args(lab), backup_id=taken["backup_id"], identity_file=IDENTITY_ON_HOST,
                             tool=lab.state["etcd_bin_dir"], trusted_keys=lab_trusted_keys(lab)))
    assert result.get("failed") and result["verified"] is False, result
    assert "backup %s failed the restore drill" % taken["backup_id"] in result["msg"]
    assert result["error_kind"] in ("decrypt", "sha256"), result["msg"]
    entry = listed(lab, taken["backup_id"])
    assert entry["verified"] is False and taken["backup_id"] in entry["verify_error"]
    assert lab.exec("cp1", ["sh", "-c", "ls -A /var/lib/etcd-backup-drill"]).stdout.strip() == ""
    assert "AGE-SECRET-KEY" not in str(result)


FORGED = "2099-01-01T00-00-00Z-f0f0"
OTHER_KEY = "2099-01-02T00-00-00Z-0bad"


def plant(lab, source_id, tmp_path):
    """Two backups planted in the bucket by someone who can write to it, both newer than every real one and each with
    a verification.json claiming a passed drill (which latest must not believe): FORGED, the objects of source_id
    under a newer id with unsigned metadata claiming it; OTHER_KEY, the same signed by a minisign key of their
    own."""
    conf = lab.state["s3"]
    s3 = boto3.client("s3", endpoint_url=conf["endpoint_url"], aws_access_key_id=conf["access_key"],
                      aws_secret_access_key=conf["secret_key"], region_name=conf["region"])
    base = "%s/backups/etcd/main/" % CLUSTER
    listing = s3.list_objects_v2(Bucket=conf["bucket"], Prefix=base + source_id + "/")["Contents"]
    for new_id in (FORGED, OTHER_KEY):
        for item in listing:
            name = item["Key"].rsplit("/", 1)[1]
            if name in ("metadata.json", "metadata.json.minisig", "verification.json"):
                continue
            s3.copy_object(Bucket=conf["bucket"], Key=base + new_id + "/" + name,
                           CopySource=dict(Bucket=conf["bucket"], Key=item["Key"]))
        document = json.loads(s3.get_object(Bucket=conf["bucket"], Key=base + source_id + "/metadata.json")["Body"].read())
        document["backup_id"] = new_id
        data = json.dumps(document).encode()
        if new_id == OTHER_KEY:
            (tmp_path / "m.json").write_bytes(data)
            subprocess.run(["minisign", "-G", "-W", "-s", str(tmp_path / "o.key"), "-p", str(tmp_path / "o.pub")],
                           check=True, capture_output=True)
            subprocess.run(["minisign", "-S", "-s", str(tmp_path / "o.key"), "-m", str(tmp_path / "m.json")],
                           check=True, capture_output=True)
            s3.put_object(Bucket=conf["bucket"], Key=base + new_id + "/metadata.json.minisig",
                          Body=(tmp_path / "m.json.minisig").read_bytes())
        s3.put_object(Bucket=conf["bucket"], Key=base + new_id + "/metadata.json", Body=data)
        s3.put_object(Bucket=conf["bucket"], Key=base + new_id + "/verification.json",
                      Body=json.dumps(dict(verified=True, verified_at="2099-01-01T00:00:00Z")).encode())


def manifests_and_keys(lab):
    """What a restore that started would have changed: the static pod manifests and a key's value."""
    return ([lab.exec(h, ["sh", "-c", "ls /etc/kubernetes/manifests"]).stdout for h in ("cp1", "cp2", "cp3")],
            lab.etcdctl("cp1", "get", "/drill/key-00", "--print-value-only").stdout)


def one_line_only(lab):
    """The trust checks do not depend on etcd's line: run on the newest line of this module only (time budget)."""
    if lab.state["etcd_line"] != LAB_LINES[-1]:
        pytest.skip("line-independent: runs on etcd %s" % LAB_LINES[-1])


def test_a_restore_from_a_bucket_with_planted_backups_refuses_them_and_latest_passes_over_them(lab, identity, tmp_path):
    one_line_only(lab)
    taken = backup(lab, identity)
    plant(lab, taken["backup_id"], tmp_path)
    for host in ("cp2", "cp3"):  # the restore fetches on every host
        lab.exec(host, ["sh", "-c", "umask 077 && cat > %s" % IDENTITY_ON_HOST],
                 input=lab.exec("cp1", ["cat", IDENTITY_ON_HOST]).stdout)
    extra = dict(playbook_vars(lab), restore_confirm=True, restore_snapshot_source="store",
                 restore_identity_file=IDENTITY_ON_HOST)
    before = manifests_and_keys(lab)
    for forged, kind in ((FORGED, "is not signed"), (OTHER_KEY, "not among the trusted keys")):
        run = run_playbook(lab, "playbooks/restore.yml", dict(extra, restore_backup_id=forged))
        chosen = run.result("Choose the backup once, so that every host restores the same one")
        assert run.rc != 0 and chosen.get("failed") and kind in chosen["msg"], chosen.get("msg")
        assert manifests_and_keys(lab) == before  # refused before anything was stopped
    # latest, in check mode: the newest trusted backup, the planted ones passed over
    run = run_playbook(lab, "playbooks/restore.yml", dict(extra, restore_backup_id="latest"), check=True)
    chosen = run.result("Choose the backup once, so that every host restores the same one")
    assert run.rc == 0 and chosen["backup_id"] == taken["backup_id"], (chosen, run.stderr[-3000:])
    assert sorted(s["backup_id"] for s in chosen["passed_over"]) == [FORGED, OTHER_KEY]
    assert manifests_and_keys(lab) == before
    # a drill of the planted backup fails and says why
    drill = run_module(lab, "cp1", "etcdops.etcd.etcd_backup_verify",
                       dict(store_args(lab), backup_id=FORGED, identity_file=IDENTITY_ON_HOST,
                            tool=lab.state["etcd_bin_dir"], trusted_keys=lab_trusted_keys(lab)))
    assert drill.get("failed") and drill["error_kind"] == "unsigned", drill.get("msg")


def test_the_backup_playbook_without_recipients_or_a_signing_key_refuses_and_says_what_to_give(lab, identity):
    one_line_only(lab)
    extra = dict(playbook_vars(lab), backup_prune=False, backup_recipients=[], backup_resources=False)
    run = run_playbook(lab, "playbooks/backup.yml", extra)
    taken = run.result("Back up etcd and the Kubernetes resources to the store")
    assert run.rc != 0 and "no age recipient given" in taken["msg"] and "encryption=none" in taken["msg"]
    run = run_playbook(lab, "playbooks/backup.yml", dict(extra, backup_recipients=[identity],
                                                         backup_signing_key_file="/etc/etcdops/missing.key"))
    taken = run.result("Back up etcd and the Kubernetes resources to the store")
    assert run.rc != 0 and "no signing key" in taken["msg"] and "signing=none" in taken["msg"]
