"""The molecule scenario `lab`: lab up, status.yml converges (twice, idempotent), verify, lab down."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.molecule

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_molecule_lab_scenario():
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
        ETCDOPS_MOLECULE_PREFIX="mol%d" % (os.getpid() % 100000),
        ANSIBLE_NOCOLOR="1",
        PY_COLORS="0",
        NO_COLOR="1",
        PATH="%s:%s" % (VENV_BIN, env["PATH"]),
    )
    proc = subprocess.run([str(VENV_BIN / "molecule"), "test", "-s", "lab"], cwd=ROOT / "extensions",
                          env=env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-15000:]
    for action in ("create", "converge", "idempotence", "verify", "destroy"):
        assert "[lab > %s] Executed: Successful" % action in output, output[-5000:]
