"""Kubelet stand-in for the etcdops lab: runs the static pods of /etc/kubernetes/manifests as processes.

What it keeps of the real kubelet, because the collection's procedures depend on it:
- every file in the manifest directory whose name does not start with a dot is a pod (so a stray
  etcd.yaml.bak is a pod too); a file that does not parse is logged and ignored;
- pods are polled once a second; a removed file stops its pod (SIGTERM, SIGKILL after the grace
  period), a changed file stops the old pod and then starts the new one;
- a container that exits is restarted with kubelet's back-off (0 s, then 10 s doubling up to a cap);
- what a CRI runtime knows about each container is recorded for the crictl stand-in;
- container logs go to /var/log/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log in CRI format.

What differs: there are no namespaces or images. A container is a process group of this host; the
image tag only picks the binaries (registry.k8s.io/etcd:3.5.x-0 puts /opt/etcd/3.5 first on PATH),
and a hostPath volume mounted at another path is emulated by rewriting that path in the arguments.
"""

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import yaml

# Installed as /usr/local/bin/<name>; the shared module stays in the lab's library directory.
sys.path.insert(0, os.environ.get("ETCDOPS_LAB_LIB", "/usr/local/lib/etcdops-lab"))
import labcri  # noqa: E402

MANIFEST_DIR = os.environ.get("ETCDOPS_LAB_MANIFEST_DIR", "/etc/kubernetes/manifests")
POD_LOG_DIR = "/var/log/pods"
CONTAINER_LOG_DIR = "/var/log/containers"
ETCD_BIN_ROOT = "/opt/etcd"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POLL_SECONDS = 1.0
BACKOFF_INITIAL = float(os.environ.get("ETCDOPS_LAB_BACKOFF_INITIAL_SECONDS", "10"))
BACKOFF_MAX = float(os.environ.get("ETCDOPS_LAB_BACKOFF_MAX_SECONDS", "20"))
DEFAULT_GRACE_SECONDS = 30
GC_SECONDS = 60
NODE_NAME = os.environ.get("ETCDOPS_LAB_NODE_NAME") or socket.gethostname().split(".")[0]


def log(message):
    print("%s kubelet[%s]: %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), NODE_NAME, message), flush=True)


class PodSpec:
    """A pod as one manifest file describes it."""

    def __init__(self, path, content, manifest):
        self.path = path
        metadata = manifest.get("metadata") or {}
        self.name = metadata["name"]
        self.namespace = metadata.get("namespace") or "default"
        # Static pods are named after the node, as kubelet does (etcd -> etcd-cp1).
        self.full_name = "%s-%s" % (self.name, NODE_NAME)
        # Kubelet hashes the manifest, the node and the file into the static pod's UID.
        self.uid = hashlib.md5(("host:%s\nfile:%s\n" % (NODE_NAME, path)).encode() + content).hexdigest()
        self.labels = dict(metadata.get("labels") or {})
        self.annotations = dict(metadata.get("annotations") or {})
        spec = manifest.get("spec") or {}
        self.grace_seconds = int(spec.get("terminationGracePeriodSeconds") or DEFAULT_GRACE_SECONDS)
        self.host_paths = {}
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict) and isinstance(volume.get("hostPath"), dict):
                self.host_paths[volume.get("name")] = volume["hostPath"].get("path")
        self.containers = list(spec.get("containers") or [])


