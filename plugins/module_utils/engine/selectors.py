# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Label selectors: read them (manifest form and the kubectl string form), resolve them.

Selectors are built in one canonical form (labels sorted, expressions sorted, values
sorted and unique) so that equal selectors are equal objects however they were written:
`app=web` and `{matchLabels: {app: web}}` give the same LabelSelector.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputError, InputErrors, Problems
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    METADATA_NAME,
    Fleet,
    LabelSelector,
    Peer,
    Requirement,
    Workload,
    labels_of,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import (
    check,
    join,
    known_fields,
    label_value,
    labels,
    mapping,
    or_default,
    qualified_name,
    quoted,
    required,
    sequence,
    string,
)

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
EVERYTHING = LabelSelector()


def make_selector(match_labels: Mapping[str, str], requirements: Iterable[Requirement]) -> LabelSelector:
    """The canonical LabelSelector for these labels and requirements."""
    canonical = {Requirement(r.key, r.operator, tuple(sorted(set(r.values)))) for r in requirements}
    return LabelSelector(
        match_labels=labels_of(match_labels),
        match_expressions=tuple(sorted(canonical, key=lambda r: (r.key, r.operator, r.values))),
    )


# The manifest form: {matchLabels: {...}, matchExpressions: [{key, operator, values}]}.


def selector_from_dict(value: Any, field: str) -> LabelSelector:
    """A manifest selector; InputErrors naming field paths under `field` if it is invalid."""
    problems = Problems()
    selector = read_selector(value, field, problems)
    problems.raise_if_any()
    return selector  # type: ignore[return-value]


def read_selector(value: Any, field: str, problems: Problems) -> Optional[LabelSelector]:
    found = mapping(value, field, problems)
    if found is None:
        return None
    known_fields(found, ("matchLabels", "matchExpressions"), field, problems)
    match_labels = labels(found.get("matchLabels"), join(field, "matchLabels"), problems)
    expressions = sequence(or_default(found.get("matchExpressions"), []), join(field, "matchExpressions"), problems)
    requirements = [
        read_requirement(item, "%s.matchExpressions[%d]" % (field, i), problems)
        for i, item in enumerate(expressions or [])
    ]
    if match_labels is None or expressions is None or None in requirements:
        return None
    return make_selector(match_labels, requirements)  # type: ignore[arg-type]


def read_requirement(value: Any, field: str, problems: Problems) -> Optional[Requirement]:
    found = mapping(value, field, problems)
    if found is None:
        return None
    before = len(problems.errors)
    known_fields(found, ("key", "operator", "values"), field, problems)
    key = required(found, "key", field, problems)
    if key is not None and string(key, join(field, "key"), problems) is not None:
        check(qualified_name, key, join(field, "key"), problems)
    operator = required(found, "operator", field, problems)
    values = sequence(or_default(found.get("values"), []), join(field, "values"), problems) or []
    for i, item in enumerate(values):
        path = "%s.values[%d]" % (field, i)
        if string(item, path, problems) is not None:
            check(label_value, item, path, problems)
    if operator is not None:
        check_operator(operator, values, field, problems)
    if len(problems.errors) > before:
        return None
    return Requirement(key, operator, tuple(values))


