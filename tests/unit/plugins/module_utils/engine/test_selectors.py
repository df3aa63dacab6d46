# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Selectors: the string form, the manifest form, and peer semantics against a fleet."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    METADATA_NAME,
    Fleet,
    IPBlock,
    LabelSelector,
    Namespace,
    Peer,
    Requirement,
    Workload,
    labels_of,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import (
    parse_selector,
    peer_workloads,
    select_workloads,
    selector_from_dict,
)


@pytest.mark.parametrize(
    "text, selector",
    [
        ("", LabelSelector()),
        ("   ", LabelSelector()),
        ("app=web", LabelSelector((("app", "web"),))),
        ("app==web", LabelSelector((("app", "web"),))),
        (" app = web ", LabelSelector((("app", "web"),))),
        ("app=", LabelSelector((("app", ""),))),
        ("app!=web", LabelSelector((), (Requirement("app", "NotIn", ("web",)),))),
        ("tier in (b, a)", LabelSelector((), (Requirement("tier", "In", ("a", "b")),))),
        ("tier notin (a)", LabelSelector((), (Requirement("tier", "NotIn", ("a",)),))),
        ("legacy", LabelSelector((), (Requirement("legacy", "Exists"),))),
        ("!legacy", LabelSelector((), (Requirement("legacy", "DoesNotExist"),))),
        ("example.com/role=db", LabelSelector((("example.com/role", "db"),))),
        (
            "app=web,tier in (a,b),!legacy",
            LabelSelector((("app", "web"),), (Requirement("legacy", "DoesNotExist"), Requirement("tier", "In", ("a", "b")))),
        ),
        # Two equalities on one key cannot both hold: the selector keeps both and matches nothing.
        ("a=b,a=c", LabelSelector((("a", "b"),), (Requirement("a", "In", ("c",)),))),
    ],
)
def test_parse_selector(text, selector):
    assert parse_selector(text) == selector


@pytest.mark.parametrize(
    "text, message",
    [
        ("a=b,,c", "position 5: expected a label key, found ','"),
        ("a in (b", "position 8: expected ',' or ')', found the end"),
        ("a in b", "position 6: expected '(' after in/notin"),
        ("a in ()", "position 6: the value set of in/notin must not be empty"),
        ("a=b)", "position 4: expected ',' or the end, found ')'"),
        ("a b", "position 3: expected one of '=', '==', '!=', 'in', 'notin', ','"),
        ("a>1", "position 2: the '<' and '>' operators are not supported"),
        ("-a=b", "position 1: invalid label key '-a'"),
        ("a=b_", "position 3: invalid label value 'b_'"),
        ("a=b,", "position 5: expected a label key, found the end"),
        ("!", "position 2: expected a label key, found the end"),
        ("a in (b c)", "position 9: expected ',' or ')', found 'c'"),
    ],
)
def test_parse_selector_errors_name_the_position(text, message):
    with pytest.raises(InputErrors) as raised:
        parse_selector(text, source="test")
    assert str(raised.value).startswith("test: invalid selector '%s': %s" % (text, message))


@pytest.mark.parametrize(
    "text, manifest",
    [
        ("app=web", {"matchLabels": {"app": "web"}}),
        ("tier in (b,a),!old", {"matchExpressions": [{"key": "old", "operator": "DoesNotExist"},
                                                     {"key": "tier", "operator": "In", "values": ["a", "b"]}]}),
        ("x,app=web", {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]}),
    ],
)
def test_both_forms_give_the_same_selector(text, manifest):
    assert parse_selector(text) == selector_from_dict(manifest, "s")


def test_selector_from_dict_reports_every_error_with_its_path():
    with pytest.raises(InputErrors) as raised:
        selector_from_dict({"matchLabels": {"a": 1}, "matchExpressions": [{"key": "k", "operator": "In"}]}, "sel")
    assert [e.field for e in raised.value.errors] == ["sel.matchLabels.a", "sel.matchExpressions[0].values"]


