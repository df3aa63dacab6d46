# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifests to Policy objects: defaults, semantics-preserving shapes, sources and origins."""

from __future__ import annotations

import os

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    IPBlock,
    LabelSelector,
    Peer,
    PortSpec,
    Requirement,
    Rule,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies, parse_documents

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
ALL = LabelSelector()


def manifest(spec, name="np", namespace="shop"):
    metadata = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec}


def one(spec, **kwargs):
    policies, _warnings = parse_documents([manifest(spec, **kwargs)], "test.yaml")
    (policy,) = policies
    return policy


# policyTypes defaults, exactly as SetDefaults_NetworkPolicy.
@pytest.mark.parametrize(
    "spec, types",
    [
        ({"podSelector": {}}, ("Ingress",)),
        ({"podSelector": {}, "ingress": [{}]}, ("Ingress",)),
        ({"podSelector": {}, "egress": [{}]}, ("Ingress", "Egress")),
        ({"podSelector": {}, "egress": []}, ("Ingress",)),  # an empty egress list adds nothing
        ({"podSelector": {}, "egress": None}, ("Ingress",)),
        ({"podSelector": {}, "policyTypes": [], "egress": [{}]}, ("Ingress", "Egress")),  # [] is defaulted
        ({"podSelector": {}, "policyTypes": ["Egress"]}, ("Egress",)),
        ({"podSelector": {}, "policyTypes": ["Egress", "Ingress"]}, ("Ingress", "Egress")),
        ({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]}, ("Ingress",)),
    ],
)
def test_policy_types_default(spec, types):
    assert one(spec).policy_types == types


# Rules: missing or empty lists mean "all", an empty rule list means "none".
@pytest.mark.parametrize(
    "ingress, rules",
    [
        (None, ()),  # isolated, nothing allowed
        ([], ()),  # ingress: [] = deny all
        ([{}], (Rule(),)),  # ingress: [{}] = allow all
        ([{"from": [], "ports": []}], (Rule(),)),
        ([{"from": None, "ports": None}], (Rule(),)),
        ([{"ports": [{}]}], (Rule(ports=(PortSpec("TCP"),)),)),  # protocol TCP, every port
        ([{"ports": [{"port": 80}]}], (Rule(ports=(PortSpec("TCP", 80),)),)),
        ([{"ports": [{"protocol": "UDP"}]}], (Rule(ports=(PortSpec("UDP"),)),)),
        ([{"ports": [{"protocol": "SCTP", "port": 9}]}], (Rule(ports=(PortSpec("SCTP", 9),)),)),
        ([{"ports": [{"port": "http"}]}], (Rule(ports=(PortSpec("TCP", "http"),)),)),
        ([{"ports": [{"port": 32000, "endPort": 32768}]}], (Rule(ports=(PortSpec("TCP", 32000, 32768),)),)),
        ([{"ports": [{"port": 53, "endPort": 53}]}], (Rule(ports=(PortSpec("TCP", 53),)),)),  # a 1-port range
        ([{"from": [{"podSelector": {}}]}], (Rule(peers=(Peer(pod_selector=ALL),)),)),
        ([{"from": [{"namespaceSelector": {}}]}], (Rule(peers=(Peer(namespace_selector=ALL),)),)),
        (
            [{"from": [{"namespaceSelector": {"matchLabels": {"t": "a"}}, "podSelector": {"matchLabels": {"app": "x"}}}]}],
            (Rule(peers=(Peer(LabelSelector((("app", "x"),)), LabelSelector((("t", "a"),))),)),),
        ),
        (
            [{"from": [{"podSelector": None, "ipBlock": {"cidr": "10.0.0.0/8", "except": None}}]}],
            (Rule(peers=(Peer(ip_block=IPBlock("10.0.0.0/8")),)),),
        ),
        ([{}, {}], (Rule(), Rule())),
    ],
)
def test_ingress_rules(ingress, rules):
    assert one({"podSelector": {}, "ingress": ingress}).ingress == rules


