"""The etcdops lab: kubeadm-style control-plane hosts in Docker, with real etcd, TLS and an S3 API.

    python3 tests/lab/lab.py up --prefix demo --etcd-line 3.6
    python3 tests/lab/lab.py status --prefix demo
    python3 tests/lab/lab.py exec --prefix demo cp1 -- crictl ps
    python3 tests/lab/lab.py fault --prefix demo stop cp2
    python3 tests/lab/lab.py down --prefix demo

Importable as a module (pytest fixtures): Lab(prefix).up(...), .exec(...), .etcdctl(...), faults, .down().
Every Docker object carries the prefix in its name and the label etcdops.lab=<prefix>; the lab's
state lives in .lab/<prefix>/ at the repository root (inventory.yml, lab.json, pki/). See docs/lab.md.
"""

import argparse
import io
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab_image  # noqa: E402
import lab_manifests  # noqa: E402
import lab_pki  # noqa: E402

REPO_ROOT = lab_image.REPO_ROOT
STATE_ROOT = REPO_ROOT / ".lab"
ENSURE_DOCKER = REPO_ROOT / "scripts" / "ensure-docker.sh"
# No dash in a prefix: then "<prefix>-" can never be the start of another lab's names.
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,19}$")
LABEL = "etcdops.lab"
HOST_ADDRESS_OFFSET = 10  # cp1 gets .11 of the lab subnet, cp2 .12, ...
S3_ADDRESS_OFFSET = 100
S3_PORT = 9000
S3_BUCKET = "etcdops-backups"
S3_ACCESS_KEY = "etcdops-lab"
S3_SECRET_KEY = "etcdops-lab-secret"
S3_REGION = "us-east-1"
VENV_PYTHON = "/opt/etcdops/venv/bin/python"
ETCD_PKI = "/etc/kubernetes/pki/etcd"
# What a health check from a lab host presents to etcd (kubeadm's healthcheck-client).
ETCDCTL_TLS = ["--cacert=%s/ca.crt" % ETCD_PKI, "--cert=%s/healthcheck-client.crt" % ETCD_PKI,
               "--key=%s/healthcheck-client.key" % ETCD_PKI]
HOST_MEMORY = "1536m"
HOST_PIDS = "2048"


class LabError(Exception):
    pass


def log(message):
    print("[lab] %s" % message, file=sys.stderr, flush=True)


def docker(*argv, check=True, input=None, timeout=None):
    result = subprocess.run(["docker", *argv], input=input, capture_output=True, timeout=timeout, check=False,
                            text=not isinstance(input, bytes))
    if check and result.returncode != 0:
        err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode(errors="replace")
        raise LabError("docker %s failed: %s" % (" ".join(argv[:3]), err.strip()))
    return result


_DOCKER_FAILURE = []


