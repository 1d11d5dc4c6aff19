"""The backup role's systemd timer, rendered for real: the role's `timer` entry point run against localhost
with its unit and configuration directories in a temporary directory (no systemd here, so nothing is enabled:
the role says so). Checks the unit files line by line, the 0600 variables file, check/diff mode and
idempotence, and that bad input is refused before anything is written."""

import configparser
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
PUBLIC = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
PLAY = """---
- name: Install the backup timer
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Timer
      ansible.builtin.include_role:
        name: etcdops.etcd.backup
        tasks_from: timer
"""


def run(tmp_path, extra, check=False, diff=False):
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1",
               PATH="%s:%s" % (VENV_BIN, os.environ["PATH"]))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play), "-e", json.dumps(extra)]
    cmd += ["--check"] if check else []
    cmd += ["--diff"] if diff else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    data = json.loads(proc.stdout)
    tasks = dict((t["task"]["name"].split(" : ")[-1], t["hosts"].get("localhost", {}))
                 for p in data["plays"] for t in p["tasks"])
    return proc.returncode, tasks, proc.stdout


def options(tmp_path, **more):
    extra = dict(
        backup_timer_host="localhost", backup_timer_inventory="/etc/etcdops/inventory.yml",
        backup_timer_unit_dir=str(tmp_path / "units"), backup_timer_config_dir=str(tmp_path / "conf"),
        backup_timer_lock_dir=str(tmp_path / "lock"), backup_timer_user=os.environ.get("USER") or "root",
        backup_cluster_name="prod", backup_etcd_cluster="events", backup_s3_bucket="etcd-backups",
        backup_s3_secret_key="s3cr3t-value-not-for-logs", backup_recipients=[PUBLIC],
        backup_timer_environment={"ANSIBLE_COLLECTIONS_PATH": "/opt/collections"})
    extra["backup_timer_user"] = "root" if os.geteuid() == 0 else extra["backup_timer_user"]
    (tmp_path / "units").mkdir(exist_ok=True)
    extra.update(more)
    return extra


def unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def test_timer_units_render_run_the_playbook_every_15_minutes_under_flock(tmp_path):
    rc, tasks, out = run(tmp_path, options(tmp_path))
    assert rc == 0, out[-3000:]
    service = unit(tmp_path / "units" / "etcdops-backup-prod-events.service")
    timer = unit(tmp_path / "units" / "etcdops-backup-prod-events.timer")
    conf = tmp_path / "conf" / "backup-prod-events.yml"
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].split() == [
        "/usr/bin/flock", "--nonblock", "--conflict-exit-code", "75",
        str(tmp_path / "lock" / "etcdops-backup-prod-events.lock"), "/usr/bin/ansible-playbook", "-i",
        "/etc/etcdops/inventory.yml", "etcdops.etcd.backup", "-e", "@" + str(conf)]
    assert service["Service"]["SuccessExitStatus"] == "75"
    # the environment is in a root-owned 0600 file, not in the unit every user can read
    assert "Environment=" not in (tmp_path / "units" / "etcdops-backup-prod-events.service").read_text()
    environment = tmp_path / "conf" / "backup-prod-events.env"
    assert service["Service"]["EnvironmentFile"] == str(environment)
    assert stat.S_IMODE(environment.stat().st_mode) == 0o600 and environment.stat().st_uid == 0
    lines = [line for line in environment.read_text().splitlines() if not line.startswith("#")]
    assert lines == ['ANSIBLE_COLLECTIONS_PATH="/opt/collections"', 'ANSIBLE_NOCOLOR="1"',
                     'ANSIBLE_RETRY_FILES_ENABLED="False"']
    assert timer["Timer"]["OnCalendar"] == "*:0/15"
    assert timer["Timer"]["Unit"] == "etcdops-backup-prod-events.service"
    assert timer["Install"]["WantedBy"] == "timers.target"

    variables = yaml.safe_load(conf.read_text())
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "conf").stat().st_mode) == 0o700
    assert variables["backup_timer_enabled"] is False  # a run does not reinstall the timer
    assert variables["backup_cluster_name"] == "prod" and variables["backup_etcd_cluster"] == "events"
    assert variables["backup_recipients"] == [PUBLIC] and variables["etcd_hosts"] == "control_plane"
    assert variables["backup_s3_secret_key"] == "s3cr3t-value-not-for-logs"
    assert variables["backup_timeout"] == 900 and variables["backup_prune"] is True
    assert "s3cr3t-value-not-for-logs" not in out  # the variables file is written with no_log
    # No systemd in this container: the role says that nothing is scheduled, and does not pretend otherwise.
    assert "systemd is not running" in tasks["Say that systemd does not run on the runner host"]["msg"]
    assert tasks["Enable and start the timer"].get("skipped")

    rc, tasks, out = run(tmp_path, options(tmp_path))
    assert rc == 0
    changed = [name for name, result in tasks.items() if result.get("changed")]
    assert changed == [], changed


