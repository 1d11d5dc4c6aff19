"""What a user sees from the bootstrapped controller: only what matters, no warning about code that is not theirs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.quality
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.mark.parametrize("argv", [
    ["ansible", "--version"],
    ["ansible-doc", "etcdops.etcd.etcd_tools"],
    ["ansible-playbook", "--syntax-check", "-i", "localhost,", str(ROOT / "playbooks" / "prerequisites.yml")],
])
def test_ansible_commands_print_no_warning(argv):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(VENV_BIN / argv[0])] + argv[1:], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