def test_egress_rules_use_to():
    policy = one({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "fd00::/8"}}], "ports": [{"port": 53}]}]})
    assert policy.egress == (Rule(peers=(Peer(ip_block=IPBlock("fd00::/8")),), ports=(PortSpec("TCP", 53),)),)
    assert policy.ingress == ()


def test_rules_of_a_direction_outside_policy_types_are_dropped_with_a_warning():
    document = manifest({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{"to": [{"podSelector": {}}]}]})
    (policy,), warnings = parse_documents([document], "test.yaml")
    assert policy.egress == ()
    assert warnings == ["test.yaml: shop/np: spec.egress: ignored: policyTypes does not include Egress"]


def test_pod_selector_empty_selects_all_and_is_canonical():
    policy = one({
        "podSelector": {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "z", "operator": "NotIn", "values": ["y", "x", "y"]},
                {"key": "e", "operator": "Exists"},
            ],
        }
    })
    assert policy.pod_selector == LabelSelector(
        (("a", "1"), ("b", "2")), (Requirement("e", "Exists"), Requirement("z", "NotIn", ("x", "y")))
    )
    assert one({"podSelector": {}}).pod_selector == ALL


@pytest.mark.parametrize("namespace", [None, ""])
def test_namespace_defaults_like_kubectl(namespace):
    assert one({"podSelector": {}}, namespace=namespace).namespace == "default"


def test_cidrs_are_normalised_with_a_warning_for_host_bits():
    (policy,), warnings = parse_documents(
        [manifest({"podSelector": {}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.9.0/24", "10.1.3.0/24"]}},
            {"ipBlock": {"cidr": "2001:0DB8::0/32"}},
        ]}]})],
        "test.yaml",
    )
    peers = policy.ingress[0].peers
    assert peers[0].ip_block == IPBlock("10.1.0.0/16", ("10.1.3.0/24", "10.1.9.0/24"))
    assert peers[1].ip_block == IPBlock("2001:db8::/32")
    assert warnings == [
        "test.yaml: shop/np: spec.ingress[0].from[0].ipBlock.cidr: CIDR value '10.1.2.3/16' has host bits set; "
        "using 10.1.0.0/16"
    ]


def test_the_upstream_examples():
    policies, warnings = load_policies([], ["valid/kubernetes-io-examples.yaml"], base_dir=CORPUS)
    assert warnings == []
    by_name = {p.name: p for p in policies}
    assert [p.name for p in policies] == sorted(by_name)  # sorted by (namespace, name); all in default
    full = by_name["test-network-policy"]
    assert full.origin == "valid/kubernetes-io-examples.yaml#0"  # a leading comment is no document
    assert full.pod_selector == LabelSelector((("role", "db"),))
    assert full.policy_types == ("Ingress", "Egress")
    assert full.ingress == (Rule(
        peers=(
            Peer(ip_block=IPBlock("172.17.0.0/16", ("172.17.1.0/24",))),
            Peer(namespace_selector=LabelSelector((("project", "myproject"),))),
            Peer(pod_selector=LabelSelector((("role", "frontend"),))),
        ),
        ports=(PortSpec("TCP", 6379),),
    ),)
    assert full.egress == (Rule(peers=(Peer(ip_block=IPBlock("10.0.0.0/24")),), ports=(PortSpec("TCP", 5978),)),)
    assert by_name["default-deny-ingress"].ingress == () and by_name["default-deny-ingress"].policy_types == ("Ingress",)
    assert by_name["allow-all-ingress"].ingress == (Rule(),)
    assert by_name["default-deny-egress"].policy_types == ("Egress",) and by_name["default-deny-egress"].egress == ()
    assert by_name["allow-all-egress"].egress == (Rule(),)
    assert by_name["default-deny-all"].policy_types == ("Ingress", "Egress")
    assert by_name["multi-port-egress"].egress[0].ports == (PortSpec("TCP", 32000, 32768),)