# Resolution. A small fleet: two namespaces with labels, one without any declared labels.
def workload(name, namespace, **labels):
    return Workload(name=name, namespace=namespace, labels=labels_of(labels), addresses=("10.0.0.%d" % len(name),),
                    host=name)


FLEET = Fleet(
    workloads=(
        workload("web", "shop", app="web", tier="front"),
        workload("api", "shop", app="api", tier="back"),
        workload("db", "billing", app="db", tier="back"),
        workload("old", "billing", app="db", legacy="yes"),
        workload("probe", "ops"),
    ),
    namespaces=(
        Namespace("billing", labels_of({METADATA_NAME: "billing", "team": "payments"})),
        Namespace("shop", labels_of({METADATA_NAME: "shop", "team": "retail"})),
    ),
)


def names(workloads):
    return [w.name for w in workloads]


@pytest.mark.parametrize(
    "selector, namespace, namespace_selector, expected",
    [
        ("", None, None, ["db", "old", "probe", "api", "web"]),  # sorted by (namespace, name)
        ("", "shop", None, ["api", "web"]),
        ("tier=back", None, None, ["db", "api"]),
        ("tier!=back", None, None, ["old", "probe", "web"]),  # NotIn matches workloads without the key
        ("!legacy", "billing", None, ["db"]),
        ("legacy", None, None, ["old"]),
        ("tier notin (front,back)", None, None, ["old", "probe"]),
        ("app in (db,api)", None, "team=payments", ["db", "old"]),
        ("", None, "kubernetes.io/metadata.name=ops", ["probe"]),  # undeclared namespace: named only
        ("", None, "team", ["db", "old", "api", "web"]),
        ("", None, "!team", ["probe"]),
        ("app=db", "shop", "team=payments", []),  # both given: ANDed
        ("app=nothing", None, None, []),
    ],
)
def test_select_workloads(selector, namespace, namespace_selector, expected):
    ns_selector = parse_selector(namespace_selector) if namespace_selector is not None else None
    assert names(select_workloads(FLEET, parse_selector(selector), namespace, ns_selector)) == expected


@pytest.mark.parametrize(
    "peer, expected",
    [
        (Peer(pod_selector=LabelSelector()), ["api", "web"]),  # podSelector only: the policy's namespace
        (Peer(pod_selector=parse_selector("tier=back")), ["api"]),
        (Peer(namespace_selector=LabelSelector()), ["db", "old", "probe", "api", "web"]),  # {}: every namespace
        (Peer(namespace_selector=parse_selector("team=payments")), ["db", "old"]),
        (Peer(parse_selector("tier=back"), LabelSelector()), ["db", "api"]),  # both: ANDed, across namespaces
        (Peer(parse_selector("tier=back"), parse_selector("team=payments")), ["db"]),
        (Peer(ip_block=IPBlock("10.0.0.0/8")), []),  # an ipBlock selects addresses, never workloads
    ],
)
def test_peer_workloads(peer, expected):
    assert names(peer_workloads(FLEET, "shop", peer)) == expected


def test_resolution_does_not_depend_on_fleet_order():
    shuffled = Fleet(workloads=tuple(reversed(FLEET.workloads)), namespaces=FLEET.namespaces)
    peer = Peer(namespace_selector=LabelSelector())
    assert peer_workloads(shuffled, "shop", peer) == peer_workloads(FLEET, "shop", peer)


def test_each_fleet_is_resolved_against_itself():
    """Resolution is indexed per fleet object: alternating fleets never see each other's workloads."""
    other = Fleet(workloads=(workload("solo", "shop", app="web"),), namespaces=())
    everything = LabelSelector()
    for _round in range(2):
        assert names(select_workloads(FLEET, everything, "shop")) == ["api", "web"]
        assert names(select_workloads(other, everything, "shop")) == ["solo"]