def parse_manifest(path, content):
    """PodSpec from a manifest file, or a ValueError saying why kubelet would reject it."""
    try:
        manifest = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise ValueError("invalid YAML: %s" % str(exc).replace("\n", " "))
    if not isinstance(manifest, dict) or manifest.get("kind") != "Pod":
        raise ValueError("not a Pod object")
    if not isinstance(manifest.get("metadata"), dict) or not manifest["metadata"].get("name"):
        raise ValueError("metadata.name is missing")
    containers = (manifest.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise ValueError("spec.containers is empty")
    for container in containers:
        if not isinstance(container, dict) or not container.get("name"):
            raise ValueError("a container has no name")
        if not (container.get("command") or container.get("args")):
            raise ValueError("container %s has neither command nor args" % container["name"])
        if not container.get("image"):
            raise ValueError("container %s has no image" % container["name"])
    return PodSpec(path, content, manifest)


def etcd_line_of(image):
    """'registry.k8s.io/etcd:3.5.15-0' -> '3.5'; None for an image that is not etcd."""
    match = re.search(r"/etcd:v?(\d+)\.(\d+)\.", image or "")
    return "%s.%s" % match.groups() if match else None


class Slot:
    """One container of a running pod across its restarts (attempt 0, 1, ...)."""

    def __init__(self, pod, spec):
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.attempt = -1
        self.proc = None
        self.record = None
        self.started_at = 0.0
        self.next_start = 0.0  # monotonic time of the next (re)start
        self.backoff = 0.0
        self.kill_at = None  # set while a probe-failed container is being stopped
        self.log_lock = threading.Lock()
        self.startup_probe = Probe(spec.get("startupProbe"))
        self.liveness_probe = Probe(spec.get("livenessProbe"))

    def command_line(self, env):
        """(program to execute, argv): command + args as the manifest writes them, mount paths rewritten."""
        argv = [str(a) for a in (self.spec.get("command") or []) + (self.spec.get("args") or [])]
        argv = [self.pod.translate_path(a, self.spec) for a in argv]
        program = shutil.which(argv[0], path=env["PATH"]) if "/" not in argv[0] else argv[0]
        if not program:
            raise FileNotFoundError("executable %r not found in PATH %s" % (argv[0], env["PATH"]))
        return program, argv

    def environment(self):
        env = {"PATH": BASE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "HOSTNAME": NODE_NAME}
        line = etcd_line_of(self.spec.get("image"))
        if line:
            bin_dir = os.path.join(ETCD_BIN_ROOT, line)
            if not os.path.isdir(bin_dir):
                raise FileNotFoundError("image %s: no etcd %s binaries in %s" % (self.spec["image"], line, bin_dir))
            env["PATH"] = bin_dir + ":" + BASE_PATH
        for item in self.spec.get("env") or []:
            if isinstance(item, dict) and "name" in item and "value" in item:
                env[str(item["name"])] = str(item["value"])
        return env

    def start(self):
        self.attempt += 1
        container_id = secrets.token_hex(32)
        pod = self.pod.spec
        pod_log_dir = os.path.join(POD_LOG_DIR, "%s_%s_%s" % (pod.namespace, pod.full_name, pod.uid), self.name)
        os.makedirs(pod_log_dir, exist_ok=True)
        log_path = os.path.join(pod_log_dir, "%d.log" % self.attempt)
        self.record = {
            "id": container_id,
            "pod_id": self.pod.sandbox_id,
            "name": self.name,
            "attempt": self.attempt,
            "image": self.spec.get("image"),
            "state": labcri.CONTAINER_CREATED,
            "pid": 0,
            "created_at": labcri.now_ns(),
            "started_at": 0,
            "finished_at": 0,
            "exit_code": 0,
            "reason": "",
            "message": "",
            "log_path": log_path,
            "command": [],
            "labels": {
                "io.kubernetes.container.name": self.name,
                "io.kubernetes.pod.name": self.pod.spec.full_name,
                "io.kubernetes.pod.namespace": self.pod.spec.namespace,
                "io.kubernetes.pod.uid": self.pod.spec.uid,
            },
            "annotations": {
                "io.kubernetes.container.restartCount": str(self.attempt),
                "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                "io.kubernetes.pod.terminationGracePeriod": str(self.pod.spec.grace_seconds),
            },
        }
        self.gc_older_attempts()
        try:
            env = self.environment()
            program, argv = self.command_line(env)
            self.record["command"] = argv
            # argv[0] stays as the manifest wrote it, so ps shows "etcd --data-dir=..." as on a real node.
            self.proc = subprocess.Popen(argv, executable=program, env=env, cwd="/", stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self.proc = None
            now = labcri.now_ns()
            self.record.update(state=labcri.CONTAINER_EXITED, exit_code=128, reason="StartError",
                               message=str(exc), started_at=now, finished_at=now)
            labcri.save_container(self.record)
            log("pod %s container %s failed to start: %s" % (self.pod.spec.full_name, self.name, exc))
            self.schedule_restart(ran_seconds=0)
            return
        self.started_at = time.monotonic()
        self.kill_at = None
        self.record.update(state=labcri.CONTAINER_RUNNING, pid=self.proc.pid, started_at=labcri.now_ns())
        labcri.save_container(self.record)
        link = os.path.join(CONTAINER_LOG_DIR, "%s_%s_%s-%s.log" % (pod.full_name, pod.namespace, self.name, container_id))
        try:
            os.makedirs(CONTAINER_LOG_DIR, exist_ok=True)
            os.symlink(log_path, link)
        except OSError:
            pass
        for stream_name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self.copy_log, args=(stream, stream_name, log_path), daemon=True).start()
        self.startup_probe.reset()
        self.liveness_probe.reset()
        log("pod %s container %s started (attempt %d, pid %d): %s" % (
            self.pod.spec.full_name, self.name, self.attempt, self.proc.pid, " ".join(argv)))

    def copy_log(self, stream, stream_name, log_path):
        # CRI log format: "<RFC3339Nano> <stream> F <line>", what crictl logs strips again.
        with open(log_path, "ab", buffering=0) as out:
            for line in iter(stream.readline, b""):
                stamp = labcri.rfc3339(labcri.now_ns()).encode()
                with self.log_lock:
                    out.write(stamp + b" " + stream_name.encode() + b" F " + line.rstrip(b"\n") + b"\n")
        stream.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_exit(self):
        """Record an exit once; returns True when the container has just exited."""
        if self.proc is None or self.proc.poll() is None:
            return False
        code = self.proc.returncode
        # The runtime tears down what is left of the container (its children) with it.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        exit_code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as runc reports
        ran = time.monotonic() - self.started_at
        self.proc = None
        if labcri.container_exists(self.record["id"]):
            self.record.update(state=labcri.CONTAINER_EXITED, pid=0, exit_code=exit_code,
                               finished_at=labcri.now_ns(), reason="Completed" if exit_code == 0 else "Error")
            labcri.save_container(self.record)
        log("pod %s container %s exited with code %d after %.1fs" % (self.pod.spec.full_name, self.name, exit_code, ran))
        if not self.pod.terminating:
            self.schedule_restart(ran)
        return True

    def schedule_restart(self, ran_seconds):
        # Kubelet's back-off: the first restart is immediate, then 10 s doubling up to the cap;
        # a container that ran for twice the cap starts over.
        if ran_seconds >= 2 * BACKOFF_MAX:
            self.backoff = 0.0
        delay = self.backoff
        self.backoff = BACKOFF_INITIAL if self.backoff == 0 else min(self.backoff * 2, BACKOFF_MAX)
        self.next_start = time.monotonic() + delay
        if delay:
            log("back-off %.0fs restarting failed container %s in pod %s" % (delay, self.name, self.pod.spec.full_name))

    def signal(self, signum):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signum)
            except OSError:
                pass

    def gc_older_attempts(self):
        # Keep the last exited container of this slot, as kubelet's container GC does.
        mine = [r for r in labcri.containers() if r.get("pod_id") == self.pod.sandbox_id and r.get("name") == self.name
                and r.get("state") == labcri.CONTAINER_EXITED]
        mine.sort(key=lambda r: r.get("attempt", 0))
        for record in mine[:-1]:
            labcri.remove_container(record["id"])