def ensure_docker():
    """A Docker engine that answers (scripts/ensure-docker.sh installs and starts one when needed).

    The script's own output goes to stderr as it runs; when it fails, the LabError carries its last line
    (the reason, e.g. dockerd's last error), and later calls in this process fail at once with the same one.
    """
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        return
    if _DOCKER_FAILURE:
        raise LabError(_DOCKER_FAILURE[0])
    result = subprocess.run([str(ENSURE_DOCKER)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        _DOCKER_FAILURE.append("scripts/ensure-docker.sh failed (exit %d): %s" % (
            result.returncode, lines[-1] if lines else "no output"))
        raise LabError(_DOCKER_FAILURE[0])


def validate_prefix(prefix):
    if not PREFIX_PATTERN.match(prefix or ""):
        raise LabError("lab prefix %r: use 1-20 lower-case letters and digits, starting with a letter" % prefix)
    return prefix


class Lab:
    """One lab: N control-plane hosts (containers <prefix>-cp1..N), a network, an S3 server."""

    def __init__(self, prefix):
        self.prefix = validate_prefix(prefix)
        self.dir = STATE_ROOT / prefix
        self.network = "%s-net" % prefix
        self._state = None

    # ------------------------------------------------------------------ state

    @property
    def state(self):
        if self._state is None:
            path = self.dir / "lab.json"
            if not path.exists():
                raise LabError("lab %s is not up (no %s)" % (self.prefix, path))
            self._state = json.loads(path.read_text())
        return self._state

    @property
    def hosts(self):
        return [h["name"] for h in self.state["hosts"]]

    @property
    def members(self):
        """The hosts that were etcd members when the lab came up (all hosts unless `up(members=...)`)."""
        return self.state.get("members") or self.hosts

    @property
    def spare_hosts(self):
        """Hosts prepared like a control-plane node that has not joined yet: PKI, no static pods."""
        return [h for h in self.hosts if h not in self.members]

    @property
    def inventory(self):
        return self.dir / "inventory.yml"

    def host(self, name):
        """A host's record from lab.json; accepts cp1 or <prefix>-cp1."""
        short = name[len(self.prefix) + 1:] if name.startswith(self.prefix + "-") else name
        for record in self.state["hosts"]:
            if record["name"] == short:
                return record
        if short == "s3" and self.state.get("s3"):
            return {"name": "s3", "container": self.state["s3"]["container"], "ip": self.state["s3"]["ip"]}
        raise LabError("lab %s has no host %s (hosts: %s)" % (self.prefix, name, ", ".join(self.hosts)))

    def container(self, name):
        return self.host(name)["container"]

    def ip(self, name):
        return self.host(name)["ip"]

    def client_endpoints(self, hosts=None):
        return ",".join("https://%s:2379" % self.ip(h) for h in (hosts or self.members))

    # ------------------------------------------------------------------ up / down

    def exists(self):
        objects = self._objects()
        return bool(objects["containers"] or objects["networks"])

    def up(self, hosts=3, etcd_line="3.5", with_s3=True, timeout=120, backoff_max=20, data_disk_mb=0, members=None):
        """Bring the lab up and wait until etcd is healthy and every API server holds its lease.

        members < hosts makes only cp1..cp<members> etcd members (with an API server); the other hosts are spare:
        PKI (certificates for their own name and address) but no static pod, like a node about to join. They are
        in the inventory group control_plane_spare, not in control_plane.

        data_disk_mb > 0 gives each host a file system of that size of its own at /var/lib/etcd (a loop
        device), so that fill_disk() can fill it; by default /var/lib/etcd is a directory of the host's root.
        """
        started = time.monotonic()
        if not 1 <= hosts <= S3_ADDRESS_OFFSET - HOST_ADDRESS_OFFSET - 1:
            raise LabError("a lab has 1 to %d hosts" % (S3_ADDRESS_OFFSET - HOST_ADDRESS_OFFSET - 1))
        members = hosts if members is None else members
        if not 1 <= members <= hosts:
            raise LabError("a lab has 1 to %d members (its hosts), not %d" % (hosts, members))
        ensure_docker()
        if self.exists():
            raise LabError("lab %s already exists; run `down --prefix %s` first" % (self.prefix, self.prefix))
        image = lab_image.ensure_image(etcd_line)
        etcd_version = lab_image.etcd_version(etcd_line)
        image_done = time.monotonic()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        try:
            subnet, gateway = self._create_network()
            net = ipaddress.ip_network(subnet)
            names = ["cp%d" % i for i in range(1, hosts + 1)]
            addresses = {n: str(net.network_address + HOST_ADDRESS_OFFSET + i) for i, n in enumerate(names, 1)}
            self._state = {
                "prefix": self.prefix,
                "network": self.network,
                "subnet": subnet,
                "gateway": gateway,
                "image": image,
                "etcd_line": etcd_line,
                "etcd_version": etcd_version,
                "etcd_bin_dir": "/opt/etcd/%s" % etcd_line,
                "etcd_lines_in_image": lab_image.available_lines(),
                "etcd_client_endpoints": ",".join("https://%s:2379" % addresses[n] for n in names[:members]),
                "pki_dir": str(self.dir / "pki"),
                "inventory": str(self.inventory),
                "python_interpreter": VENV_PYTHON,
                "hosts": [{"name": n, "container": "%s-%s" % (self.prefix, n), "ip": addresses[n],
                           "pki_dir": str(self.dir / "pki" / n)} for n in names],
                "members": names[:members],
                "data_disk_mb": data_disk_mb,
                "s3": None,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            if with_s3:
                s3_ip = str(net.network_address + S3_ADDRESS_OFFSET)
                self._state["s3"] = {
                    "container": "%s-s3" % self.prefix, "ip": s3_ip,
                    "endpoint_url": "http://%s:%d" % (s3_ip, S3_PORT), "bucket": S3_BUCKET,
                    "access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY, "region": S3_REGION,
                }
            self._make_keys()
            self._write_state()
            self._make_pki()
            for record in self._state["hosts"]:
                self._start_host(record, image, backoff_max)
            if with_s3:
                self._start_s3(image)
            self._write_inventory()
            self.wait_healthy(timeout=timeout, hosts=self.members)
            self.wait_leases(timeout=timeout)
            if with_s3:
                self._create_bucket(timeout=60)
        except BaseException:
            log("lab %s did not come up; its objects are left for inspection (`down --prefix %s` removes them)"
                % (self.prefix, self.prefix))
            raise
        log("lab %s up: %d hosts, etcd %s, image %s (image %.1fs, lab %.1fs, total %.1fs)" % (
            self.prefix, hosts, etcd_version, image, image_done - started, time.monotonic() - image_done,
            time.monotonic() - started))
        return self.state

    def _create_network(self):
        # Docker assigns --ip only on networks created with an explicit subnet: let Docker pick a
        # free subnet once, read it, and create the lab network with it (locked against other labs).
        with lab_image.Lock("lab-network.lock", "another lab to create its network"):
            probe = "%s-netprobe" % self.prefix
            docker("network", "create", "--label", "%s=%s" % (LABEL, self.prefix), probe)
            try:
                config = json.loads(docker("network", "inspect", probe).stdout)[0]["IPAM"]["Config"][0]
            finally:
                docker("network", "rm", probe, check=False)
            subnet = config["Subnet"]
            gateway = config.get("Gateway") or str(ipaddress.ip_network(subnet).network_address + 1)
            docker("network", "create", "--subnet", subnet, "--gateway", gateway,
                   "--label", "%s=%s" % (LABEL, self.prefix), self.network)
        return subnet, gateway

    def _make_keys(self):
        """The lab's backup keys, as an operator makes them once: an age identity (backups are encrypted to it) and
        a minisign signing key without password (on every host, 0600; its public key is what restores trust)."""
        keys = self.dir / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        identity = keys / "age-identity.txt"
        if not identity.exists():
            subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
        signing = keys / "backup-signing.key"
        if not signing.exists():
            subprocess.run(["minisign", "-G", "-W", "-s", str(signing), "-p", str(keys / "backup-signing.pub")],
                           check=True, capture_output=True)
        public = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                                text=True).stdout.strip()
        self._state["keys"] = {
            "age_identity_file": str(identity), "age_recipient": public,
            "signing_key_file": str(signing),
            "signing_public_key": (keys / "backup-signing.pub").read_text().splitlines()[1].strip(),
        }

    def _make_pki(self):
        pki = self.dir / "pki"
        lab_pki.make_shared(pki)
        for record in self._state["hosts"]:
            lab_pki.make_host(pki, record["name"], record["ip"])
        lab_pki.make_admin_client(pki, self.dir / "admin")

    def _host_files(self, record):
        """The files kubeadm would have left on this host, as a tar to copy into its container."""
        pki = self.dir / "pki"
        members = self._state.get("members") or [h["name"] for h in self._state["hosts"]]
        initial_cluster = ",".join("%s=https://%s:2380" % (h["name"], h["ip"]) for h in self._state["hosts"]
                                   if h["name"] in members)
        files = {
            "etc/kubernetes/manifests/etcd.yaml": lab_manifests.etcd_manifest(
                record["name"], record["ip"], initial_cluster, self._state["etcd_version"]),
            "etc/kubernetes/manifests/kube-apiserver.yaml": lab_manifests.apiserver_manifest(
                record["ip"], self._state["etcd_line"]),
            "etc/kubernetes/admin.conf": lab_manifests.admin_conf(
                "https://%s:6443" % record["ip"], pki / "ca.crt", self.dir / "admin" / "admin.crt",
                self.dir / "admin" / "admin.key"),
            "etc/kubernetes/enc/encryption-config.yaml": self._encryption_config(),
        }
        if record["name"] not in members:  # a spare host: kubeadm has not joined it yet, so no static pods
            del files["etc/kubernetes/manifests/etcd.yaml"], files["etc/kubernetes/manifests/kube-apiserver.yaml"]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            def add(name, data, mode):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))

            for name, text in files.items():
                add(name, text.encode(), 0o600)
            # the backup signing key, as an operator installs it on every master (the backup role can write it too)
            add("etc/etcdops/backup-signing.key", Path(self._state["keys"]["signing_key_file"]).read_bytes(), 0o600)
            host_pki = pki / record["name"]
            for path in sorted(host_pki.rglob("*")):
                if path.is_file():
                    add("etc/kubernetes/pki/" + str(path.relative_to(host_pki)), path.read_bytes(), path.stat().st_mode & 0o777)
            # etcdctl/etcdutl on PATH are those of the lab's etcd line, as an operator would install them.
            for tool in ("etcdctl", "etcdutl"):
                if (lab_image.etcd_line_dir(self._state["etcd_line"]) / tool).exists():
                    info = tarfile.TarInfo("usr/local/bin/" + tool)
                    info.type, info.linkname = tarfile.SYMTYPE, "%s/%s" % (self._state["etcd_bin_dir"], tool)
                    info.mtime = int(time.time())
                    tar.addfile(info)
        return buffer.getvalue()

    def _encryption_config(self):
        path = self.dir / "encryption-config.yaml"
        if not path.exists():
            path.write_text(lab_manifests.encryption_config())
        return path.read_text()

    def _data_disk(self, record):
        """A small ext4 file system on a loop device, as a Docker volume for /var/lib/etcd of one host."""
        size_mb = self._state["data_disk_mb"]
        image = self.dir / "disks" / ("%s.img" % record["name"])
        image.parent.mkdir(parents=True, exist_ok=True)
        with open(image, "wb") as handle:
            handle.truncate(size_mb * 1024 * 1024)
        # No blocks reserved for root: a full disk is full for etcd too (it runs as root).
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "etcd-data", str(image)], check=True)
        # etcd wants its data directory 0700 and empty: fix the file system's root without mounting it.
        for request in ("set_inode_field <2> mode 040700", "rmdir lost+found"):
            subprocess.run(["debugfs", "-w", "-R", request, str(image)], check=True, capture_output=True)
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                                text=True).stdout.strip()
        volume = "%s-etcd-data" % record["container"]
        docker("volume", "create", "--driver", "local", "--opt", "type=ext4", "--opt", "device=" + device,
               "--label", "%s=%s" % (LABEL, self.prefix), volume)
        record.update(data_disk=str(image), data_device=device, data_volume=volume)
        return ["--mount", "source=%s,target=/var/lib/etcd" % volume]

    def _release_data_disks(self):
        # Loop devices outlive containers and volumes: detach every one backed by this lab's disk files.
        for image in sorted((self.dir / "disks").glob("*.img")) if (self.dir / "disks").exists() else []:
            found = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=False).stdout
            for line in found.splitlines():
                subprocess.run(["losetup", "-d", line.split(":", 1)[0]], check=False)

    def _start_host(self, record, image, backoff_max):
        name = record["container"]
        options = []
        for other in self._state["hosts"]:  # the other hosts resolve by name, as in a real cluster
            options += ["--add-host", "%s:%s" % (other["name"], other["ip"])]
        if self._state.get("data_disk_mb"):
            options += self._data_disk(record)
            self._write_state()
        docker("create", "--name", name, "--hostname", record["name"], "--network", self.network, "--ip", record["ip"],
               "--label", "%s=%s" % (LABEL, self.prefix), "--label", "%s.host=%s" % (LABEL, record["name"]),
               "--cap-add", "NET_ADMIN", "--memory", HOST_MEMORY, "--pids-limit", HOST_PIDS, "--stop-timeout", "10",
               "-e", "ETCDOPS_LAB_BACKOFF_MAX_SECONDS=%s" % backoff_max, *options, image)
        docker("cp", "-", "%s:/" % name, input=self._host_files(record))
        docker("start", name)

    def _start_s3(self, image):
        s3 = self._state["s3"]
        docker("run", "-d", "--name", s3["container"], "--hostname", "s3", "--network", self.network, "--ip", s3["ip"],
               "--label", "%s=%s" % (LABEL, self.prefix), "--label", "%s.host=s3" % LABEL,
               "--memory", "512m", image, "/opt/etcdops/venv/bin/moto_server", "-H", "0.0.0.0", "-p", str(S3_PORT))

    def _create_bucket(self, timeout):
        s3 = self._state["s3"]
        script = (
            "import boto3, time, sys\n"
            "s3 = boto3.client('s3', endpoint_url=%r, aws_access_key_id=%r, aws_secret_access_key=%r, region_name=%r)\n"
            "deadline = time.time() + %d\n"
            "while True:\n"
            "    try:\n"
            "        s3.create_bucket(Bucket=%r); break\n"
            "    except Exception as exc:\n"
            "        if 'BucketAlreadyOwnedByYou' in str(exc): break\n"
            "        if time.time() > deadline: sys.exit('S3 server did not answer: %%s' %% exc)\n"
            "        time.sleep(0.5)\n"
        ) % (s3["endpoint_url"], s3["access_key"], s3["secret_key"], s3["region"], timeout, s3["bucket"])
        docker("exec", "-i", s3["container"], VENV_PYTHON, "-", input=script)

    def _write_state(self):
        (self.dir / "lab.json").write_text(json.dumps(self._state, indent=2) + "\n")

    def _write_inventory(self):
        group_vars = {
            "ansible_connection": "community.docker.docker",
            "ansible_python_interpreter": VENV_PYTHON,
            "etcdops_lab_prefix": self.prefix,
            "etcdops_lab_etcd_line": self._state["etcd_line"],
            "etcdops_lab_etcd_version": self._state["etcd_version"],
        }
        keys = self._state.get("keys")
        if keys:
            # every backup of the lab is encrypted to its age key and signed; restores trust its signing key
            group_vars.update({
                "backup_recipients": [keys["age_recipient"]],
                "backup_trusted_keys": [keys["signing_public_key"]],
                "etcdops_lab_age_identity_file": keys["age_identity_file"],
            })
        s3 = self._state.get("s3")
        if s3:
            group_vars.update({
                "etcdops_lab_s3_endpoint_url": s3["endpoint_url"],
                "etcdops_lab_s3_bucket": s3["bucket"],
                "etcdops_lab_s3_access_key": s3["access_key"],
                "etcdops_lab_s3_secret_key": s3["secret_key"],
                "etcdops_lab_s3_region": s3["region"],
            })
        members = self._state.get("members") or [h["name"] for h in self._state["hosts"]]
        groups = {"control_plane": {
            "hosts": {h["name"]: {"ansible_host": h["container"], "etcdops_lab_ip": h["ip"]}
                      for h in self._state["hosts"] if h["name"] in members},
            "vars": group_vars,
        }}
        spare = [h for h in self._state["hosts"] if h["name"] not in members]
        if spare:
            groups["control_plane_spare"] = {
                "hosts": {h["name"]: {"ansible_host": h["container"], "etcdops_lab_ip": h["ip"]} for h in spare},
                "vars": group_vars,
            }
        inventory = {"all": {"children": groups}}
        header = "# Written by tests/lab/lab.py up --prefix %s; removed by down.\n" % self.prefix
        self.inventory.write_text(header + lab_manifests.yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False))

    def _objects(self):
        """Every Docker object of this lab, by name: labelled with the prefix, or named <prefix>-*."""
        label = "label=%s=%s" % (LABEL, self.prefix)

        def names(listing, fmt):
            labelled = docker(*listing, "--filter", label, "--format", fmt, check=False).stdout.split()
            every = docker(*listing, "--format", fmt, check=False).stdout.split()
            return sorted(set(labelled) | {n for n in every if n.startswith(self.prefix + "-")})

        return {
            "containers": names(["ps", "-a"], "{{.Names}}"),
            "networks": names(["network", "ls"], "{{.Name}}"),
            "volumes": names(["volume", "ls"], "{{.Name}}"),
        }

    def down(self):
        """Remove every container, network and volume of this lab, and .lab/<prefix>. Idempotent."""
        started = time.monotonic()
        ensure_docker()
        objects = self._objects()
        if objects["containers"]:
            docker("rm", "-f", "-v", *objects["containers"], check=False)
        for network in objects["networks"]:
            docker("network", "rm", network, check=False)
        if objects["volumes"]:
            docker("volume", "rm", "-f", *objects["volumes"], check=False)
        self._release_data_disks()
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self._state = None
        left = self._objects()
        if any(left.values()):
            raise LabError("lab %s: could not remove %s" % (self.prefix, left))
        log("lab %s down (%d containers, %d networks, %d volumes removed in %.1fs)" % (
            self.prefix, len(objects["containers"]), len(objects["networks"]), len(objects["volumes"]),
            time.monotonic() - started))

    # ------------------------------------------------------------------ running things on hosts

    def exec(self, host, argv, check=True, input=None, timeout=None, capture=True):
        """Run argv on a lab host (docker exec); returns the CompletedProcess."""
        argv = [argv] if isinstance(argv, str) else list(argv)
        cmd = ["docker", "exec"] + (["-i"] if input is not None else []) + [self.container(host)] + argv
        result = subprocess.run(cmd, input=input, capture_output=capture, text=not isinstance(input, bytes), check=False,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise LabError("%s on %s exited %d: %s" % (" ".join(argv), host, result.returncode,
                                                       (result.stderr or "").strip() if capture else ""))
        return result

    def etcdctl(self, host, *args, endpoints=None, check=True, timeout=60):
        """etcdctl of the lab's line on a host, with the healthcheck client certificate."""
        argv = ["%s/etcdctl" % self.state["etcd_bin_dir"], "--endpoints=" + (endpoints or "https://127.0.0.1:2379")]
        return self.exec(host, argv + ETCDCTL_TLS + list(args), check=check, timeout=timeout)

    def running_hosts(self):
        running = set(docker("ps", "--filter", "label=%s=%s" % (LABEL, self.prefix), "--filter", "status=running",
                             "--format", "{{.Names}}").stdout.split())
        return [h for h in self.hosts if self.container(h) in running]

    def endpoint_status(self, hosts=None):
        """`etcdctl endpoint status -w json` of the given members (default: all), from a running host."""
        runners = self.running_hosts()
        if not runners:
            return []
        result = self.etcdctl(runners[0], "endpoint", "status", "-w", "json", endpoints=self.client_endpoints(hosts),
                              check=False, timeout=30)
        try:
            # etcdctl prints `null` when no endpoint answers (e.g. every member restarting)
            return (json.loads(result.stdout) if result.stdout.strip() else []) or []
        except ValueError:
            return []

    def healthy(self, hosts=None):
        """True when every member answers, all name the same leader, and the leader is one of them."""
        expected = len(hosts or self.members)
        statuses = self.endpoint_status(hosts)
        if len(statuses) != expected:
            return False
        members = {s["Status"]["header"]["member_id"] for s in statuses}
        leaders = {s["Status"].get("leader") for s in statuses}
        return len(leaders) == 1 and leaders <= members

    def wait_healthy(self, timeout=90, hosts=None):
        deadline = time.monotonic() + timeout
        while not self.healthy(hosts):
            if time.monotonic() > deadline:
                raise LabError("lab %s: etcd not healthy after %ds" % (self.prefix, timeout))
            time.sleep(1)

    def master_leases(self):
        runners = self.running_hosts()
        result = self.etcdctl(runners[0], "get", "--prefix", "/registry/masterleases/", "--keys-only",
                              endpoints=self.client_endpoints(), check=False)
        return sorted(line for line in result.stdout.splitlines() if line.strip())

    def wait_leases(self, timeout=60):
        wanted = sorted("/registry/masterleases/%s" % self.ip(h) for h in self.members)
        deadline = time.monotonic() + timeout
        while self.master_leases() != wanted:
            if time.monotonic() > deadline:
                raise LabError("lab %s: master leases %s, expected %s" % (self.prefix, self.master_leases(), wanted))
            time.sleep(1)

    def status(self):
        state = self.state
        containers = {}
        for line in docker("ps", "-a", "--filter", "label=%s=%s" % (LABEL, self.prefix), "--format",
                           "{{.Names}}\t{{.State}}\t{{.Status}}").stdout.splitlines():
            name, run_state, detail = line.split("\t")
            containers[name] = {"state": run_state, "status": detail}
        networks = {}
        for name in containers:
            inspect = docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", name, check=False).stdout
            networks[name] = self.network in (json.loads(inspect) if inspect.strip() else {})
        hosts = []
        for record in state["hosts"] + ([dict(name="s3", **state["s3"])] if state.get("s3") else []):
            c = containers.get(record["container"], {"state": "missing", "status": ""})
            hosts.append({"name": record["name"], "container": record["container"], "ip": record["ip"],
                          "state": c["state"], "status": c["status"], "connected": networks.get(record["container"], False)})
        return {"prefix": self.prefix, "etcd_version": state["etcd_version"], "hosts": hosts,
                "members": self.endpoint_status(), "master_leases": self.master_leases() if self.running_hosts() else []}

    # ------------------------------------------------------------------ faults

    def stop(self, host, timeout=10):
        docker("stop", "-t", str(timeout), self.container(host))

    def start(self, host):
        docker("start", self.container(host))

    def kill(self, host):
        docker("kill", self.container(host))

    def pause(self, host):
        docker("pause", self.container(host))

    def unpause(self, host):
        docker("unpause", self.container(host))

    def disconnect(self, host):
        """Cut a host from the lab network (it keeps running, alone)."""
        docker("network", "disconnect", "--force", self.network, self.container(host))

    def connect(self, host):
        docker("network", "connect", "--ip", self.ip(host), self.network, self.container(host))

    def corrupt(self, host, path, offset=None):
        """Flip every bit of one byte of a file on a host (default: the middle byte); returns what changed."""
        script = (
            "import json, os, sys\n"
            "path, offset = sys.argv[1], sys.argv[2]\n"
            "size = os.path.getsize(path)\n"
            "offset = size // 2 if offset == 'middle' else int(offset)\n"
            "if not 0 <= offset < size: sys.exit('offset %d outside %s (%d bytes)' % (offset, path, size))\n"
            "with open(path, 'r+b') as f:\n"
            "    f.seek(offset); old = f.read(1)[0]; f.seek(offset); f.write(bytes([old ^ 0xFF])); f.flush(); os.fsync(f.fileno())\n"
            "print(json.dumps({'path': path, 'offset': offset, 'old': old, 'new': old ^ 0xFF, 'size': size}))\n"
        )
        result = self.exec(host, ["python3", "-c", script, path, "middle" if offset is None else str(offset)])
        return json.loads(result.stdout)

    def wipe_data(self, host, data_dir="/var/lib/etcd"):
        """Test helper: empty a stopped member's data directory (the caller stops etcd first)."""
        running = self.exec(host, ["pgrep", "-x", "etcd"], check=False).stdout.split()
        if running:
            raise LabError("etcd is still running on %s (pid %s): stop it before wiping its data" % (host, " ".join(running)))
        self.exec(host, ["find", data_dir, "-mindepth", "1", "-delete"])

    def partition(self, host, peer):
        """Drop traffic between two hosts in both directions (iptables on host), leaving the rest of the network."""
        peer_ip = self.ip(peer)
        for rule in (["INPUT", "-s", peer_ip], ["OUTPUT", "-d", peer_ip]):
            self.exec(host, ["iptables", "-I", rule[0], *rule[1:], "-j", "DROP", "-m", "comment", "--comment", "etcdops-lab"])

    def heal(self, host):
        """Remove every partition rule the lab put on a host."""
        rules = self.exec(host, ["iptables", "-S"]).stdout.splitlines()
        for rule in rules:
            if "etcdops-lab" in rule and rule.startswith("-A "):
                self.exec(host, ["iptables", "-D"] + rule.split()[1:])

    def fill_disk(self, host, leave_bytes=0):
        """Fill /var/lib/etcd of a host (needs `up --data-disk-mb`) with a ballast file; free_disk() removes it."""
        if not self.state.get("data_disk_mb"):
            raise LabError("fill-disk needs a lab brought up with --data-disk-mb: without it /var/lib/etcd is on "
                           "the machine's own disk")
        script = (
            "import os, sys\n"
            "path, leave = '/var/lib/etcd/.lab-ballast', int(sys.argv[1])\n"
            "with open(path, 'ab') as f:\n"
            "    while True:\n"
            "        st = os.statvfs('/var/lib/etcd'); free = st.f_bavail * st.f_frsize - leave\n"
            "        if free <= 0: break\n"
            "        try:\n"
            "            f.write(b'\\0' * min(free, 1 << 20)); f.flush(); os.fsync(f.fileno())\n"
            "        except OSError: break\n"
            "st = os.statvfs('/var/lib/etcd'); print(st.f_bavail * st.f_frsize)\n"
        )
        return int(self.exec(host, ["python3", "-c", script, str(leave_bytes)]).stdout.strip())

    def free_disk(self, host):
        self.exec(host, ["rm", "-f", "/var/lib/etcd/.lab-ballast"])

    def logs(self, host, container=None, tail=None):
        """The kubelet's log (docker logs of the host) or, given a container name, that container's log."""
        if container is None:
            argv = ["logs"] + (["--tail", str(tail)] if tail else []) + [self.container(host)]
            result = subprocess.run(["docker", *argv], capture_output=True, text=True, check=False)
            return result.stdout + result.stderr
        ids = self.exec(host, ["crictl", "ps", "-a", "--name", "^%s$" % re.escape(container), "-q"]).stdout.split()
        if not ids:
            raise LabError("no container %s on %s" % (container, host))
        # crictl logs writes the container's stderr to stderr (etcd logs there): keep both, in order.
        command = "crictl logs %s%s 2>&1" % ("--tail %d " % tail if tail else "", ids[0])
        return self.exec(host, ["sh", "-c", command]).stdout


def list_labs():
    """Prefixes of the labs that have Docker objects or state on this machine."""
    labels = docker("ps", "-a", "--filter", "label=%s" % LABEL, "--format", '{{.Label "%s"}}' % LABEL, check=False).stdout.split()
    state = [p.name for p in STATE_ROOT.iterdir()] if STATE_ROOT.exists() else []
    return sorted(set(labels) | set(state))


# ---------------------------------------------------------------------- command line

def print_status(status):
    print("lab %s (etcd %s)" % (status["prefix"], status["etcd_version"]))
    print("  %-8s %-16s %-16s %-10s %s" % ("HOST", "CONTAINER", "IP", "STATE", "NETWORK"))
    for h in status["hosts"]:
        network = "connected" if h["connected"] else "DISCONNECTED"
        print("  %-8s %-16s %-16s %-10s %s" % (h["name"], h["container"], h["ip"], h["state"], network))
    members = status["members"]
    print("  etcd members answering: %d" % len(members))
    for m in members:
        s = m["Status"]
        role = "leader" if s["header"]["member_id"] == s.get("leader") else "follower"
        print("    %-28s %-8s version %-8s revision %-8s term %s db %s" % (
            m["Endpoint"], role, s.get("version"), s["header"].get("revision"), s["header"].get("raft_term"), s.get("dbSize")))
    print("  master leases: %s" % (" ".join(status["master_leases"]) or "none"))


def main(argv=None):
    p = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = p.add_subparsers(dest="command", required=True)

    def with_prefix(parser):
        parser.add_argument("--prefix", required=True, help="lab name: every object of the lab carries it")
        return parser

    up = with_prefix(sub.add_parser("up", help="bring a lab up and wait until it is healthy"))
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--members", type=int, help="how many of the hosts are etcd members (default: all); the "
                    "others are spare hosts with PKI and no static pods, inventory group control_plane_spare")
    up.add_argument("--etcd-line", default="3.5", choices=lab_image.ETCD_LINES)
    up.add_argument("--with-s3", dest="with_s3", action="store_true", default=True)
    up.add_argument("--no-s3", dest="with_s3", action="store_false")
    up.add_argument("--timeout", type=int, default=120, help="seconds to wait for etcd and the API servers")
    up.add_argument("--backoff-max", type=int, default=20, help="cap of the kubelet's restart back-off, seconds")
    up.add_argument("--data-disk-mb", type=int, default=0,
                    help="give each host's /var/lib/etcd a file system of this size (for fault fill-disk)")

    with_prefix(sub.add_parser("down", help="remove everything of a lab (idempotent)"))
    status = with_prefix(sub.add_parser("status", help="containers, etcd members and leases of a lab"))
    status.add_argument("--json", action="store_true")
    sub.add_parser("list", help="labs present on this machine")
    image = sub.add_parser("image", help="build (if needed) and print the lab image tag")
    image.add_argument("--etcd-line", choices=lab_image.ETCD_LINES)
    image.add_argument("--prune", action="store_true", help="also remove lab images no container uses")

    ex = with_prefix(sub.add_parser("exec", help="run a command on a lab host: exec --prefix P cp1 -- CMD..."))
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)

    logs = with_prefix(sub.add_parser("logs", help="kubelet log of a host, or a static pod container's log"))
    logs.add_argument("host")
    logs.add_argument("container", nargs="?", help="etcd or kube-apiserver (default: the kubelet)")
    logs.add_argument("--tail", type=int)

    fault = with_prefix(sub.add_parser("fault", help="inject a fault"))
    kinds = fault.add_subparsers(dest="kind", required=True)
    for kind, text in (("stop", "docker stop a host"), ("start", "start a stopped host"), ("kill", "SIGKILL a whole host"),
                       ("pause", "freeze a host"), ("unpause", "thaw a host"),
                       ("disconnect", "cut a host from the lab network"), ("connect", "reconnect a host"),
                       ("wipe-data", "empty /var/lib/etcd of a host whose etcd is stopped"),
                       ("heal", "remove partition rules from a host"),
                       ("free-disk", "remove the ballast fill-disk wrote")):
        kinds.add_parser(kind, help=text).add_argument("host")
    corrupt = kinds.add_parser("corrupt", help="flip a byte of a file on a host")
    corrupt.add_argument("host")
    corrupt.add_argument("path")
    corrupt.add_argument("--offset", type=int)
    partition = kinds.add_parser("partition", help="drop traffic between two hosts")
    partition.add_argument("host")
    partition.add_argument("peer")
    fill = kinds.add_parser("fill-disk", help="fill /var/lib/etcd of a host (lab up with --data-disk-mb)")
    fill.add_argument("host")
    fill.add_argument("--leave-bytes", type=int, default=0, help="free space to leave")

    args = p.parse_args(argv)
    try:
        if args.command == "list":
            ensure_docker()
            print("\n".join(list_labs()))
            return 0
        if args.command == "image":
            ensure_docker()
            tag = lab_image.ensure_image(args.etcd_line)
            if args.prune:
                lab_image.prune_images(keep=tag)
            print(tag)
            return 0
        lab = Lab(args.prefix)
        if args.command == "up":
            lab.up(hosts=args.hosts, etcd_line=args.etcd_line, with_s3=args.with_s3, timeout=args.timeout,
                   backoff_max=args.backoff_max, data_disk_mb=args.data_disk_mb, members=args.members)
            print(lab.inventory)
        elif args.command == "down":
            lab.down()
        elif args.command == "status":
            result = lab.status()
            print(json.dumps(result, indent=2)) if args.json else print_status(result)
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise LabError("exec needs a command after --")
            interactive = ["-i"] + (["-t"] if sys.stdin.isatty() else [])
            return subprocess.run(["docker", "exec", *interactive, lab.container(args.host), *cmd], check=False).returncode
        elif args.command == "logs":
            sys.stdout.write(lab.logs(args.host, args.container, args.tail))
        elif args.command == "fault":
            kind = args.kind.replace("-", "_")
            if kind == "corrupt":
                print(json.dumps(lab.corrupt(args.host, args.path, args.offset)))
            elif kind == "partition":
                lab.partition(args.host, args.peer)
            elif kind == "fill_disk":
                print("%d bytes left free" % lab.fill_disk(args.host, args.leave_bytes))
            else:
                getattr(lab, kind)(args.host)
        return 0
    except LabError as exc:
        print("lab: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
