"""ansible-test sanity (empty ignore files) and ansible-lint (production profile) over the collection."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.quality

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# Target Pythons the modules must import and compile on; each one found on this machine is tested.
TARGET_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")


def collection_copy(dest_root):
    """Copy what git would ship (tracked and untracked, not ignored) to <dest_root>/ansible_collections/etcdops/etcd."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.split(b"\0")
    dest = Path(dest_root) / "ansible_collections" / "etcdops" / "etcd"
    if dest.exists():
        shutil.rmtree(dest)
    for name in filter(None, files):
        src = ROOT / os.fsdecode(name)
        if not src.is_file():
            continue
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def available_pythons():
    found = []
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in TARGET_PYTHONS:
        candidates = [shutil.which("python" + version)]
        candidates += sorted(pyenv_root.glob(version + ".*/bin/python" + version))
        for candidate in candidates:
            if candidate and subprocess.run([str(candidate), "-c", "pass"], capture_output=True, check=False).returncode == 0:
                found.append((version, str(candidate)))
                break
    return found


def install_get_pip_standin(ansible_test):
    """ansible-test --venv bootstraps pip with a script it downloads; put our stand-in where it looks first."""
    sources = ansible_test.parent.parent.glob("lib/python3*/site-packages/ansible_test/_internal/python_requirements.py")
    source = "".join(path.read_text() for path in sources)
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in set(re.findall(r"pip='([0-9.]+)'", source)):
        shutil.copy(Path(__file__).with_name("get_pip_standin.py"), cache / ("get_pip_%s.py" % version.replace(".", "_")))


def run(cmd, cwd, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "%s failed (exit %d):\n%s" % (" ".join(cmd), proc.returncode, output[-20000:])
    return output


def test_ignore_files_are_empty():
    for ignore in sorted((ROOT / "tests" / "sanity").glob("ignore-*.txt")):
        assert ignore.read_text().strip() == "", "%s must stay empty: fix the finding instead" % ignore


def ansible_test_for(core):
    """The ansible-test of the given ansible-core series: the dev venv's, or one installed under .build/venvs."""
    if core == "dev":
        return VENV_BIN / "ansible-test"
    venv = ROOT / ".build" / "venvs" / ("ansible-core-" + core)
    if not (venv / "bin" / "ansible-test").exists():
        run([sys.executable, "-m", "venv", str(venv)], cwd=ROOT)
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "ansible-core==%s.*" % core], cwd=ROOT)
    return venv / "bin" / "ansible-test"


# "dev" is the ansible-core of tests/requirements.txt; OLDEST_CORE must match meta/runtime.yml requires_ansible.
OLDEST_CORE = "2.18"


def test_requires_ansible_is_the_oldest_tested():
    assert 'requires_ansible: ">=%s.0"' % OLDEST_CORE in (ROOT / "meta" / "runtime.yml").read_text()


@pytest.mark.parametrize("core", ["dev", OLDEST_CORE])
def test_ansible_test_sanity(tmp_path, core):
    ansible_test = ansible_test_for(core)
    dest = collection_copy(tmp_path)
    env = dict(os.environ)
    # ansible-test finds target interpreters on PATH by version: give it one directory with each.
    shims = tmp_path / "pythons"
    shims.mkdir()
    versions = []
    for version, path in available_pythons():
        os.symlink(path, shims / ("python" + version))
        versions.append(version)
    # pyenv shims answer for every version and then fail for the ones not selected: keep them out.
    path = [entry for entry in env["PATH"].split(":") if "/.pyenv/shims" not in entry]
    env["PATH"] = ":".join([str(ansible_test.parent), str(shims)] + path)
    install_get_pip_standin(ansible_test)
    cmd = [str(ansible_test), "sanity", "--color", "no", "--venv", "--requirements"]
    if core != "dev":
        # The oldest core checks what depends on the core (imports, compile, validate-modules, ansible-doc...);
        # its older pylint adds nothing the newest one does not find, and costs a minute of the suite's hour.
        cmd += ["--skip-test", "pylint"]
    out = run(cmd, cwd=dest, env=env)
    print(out[-3000:])
    print("target pythons tested:", ", ".join(versions))


def test_ansible_lint_production(tmp_path):
    dest = collection_copy(tmp_path)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path))
    out = run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor"], cwd=dest, env=env)
    print(out[-3000:])
