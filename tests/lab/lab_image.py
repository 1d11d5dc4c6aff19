"""The lab image, built locally with no registry: debootstrap -> docker import -> docker build.

Everything downloaded is cached under ${ETCDOPS_CACHE:-/var/cache/etcdops} (root file system tar,
wheels, etcd binaries) and the image is tagged with a hash of its inputs, so an unchanged lab reuses
it and any change (stand-in code, requirements, etcd binaries, package list) builds a new one.
"""

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO_ROOT = LAB_DIR.parents[1]
IMAGE_SRC = LAB_DIR / "image"
STANDINS = ["kubelet.py", "crictl.py", "kube_apiserver.py", "labcri.py"]

SUITE = "bookworm"
# What a lab host needs besides minbase: Python for Ansible and the stand-ins, TLS tools, process and
# network tools the procedures and faults use, age to check backups decrypt with the standard CLI.
DEBIAN_PACKAGES = [
    "python3", "python3-venv", "python3-yaml", "ca-certificates", "openssl", "procps", "psmisc",
    "iproute2", "iptables", "iputils-ping", "netbase", "age", "tini", "less", "curl",
]
# moto[s3] plus Flask is what moto_server needs for S3; moto[server] would add every AWS service's deps.
EXTRA_REQUIREMENTS = ["moto[s3]>=5", "flask", "flask-cors"]
ETCD_LINES = ["3.4", "3.5", "3.6", "3.7"]
IMAGE_REPO = "etcdops-lab"
BASE_REPO = "etcdops-lab-base"
LABEL = "etcdops.lab.image"


def log(message):
    print("[lab-image] %s" % message, file=sys.stderr, flush=True)


def cache_root():
    return Path(os.environ.get("ETCDOPS_CACHE", "/var/cache/etcdops"))


def run(argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, **kwargs)


def sha256_text(*parts):
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def debian_mirror():
    """The Debian mirror this machine's apt uses for the suite (never a host name written in the repo)."""
    candidates = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _sep, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and SUITE in fields.get("suites", []) and fields.get("enabled", ["yes"]) != ["no"]:
                candidates += fields.get("uris", [])
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if not os.path.exists(path):
            continue
        for line in Path(path).read_text().splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0])  # drop "[arch=... signed-by=...]"
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                candidates.append(words[1])
    if not candidates:
        raise SystemExit("no Debian %s mirror in this machine's apt sources" % SUITE)
    return candidates[0]


def apt_install(*packages):
    log("installing Debian packages: %s" % " ".join(packages))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *packages], env=env, stdout=subprocess.DEVNULL)


class Lock:
    """flock on a file in the cache: two labs coming up at once build the image once."""

    def __init__(self, name, waiting_for="another build"):
        cache_root().mkdir(parents=True, exist_ok=True)
        self.path = cache_root() / name
        self.waiting_for = waiting_for

    def __enter__(self):
        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for %s (lock %s)" % (self.waiting_for, self.path))
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def rootfs_key():
    return sha256_text(SUITE, "minbase", *sorted(DEBIAN_PACKAGES))[:12]


