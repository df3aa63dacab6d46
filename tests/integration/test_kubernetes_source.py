# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_source=kubernetes against a real kube-apiserver (tests/kubernetes/cluster.py), real traffic.

The lab's hosts are the cluster's pods (a pod's IP is a host's address, docs/kubernetes.md):
policies, labels and pod phases changed in the cluster between two runs change exactly what they
must on the hosts. ansible-playbook runs inside the API server's network namespace, the only
place 127.0.0.1:6443 is reachable. Without a kube-apiserver these tests fail (never skip).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from conftest import LAB_PLAYBOOK, REPO, VENV_BIN, ansible_env, delete_netns, run_playbook, session_prefix, write_lab_inventory

sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
from cluster import Cluster, apiserver_binary  # noqa: E402

FAST = ("-e", "netpol_gather_facts=false")
ADDRESSES = {"web": ("10.79.0.1", "fd79::1"), "api": ("10.79.0.2", "fd79::2"), "mon": ("10.79.0.3", "fd79::3")}
PORTS = {"web": 80, "api": 8080, "mon": 80}
FILLERS = 8  # peer-only pods: 11 pods in pages of 4
PAGE_SIZE = 4


def lab_host(name: str) -> dict:
    """A host that is a pod of the cluster: addresses and the ports to probe, no netpol_namespace."""
    return {"netpol_addresses": ["%s/24" % ADDRESSES[name][0], "%s/64" % ADDRESSES[name][1]],
            "netpol_ports": [{"name": "http", "port": PORTS[name], "protocol": "TCP"}]}


def pod(namespace: str, name: str, labels: Dict[str, str], addresses: Tuple[str, ...], port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox", "ports": [
                {"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": addresses[0], "podIPs": [{"ip": a} for a in addresses]}}


