"""kube-apiserver stand-in for the etcdops lab: what the real API server does to etcd that matters here.

- keeps its master lease at <etcd-prefix>/masterleases/<advertise-address>, a key bound to an etcd
  lease of 15 s that it renews (as the real endpoint reconciler does), so "stop the API servers" and
  lease cleanup meet real lease keys;
- writes a handful of sample objects once (namespaces, config maps, a secret);
- exits non-zero when etcd stays unreachable (the kubelet then restarts it);
- answers /healthz, /livez and /readyz on --secure-port over TLS: "ok" while etcd answers.
It reads only the flags it needs and ignores the others, so kubeadm's manifest runs unchanged.
"""

import argparse
import glob
import http.server
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time

LEASE_TTL_SECONDS = 15
RENEW_SECONDS = 5
UNREACHABLE_EXIT_SECONDS = float(os.environ.get("ETCDOPS_LAB_APISERVER_GIVE_UP_SECONDS", "60"))
SAMPLE_CONFIGMAPS = 5


def log(message):
    print("%s kube-apiserver: %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), message), flush=True)


def newest_etcdctl():
    """etcdctl of the newest etcd line in the image (it speaks to every older server)."""
    candidates = glob.glob("/opt/etcd/*/etcdctl")
    if not candidates:
        sys.exit("kube-apiserver: no etcdctl under /opt/etcd")

    def line_key(path):
        return tuple(int(p) for p in os.path.basename(os.path.dirname(path)).split(".") if p.isdigit())

    return max(candidates, key=line_key)


class Etcd:
    def __init__(self, args):
        self.base = [newest_etcdctl(), "--endpoints=" + args.etcd_servers, "--dial-timeout=2s", "--command-timeout=5s"]
        if args.etcd_cafile:
            self.base.append("--cacert=" + args.etcd_cafile)
        if args.etcd_certfile:
            self.base += ["--cert=" + args.etcd_certfile, "--key=" + args.etcd_keyfile]
        self.env = dict(os.environ, ETCDCTL_API="3")

    def run(self, *argv, stdin=None):
        result = subprocess.run(self.base + list(argv), env=self.env, input=stdin, capture_output=True, text=True,
                                timeout=10, check=False)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else "etcdctl exited with %d" % result.returncode)
        return result.stdout

    def grant(self, ttl):
        out = self.run("lease", "grant", str(ttl))
        match = re.search(r"lease ([0-9a-f]+) granted", out)
        if not match:
            raise RuntimeError("unexpected lease grant output: %r" % out)
        return match.group(1)

    def keep_alive_once(self, lease_id):
        """True if the lease was renewed; False if it is gone (or etcd did not answer: grant tells)."""
        try:
            return "keepalived" in self.run("lease", "keep-alive", "--once", lease_id)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def put(self, key, value, lease_id=None):
        argv = ["put"] + (["--lease=" + lease_id] if lease_id else []) + [key]
        self.run(*argv, stdin=value)

    def exists(self, key):
        return bool(self.run("get", key, "--keys-only").strip())


def endpoints_object(address, port):
    # The real value is a v1 Endpoints object (protobuf); JSON keeps it readable in the lab.
    return json.dumps({
        "kind": "Endpoints", "apiVersion": "v1",
        "metadata": {"name": address, "creationTimestamp": None},
        "subsets": [{"addresses": [{"ip": address}], "ports": [{"port": port, "protocol": "TCP"}]}],
    })


def sample_objects(prefix):
    objects = {}
    for namespace in ("default", "kube-system"):
        objects["%s/namespaces/%s" % (prefix, namespace)] = {
            "kind": "Namespace", "apiVersion": "v1", "metadata": {"name": namespace}, "spec": {"finalizers": ["kubernetes"]}}
    for n in range(1, SAMPLE_CONFIGMAPS + 1):
        name = "lab-sample-%d" % n
        objects["%s/configmaps/default/%s" % (prefix, name)] = {
            "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name, "namespace": "default"}, "data": {"n": str(n)}}
    objects["%s/secrets/default/lab-secret" % prefix] = {
        "kind": "Secret", "apiVersion": "v1", "metadata": {"name": "lab-secret", "namespace": "default"},
        "type": "Opaque", "data": {"password": "bGFiLXNlY3JldA=="}}
    return objects


class Health:
    """What /healthz answers: ok while the last etcd call succeeded recently."""

    def __init__(self):
        self.last_ok = 0.0

    def ok(self):
        return time.monotonic() - self.last_ok < 2 * RENEW_SECONDS + 5


def serve_health(args, health):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/healthz", "/livez", "/readyz"):
                self.send_response(404)
                self.end_headers()
                return
            good = health.ok()
            body = b"ok" if good else b"etcd check failed"
            self.send_response(200 if good else 500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *unused):
            pass

    try:
        server = http.server.ThreadingHTTPServer((args.bind_address, args.secure_port), Handler)
        if args.tls_cert_file and args.tls_private_key_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.tls_cert_file, args.tls_private_key_file)
            server.socket = context.wrap_socket(server.socket, server_side=True)
    except OSError as exc:
        log("cannot serve health on port %s: %s" % (args.secure_port, exc))
        return
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("serving /healthz on %s:%s" % (args.bind_address, args.secure_port))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="kube-apiserver", allow_abbrev=False)
    p.add_argument("--advertise-address", required=True)
    p.add_argument("--etcd-servers", required=True)
    p.add_argument("--etcd-cafile")
    p.add_argument("--etcd-certfile")
    p.add_argument("--etcd-keyfile")
    p.add_argument("--etcd-prefix", default="/registry")
    p.add_argument("--secure-port", type=int, default=6443)
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-private-key-file")
    args, _ignored = p.parse_known_args(argv)
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    etcd = Etcd(args)
    health = Health()
    serve_health(args, health)
    prefix = args.etcd_prefix.rstrip("/")
    lease_key = "%s/masterleases/%s" % (prefix, args.advertise_address)
    lease_value = endpoints_object(args.advertise_address, args.secure_port)
    lease_id = None
    samples_written = False
    last_ok = time.monotonic()
    last_put = 0.0
    log("etcd %s via %s; master lease %s (TTL %ss)" % (args.etcd_servers, etcd.base[0], lease_key, LEASE_TTL_SECONDS))
    while True:
        try:
            if lease_id and not etcd.keep_alive_once(lease_id):
                log("lease %s expired or revoked, granting a new one" % lease_id)
                lease_id = None
            if lease_id is None:
                lease_id = etcd.grant(LEASE_TTL_SECONDS)
                last_put = 0.0
            # Re-put now and then, like the endpoint reconciler: a deleted key comes back.
            if time.monotonic() - last_put >= 2 * RENEW_SECONDS:
                etcd.put(lease_key, lease_value, lease_id)
                last_put = time.monotonic()
            if not samples_written:
                for key, obj in sample_objects(prefix).items():
                    if not etcd.exists(key):
                        etcd.put(key, json.dumps(obj))
                samples_written = True
                log("sample objects present under %s" % prefix)
            last_ok = health.last_ok = time.monotonic()
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            down_for = time.monotonic() - last_ok
            log("etcd call failed (%ds without etcd): %s" % (down_for, exc))
            if down_for > UNREACHABLE_EXIT_SECONDS:
                log("etcd unreachable for more than %ds, exiting" % UNREACHABLE_EXIT_SECONDS)
                return 1
        time.sleep(RENEW_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
