"""The files kubeadm leaves in /etc/kubernetes of a control-plane node, rendered for one lab host.

Static pod manifests have kubeadm's shape (keys sorted, as kubeadm marshals them; flags sorted;
probes, resources, volumes as kubeadm writes them), so the collection's manifest code meets the
same files it will meet in production.
"""

import base64
import secrets

import yaml

PKI = "/etc/kubernetes/pki"
ENCRYPTION_DIR = "/etc/kubernetes/enc"
ENCRYPTION_CONFIG = ENCRYPTION_DIR + "/encryption-config.yaml"
# The Kubernetes release whose kubeadm would pin this etcd line (only the apiserver image tag shows it).
KUBERNETES_FOR_ETCD_LINE = {"3.4": "v1.22.17", "3.5": "v1.31.4", "3.6": "v1.34.2", "3.7": "v1.35.0"}


def dump(document):
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=True)


def _probe(host, path, port, scheme, failure_threshold, initial_delay=10):
    return {
        "failureThreshold": failure_threshold,
        "httpGet": {"host": host, "path": path, "port": port, "scheme": scheme},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": 10,
        "timeoutSeconds": 15,
    }


def _host_path(name, path, kind):
    return {"hostPath": {"path": path, "type": kind}, "name": name}


def etcd_manifest(host, ip, initial_cluster, etcd_version, cluster_state="new"):
    """kubeadm's /etc/kubernetes/manifests/etcd.yaml for one member."""
    command = [
        "etcd",
        "--advertise-client-urls=https://%s:2379" % ip,
        "--cert-file=%s/etcd/server.crt" % PKI,
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--initial-advertise-peer-urls=https://%s:2380" % ip,
        "--initial-cluster=%s" % initial_cluster,
        "--initial-cluster-state=%s" % cluster_state,
        "--key-file=%s/etcd/server.key" % PKI,
        "--listen-client-urls=https://127.0.0.1:2379,https://%s:2379" % ip,
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=https://%s:2380" % ip,
        "--name=%s" % host,
        "--peer-cert-file=%s/etcd/peer.crt" % PKI,
        "--peer-client-cert-auth=true",
        "--peer-key-file=%s/etcd/peer.key" % PKI,
        "--peer-trusted-ca-file=%s/etcd/ca.crt" % PKI,
        "--snapshot-count=10000",
        "--trusted-ca-file=%s/etcd/ca.crt" % PKI,
    ]
    return dump({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": "https://%s:2379" % ip},
            "creationTimestamp": None,
            "labels": {"component": "etcd", "tier": "control-plane"},
            "name": "etcd",
            "namespace": "kube-system",
        },
        "spec": {
            "containers": [{
                "command": command,
                "image": "registry.k8s.io/etcd:%s-0" % etcd_version,
                "imagePullPolicy": "IfNotPresent",
                "livenessProbe": _probe("127.0.0.1", "/health?exclude=NOSPACE&serializable=true", 2381, "HTTP", 8),
                "name": "etcd",
                "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
                "startupProbe": _probe("127.0.0.1", "/health?serializable=false", 2381, "HTTP", 24),
                "volumeMounts": [
                    {"mountPath": "/var/lib/etcd", "name": "etcd-data"},
                    {"mountPath": PKI + "/etcd", "name": "etcd-certs"},
                ],
            }],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                _host_path("etcd-certs", PKI + "/etcd", "DirectoryOrCreate"),
                _host_path("etcd-data", "/var/lib/etcd", "DirectoryOrCreate"),
            ],
        },
        "status": {},
    })