class Probe:
    """An httpGet probe as kubelet runs it (startup or liveness); failures past the threshold mean a restart."""

    def __init__(self, probe):
        probe = probe if isinstance(probe, dict) else {}
        self.http = probe.get("httpGet") if isinstance(probe.get("httpGet"), dict) else None
        self.initial_delay = float(probe.get("initialDelaySeconds", 0))
        self.period = float(probe.get("periodSeconds", 10))
        self.timeout = float(probe.get("timeoutSeconds", 1))
        self.threshold = int(probe.get("failureThreshold", 3))
        self.enabled = bool(self.http) and os.environ.get("ETCDOPS_LAB_PROBES", "1") == "1"
        self.reset()

    def reset(self):
        self.failures = 0
        self.succeeded = False
        self.failed = False
        self.running = False
        self.next_at = time.monotonic() + self.initial_delay

    def due(self):
        return self.enabled and not self.running and time.monotonic() >= self.next_at

    def run_async(self):
        self.running = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        http = self.http
        url = "%s://%s:%s%s" % (str(http.get("scheme", "HTTP")).lower(), http.get("host", "127.0.0.1"),
                                http.get("port"), http.get("path", "/"))
        context = ssl._create_unverified_context()  # kubelet does not verify probe certificates either
        try:
            with urllib.request.urlopen(url, timeout=self.timeout, context=context) as response:
                ok = 200 <= response.status < 400
        except Exception:  # any failure to answer is a failed probe
            ok = False
        self.failures = 0 if ok else self.failures + 1
        self.succeeded = self.succeeded or ok
        self.failed = self.failures >= self.threshold
        self.next_at = time.monotonic() + self.period
        self.running = False


