"""The backup role's systemd timer on the lab (one etcd line: the timer does not depend on it).

The lab's hosts run no systemd, so the install on cp1 is proved in check/diff mode (the diff shows the units,
nothing is written), then for real (the files and their modes, and the role saying that nothing is scheduled).
The service's ExecStart is then run by hand (twice at once), as systemd would run it, from a runner installed on the controller
(which has ansible-playbook) against the lab's inventory: flock lets the first through, which makes a backup,
and the second exits 75 at once: one backup is added, not two. (Idempotence of the install: tests/unit/roles.)"""

import configparser
import json
import os
import shlex
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ansible_run import ROOT, VENV_BIN, AnsibleRun, ansible_env  # pylint: disable=import-error
from ansible_collections.etcdops.etcd.plugins.module_utils._store import S3Store, etcd_location

pytestmark = pytest.mark.lab

LAB_WITH_S3 = True
LAB_LINES = ["3.6"]
CLUSTER = "timer"
PLAY = """---
- name: Install the backup timer
  hosts: %s
  gather_facts: false
  tasks:
    - name: Timer
      ansible.builtin.include_role:
        name: etcdops.etcd.backup
        tasks_from: timer
"""


def role_vars(lab, **more):
    conf = lab.state["s3"]
    extra = dict(backup_cluster_name=CLUSTER, backup_s3_bucket=conf["bucket"], backup_s3_endpoint_url=conf["endpoint_url"],
                 backup_s3_region=conf["region"], backup_s3_path_style=True, backup_s3_access_key=conf["access_key"],
                 backup_s3_secret_key=conf["secret_key"], backup_resources=False, backup_prune=False,
                 backup_timer_inventory="/etc/etcdops/inventory.yml", backup_recipients=[lab.state["keys"]["age_recipient"]])
    extra.update(more)
    return extra


def play(tmp_path, inventory, hosts, extra, check=False, diff=False):
    path = tmp_path / ("timer-%s.yml" % hosts)
    path.write_text(PLAY % hosts)
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", inventory, str(path), "-e", json.dumps(extra)]
    cmd += (["--check"] if check else []) + (["--diff"] if diff else [])
    if hosts == "localhost":
        cmd += ["-c", "local"]
    run = AnsibleRun(subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False))
    return run


def backups(lab):
    """The ids of the listed backups (metadata written), read with the store code the modules use."""
    conf = lab.state["s3"]
    store = S3Store(conf["bucket"], endpoint_url=conf["endpoint_url"], region=conf["region"], path_style=True,
                    access_key=conf["access_key"], secret_key=conf["secret_key"])
    return [record["id"] for record in store.list_backups(etcd_location(CLUSTER))]


def test_install_on_a_lab_host_in_check_diff_mode_then_for_real(lab, tmp_path):
    units = "/etc/systemd/system/etcdops-backup-timer-main"
    run = play(tmp_path, str(lab.inventory), "cp1", role_vars(lab, backup_timer_host="cp1"), check=True, diff=True)
    assert run.rc == 0, run.stderr[-2000:]
    service = run.result("Write the backup service unit", host="cp1")
    assert service["changed"] and "ExecStart=/usr/bin/flock --nonblock" in service["diff"][0]["after"]
    assert "OnCalendar=*:0/15" in run.result("Write the backup timer unit", host="cp1")["diff"][0]["after"]
    assert lab.exec("cp1", ["sh", "-c", "ls %s.* /etc/etcdops/backup-timer-main.yml 2>&1 || true" % units]).stdout.count("No such file") == 2
    assert lab.state["s3"]["secret_key"] not in json.dumps(run.data)

    run = play(tmp_path, str(lab.inventory), "cp1", role_vars(lab, backup_timer_host="cp1"))
    assert run.rc == 0, run.stderr[-2000:]
    assert "systemd is not running on cp1" in run.result("Say that systemd does not run on the runner host")["msg"]
    listing = lab.exec("cp1", ["sh", "-c", "stat -c '%%a %%u %%n' %s.service %s.timer /etc/etcdops "
                                           "/etc/etcdops/backup-timer-main.yml /etc/etcdops/backup-timer-main.env"
                                           % (units, units)]).stdout.split("\n")
    assert listing[:5] == ["644 0 %s.service" % units, "644 0 %s.timer" % units, "700 0 /etc/etcdops",
                           "600 0 /etc/etcdops/backup-timer-main.yml", "600 0 /etc/etcdops/backup-timer-main.env"]
    # the S3 secret is only in the 0600 variables file, never in a unit every user can read
    for path in (units + ".service", units + ".timer"):
        assert lab.state["s3"]["secret_key"] not in lab.exec("cp1", ["cat", path]).stdout
    assert "OnCalendar=*:0/15" in lab.exec("cp1", ["cat", units + ".timer"]).stdout


def exec_start(unit_path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(unit_path.read_text())
    env = dict(os.environ)
    assert "Environment" not in parser["Service"] and stat.S_IMODE(
        os.stat(parser["Service"]["EnvironmentFile"]).st_mode) == 0o600
    for line in Path(parser["Service"]["EnvironmentFile"]).read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = shlex.split(line)[0].split("=", 1)
            env[name] = value
    return shlex.split(parser["Service"]["ExecStart"]), env


def test_exec_start_run_by_hand_backs_up_and_two_runs_never_overlap(lab, tmp_path):
    runner = dict(backup_timer_host="localhost", backup_timer_inventory=str(lab.inventory),
                  backup_timer_unit_dir=str(tmp_path / "units"), backup_timer_config_dir=str(tmp_path / "conf"),
                  backup_timer_lock_dir=str(tmp_path), backup_timer_ansible_playbook=str(VENV_BIN / "ansible-playbook"),
                  backup_timer_user="root" if os.geteuid() == 0 else os.environ.get("USER", "root"),
                  backup_timer_environment={"ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".build" / "collections"),
                                            "PATH": "%s:/usr/local/bin:/usr/bin:/bin" % VENV_BIN})
    (tmp_path / "units").mkdir()
    run = play(tmp_path, "localhost,", "localhost", role_vars(lab, **runner))
    assert run.rc == 0, run.stderr[-2000:]
    argv, env = exec_start(tmp_path / "units" / "etcdops-backup-timer-main.service")
    assert argv[:4] == ["/usr/bin/flock", "--nonblock", "--conflict-exit-code", "75"]

    before = backups(lab)
    started = time.monotonic()
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the first holds the lock for the length of its playbook
    second = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    second_seconds = time.monotonic() - started
    out, err = first.communicate(timeout=600)
    assert second.returncode == 75 and second_seconds < 5, (second.returncode, second.stderr)
    assert first.returncode == 0, (out[-3000:], err[-2000:])
    after = backups(lab)  # the run let through made one backup; the one kept out made none
    assert len(after) == len(before) + 1 and after[0] not in before