SECRETS = ("s3cr3t-value-not-for-logs", "s3ss10n-token-not-for-logs", "env-s3cr3t-not-for-logs")


def secret_options(tmp_path):
    return options(tmp_path, backup_s3_session_token=SECRETS[1], backup_timer_environment={
        "ANSIBLE_COLLECTIONS_PATH": "/opt/collections", "AWS_SECRET_ACCESS_KEY": SECRETS[2]})


def test_no_secret_lands_in_a_file_others_can_read_or_in_the_output(tmp_path):
    rc, tasks, out = run(tmp_path, secret_options(tmp_path), diff=True)
    assert rc == 0, out[-3000:]
    holding = {}
    for directory, dummy, files in os.walk(str(tmp_path)):
        for name in files:
            path = os.path.join(directory, name)
            text = Path(path).read_text(errors="replace")
            found = [secret for secret in SECRETS if secret in text]
            if found:
                holding[os.path.relpath(path, str(tmp_path))] = found
                info = os.stat(path)
                assert not info.st_mode & 0o077, "%s holds %s with mode %o" % (path, found, info.st_mode)
                assert info.st_uid in (0, os.geteuid()), path
    assert holding == {"conf/backup-prod-events.yml": list(SECRETS[:2]),
                       "conf/backup-prod-events.env": [SECRETS[2]]}, holding
    assert not any(secret in out for secret in SECRETS)
    rc, tasks, out = run(tmp_path, dict(secret_options(tmp_path), backup_timer_environment={
        "AWS_SECRET_ACCESS_KEY": "changed-" + SECRETS[2]}), check=True, diff=True)
    assert rc == 0 and not any(secret in out for secret in SECRETS), out[-3000:]


def test_check_mode_shows_the_units_in_the_diff_and_writes_nothing(tmp_path):
    rc, tasks, out = run(tmp_path, options(tmp_path, backup_timer_on_calendar="hourly"), check=True, diff=True)
    assert rc == 0, out[-3000:]
    written = tasks["Write the backup timer unit"]
    assert written["changed"] and "OnCalendar=hourly" in written["diff"][0]["after"]
    assert "flock --nonblock" in tasks["Write the backup service unit"]["diff"][0]["after"]
    assert tasks["Write the backup variables the timer's runs use (S3 keys included, so 0600 and no log)"]["changed"]
    assert "s3cr3t-value-not-for-logs" not in out
    assert os.listdir(tmp_path / "units") == [] and not (tmp_path / "conf").exists()


def test_bad_options_are_refused_before_anything_is_written(tmp_path):
    for bad in (dict(backup_timer_host=""), dict(backup_timer_inventory=""),
                dict(backup_timer_inventory="/etc/my inventory.yml"),
                dict(backup_timer_environment={"X": "a$b"}), dict(backup_timer_on_calendar="*:0/15\nExecStart=x")):
        rc, tasks, out = run(tmp_path, options(tmp_path, **bad))
        assert rc != 0 and "The timer needs backup_timer_host" in tasks["Check the timer options"]["msg"], bad
        assert os.listdir(tmp_path / "units") == [] and not (tmp_path / "conf").exists()


def test_a_timer_whose_backups_could_not_be_encrypted_is_refused_before_anything_is_written(tmp_path):
    rc, tasks, out = run(tmp_path, options(tmp_path, backup_recipients=[]))
    assert rc != 0 and "no age recipient given" in tasks["Check that the timer's backups can be encrypted"]["msg"]
    assert not list((tmp_path / "units").iterdir()) and not (tmp_path / "conf").exists()
    rc, tasks, out = run(tmp_path, options(tmp_path, backup_recipients=[], backup_encryption="none"))
    assert rc == 0, out[-3000:]