class Pod:
    """A running instance of one PodSpec (one UID) with its sandbox record."""

    def __init__(self, spec):
        self.spec = spec
        self.sandbox_id = secrets.token_hex(32)
        self.terminating = False
        self.kill_at = None
        self.slots = [Slot(self, c) for c in spec.containers]
        self.record = {
            "id": self.sandbox_id,
            "name": spec.full_name,
            "namespace": spec.namespace,
            "uid": spec.uid,
            "attempt": 0,
            "state": labcri.SANDBOX_READY,
            "created_at": labcri.now_ns(),
            "labels": dict(spec.labels, **{
                "io.kubernetes.pod.name": spec.full_name,
                "io.kubernetes.pod.namespace": spec.namespace,
                "io.kubernetes.pod.uid": spec.uid,
            }),
            "annotations": dict(spec.annotations, **{
                "kubernetes.io/config.source": "file",
                "kubernetes.io/config.hash": spec.uid,
                "kubernetes.io/config.seen": labcri.rfc3339(labcri.now_ns()),
            }),
            "manifest": spec.path,
        }
        labcri.save_pod(self.record)
        log("pod %s (uid %s) from %s: sandbox %s" % (spec.full_name, spec.uid, spec.path, self.sandbox_id[:13]))

    def translate_path(self, argument, container):
        """Rewrite a mountPath inside an argument to its hostPath (no mount namespaces here)."""
        mounts = []
        for mount in container.get("volumeMounts") or []:
            host = self.spec.host_paths.get(mount.get("name"))
            if host and mount.get("mountPath") and host != mount["mountPath"]:
                mounts.append((mount["mountPath"].rstrip("/"), host.rstrip("/")))
        mounts.sort(key=lambda m: -len(m[0]))
        flag, eq, value = argument.partition("=")
        if not eq:
            flag, value = "", argument
        for mount_path, host_path in mounts:
            if value == mount_path or value.startswith(mount_path + "/"):
                value = host_path + value[len(mount_path):]
                break
        return flag + eq + value if eq else value

    def supervise(self):
        for slot in self.slots:
            slot.check_exit()
            if self.terminating:
                continue
            if slot.proc is None and time.monotonic() >= slot.next_start:
                slot.start()
            elif slot.alive():
                self.probe(slot)

    def probe(self, slot):
        # Liveness is probed only once the startup probe (if any) has succeeded, as kubelet does.
        startup = slot.startup_probe
        probe = startup if startup.enabled and not startup.succeeded else slot.liveness_probe
        if probe.failed:
            kind = "startup" if probe is startup else "liveness"
            log("pod %s container %s failed its %s probe, will be restarted" % (self.spec.full_name, slot.name, kind))
            probe.reset()
            slot.signal(signal.SIGTERM)
            slot.kill_at = time.monotonic() + self.spec.grace_seconds
        elif probe.due():
            probe.run_async()
        if slot.kill_at and time.monotonic() >= slot.kill_at:
            slot.signal(signal.SIGKILL)

    def stop(self, grace=None):
        if not self.terminating:
            self.terminating = True
            grace = self.spec.grace_seconds if grace is None else grace
            self.kill_at = time.monotonic() + grace
            log("stopping pod %s (grace %ds)" % (self.spec.full_name, grace))
            for slot in self.slots:
                slot.signal(signal.SIGTERM)

    def finish_stopping(self):
        """Advance a terminating pod; True once all its containers are gone."""
        for slot in self.slots:
            slot.check_exit()
        if any(slot.alive() for slot in self.slots):
            if time.monotonic() >= self.kill_at:
                for slot in self.slots:
                    slot.signal(signal.SIGKILL)
            return False
        self.record["state"] = labcri.SANDBOX_NOTREADY
        self.record["stopped_at"] = labcri.now_ns()
        labcri.save_pod(self.record)
        log("pod %s stopped" % self.spec.full_name)
        return True