def ensure_rootfs():
    """A debootstrapped Debian as a tar, made once and reused while the package list is the same."""
    tar = cache_root() / ("rootfs-%s.tar" % SUITE)
    stamp = cache_root() / ("rootfs-%s.key" % SUITE)
    if tar.exists() and stamp.exists() and stamp.read_text().strip() == rootfs_key():
        return tar
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    mirror = debian_mirror()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_root()))
    try:
        root = work / "root"
        log("debootstrap %s (minbase) from %s" % (SUITE, mirror))
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(DEBIAN_PACKAGES), SUITE, str(root), mirror],
            stdout=subprocess.DEVNULL)
        # What an image does not need: package caches and lists, docs, man pages.
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc/*", "usr/share/man/*",
                        "usr/share/info/*", "var/log/*.log", "var/log/apt/*"):
            for path in glob.glob(str(root / pattern)):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(work / "rootfs.tar"), "."])
        os.replace(work / "rootfs.tar", tar)
        stamp.write_text(rootfs_key() + "\n")
        log("root file system ready: %s (%.0fs)" % (tar, time.monotonic() - started))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tar


def docker_has_image(tag):
    return run(["docker", "image", "inspect", tag], check=False, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL).returncode == 0


def ensure_base_image():
    tag = "%s:%s" % (BASE_REPO, rootfs_key())
    if not docker_has_image(tag):
        tar = ensure_rootfs()
        log("docker import %s as %s" % (tar, tag))
        run(["docker", "import", "--change", "LABEL %s=base" % LABEL, str(tar), tag], stdout=subprocess.DEVNULL)
    return tag


def requirements_text():
    text = (REPO_ROOT / "requirements.txt").read_text()
    return text.rstrip("\n") + "\n# lab: the S3 API server\n" + "\n".join(EXTRA_REQUIREMENTS) + "\n"


def host_pip():
    """A pip on this machine to download wheels with (Debian's python3 may come without one)."""
    for python in (str(REPO_ROOT / ".venv" / "bin" / "python"), sys.executable, "python3"):
        if shutil.which(python) and run([python, "-m", "pip", "--version"], check=False,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return [python, "-m", "pip"]
    apt_install("python3-pip")
    return ["python3", "-m", "pip"]


def ensure_wheels():
    """Wheels for the image's Python (Debian bookworm: CPython 3.11, x86_64), downloaded once per requirement set."""
    requirements = requirements_text()
    directory = cache_root() / "wheels" / sha256_text("cp311-manylinux-x86_64", requirements)[:12]
    if (directory / ".complete").exists():
        return directory
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="wheels-", dir=cache_root()))
    try:
        (work / "requirements.txt").write_text(requirements)
        log("downloading wheels for the image's Python into %s" % directory)
        run(host_pip() + [
            "download", "--quiet", "--disable-pip-version-check", "--dest", str(work), "--only-binary=:all:",
            "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
            "--platform", "manylinux_2_5_x86_64", "--platform", "manylinux1_x86_64", "--platform", "any",
            "-r", str(work / "requirements.txt")])
        (work / ".complete").write_text("")
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(work, directory)
        log("wheels ready (%.0fs)" % (time.monotonic() - started))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return directory


def etcd_line_dir(line):
    return cache_root() / "etcd" / line


def etcd_line_ready(line):
    directory = etcd_line_dir(line)
    return (directory / "etcd").is_file() and (directory / "etcdctl").is_file() and (directory / "VERSION").is_file()


def ensure_etcd_line(line):
    """The binaries of one etcd line in the cache, installed by scripts/install-etcd.sh when missing."""
    if etcd_line_ready(line):
        return etcd_line_dir(line)
    script = REPO_ROOT / "scripts" / "install-etcd.sh"
    if not script.exists():
        raise SystemExit("etcd %s binaries are missing from %s and %s does not exist" % (line, etcd_line_dir(line), script))
    log("installing etcd %s with %s" % (line, script))
    run([str(script), line])
    if not etcd_line_ready(line):
        raise SystemExit("%s %s did not leave binaries in %s" % (script, line, etcd_line_dir(line)))
    return etcd_line_dir(line)


def etcd_version(line):
    return (etcd_line_dir(line) / "VERSION").read_text().strip()


def available_lines():
    return [line for line in ETCD_LINES if etcd_line_ready(line)]


def image_tag(base_tag, wheels):
    """Hash of everything that goes into the image."""
    parts = [base_tag, (IMAGE_SRC / "Dockerfile").read_bytes()]
    parts += [(IMAGE_SRC / name).read_bytes() for name in STANDINS]
    parts += sorted(p.name for p in wheels.iterdir())
    parts.append((wheels / "requirements.txt").read_bytes())
    for line in available_lines():
        for path in sorted(etcd_line_dir(line).iterdir()):
            if path.is_file():
                parts += [line, path.name, sha256_file(path)]
    return "%s:%s" % (IMAGE_REPO, sha256_text(*parts)[:12])


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_image(tag, base_tag, wheels):
    started = time.monotonic()
    context = Path(tempfile.mkdtemp(prefix="image-context-", dir=cache_root()))
    try:
        shutil.copy2(IMAGE_SRC / "Dockerfile", context / "Dockerfile")
        (context / "standins").mkdir()
        for name in STANDINS:
            shutil.copy2(IMAGE_SRC / name, context / "standins" / name)
        (context / "wheels").mkdir()
        for path in wheels.iterdir():
            if path.is_file() and not path.name.startswith("."):
                _link_or_copy(path, context / "wheels" / path.name)
        for line in available_lines():
            (context / "etcd" / line).mkdir(parents=True)
            for path in etcd_line_dir(line).iterdir():
                if path.is_file():
                    _link_or_copy(path, context / "etcd" / line / path.name)
        log("docker build %s (etcd lines: %s)" % (tag, " ".join(available_lines())))
        env = dict(os.environ, DOCKER_BUILDKIT="0")  # the legacy builder needs no buildx plugin
        result = run(["docker", "build", "--quiet", "--build-arg", "BASE_IMAGE=" + base_tag, "--label", LABEL + "=lab",
                      "-t", tag, str(context)], env=env, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit("docker build of %s failed" % tag)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    log("image %s built in %.0fs" % (tag, time.monotonic() - started))


def ensure_image(etcd_line=None):
    """The lab image for the current inputs (building it if needed); returns its tag."""
    if etcd_line:
        ensure_etcd_line(etcd_line)
    with Lock("lab-image.lock"):
        base_tag = ensure_base_image()
        wheels = ensure_wheels()
        tag = image_tag(base_tag, wheels)
        if not docker_has_image(tag):
            build_image(tag, base_tag, wheels)
        return tag


def prune_images(keep):
    """Remove lab images (not their base) that no container uses, except `keep`."""
    used = set(run(["docker", "ps", "-a", "--format", "{{.Image}}"], capture_output=True, text=True).stdout.split())
    listed = run(["docker", "images", IMAGE_REPO, "--format", "{{.Repository}}:{{.Tag}}"],
                 capture_output=True, text=True).stdout.split()
    for tag in listed:
        if tag != keep and tag not in used:
            log("removing unused image %s" % tag)
            run(["docker", "rmi", tag], check=False, stdout=subprocess.DEVNULL)


def image_lines(tag):
    """The etcd lines baked into an image, read back from the image itself."""
    result = run(["docker", "run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", "ls /opt/etcd"],
                 capture_output=True, text=True)
    return result.stdout.split()


if __name__ == "__main__":
    print(ensure_image(sys.argv[1] if len(sys.argv) > 1 else None))