def check_operator(operator: Any, values: List[Any], field: str, problems: Problems) -> None:
    if operator not in OPERATORS:
        problems.add(
            join(field, "operator"),
            "Unsupported value %s: supported values: %s" % (quoted(operator), ", ".join(OPERATORS)),
        )
    elif operator in ("In", "NotIn") and not values:
        problems.add(join(field, "values"), "Required value: must be specified when `operator` is 'In' or 'NotIn'")
    elif operator in ("Exists", "DoesNotExist") and values:
        problems.add(
            join(field, "values"), "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        )


# The kubectl string form: app=web,tier in (a,b),!legacy


_TOKEN = re.compile(r"==|!=|[=!,()<>]|[^\s!=,()<>]+")
_OPERATOR_TOKENS = ("==", "!=", "=", "!", ",", "(", ")", "<", ">")


def _tokens(text: str) -> List[Tuple[str, int]]:
    """(token, 1-based position) pairs, whitespace dropped; an empty token marks the end."""
    return [(m.group(), m.start() + 1) for m in _TOKEN.finditer(text)] + [("", len(text) + 1)]


class _Parser:
    """Recursive descent over the tokens of one selector string."""

    def __init__(self, text: str, source: str):
        self.text, self.source = text, source
        self.tokens = _tokens(text)
        self.index = 0

    def fail(self, message: str, position: Optional[int] = None) -> InputErrors:
        where = self.tokens[self.index][1] if position is None else position
        detail = "invalid selector %s: position %d: %s" % (quoted(self.text), where, message)
        return InputErrors([InputError(self.source, "", "", detail)])

    def peek(self) -> str:
        return self.tokens[self.index][0]

    def take(self) -> str:
        token = self.peek()
        self.index += 1
        return token

    def word(self, what: str) -> str:
        token = self.peek()
        if not token or token in _OPERATOR_TOKENS:
            raise self.fail("expected %s, found %s" % (what, quoted(token) if token else "the end"))
        return self.take()

    def selector(self) -> LabelSelector:
        match_labels: Dict[str, str] = {}
        requirements: List[Requirement] = []
        if self.peek():
            self.requirement(match_labels, requirements)
            while self.peek() == ",":
                self.take()
                self.requirement(match_labels, requirements)
        if self.peek():
            raise self.fail("expected ',' or the end, found %s" % quoted(self.peek()))
        return make_selector(match_labels, requirements)

    def requirement(self, match_labels: Dict[str, str], requirements: List[Requirement]) -> None:
        if self.peek() == "!":
            self.take()
            requirements.append(Requirement(self.key(), "DoesNotExist"))
            return
        key = self.key()
        operator = self.peek()
        if operator in ("=", "=="):
            self.take()
            value = self.value()
            if match_labels.setdefault(key, value) != value:
                requirements.append(Requirement(key, "In", (value,)))
        elif operator == "!=":
            self.take()
            requirements.append(Requirement(key, "NotIn", (self.value(),)))
        elif operator in ("in", "notin"):
            self.take()
            requirements.append(Requirement(key, "In" if operator == "in" else "NotIn", self.value_set()))
        elif operator in ("", ","):
            requirements.append(Requirement(key, "Exists"))
        elif operator in ("<", ">"):
            raise self.fail("the '<' and '>' operators are not supported by NetworkPolicy selectors")
        else:
            raise self.fail("expected one of '=', '==', '!=', 'in', 'notin', ',' after %s, found %s"
                            % (quoted(key), quoted(operator)))

    def key(self) -> str:
        return self.checked_word("key", qualified_name)

    def value(self) -> str:
        """A value after '=', '==' or '!='; empty when nothing follows (app= selects app="")."""
        if self.peek() in ("", ",", ")"):
            return ""
        return self.checked_word("value", label_value)

    def checked_word(self, what: str, rule: Callable[[str], List[str]]) -> str:
        """The next word as a label key or value; a failure points at the word."""
        position = self.tokens[self.index][1]
        word = self.word("a label %s" % what)
        reasons = rule(word)
        if reasons:
            raise self.fail("invalid label %s %s: %s" % (what, quoted(word), "; ".join(reasons)), position)
        return word

    def value_set(self) -> Tuple[str, ...]:
        if self.peek() != "(":
            raise self.fail("expected '(' after in/notin, found %s" % (quoted(self.peek()) or "the end"))
        opening = self.tokens[self.index][1]
        self.take()
        values = [self.value()]
        while self.peek() == ",":
            self.take()
            values.append(self.value())
        if self.peek() != ")":
            raise self.fail("expected ',' or ')', found %s" % (quoted(self.peek()) if self.peek() else "the end"))
        self.take()
        if values == [""]:
            raise self.fail("the value set of in/notin must not be empty", opening)
        return tuple(values)


def parse_selector(text: str, source: str = "selector") -> LabelSelector:
    """The kubectl string form (app=web,tier in (a,b),!legacy); '' selects everything.

    Raises InputErrors whose message names the 1-based position of the problem.
    """
    return _Parser(text, source).selector()


# Resolution against the fleet.


def namespace_labels(fleet: Fleet) -> Dict[str, Mapping[str, str]]:
    """Labels of every namespace; one the fleet does not list still has its metadata.name."""
    known = {ns.name: ns.label_map for ns in fleet.namespaces}
    for workload in fleet.workloads:
        known.setdefault(workload.namespace, {METADATA_NAME: workload.namespace})
    return known


def peer_scope(
    policy_namespace: str, peer: Peer
) -> Tuple[LabelSelector, Optional[str], Optional[LabelSelector]]:
    """A selector peer as Resolver.select arguments (pod selector, namespace, namespace selector).

    podSelector alone: the policy's namespace. namespaceSelector (even {}) alone: all pods of
    the matching namespaces. Both: pods matching podSelector in the matching namespaces.
    """
    pods = peer.pod_selector or EVERYTHING
    if peer.namespace_selector is None:
        return pods, policy_namespace, None
    return pods, None, peer.namespace_selector


class Resolver:
    """Selector resolution over one fleet, indexed once: namespaces first, then labels.

    The one place selectors meet workloads: compile, simulate and the lookup all resolve
    here, so they cannot disagree. Policies repeat selectors, so results are memoised; a
    fleet of thousands of workloads is walked once per distinct (selector, namespace,
    namespace selector).
    """

    def __init__(self, fleet: Fleet):
        self.namespaces = namespace_labels(fleet)
        self.members: Dict[str, List[Tuple[Workload, Mapping[str, str]]]] = {}
        self.by_label: Dict[Tuple[str, str, str], List[Tuple[Workload, Mapping[str, str]]]] = {}
        for workload in sorted(fleet.workloads, key=lambda w: (w.name, w.host)):
            member = (workload, workload.label_map)
            self.members.setdefault(workload.namespace, []).append(member)
            for key, value in workload.labels:
                self.by_label.setdefault((workload.namespace, key, value), []).append(member)
        self.memo: Dict[Tuple[Any, ...], Tuple[Workload, ...]] = {}

    def select(
        self,
        pod_selector: LabelSelector,
        namespace: Optional[str] = None,
        namespace_selector: Optional[LabelSelector] = None,
    ) -> Tuple[Workload, ...]:
        key = (pod_selector, namespace, namespace_selector)
        if key not in self.memo:
            chosen = sorted(name for name in self.namespaces if self._in_scope(name, namespace, namespace_selector))
            self.memo[key] = tuple(
                w for name in chosen for w, labels in self._candidates(name, pod_selector) if pod_selector.matches(labels)
            )
        return self.memo[key]

    def selects(
        self,
        workload: Workload,
        pod_selector: LabelSelector,
        namespace: Optional[str] = None,
        namespace_selector: Optional[LabelSelector] = None,
    ) -> bool:
        """Whether select() with these arguments would include this workload, tested alone."""
        return self._in_scope(workload.namespace, namespace, namespace_selector) and pod_selector.matches(
            workload.label_map
        )

    def peer(self, policy_namespace: str, peer: Peer) -> Tuple[Workload, ...]:
        """The workloads a from/to peer selects; an ipBlock peer selects addresses, not workloads."""
        if peer.ip_block is not None:
            return ()
        return self.select(*peer_scope(policy_namespace, peer))

    def peer_selects(self, policy_namespace: str, peer: Peer, workload: Workload) -> bool:
        """Whether peer() would include this workload, tested alone."""
        return peer.ip_block is None and self.selects(workload, *peer_scope(policy_namespace, peer))

    def _candidates(self, namespace: str, pod_selector: LabelSelector) -> List[Tuple[Workload, Mapping[str, str]]]:
        """Members of the namespace that can match: those with its rarest matchLabels pair, if any,
        so selecting costs the match, not the namespace."""
        if not pod_selector.match_labels:
            return self.members.get(namespace, [])
        return min((self.by_label.get((namespace,) + pair, []) for pair in pod_selector.match_labels), key=len)

    def _in_scope(self, name: str, namespace: Optional[str], namespace_selector: Optional[LabelSelector]) -> bool:
        if namespace is not None and name != namespace:
            return False
        return namespace_selector is None or namespace_selector.matches(
            self.namespaces.get(name, {METADATA_NAME: name})
        )


_last: List[Any] = [None, None]  # (fleet, its Resolver): callers resolve many selectors over one fleet


def resolver(fleet: Fleet) -> Resolver:
    """The Resolver of this fleet object, built on first use."""
    if _last[0] is not fleet:
        _last[:] = [fleet, Resolver(fleet)]
    return _last[1]


def select_workloads(
    fleet: Fleet,
    pod_selector: LabelSelector,
    namespace: Optional[str] = None,
    namespace_selector: Optional[LabelSelector] = None,
) -> Tuple[Workload, ...]:
    """Workloads matching pod_selector, in namespace and/or namespaces matching namespace_selector.

    With neither namespace nor namespace_selector every namespace counts. Sorted by
    (namespace, name, host).
    """
    return resolver(fleet).select(pod_selector, namespace, namespace_selector)


def peer_workloads(fleet: Fleet, policy_namespace: str, peer: Peer) -> Tuple[Workload, ...]:
    """The workloads a from/to peer selects (see peer_scope); none for an ipBlock peer."""
    return resolver(fleet).peer(policy_namespace, peer)