def policy(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


WEB_FROM_API = policy("shop", "web-from-api", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": "http"}]}]})
OPS_FROM_RETAIL = policy("ops", "mon-from-retail", {"podSelector": {}, "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"team": "retail"}}}], "ports": [{"port": "http"}]}]})
PODS = {"web": pod("shop", "web", {"app": "web"}, ADDRESSES["web"]),
        "api": pod("shop", "api", {"app": "api"}, ADDRESSES["api"], 8080),
        "mon": pod("ops", "mon", {"app": "mon"}, ADDRESSES["mon"])}


def stage(cluster: Cluster) -> None:
    for name, team in (("shop", "retail"), ("ops", "ops")):
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": team}}})
    cluster.create_with_status({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
                                "status": {"addresses": [{"type": "InternalIP", "address": "10.79.0.254"}]}})
    for item in PODS.values():
        cluster.create_with_status(item)
    for n in range(FILLERS):
        cluster.create_with_status(pod("shop", "filler-%d" % n, {"app": "filler"}, ("10.79.1.%d" % (n + 1),)))
    for item in (WEB_FROM_API, OPS_FROM_RETAIL):
        cluster.create(item)


class Site:
    """The lab, the cluster, and ansible-playbook run where the API is reachable."""

    def __init__(self, prefix: str, directory: Path, inventory: Path, cluster: Cluster):
        self.prefix, self.directory, self.inventory, self.cluster = prefix, directory, inventory, cluster

    def host(self, name: str) -> str:
        return self.prefix + name

    def playbook(self, playbook: str, kubernetes: dict, env: Dict[str, str] = None,
                 check: bool = True, extra: Tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        variables = self.directory / "vars.json"
        variables.write_text(json.dumps({"netpol_source": "kubernetes", "netpol_kubernetes": kubernetes}))
        argv = ["ip", "netns", "exec", self.cluster.netns, str(VENV_BIN / "ansible-playbook"), "-i",
                str(self.inventory), str(REPO / playbook), "-e", "@%s" % variables, *FAST, *extra]
        result = subprocess.run(argv, cwd=REPO, env=ansible_env(**(env or {})), capture_output=True, text=True,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError("%s failed (rc=%d)\n%s\n%s" % (playbook, result.returncode, result.stdout, result.stderr))
        return result

    def query(self, selector: str, kubernetes: dict) -> List[dict]:
        """The selector lookup with source=kubernetes, in a play on the lab's inventory."""
        out = self.directory / "query.json"
        play = self.directory / "query.yml"
        play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [{
            "ansible.builtin.copy": {"dest": str(out), "content": "{{ query('netpol.fleet.selector', %r, "
                                     "source='kubernetes', kubernetes=%r) | to_json }}" % (selector, kubernetes)}}]}]))
        self.playbook(str(play), {})
        return json.loads(out.read_text())

    def kernel(self, name: str) -> str:
        out = []
        for tool in ("iptables-save", "ip6tables-save", "ipset save"):
            text = subprocess.run(["ip", "netns", "exec", self.host(name), *tool.split()], check=True,
                                  capture_output=True, text=True).stdout
            out += [line for line in text.splitlines() if not line.startswith("#")]
        return "\n".join(out)

    def members(self, name: str) -> List[str]:
        """Every member of every set of ours on the host."""
        return [line.split()[2] for line in self.kernel(name).splitlines()
                if line.startswith("add netpol")]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    binary = apiserver_binary()
    prefix = session_prefix("npk", "ks")
    directory = tmp_path_factory.mktemp("npk")
    cluster = Cluster(prefix + "kapi", directory / "cluster", binary)
    inventory = write_lab_inventory(directory / "inv", prefix, {name: lab_host(name) for name in ADDRESSES})
    try:
        cluster.start()
        stage(cluster)
        run_playbook(LAB_PLAYBOOK, inventory)
        yield Site(prefix, directory, inventory, cluster)
    finally:
        run_playbook(LAB_PLAYBOOK, inventory, "-e", "state=absent", check=False)
        cluster.stop()
        delete_netns(prefix)


def measured(stdout: str) -> Dict[Tuple[str, str, str], str]:
    """(src, address, tcp/port) -> measured allow/deny, from demo.yml's side-by-side table."""
    rows = re.findall(r'"([^\s"]+)\s+\S+\s+(\S+)\s+(\w+/\d+)\s+(allow|deny)\s+(allow|deny)"', stdout)
    return {(src, address, port.lower()): got for src, address, port, _expected, got in rows}


def test_cluster_policies_are_enforced_and_cluster_changes_change_exactly_what_they_must(site):
    web, api, mon = (site.host(n) for n in ("web", "api", "mon"))
    # Run 1, credentials from a kubeconfig; pods listed in pages smaller than their number.
    kubeconfig = {"kubeconfig": str(site.cluster.kubeconfig()), "page_size": PAGE_SIZE}
    first = site.playbook("playbooks/demo.yml", kubeconfig).stdout
    assert "flows, measured exactly as expected" in first
    assert "credentials from kubeconfig %s" % kubeconfig["kubeconfig"] in first
    assert "'Pod': 3" in first  # 11 pods, 4 a page
    flows = measured(first)
    assert flows[(api, "10.79.0.1", "tcp/80")] == "allow"  # web from app=api on its named port
    assert flows[(mon, "10.79.0.1", "tcp/80")] == flows[(mon, "fd79::1", "tcp/80")] == "deny"
    assert flows[(web, "10.79.0.3", "tcp/80")] == "allow"  # ops from the retail namespace
    assert flows[(mon, "10.79.0.2", "tcp/8080")] == "allow"  # api is selected by no policy
    # The lookup resolves what the compiler resolved: the app=api pod, enforced on the api host.
    assert [(w["kind"], w["namespace"], w["name"], w["host"], w["node"], w["addresses"])
            for w in site.query("app=api", kubeconfig)] == [
        ("Pod", "shop", "api", api, "node-1", list(ADDRESSES["api"]))]
    api_before = site.kernel("api")

    # Between two runs: web's policy also admits the ops namespace (by the kubernetes.io/metadata.name
    # label, which 1.20 does not set), ops's policy is deleted, a shop pod becomes app=api, and mon
    # (in ops) too - which a podSelector-only peer of shop must ignore. Run 2 with AWX's variables.
    site.cluster.patch(WEB_FROM_API, {"spec": {"ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "api"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}], "ports": [{"port": "http"}]}]}})
    site.cluster.delete(OPS_FROM_RETAIL)
    site.cluster.patch(pod("shop", "filler-0", {}, ("10.79.1.1",)), {"metadata": {"labels": {"app": "api"}}})
    web_sets_before = set(site.members("web"))
    second = site.playbook("playbooks/demo.yml", {"page_size": PAGE_SIZE}, env=site.cluster.k8s_auth_env()).stdout
    assert "flows, measured exactly as expected" in second
    assert "credentials from options (host https://127.0.0.1:6443, api_key; or their K8S_AUTH_* variables)" in second
    flows = measured(second)
    assert flows[(mon, "10.79.0.1", "tcp/80")] == flows[(mon, "fd79::1", "tcp/80")] == "allow"
    assert set(site.members("web")) - web_sets_before == {"10.79.1.1", "10.79.0.3", "fd79::3"}
    assert "NETPOL-I-" not in site.kernel("mon")  # no policy selects mon any more
    assert site.kernel("api") == api_before  # nothing of api's changed

    # The api pod finishes: its addresses leave every peer set of every host.
    site.cluster.patch(PODS["api"], {"status": {"phase": "Succeeded"}}, status=True)
    third = site.playbook("playbooks/demo.yml", {"page_size": PAGE_SIZE}, env=site.cluster.k8s_auth_env()).stdout
    assert "flows, measured exactly as expected" in third
    assert measured(third)[(api, "10.79.0.1", "tcp/80")] == "deny"
    for name in ADDRESSES:
        assert not {"10.79.0.2", "fd79::2"} & set(site.members(name)), name
    assert {"10.79.0.3", "fd79::3", "10.79.1.1"} <= set(site.members("web"))


def test_a_token_without_list_on_vmis_fails_naming_the_permission_and_changes_nothing(site):
    before = {name: site.kernel(name) for name in ADDRESSES}
    result = site.playbook("playbooks/site.yml", {}, env=site.cluster.k8s_auth_env("novmi"), check=False)
    assert result.returncode != 0
    assert ("missing permission: verb 'list' on resource 'virtualmachineinstances.kubevirt.io'" in result.stdout)
    assert "no host was changed" in result.stdout
    assert {name: site.kernel(name) for name in ADDRESSES} == before


def test_a_vmi_on_an_inventory_host_without_its_mac_on_a_bridge_stops_the_run(site):
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "hv-1"},
            "status": {"addresses": [{"type": "InternalIP", "address": ADDRESSES["mon"][0]}]}}
    vmi = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": "db-vm", "namespace": "shop", "labels": {"app": "db"}},
           "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}}]}}},
           "status": {"phase": "Running", "nodeName": "hv-1", "interfaces": [
               {"name": "default", "mac": "52:54:00:00:00:09", "ipAddresses": ["10.79.2.9/24"]}]}}
    before = {name: site.kernel(name) for name in ADDRESSES}
    site.cluster.create_with_status(node)
    site.cluster.create_with_status(vmi)
    try:
        result = site.playbook("playbooks/site.yml", {"kubeconfig": str(site.cluster.kubeconfig())}, check=False)
    finally:
        site.cluster.delete(vmi)
        site.cluster.delete(node)
    assert result.returncode != 0
    # hv-1 is the mon host (by address), which has no bridge: the VMI's port cannot be found.
    assert ("kubernetes VirtualMachineInstance shop/db-vm: runs on node hv-1, inventory host %s: status.interfaces[].mac: "
            "no MAC of the VMI (52:54:00:00:00:09) is behind a port of the host's bridges" % site.host("mon")) in result.stdout
    assert {name: site.kernel(name) for name in ADDRESSES} == before


SCOPED_DENY = policy("ops", "mon-isolated", {"podSelector": {}, "policyTypes": ["Ingress"]})
SCOPED_DENY["metadata"]["labels"] = {"netpol": "on"}
UNLABELLED_OPEN = policy("ops", "mon-open", {"podSelector": {}, "ingress": [{}]})


def test_policies_read_only_from_the_namespaces_and_labels_named_and_the_rest_is_not_enforced(site):
    web, mon = site.host("web"), site.host("mon")
    scope = {"kubeconfig": str(site.cluster.kubeconfig()), "policy_namespaces": ["ops"],
             "policy_label_selectors": ["netpol=on"]}
    for item in (SCOPED_DENY, UNLABELLED_OPEN):
        site.cluster.create(item)
    try:
        review = site.playbook("playbooks/site.yml", scope, extra=("--check", "--diff"))
        run = site.playbook("playbooks/demo.yml", scope)
        before = {name: site.kernel(name) for name in ADDRESSES}
        bad = site.playbook("playbooks/site.yml", dict(scope, policy_namespaces=["ops", "opz"]), check=False)
    finally:
        for item in (SCOPED_DENY, UNLABELLED_OPEN):
            site.cluster.delete(item)
    out, said = run.stdout, re.sub(r"\s+", " ", run.stdout + run.stderr)  # warnings go to stderr
    assert "flows, measured exactly as expected" in out
    assert "NetworkPolicies of namespace ops, labelled netpol=on" in out
    assert re.search(r"'NetworkPolicy in ops': '\d+'", out)  # the namespace's own list and its resourceVersion
    assert "the cluster's other NetworkPolicies are NOT enforced by this run" in said
    flows = measured(out)
    # Only ops's labelled deny-all is read: mon-open (unlabelled) would admit web, shop's web-from-api
    # (another namespace) would deny mon; neither is enforced.
    assert flows[(web, "10.79.0.3", "tcp/80")] == flows[(web, "fd79::3", "tcp/80")] == "deny"
    assert flows[(mon, "10.79.0.1", "tcp/80")] == flows[(mon, "fd79::1", "tcp/80")] == "allow"
    assert "NETPOL-I-" not in site.kernel("web")
    # --diff: each host's diff is headed by the snapshot it was compiled from, the versions the run read.
    versions = ast.literal_eval(re.search(r"resourceVersions (\{[^}]*\})", review.stdout).group(1))
    assert set(versions) == {"Namespace", "NetworkPolicy in ops", "Pod", "Node", "VirtualMachineInstance"}
    header = "desired state compiled from the Kubernetes snapshot of https://127.0.0.1:6443 at resourceVersions " + \
        ", ".join("%s %s" % item for item in versions.items())
    assert review.stdout.count(header) >= 2  # web loses shop's policy, mon gains ops's: both hosts changed
    # A namespace the cluster does not have stops the run before any host changes.
    assert bad.returncode != 0
    assert "netpol_kubernetes.policy_namespaces[1]: namespace 'opz' is not a Namespace of the cluster" in bad.stdout
    assert "no host was changed" in bad.stdout
    assert {name: site.kernel(name) for name in ADDRESSES} == before


def test_several_impersonated_groups_each_bring_their_permissions(site):
    """The impersonator may list nothing itself; of the groups it becomes, one may list all but VMIs,
    the other only VMIs: the snapshot needs both groups sent."""
    before = {name: site.kernel(name) for name in ADDRESSES}
    as_groups = {"kubeconfig": str(site.cluster.kubeconfig("impersonator")), "impersonate_user": "jane"}
    both = site.playbook("playbooks/site.yml", dict(as_groups, impersonate_groups=["netpol-readers",
                                                                                   "netpol-vmi-readers"]),
                         extra=("--check",))
    assert "Kubernetes snapshot of https://127.0.0.1:6443" in both.stdout
    one = site.playbook("playbooks/site.yml", dict(as_groups, impersonate_groups=["netpol-readers"]), check=False)
    assert one.returncode != 0
    assert "missing permission: verb 'list' on resource 'virtualmachineinstances.kubevirt.io'" in one.stdout
    assert re.search(r'User \\*"jane\\*" cannot list', one.stdout)  # the server judged jane and her groups
    assert {name: site.kernel(name) for name in ADDRESSES} == before
