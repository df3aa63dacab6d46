# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Random policies over a random fleet: the simulator and the compiled rules agree.

The simulator reads the IR; the evaluator walks the compiled chains and sets of the
source host (egress) and the destination host (ingress). Any flow on which they differ
is a bug in one of them.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.evaluate import Evaluator, Packet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    EGRESS,
    INGRESS,
    METADATA_NAME,
    CompileOptions,
    Fleet,
    LogOptions,
    IPBlock,
    LabelSelector,
    NamedPort,
    Namespace,
    Peer,
    Policy,
    PortSpec,
    PrivilegedRule,
    Requirement,
    Rule,
    Workload,
    labels_of,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.simulate import Simulator

NAMESPACES = ("red", "blue", "green")
APPS = ("web", "db", "cache")
PORT_NAMES = ("http", "pg")
EXTERNAL = ("192.0.2.7", "198.51.100.9", "2001:db8::7")
CIDRS = {
    4: ("10.0.0.0/24", "10.0.0.0/25", "10.0.0.64/26", "10.0.0.0/16", "0.0.0.0/0", "192.0.2.0/24"),
    6: ("fd00::/64", "fd00::/120", "fd00::40/122", "::/0", "2001:db8::/32"),
}

labels = st.fixed_dictionaries({"app": st.sampled_from(APPS)}, optional={"tier": st.sampled_from(("a", "b"))})


def selectors():
    requirement = st.builds(
        Requirement,
        key=st.sampled_from(("app", "tier", "team")),
        operator=st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")),
        values=st.sampled_from(((), ("web",), ("a", "db"), ("red",))),
    ).filter(lambda r: (r.operator in ("In", "NotIn")) == bool(r.values))
    return st.builds(
        LabelSelector,
        match_labels=st.one_of(st.just(()), st.sampled_from(APPS).map(lambda a: (("app", a),))),
        match_expressions=st.lists(requirement, max_size=1).map(tuple),
    )


def namespace_selectors():
    return st.one_of(
        st.just(LabelSelector()),
        st.sampled_from(NAMESPACES).map(lambda n: LabelSelector(((METADATA_NAME, n),))),
        st.just(LabelSelector((("team", "x"),))),
    )


@st.composite
def ip_blocks(draw):
    family = draw(st.sampled_from((4, 6)))
    cidr = draw(st.sampled_from(CIDRS[family]))
    narrower = [c for c in CIDRS[family] if c != cidr and _within(c, cidr)]
    excepts = draw(st.lists(st.sampled_from(narrower), max_size=2, unique=True)) if narrower else []
    return IPBlock(cidr, tuple(excepts))


def _within(inner: str, outer: str) -> bool:
    import ipaddress

    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return a.version == b.version and a.subnet_of(b) and a != b


peers = st.one_of(
    st.builds(Peer, pod_selector=selectors()),
    st.builds(Peer, namespace_selector=namespace_selectors()),
    st.builds(Peer, pod_selector=selectors(), namespace_selector=namespace_selectors()),
    st.builds(Peer, ip_block=ip_blocks()),
)
port_specs = st.one_of(
    st.builds(PortSpec, protocol=st.sampled_from(("TCP", "UDP", "SCTP"))),
    st.builds(PortSpec, protocol=st.sampled_from(("TCP", "UDP")), port=st.sampled_from((80, 5432, 53))),
    st.builds(PortSpec, protocol=st.just("TCP"), port=st.just(80), end_port=st.sampled_from((80, 90, 5432))),
    st.builds(PortSpec, protocol=st.sampled_from(("TCP", "UDP")), port=st.sampled_from(PORT_NAMES)),
)
rules = st.builds(Rule, peers=st.lists(peers, max_size=3).map(tuple), ports=st.lists(port_specs, max_size=3).map(tuple))


@st.composite
def policies(draw, index: int):
    types = draw(st.sampled_from(((INGRESS,), (EGRESS,), (INGRESS, EGRESS))))
    return Policy(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name="p%d" % index,
        pod_selector=draw(selectors()),
        policy_types=types,
        ingress=tuple(draw(st.lists(rules, max_size=3))) if INGRESS in types else (),
        egress=tuple(draw(st.lists(rules, max_size=3))) if EGRESS in types else (),
    )


