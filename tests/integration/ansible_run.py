"""Run Ansible against a lab and read the per-host results of the json callback."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def ansible_env():
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_NOCOLOR="1",
        PATH="%s:%s" % (VENV_BIN, env["PATH"]),
    )
    return env


class AnsibleRun:
    """The outcome of one ansible or ansible-playbook run, with per-host task results from the json callback."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("no JSON from ansible (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout[-5000:], proc.stderr[-5000:]))

    def results(self, task_name=None):
        """[(task name, host, result)] in the order they ran."""
        found = []
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                name = task["task"]["name"]
                if task_name is None or name == task_name or name.endswith(" : " + task_name):
                    found.extend((name, host, result) for host, result in task["hosts"].items())
        return found

    def result(self, task_name=None, host=None):
        matches = [r for n, h, r in self.results(task_name) if host is None or h == host]
        assert matches, "no result for task %r on %r in %s" % (task_name, host, [(n, h) for n, h, r in self.results()])
        return matches[-1]

    @property
    def stats(self):
        return self.data.get("stats", {})


def run_module(lab, host, module, args=None, check=False):
    cmd = [str(VENV_BIN / "ansible"), "-i", str(lab.inventory), host, "-m", module]
    if args:
        cmd += ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    run = AnsibleRun(subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False))
    return run.result(host=host)


def run_playbook(lab, playbook, extra_vars=None, check=False):
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(lab.inventory), str(ROOT / playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    return AnsibleRun(subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False))
