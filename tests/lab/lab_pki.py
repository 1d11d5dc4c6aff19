"""kubeadm's PKI for one lab, made with openssl on the machine that runs the lab.

Layout (as `kubeadm init phase certs` leaves /etc/kubernetes/pki on each control-plane node):
  <pki>/ca.crt|key, front-proxy-ca.crt|key, sa.key|pub, etcd/ca.crt|key   shared by all hosts
  <pki>/<host>/                                                           that host's /etc/kubernetes/pki
      ca.*, front-proxy-ca.*, sa.*, etcd/ca.*                             copies of the shared ones
      apiserver.*, apiserver-kubelet-client.*, apiserver-etcd-client.*, front-proxy-client.*
      etcd/server.*, etcd/peer.*, etcd/healthcheck-client.*
admin.conf embeds its own client certificate (kubernetes-admin), as kubeadm does; it is not kept here.
RSA 2048 keys in PKCS#1 ("RSA PRIVATE KEY"), as kubeadm writes them.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CA_DAYS = 3650
LEAF_DAYS = 365
SERVICE_IP = "10.96.0.1"  # first address of kubeadm's default service CIDR 10.96.0.0/12


def _openssl(*argv, stdin=None):
    subprocess.run(["openssl", *argv], check=True, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key(path):
    _openssl("genrsa", "-traditional", "-out", str(path), "2048")
    os.chmod(path, 0o600)


def make_ca(directory, name, common_name):
    directory.mkdir(parents=True, exist_ok=True)
    key, crt = directory / (name + ".key"), directory / (name + ".crt")
    _key(key)
    _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", str(CA_DAYS), "-subj", "/CN=" + common_name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
             "-addext", "subjectKeyIdentifier=hash", "-out", str(crt))
    os.chmod(crt, 0o644)


def make_leaf(ca_dir, ca_name, directory, name, common_name, organization=None, dns=(), ips=(), server=False, client=False):
    """A certificate signed by <ca_dir>/<ca_name>.crt with kubeadm's key usages and SANs."""
    directory.mkdir(parents=True, exist_ok=True)
    key, crt = directory / (name + ".key"), directory / (name + ".crt")
    _key(key)
    subject = ("/O=%s" % organization if organization else "") + "/CN=" + common_name
    usages = [u for u, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted]
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=" + ",".join(usages),
        "authorityKeyIdentifier=keyid",
    ]
    sans = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
    if sans:
        extensions.append("subjectAltName=" + ",".join(sans))
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text("\n".join(extensions) + "\n")
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_dir / (ca_name + ".crt")),
                 "-CAkey", str(ca_dir / (ca_name + ".key")), "-set_serial", "0x" + secrets.token_hex(16),
                 "-days", str(LEAF_DAYS), "-sha256", "-extfile", str(ext), "-out", str(crt))
    os.chmod(crt, 0o644)
    return key, crt


def make_shared(pki):
    """The CAs and the service-account key pair every control-plane node shares."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            pool.submit(make_ca, pki, "ca", "kubernetes"),
            pool.submit(make_ca, pki, "front-proxy-ca", "front-proxy-ca"),
            pool.submit(make_ca, pki / "etcd", "ca", "etcd-ca"),
            pool.submit(_key, pki / "sa.key"),
        ]
        for job in jobs:
            job.result()
    _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))


def make_host(pki, host, ip):
    """One control-plane node's complete /etc/kubernetes/pki under <pki>/<host>."""
    target = pki / host
    (target / "etcd").mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub",
                 "etcd/ca.crt", "etcd/ca.key"):
        shutil.copy2(pki / name, target / name)
    etcd_sans = dict(dns=[host, "localhost"], ips=[ip, "127.0.0.1", "0:0:0:0:0:0:0:1"])
    apiserver_dns = [host, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                     "kubernetes.default.svc.cluster.local"]
    leaves = [
        (pki, "ca", target, "apiserver", "kube-apiserver", None, dict(dns=apiserver_dns, ips=[SERVICE_IP, ip]), True, False),
        (pki, "ca", target, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "kubeadm:cluster-admins", {}, False, True),
        (pki / "etcd", "ca", target, "apiserver-etcd-client", "kube-apiserver-etcd-client", None, {}, False, True),
        (pki, "front-proxy-ca", target, "front-proxy-client", "front-proxy-client", None, {}, False, True),
        (pki / "etcd", "ca", target / "etcd", "server", host, None, etcd_sans, True, True),
        (pki / "etcd", "ca", target / "etcd", "peer", host, None, etcd_sans, True, True),
        (pki / "etcd", "ca", target / "etcd", "healthcheck-client", "kube-etcd-healthcheck-client", None, {}, False, True),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(make_leaf, ca_dir, ca_name, directory, name, cn, org, server=server, client=client, **sans)
                for ca_dir, ca_name, directory, name, cn, org, sans, server, client in leaves]
        for job in jobs:
            job.result()
    return target


def make_admin_client(pki, directory):
    """The client certificate admin.conf embeds (kubernetes-admin in kubeadm:cluster-admins)."""
    return make_leaf(pki, "ca", directory, "admin", "kubernetes-admin", "kubeadm:cluster-admins", client=True)