@st.composite
def fleets(draw):
    count = draw(st.integers(2, 5))
    workloads = []
    for number in range(count):
        families = draw(st.sampled_from(((4,), (6,), (4, 6))))
        addresses = tuple(
            ("10.0.0.%d" % (number * 60 + 1) if f == 4 else "fd00::%x" % (number * 60 + 1)) for f in families
        )
        ports = draw(
            st.lists(
                st.builds(NamedPort, name=st.sampled_from(PORT_NAMES), port=st.sampled_from((80, 5432, 8080)),
                          protocol=st.sampled_from(("TCP", "UDP"))),
                max_size=2,
                unique_by=lambda p: (p.name, p.protocol),
            )
        )
        name = "w%d" % number
        workloads.append(
            Workload(name, draw(st.sampled_from(NAMESPACES)), labels_of(draw(labels)), addresses, tuple(ports), host=name)
        )
    namespaces = tuple(
        Namespace(n, labels_of(dict({METADATA_NAME: n}, **({"team": "x"} if n != "green" else {})))) for n in NAMESPACES
    )
    return Fleet(tuple(workloads), namespaces)


@st.composite
def scenarios(draw):
    fleet = draw(fleets())
    count = draw(st.integers(1, 5))
    return fleet, tuple(draw(policies(i)) for i in range(count))


privileged_rules = st.builds(
    PrivilegedRule,
    name=st.sampled_from(("a", "b")),
    direction=st.sampled_from(("ingress", "egress")),
    protocol=st.sampled_from(("TCP", "UDP", "ALL", "ICMPV6")),
    ports=st.sampled_from((None, (22, 22), (50, 90))),
    cidrs=st.lists(st.sampled_from(("192.0.2.0/24", "10.0.0.0/26", "fd00::/120", "0.0.0.0/0")), max_size=2, unique=True)
    .map(tuple),
    icmpv6_types=st.just((135,)),
)
options = st.builds(
    CompileOptions,
    privileged=st.lists(privileged_rules, max_size=2).map(tuple),
    log=st.sampled_from((None, LogOptions())),
)


def _compiled_verdict(states, fleet, src, dst, family, protocol, port):
    """Egress on the source's host, then ingress on the destination's, as the kernel would."""
    src_address = src.addresses_of(family)[0] if hasattr(src, "addresses") else src
    dst_address = dst.addresses_of(family)[0] if hasattr(dst, "addresses") else dst
    same_host = hasattr(src, "host") and hasattr(dst, "host") and src.host == dst.host
    iface = "lo" if same_host else "eth0"
    allowed = True
    for endpoint, direction in ((src, "egress"), (dst, "ingress")):
        if hasattr(endpoint, "host"):
            packet = Packet(family, direction, src_address, dst_address, protocol, port, iface=iface)
            allowed = allowed and states[endpoint.host].evaluate(packet).allowed
    return allowed


FLOWS = [(protocol, port) for protocol in ("TCP", "UDP", "SCTP") for port in (22, 53, 80, 85, 5432, 8080)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), options)
def test_compiled_rules_agree_with_the_simulator(scenario, compile_options):
    fleet, drawn = scenario
    compiled = compile_fleet(fleet, drawn, compile_options)
    states = {host: Evaluator(state) for host, state in compiled.items()}
    simulator = Simulator(fleet, drawn, compile_options)
    endpoints = list(fleet.workloads) + list(EXTERNAL)
    for src in endpoints:
        for dst in endpoints:
            if isinstance(src, str) and isinstance(dst, str):
                continue
            for family in (4, 6):
                if not _has_family(src, family) or not _has_family(dst, family):
                    continue
                for protocol, port in FLOWS:
                    expected = simulator.verdict(src, dst, port, protocol, family)
                    actual = _compiled_verdict(states, fleet, src, dst, family, protocol, port)
                    assert actual == expected.allowed, (src, dst, family, protocol, port, expected)


def _has_family(endpoint, family: int) -> bool:
    if isinstance(endpoint, str):
        return (":" in endpoint) == (family == 6)
    return bool(endpoint.addresses_of(family))