def apiserver_manifest(ip, etcd_line):
    """kubeadm's /etc/kubernetes/manifests/kube-apiserver.yaml (stacked etcd: --etcd-servers is the local member)."""
    command = [
        "kube-apiserver",
        "--advertise-address=%s" % ip,
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=%s/ca.crt" % PKI,
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--encryption-provider-config=%s" % ENCRYPTION_CONFIG,
        "--etcd-cafile=%s/etcd/ca.crt" % PKI,
        "--etcd-certfile=%s/apiserver-etcd-client.crt" % PKI,
        "--etcd-keyfile=%s/apiserver-etcd-client.key" % PKI,
        "--etcd-servers=https://127.0.0.1:2379",
        "--kubelet-client-certificate=%s/apiserver-kubelet-client.crt" % PKI,
        "--kubelet-client-key=%s/apiserver-kubelet-client.key" % PKI,
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=%s/front-proxy-client.crt" % PKI,
        "--proxy-client-key-file=%s/front-proxy-client.key" % PKI,
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=%s/front-proxy-ca.crt" % PKI,
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=%s/sa.pub" % PKI,
        "--service-account-signing-key-file=%s/sa.key" % PKI,
        "--service-cluster-ip-range=10.96.0.0/12",
        "--tls-cert-file=%s/apiserver.crt" % PKI,
        "--tls-private-key-file=%s/apiserver.key" % PKI,
    ]
    return dump({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": "%s:6443" % ip},
            "creationTimestamp": None,
            "labels": {"component": "kube-apiserver", "tier": "control-plane"},
            "name": "kube-apiserver",
            "namespace": "kube-system",
        },
        "spec": {
            "containers": [{
                "command": command,
                "image": "registry.k8s.io/kube-apiserver:%s" % KUBERNETES_FOR_ETCD_LINE.get(etcd_line, "v1.31.4"),
                "imagePullPolicy": "IfNotPresent",
                "livenessProbe": _probe(ip, "/livez", 6443, "HTTPS", 8),
                "name": "kube-apiserver",
                "readinessProbe": dict(_probe(ip, "/readyz", 6443, "HTTPS", 3, initial_delay=0), periodSeconds=1),
                "resources": {"requests": {"cpu": "250m"}},
                "startupProbe": _probe(ip, "/livez", 6443, "HTTPS", 24),
                "volumeMounts": [
                    {"mountPath": "/etc/ssl/certs", "name": "ca-certs", "readOnly": True},
                    {"mountPath": "/etc/ca-certificates", "name": "etc-ca-certificates", "readOnly": True},
                    {"mountPath": ENCRYPTION_DIR, "name": "k8s-enc", "readOnly": True},
                    {"mountPath": PKI, "name": "k8s-certs", "readOnly": True},
                    {"mountPath": "/usr/local/share/ca-certificates", "name": "usr-local-share-ca-certificates", "readOnly": True},
                    {"mountPath": "/usr/share/ca-certificates", "name": "usr-share-ca-certificates", "readOnly": True},
                ],
            }],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                _host_path("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate"),
                _host_path("etc-ca-certificates", "/etc/ca-certificates", "DirectoryOrCreate"),
                _host_path("k8s-enc", ENCRYPTION_DIR, "DirectoryOrCreate"),
                _host_path("k8s-certs", PKI, "DirectoryOrCreate"),
                _host_path("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates", "DirectoryOrCreate"),
                _host_path("usr-share-ca-certificates", "/usr/share/ca-certificates", "DirectoryOrCreate"),
            ],
        },
        "status": {},
    })


def encryption_config(key=None):
    """An EncryptionConfiguration for secrets (aescbc), as operators add to kubeadm clusters."""
    key = key or base64.b64encode(secrets.token_bytes(32)).decode()
    return dump({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"aescbc": {"keys": [{"name": "key1", "secret": key}]}}, {"identity": {}}],
        }],
    })


def admin_conf(server, ca_crt, client_crt, client_key):
    """kubeadm's admin.conf: a kubeconfig for kubernetes-admin with embedded certificates."""
    def b64(path):
        return base64.b64encode(path.read_bytes()).decode()

    return dump({
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": b64(ca_crt), "server": server}, "name": "kubernetes"}],
        "contexts": [{"context": {"cluster": "kubernetes", "user": "kubernetes-admin"}, "name": "kubernetes-admin@kubernetes"}],
        "current-context": "kubernetes-admin@kubernetes",
        "kind": "Config",
        "preferences": {},
        "users": [{"name": "kubernetes-admin",
                   "user": {"client-certificate-data": b64(client_crt), "client-key-data": b64(client_key)}}],
    })