class Kubelet:
    def __init__(self):
        self.pods = {}  # uid -> Pod
        self.reported = set()  # (path, problem) already logged, so a bad file is logged once
        self.shutting_down = False

    def desired_pods(self):
        wanted = {}
        try:
            names = sorted(os.listdir(MANIFEST_DIR))
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(MANIFEST_DIR, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
                spec = parse_manifest(path, content)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.report(path, "could not process manifest file %s: %s" % (path, exc))
                continue
            if any(other.full_name == spec.full_name for other in wanted.values()):
                self.report(path, "pod %s from %s is a duplicate of an earlier manifest, ignored" % (spec.full_name, path))
                continue
            wanted[spec.uid] = spec
        return wanted

    def report(self, path, problem):
        if (path, problem) not in self.reported:
            self.reported.add((path, problem))
            log(problem)

    def sync(self):
        wanted = {} if self.shutting_down else self.desired_pods()
        for uid, pod in list(self.pods.items()):
            if uid not in wanted:
                pod.stop(grace=min(pod.spec.grace_seconds, 5) if self.shutting_down else None)
            if pod.terminating:
                if pod.finish_stopping():
                    del self.pods[uid]
            else:
                pod.supervise()
        for uid, spec in wanted.items():
            # A static pod starts only once the previous pod of the same name has terminated.
            if uid not in self.pods and not any(p.spec.full_name == spec.full_name for p in self.pods.values()):
                pod = Pod(spec)
                self.pods[uid] = pod
                pod.supervise()
        self.collect_garbage()

    def collect_garbage(self):
        live = {pod.sandbox_id for pod in self.pods.values()}
        horizon = labcri.now_ns() - GC_SECONDS * 1_000_000_000
        remaining = set()
        for record in labcri.containers():
            if record.get("pod_id") not in live and record.get("state") == labcri.CONTAINER_EXITED \
                    and record.get("finished_at", 0) < horizon:
                labcri.remove_container(record["id"])
            else:
                remaining.add(record.get("pod_id"))
        for record in labcri.pods():
            if record["id"] not in live and record["id"] not in remaining and record.get("stopped_at", 0) < horizon:
                labcri.remove_pod(record["id"])

    def recover_after_restart(self):
        # Like a runtime after a reboot: whatever was running before is gone now.
        for record in labcri.containers():
            if record.get("state") != labcri.CONTAINER_EXITED:
                record.update(state=labcri.CONTAINER_EXITED, pid=0, exit_code=255, reason="Unknown",
                              finished_at=labcri.now_ns())
                labcri.save_container(record)
        for record in labcri.pods():
            if record.get("state") != labcri.SANDBOX_NOTREADY:
                record.update(state=labcri.SANDBOX_NOTREADY, stopped_at=labcri.now_ns())
                labcri.save_pod(record)

    def run(self):
        log("starting: manifests %s, back-off %ss..%ss" % (MANIFEST_DIR, BACKOFF_INITIAL, BACKOFF_MAX))
        self.recover_after_restart()
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        while True:
            try:
                self.sync()
            except Exception as exc:  # keep supervising whatever one bad pass did
                log("sync failed: %r" % exc)
            if self.shutting_down and not self.pods:
                log("all pods stopped, exiting")
                return 0
            time.sleep(POLL_SECONDS)

    def on_term(self, signum, frame):
        self.shutting_down = True


if __name__ == "__main__":
    sys.exit(Kubelet().run())
