# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Kubernetes API for the integration tests: Debian's etcd and a kube-apiserver built from
Debian's source (build-apiserver.sh), in a network namespace of their own, on loopback only, with
TLS, a token file and RBAC.

Only that namespace reaches 127.0.0.1:6443, so whatever talks to the API runs in it:
ansible-playbook through `ip netns exec` (the netns connection plugin still reaches the lab's
hosts by name), and the test's own staging calls in a worker thread that entered the namespace
(a network namespace belongs to a thread, so the rest of pytest stays where it was).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import datetime
import ipaddress
import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-apiserver.sh"
CLUSTERROLE = HERE.parents[1] / "docs" / "rbac" / "netpol-fleet-reader.yml"
API = "https://127.0.0.1:6443"
CLONE_NEWNET = 0x40000000
READY_WAIT = 180  # seconds for /readyz; a bound for a loaded machine, not a measurement

# The VMI API as KubeVirt serves it, reduced to what the snapshot reads (status as a subresource).
VMI_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "virtualmachineinstances.kubevirt.io"},
    "spec": {"group": "kubevirt.io", "scope": "Namespaced",
             "names": {"plural": "virtualmachineinstances", "singular": "virtualmachineinstance",
                       "kind": "VirtualMachineInstance", "shortNames": ["vmi"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def apiserver_binary() -> str:
    """The cached kube-apiserver (built on first use: ~30 min). Fails, never skips, without it."""
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError("no kube-apiserver for the Kubernetes-source tests: %s failed (rc=%d):\n%s"
                             % (BUILD_SCRIPT, result.returncode, result.stderr[-4000:]))
    return result.stdout.strip().splitlines()[-1]


class Cluster:
    """etcd + kube-apiserver in netns `netns`; tokens: admin (system:masters), reader (the shipped
    ClusterRole), novmi (the same role without VMIs), impersonator (may only impersonate: of the
    groups it can become, netpol-readers may read all but VMIs, netpol-vmi-readers only VMIs)."""

    def __init__(self, netns: str, directory: Path, binary: str):
        self.netns, self.directory, self.binary = netns, directory, binary
        self.tokens = {name: secrets.token_hex(16) for name in ("admin", "reader", "novmi", "impersonator")}
        self.processes: List[subprocess.Popen] = []
        self.ca = directory / "ca.crt"
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=self._enter_netns)
        self._admin: Any = None

    # ---- life cycle ----

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        self._write_credentials()
        self._spawn("etcd", ["etcd", "--data-dir", str(self.directory / "etcd"), "--listen-client-urls",
                             "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                             "--listen-peer-urls", "http://127.0.0.1:2380"])
        self._spawn("kube-apiserver", [self.binary] + self._apiserver_flags())
        self._wait_ready()
        self._admin = self.call(self._client, "admin")
        self.apply_rbac()
        self.create(VMI_CRD)
        self._wait_for_crd()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.shutdown(wait=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)

    def _spawn(self, name: str, argv: List[str]) -> None:
        log = open(self.directory / ("%s.log" % name), "w")
        self.processes.append(subprocess.Popen(["ip", "netns", "exec", self.netns] + argv, stdout=log,
                                               stderr=subprocess.STDOUT, cwd=self.directory))

    def _apiserver_flags(self) -> List[str]:
        d = self.directory
        return [
            "--etcd-servers=http://127.0.0.1:2379", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            "--secure-port=6443", "--insecure-port=0", "--tls-cert-file=%s" % (d / "server.crt"),
            "--tls-private-key-file=%s" % (d / "server.key"), "--token-auth-file=%s" % (d / "tokens.csv"),
            "--authorization-mode=RBAC", "--anonymous-auth=false",
            "--service-account-key-file=%s" % (d / "sa.pub"), "--service-account-signing-key-file=%s" % (d / "sa.key"),
            "--service-account-issuer=https://kubernetes.default.svc", "--service-cluster-ip-range=10.254.0.0/24",
            # No controller-manager runs: nothing would create the default ServiceAccount pods need.
            "--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none",
            "--cert-dir=%s" % d, "--enable-priority-and-fairness=false",
            # 1.20 keeps only the first of a pod's status.podIPs unless dual-stack is switched on.
            "--feature-gates=IPv6DualStack=true",
        ]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WAIT
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise AssertionError("%s exited (rc=%s); logs in %s"
                                         % (process.args, process.returncode, self.directory))
            if self.call(self._ready):
                return
            time.sleep(1)
        raise AssertionError("kube-apiserver not ready after %d s; logs in %s" % (READY_WAIT, self.directory))

    def _ready(self) -> bool:
        import urllib3
        try:
            http = urllib3.PoolManager(ca_certs=str(self.ca), cert_reqs="CERT_REQUIRED")
            response = http.request("GET", API + "/readyz", timeout=3, retries=False,
                                    headers={"Authorization": "Bearer " + self.tokens["admin"]})
            return response.status == 200
        except urllib3.exceptions.HTTPError:
            return False

    def _wait_for_crd(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.request("GET", "/apis/kubevirt.io/v1/virtualmachineinstances", check=False)[0] == 200:
                return
            time.sleep(1)
        raise AssertionError("the VMI CRD was not served within 60 s")

    # ---- credentials ----

    def _write_credentials(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = _certificate("netpol-test-ca", None, None)
        server_key, server_cert = _certificate("kube-apiserver", ca_key, ca_cert)
        self.ca.write_bytes(_pem(ca_cert))
        (self.directory / "server.crt").write_bytes(_pem(server_cert))
        (self.directory / "server.key").write_bytes(_pem_key(server_key))
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (self.directory / "sa.key").write_bytes(_pem_key(sa_key))
        (self.directory / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        rows = ['%s,admin,1,"system:masters"' % self.tokens["admin"], "%s,netpol-reader,2" % self.tokens["reader"],
                "%s,netpol-novmi,3" % self.tokens["novmi"], "%s,netpol-impersonator,4" % self.tokens["impersonator"]]
        (self.directory / "tokens.csv").write_text("\n".join(rows) + "\n")

    def kubeconfig(self, token: str = "reader") -> Path:
        path = self.directory / ("kubeconfig-%s" % token)
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": API, "certificate-authority": str(self.ca)}}],
            "users": [{"name": token, "user": {"token": self.tokens[token]}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": token}}],
        }))
        return path

    def k8s_auth_env(self, token: str = "reader") -> Dict[str, str]:
        """What AWX's bearer-token credential injects."""
        return {"K8S_AUTH_HOST": API, "K8S_AUTH_API_KEY": self.tokens[token], "K8S_AUTH_VERIFY_SSL": "true",
                "K8S_AUTH_SSL_CA_CERT": str(self.ca)}

    def apply_rbac(self) -> None:
        """The shipped ClusterRole for `reader`; the same without VMIs for `novmi` and the group
        netpol-readers; VMIs alone for the group netpol-vmi-readers; impersonation for `impersonator`."""
        role = yaml.safe_load(CLUSTERROLE.read_text())
        novmi = dict(role, metadata={"name": "netpol-fleet-novmi"},
                     rules=[r for r in role["rules"] if "kubevirt.io" not in r["apiGroups"]])
        vmi_only = dict(role, metadata={"name": "netpol-fleet-vmi-only"},
                        rules=[r for r in role["rules"] if "kubevirt.io" in r["apiGroups"]])
        impersonate = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                       "metadata": {"name": "netpol-impersonate"},
                       "rules": [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]}
        for cluster_role in (role, novmi, vmi_only, impersonate):
            self.create(cluster_role)
        for cluster_role, kind, subject in ((role, "User", "netpol-reader"), (novmi, "User", "netpol-novmi"),
                                            (novmi, "Group", "netpol-readers"),
                                            (vmi_only, "Group", "netpol-vmi-readers"),
                                            (impersonate, "User", "netpol-impersonator")):
            name = "%s-%s" % (cluster_role["metadata"]["name"], subject)
            self.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": name},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": cluster_role["metadata"]["name"]},
                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}]})

    # ---- API calls (in the namespace's thread) ----

    def _enter_netns(self) -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        with open("/run/netns/%s" % self.netns) as handle:
            if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns %s" % self.netns)

    def call(self, function, *args):
        return self._thread.submit(function, *args).result()

    def _client(self, token: str):
        from kubernetes import client
        configuration = client.Configuration()
        configuration.host, configuration.ssl_ca_cert = API, str(self.ca)
        configuration.api_key = {"authorization": "Bearer " + self.tokens[token]}
        return client.ApiClient(configuration)

    def request(self, method: str, path: str, body: Optional[dict] = None, content_type: str = "application/json",
                check: bool = True):
        """(status, decoded body) of one admin request."""
        return self.call(self._request, method, path, body, content_type, check)

    def _request(self, method, path, body, content_type, check):
        from kubernetes.client.exceptions import ApiException
        try:
            response = self._admin.call_api(path, method, body=body, header_params={
                "Content-Type": content_type, "Accept": "application/json"}, auth_settings=["BearerToken"],
                _preload_content=False, _return_http_data_only=True, _request_timeout=30)
            return response.status, json.loads(response.data or b"{}")
        except ApiException as failure:
            if check:
                raise AssertionError("%s %s: %s %s" % (method, path, failure.status, failure.body)) from None
            return failure.status, failure.body

    def create(self, obj: dict) -> dict:
        return self.request("POST", collection_path(obj), obj)[1]

    def delete(self, obj: dict) -> None:
        self.request("DELETE", object_path(obj), check=False)

    def patch(self, obj: dict, patch: dict, status: bool = False) -> dict:
        path = object_path(obj) + ("/status" if status else "")
        return self.request("PATCH", path, patch, "application/merge-patch+json")[1]

    def create_with_status(self, obj: dict) -> dict:
        """Create, then set status through /status (the only way a status is written)."""
        self.create({k: v for k, v in obj.items() if k != "status"})
        return self.patch(obj, {"status": obj["status"]}, status=True)


PLURALS = {"Namespace": "namespaces", "Pod": "pods", "Node": "nodes", "NetworkPolicy": "networkpolicies",
           "VirtualMachineInstance": "virtualmachineinstances", "ClusterRole": "clusterroles",
           "ClusterRoleBinding": "clusterrolebindings", "CustomResourceDefinition": "customresourcedefinitions"}


def collection_path(obj: dict) -> str:
    version = obj["apiVersion"]
    prefix = "/api/%s" % version if "/" not in version else "/apis/%s" % version
    namespace = obj["metadata"].get("namespace")
    return "%s%s/%s" % (prefix, "/namespaces/%s" % namespace if namespace else "", PLURALS[obj["kind"]])


def object_path(obj: dict) -> str:
    return "%s/%s" % (collection_path(obj), obj["metadata"]["name"])


def _certificate(name: str, issuer_key, issuer_cert):
    """An EC key and certificate: a CA when issuer_key is None, else a server cert for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=2)))
    if issuer_key is None:
        builder = builder.issuer_name(subject).add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        return key, builder.sign(key, hashes.SHA256())
    builder = builder.issuer_name(issuer_cert.subject).add_extension(x509.SubjectAlternativeName([
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), False)
    return key, builder.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