def test_lists_of_policies():
    policies, warnings = load_policies([], ["valid/mixed-documents.yaml"], base_dir=CORPUS)
    assert [(p.key, p.origin) for p in policies] == [
        ("shop/allow-frontend", "valid/mixed-documents.yaml#0.items[0]"),
        ("shop/deny-all", "valid/mixed-documents.yaml#1.items[0]"),
        ("shop/dns-egress", "valid/mixed-documents.yaml#3"),
    ]
    assert warnings == []
    frontend, _deny, dns = policies
    assert frontend.ingress[0].peers == (Peer(
        pod_selector=LabelSelector((("app", "proxy"),)),
        namespace_selector=LabelSelector((("kubernetes.io/metadata.name", "edge"),)),
    ),)
    assert dns.egress[0].ports == (PortSpec("UDP", 53), PortSpec("TCP", "dns-tcp"), PortSpec("SCTP"))


def test_dual_stack_example():
    (policy,), warnings = load_policies([], ["valid/dual-stack.yaml"], base_dir=CORPUS)
    assert [p.ip_block for p in policy.ingress[0].peers] == [
        IPBlock("2001:db8::/32", ("2001:db8:1::/48", "2001:db8:ff::/48")),
        IPBlock("10.1.0.0/16", ("10.1.200.0/24",)),
    ]
    assert policy.ingress[0].ports == (PortSpec("TCP", 5432),)
    assert len(warnings) == 2 and all("host bits" in w for w in warnings)


def test_directories_globs_and_inline_together():
    inline = [manifest({"podSelector": {}}, name="inline"), ""]
    inline[1] = "kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: t}\nspec: {podSelector: {}}\n"
    policies, _warnings = load_policies(inline, ["valid", "valid/*.yaml"], base_dir=CORPUS)
    assert len(policies) == 13  # each file read once although named twice
    assert policies[0].key == "billing/dual-stack"
    assert [p.origin for p in policies if p.name in ("inline", "t")] == ["netpol_policies[1]#0", "netpol_policies[0]"]


def test_inline_errors_name_the_variable():
    with pytest.raises(InputErrors) as raised:
        load_policies([manifest({"podSelector": {}}), manifest({"podSelector": {"matchLabels": {"a": "b c"}}})], [])
    (error,) = raised.value.errors
    assert (error.source, error.obj, error.field) == ("netpol_policies[1]", "shop/np", "spec.podSelector.matchLabels.a")


def test_duplicates_across_sources_are_one_error_naming_the_first():
    with pytest.raises(InputErrors) as raised:
        load_policies([manifest({"podSelector": {}}, name="test-network-policy", namespace="default")],
                      ["valid/kubernetes-io-examples.yaml"], base_dir=CORPUS)
    assert str(raised.value) == (
        "valid/kubernetes-io-examples.yaml: default/test-network-policy: metadata.name: duplicate NetworkPolicy "
        "name in namespace 'default': also defined in netpol_policies[0]"
    )


@pytest.mark.parametrize(
    "paths, message",
    [
        (["missing.yaml"], "netpol_policy_paths: 'missing.yaml': no such file or directory in %s" % CORPUS),
        (["nothing/*.yml"], "netpol_policy_paths: 'nothing/*.yml': matched no files in %s" % CORPUS),
        (["/nowhere/missing.yaml"], "netpol_policy_paths: '/nowhere/missing.yaml': no such file or directory"),
    ],
)
def test_paths_that_find_nothing_are_errors_naming_the_directory_searched(paths, message):
    with pytest.raises(InputErrors) as raised:
        load_policies([], paths, base_dir=CORPUS)
    assert str(raised.value) == message


def test_an_empty_directory_is_a_warning(tmp_path):
    (tmp_path / "empty").mkdir()
    policies, warnings = load_policies(None, "empty", base_dir=str(tmp_path))
    assert policies == () and "no .yaml/.yml/.json files" in warnings[0]


def test_errors_of_every_source_are_reported_together():
    with pytest.raises(InputErrors) as raised:
        load_policies([{"kind": "NetworkPolicy"}], ["invalid/port-zero.yaml", "invalid/cidr-zone.yaml"],
                      base_dir=CORPUS)
    assert [e.source for e in raised.value.errors] == [
        "netpol_policies[0]", "invalid/port-zero.yaml", "invalid/cidr-zone.yaml",
    ]


def test_nothing_at_all_is_fine():
    assert load_policies(None, None) == ((), [])


@pytest.mark.parametrize(
    "document, message",
    [
        ({"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy", "metadata": {"name": "c"}},
         "netpol_policies[0]: default/c: apiVersion: Unsupported value 'crd.projectcalico.org/v1': NetworkPolicy "
         "is served as networking.k8s.io/v1"),
        ({"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy"},
         "netpol_policies[0]: kind: Unsupported value 'CiliumNetworkPolicy': a policy source holds only "
         "networking.k8s.io/v1 NetworkPolicy objects (or a List or NetworkPolicyList of them) "
         "(did you mean 'NetworkPolicy'?)"),
        ({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicys", "metadata": {"name": "x", "namespace": "a"}},
         "netpol_policies[0]: a/x: kind: Unsupported value 'NetworkPolicys': a policy source holds only "
         "networking.k8s.io/v1 NetworkPolicy objects (or a List or NetworkPolicyList of them) "
         "(did you mean 'NetworkPolicy'?)"),
        ({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "NetworkPolicy",
                                                         "metadata": {"name": "x"}}]},
         "netpol_policies[0]: default/x: apiVersion: Unsupported value 'v1': NetworkPolicy is served as "
         "networking.k8s.io/v1"),
        ({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "List", "items": []}]},
         "netpol_policies[0]: netpol_policies[0].items[0]: kind: Unsupported value 'List': a list holds only networking.k8s.io/v1 "
         "NetworkPolicy items"),
        ({"apiVersion": "v1", "kind": ["NetworkPolicy"]},
         "netpol_policies[0]: kind: Unsupported value ['NetworkPolicy']"),
    ],
)
def test_a_document_that_is_not_a_networkpolicy_is_an_error(document, message):
    """kube-apiserver refuses them: skipping one would silently drop a policy (a typo opens the fleet)."""
    with pytest.raises(InputErrors) as raised:
        load_policies([document], [])
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    "item, message",
    [
        ("kind: [", "netpol_policies[0]: invalid YAML at line 1, column 8"),
        ("a: 1\na: 2\n", "netpol_policies[0]: invalid YAML at line 2, column 1: found duplicate key 'a'"),
        ({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x"}, "spec": []},
         "netpol_policies[0]: default/x: spec: must be an object, not array"),
    ],
)
def test_inline_items_may_be_yaml_texts_and_errors_say_where(item, message):
    with pytest.raises(InputErrors) as raised:
        load_policies([item], [])
    assert len(raised.value.errors) == 1
    assert str(raised.value).startswith(message)


def test_a_file_that_is_not_utf8_is_an_error(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"kind: caf\xe9\n")
    with pytest.raises(InputErrors) as raised:
        load_policies([], ["latin1.yaml"], base_dir=str(tmp_path))
    assert str(raised.value).startswith("latin1.yaml: ")


def test_netpol_policies_must_be_a_list():
    with pytest.raises(InputErrors, match="^netpol_policies: must be a list of manifests$"):
        load_policies({"kind": "NetworkPolicy"}, [])


def test_a_file_that_cannot_be_read_is_an_error(tmp_path):
    (tmp_path / "good.yaml").write_text("")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing")
    with pytest.raises(InputErrors) as raised:
        load_policies([], ["*.yaml"], base_dir=str(tmp_path))
    assert str(raised.value) == "gone.yaml: cannot read: No such file or directory"
