# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NetworkPolicy manifests in, validated Policy objects out.

Reading files is the only I/O (read_yaml_documents); everything else is pure, so the
same code serves inventory variables, files and, later, the Kubernetes API.

Validation follows kube-apiserver's ValidateNetworkPolicy with strict field validation (unknown
fields are errors) and SetDefaults_NetworkPolicy; see validate.py for the CIDR decision. Every
document of a policy source must be a networking.k8s.io/v1 NetworkPolicy or a List (v1) /
NetworkPolicyList of them: any other kind or apiVersion, a typo included, is an error. Beyond the
apiserver: duplicate policyTypes are rejected, a label value that is not a string (YAML `true`, `1`)
is rejected with a hint instead of being coerced, and rules of a direction the policy's policyTypes
leave out are dropped with a warning (they have no effect). A manifest without metadata.namespace
goes to "default", as with kubectl. Origins are `file#N` (N the 0-based document index,
`file#N.items[M]` inside a List) or `netpol_policies[i]`.
"""

from __future__ import annotations

import difflib
import glob
import os
from typing import Any, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputError, InputErrors, Problems
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    EGRESS,
    INGRESS,
    PROTOCOLS,
    IPBlock,
    Peer,
    Policy,
    PortSpec,
    Rule,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import read_selector
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import (
    check,
    dns1123_label,
    dns1123_subdomain,
    integer,
    invalid,
    join,
    known_fields,
    labels,
    mapping,
    port_name,
    port_number,
    qualified_name,
    quoted,
    read_cidr,
    or_default,
    required,
    sequence,
    string,
)

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"
# List kind -> the apiVersion it is served as.
LIST_KINDS = {"List": "v1", "NetworkPolicyList": API_VERSION}
DEFAULT_NAMESPACE = "default"
POLICY_FILE_SUFFIXES = (".yaml", ".yml", ".json")

OBJECT_FIELDS = ("apiVersion", "kind", "metadata", "spec")
METADATA_FIELDS = (
    "name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
    "managedFields", "selfLink",
)
SPEC_FIELDS = ("podSelector", "policyTypes", "ingress", "egress")
PEER_FIELDS = ("podSelector", "namespaceSelector", "ipBlock")
PORT_FIELDS = ("protocol", "port", "endPort")
# direction -> (spec key, peers key)
DIRECTIONS = ((INGRESS, "ingress", "from"), (EGRESS, "egress", "to"))

Documents = Sequence[Any]


# The one piece of I/O, and the YAML reader it shares with inline texts.


def read_yaml_documents(path: str) -> List[Any]:
    """Every document of a policy file; OSError if unreadable, ValueError if not valid YAML."""
    with open(path, encoding="utf-8") as stream:
        return yaml_documents(stream)


def yaml_documents(text: Any) -> List[Any]:
    """Every document of a YAML (or JSON) text or stream.

    ValueError names line and column of invalid YAML, including a key given twice in one
    mapping: PyYAML would silently keep the last, kube-apiserver rejects it.
    """
    import yaml  # controller side only; the rest of the engine does not need PyYAML

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=True)
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key, Hashable):
                    continue
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, "found duplicate key %r" % (key,), key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        return list(yaml.load_all(text, Loader=StrictLoader))  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as failure:
        mark = getattr(failure, "problem_mark", None)
        where = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        raise ValueError("invalid YAML%s: %s" % (where, getattr(failure, "problem", None) or failure)) from None


def load_policies(
    inline: Optional[Sequence[Any]], paths: Optional[Sequence[str]], base_dir: str = "."
) -> Tuple[Tuple[Policy, ...], List[str]]:
    """Policies from netpol_policies (inline) and netpol_policy_paths, sorted by (namespace, name).

    Returns the policies and warnings; raises InputErrors listing every error of every
    source, including names defined twice in one namespace.
    """
    found: List[Tuple[Policy, str]] = []
    warnings: List[str] = []
    errors: List[InputError] = []
    for source, documents, origin_of in _sources(inline, paths, base_dir, errors, warnings):
        try:
            policies, notes = parse_documents(documents, source, origin_of)
        except InputErrors as bad:
            errors.extend(bad.errors)
            continue
        found.extend((p, source) for p in policies)
        warnings.extend(notes)
    errors.extend(_duplicates(found))
    if errors:
        raise InputErrors(errors)
    return tuple(sorted((p for p, _origin in found), key=lambda p: (p.namespace, p.name))), warnings


def _sources(inline, paths, base_dir, errors, warnings):
    """(source, documents, origin naming) for each inline item, then each policy file."""
    if inline is not None and not isinstance(inline, (list, tuple)):
        errors.append(InputError("netpol_policies", "", "", "must be a list of manifests"))
        inline = []
    for i, item in enumerate(inline or []):
        source = "netpol_policies[%d]" % i
        if not isinstance(item, str):
            yield source, [item], (lambda n, s=source: s)
            continue
        try:  # a YAML text, e.g. from lookup('file', ...)
            yield source, yaml_documents(item), (lambda n, s=source: "%s#%d" % (s, n))
        except ValueError as failure:
            errors.append(InputError(source, "", "", str(failure)))
    for shown, real in policy_files(paths, base_dir, errors, warnings):
        try:
            documents = read_yaml_documents(real)
        except OSError as failure:
            errors.append(InputError(shown, "", "", "cannot read: %s" % (failure.strerror or failure)))
            continue
        except ValueError as failure:  # invalid YAML, or not UTF-8
            errors.append(InputError(shown, "", "", str(failure)))
            continue
        yield shown, documents, (lambda n, s=shown: "%s#%d" % (s, n))


def policy_files(
    paths: Optional[Sequence[str]], base_dir: str, errors: List[InputError], warnings: List[str]
) -> List[Tuple[str, str]]:
    """(name to show, path to open) of every policy file: files, globs, directories (recursive).

    A path or glob that finds nothing is an error (a typo must not silently drop policies);
    an empty directory only a warning. Each file is read once.
    """
    if isinstance(paths, str):
        paths = [paths]
    files: Dict[str, Tuple[str, str]] = {}
    for path in paths or []:
        real = os.path.join(base_dir, os.path.expanduser(path))
        matches = sorted(glob.glob(real, recursive=True)) if glob.has_magic(path) else [real]
        if not any(os.path.exists(m) for m in matches):
            what = "matched no files" if glob.has_magic(path) else "no such file or directory"
            if not os.path.isabs(os.path.expanduser(path)):  # say where it was looked for
                what += " in %s" % os.path.abspath(base_dir)
            errors.append(InputError("netpol_policy_paths", "", "", "%s: %s" % (quoted(path), what)))
            continue
        for match in matches:
            inside = _files_in(match) if os.path.isdir(match) else [match]
            if not inside:
                warnings.append("netpol_policy_paths: %s: no %s files in directory %s"
                                % (quoted(path), "/".join(POLICY_FILE_SUFFIXES), match))
            for file in inside:
                shown = file if os.path.isabs(path) else os.path.relpath(file, base_dir)
                files.setdefault(os.path.realpath(file), (shown, file))
    return list(files.values())


def _files_in(directory: str) -> List[str]:
    return sorted(
        os.path.join(root, name)
        for root, _dirs, names in os.walk(directory)
        for name in names
        if name.endswith(POLICY_FILE_SUFFIXES)
    )


def _duplicates(found: Iterable[Tuple[Policy, str]]) -> List[InputError]:
    first: Dict[str, Policy] = {}
    errors = []
    for policy, source in found:
        if policy.key in first:
            errors.append(InputError(
                source, policy.key, "metadata.name",
                "duplicate NetworkPolicy name in namespace %s: also defined in %s"
                % (quoted(policy.namespace), first[policy.key].origin),
            ))
        first.setdefault(policy.key, policy)
    return errors


# Documents to policies: pure.


def parse_documents(
    documents: Documents, source: str, origin_of=None
) -> Tuple[List[Policy], List[str]]:
    """The NetworkPolicies in the documents of one source, and warnings for what was skipped.

    origin_of(index) names a document (default `source#index`). Raises InputErrors with
    every error of every document.
    """
    origin_of = origin_of or (lambda n: "%s#%d" % (source, n))
    policies: List[Policy] = []
    warnings: List[str] = []
    errors: List[InputError] = []
    for index, document in enumerate(documents):
        try:
            found, notes = parse_document(document, source, origin_of(index))
        except InputErrors as bad:
            errors.extend(bad.errors)
            continue
        policies.extend(found)
        warnings.extend(notes)
    if errors:
        raise InputErrors(errors)
    return policies, warnings


def parse_document(document: Any, source: str, origin: str, in_list: bool = False) -> Tuple[List[Policy], List[str]]:
    """One document: a NetworkPolicy, or a List / NetworkPolicyList of them. Anything else is an
    error, as kube-apiserver refuses it: a typo in kind or apiVersion skipped with a warning would
    silently drop the policy, and a dropped deny is an opened firewall."""
    if document is None:  # an empty document, e.g. a trailing '---'
        return [], []
    if not isinstance(document, Mapping):
        raise _fail(source, origin, "", "a document must be a Kubernetes object, not %s" % type(document).__name__)
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if kind is None or api_version is None:
        field = "kind" if kind is None else "apiVersion"
        raise _fail(source, identity(document) or origin, field, "Required value: not a Kubernetes object")
    if isinstance(kind, str) and kind in LIST_KINDS and not in_list:
        return _parse_list(document, source, origin)
    if kind != KIND:
        raise _fail(source, identity(document) or origin, "kind", _unsupported_kind(kind, in_list))
    if api_version != API_VERSION:
        raise _fail(source, identity(document) or origin, "apiVersion",
                    "Unsupported value %s: NetworkPolicy is served as %s" % (quoted(api_version), API_VERSION))
    policy, warnings = read_policy(document, source, origin)
    return [policy], warnings


def _parse_list(document: Mapping[str, Any], source: str, origin: str) -> Tuple[List[Policy], List[str]]:
    """The items of a List (apiVersion v1) or a NetworkPolicyList (networking.k8s.io/v1)."""
    kind, api_version = document["kind"], document["apiVersion"]
    if api_version != LIST_KINDS[kind]:
        raise _fail(source, origin, "apiVersion",
                    "Unsupported value %s: %s is served as %s" % (quoted(api_version), kind, LIST_KINDS[kind]))
    if not isinstance(document.get("items"), list):
        raise _fail(source, origin, "items", "Required value: a %s holds a list of items" % kind)
    policies: List[Policy] = []
    warnings: List[str] = []
    errors: List[InputError] = []
    for index, item in enumerate(document["items"]):
        where = "%s.items[%d]" % (origin, index)
        if item is None:
            errors.append(InputError(source, where, "", "a list item must be a NetworkPolicy, not null"))
            continue
        try:
            found, notes = parse_document(item, source, where, in_list=True)
        except InputErrors as bad:
            errors.extend(bad.errors)
            continue
        policies.extend(found)
        warnings.extend(notes)
    if errors:
        raise InputErrors(errors)
    return policies, warnings


def _unsupported_kind(kind: Any, in_list: bool) -> str:
    """Why a kind is refused, with the closest supported kind when it looks like a typo."""
    wanted = (KIND,) if in_list else (KIND,) + tuple(LIST_KINDS)
    close = difflib.get_close_matches(str(kind), wanted, n=1, cutoff=0.6) or \
        [k for k in wanted if k.lower() == str(kind).lower()]
    hint = " (did you mean %s?)" % quoted(close[0]) if close else ""
    holds = "a list holds only %s NetworkPolicy items" if in_list else \
        "a policy source holds only %s NetworkPolicy objects (or a List or NetworkPolicyList of them)"
    return "Unsupported value %s: %s%s" % (quoted(kind), holds % API_VERSION, hint)


def _fail(source: str, obj: str, field: str, message: str) -> InputErrors:
    return InputErrors([InputError(source, "" if obj == source else obj, field, message)])


def identity(document: Mapping[str, Any]) -> str:
    """namespace/name for messages, as far as the document tells."""
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace") or DEFAULT_NAMESPACE
    if not isinstance(name, str) or not name:
        return ""
    return "%s/%s" % (namespace, name)


def read_policy(document: Mapping[str, Any], source: str, origin: str) -> Tuple[Policy, List[str]]:
    """A NetworkPolicy object to a Policy with defaults applied; InputErrors if invalid."""
    problems = Problems(source, identity(document) or origin)
    known_fields(document, OBJECT_FIELDS, "", problems)
    metadata = mapping(or_default(required(document, "metadata", "", problems), {}), "metadata", problems) or {}
    namespace, name = read_metadata(metadata, problems)
    spec = mapping(or_default(required(document, "spec", "", problems), {}), "spec", problems) or {}
    known_fields(spec, SPEC_FIELDS, "spec", problems)
    if isinstance(document.get("spec"), Mapping):  # a missing or mistyped spec is one error, not two
        required(spec, "podSelector", "spec", problems)
    selector = or_default(spec.get("podSelector"), {})
    pod_selector = read_selector(selector, "spec.podSelector", problems)
    rules = {key: read_rules(spec.get(key), peers_key, "spec." + key, problems) for _direction, key, peers_key in DIRECTIONS}
    types = read_policy_types(spec, problems)
    for direction, key, _peers_key in DIRECTIONS:
        if rules[key] and direction not in types:
            problems.warn("spec." + key, "ignored: policyTypes does not include %s" % direction)
    problems.raise_if_any()
    policy = Policy(
        namespace=namespace,
        name=name,
        pod_selector=pod_selector,  # type: ignore[arg-type]
        policy_types=types,
        ingress=rules["ingress"] if INGRESS in types else (),
        egress=rules["egress"] if EGRESS in types else (),
        origin=origin,
    )
    return policy, problems.warnings


def read_metadata(metadata: Mapping[str, Any], problems: Problems) -> Tuple[str, str]:
    known_fields(metadata, METADATA_FIELDS, "metadata", problems)
    namespace = metadata.get("namespace")
    if namespace in (None, ""):  # kubectl puts such an object in the default namespace
        namespace = DEFAULT_NAMESPACE
    elif string(namespace, "metadata.namespace", problems) is not None:
        check(dns1123_label, namespace, "metadata.namespace", problems)
    name = required(metadata, "name", "metadata", problems)
    if name is not None and string(name, "metadata.name", problems) is not None:
        check(dns1123_subdomain, name, "metadata.name", problems)
    labels(metadata.get("labels"), "metadata.labels", problems)
    annotations = mapping(or_default(metadata.get("annotations"), {}), "metadata.annotations", problems) or {}
    for key, value in annotations.items():
        path = join("metadata.annotations", str(key))
        if string(value, path, problems) is not None:
            check(qualified_name, str(key), path, problems)
    return str(namespace), str(name)


def read_policy_types(spec: Mapping[str, Any], problems: Problems) -> Tuple[str, ...]:
    """Explicit policyTypes, or the apiserver default: Ingress, plus Egress if egress rules exist."""
    given = sequence(or_default(spec.get("policyTypes"), []), "spec.policyTypes", problems) or []
    if not given:
        has_egress = isinstance(spec.get("egress"), list) and len(spec["egress"]) > 0
        return (INGRESS, EGRESS) if has_egress else (INGRESS,)
    if len(given) > 2:
        problems.add("spec.policyTypes", "may not specify more than two policyTypes")
        return (INGRESS,)
    for i, value in enumerate(given):
        path = "spec.policyTypes[%d]" % i
        if value not in (INGRESS, EGRESS):
            problems.add(path, "Unsupported value %s: supported values: Ingress, Egress" % quoted(value))
        elif value in given[:i]:
            problems.add(path, "Duplicate value %s" % quoted(value))
    return tuple(t for t in (INGRESS, EGRESS) if t in given)


def read_rules(value: Any, peers_key: str, field: str, problems: Problems) -> Tuple[Rule, ...]:
    """ingress or egress: missing or [] = no rules (deny, if the direction is isolated)."""
    rules = sequence(or_default(value, []), field, problems) or []
    read = [read_rule(item, peers_key, "%s[%d]" % (field, i), problems) for i, item in enumerate(rules)]
    return tuple(r for r in read if r is not None)


def read_rule(value: Any, peers_key: str, field: str, problems: Problems) -> Optional[Rule]:
    """One rule: a missing or empty peers/ports list means all peers/ports."""
    found = mapping(or_default(value, {}), field, problems)
    if found is None:
        return None
    known_fields(found, (peers_key, "ports"), field, problems)
    peer_path, port_path = join(field, peers_key), join(field, "ports")
    peers = sequence(or_default(found.get(peers_key), []), peer_path, problems) or []
    ports = sequence(or_default(found.get("ports"), []), port_path, problems) or []
    return Rule(
        peers=tuple(read_peer(p, "%s[%d]" % (peer_path, i), problems) for i, p in enumerate(peers)),
        ports=tuple(read_port(p, "%s[%d]" % (port_path, i), problems) for i, p in enumerate(ports)),
    )


def read_peer(value: Any, field: str, problems: Problems) -> Peer:
    found = mapping(or_default(value, {}), field, problems) or {}
    known_fields(found, PEER_FIELDS, field, problems)
    present = [key for key in PEER_FIELDS if found.get(key) is not None]
    if not present:
        problems.add(field, "Required value: must specify a peer")
    elif "ipBlock" in present and len(present) > 1:
        problems.add(field, "Forbidden: may not specify both ipBlock and another peer")
    return Peer(
        pod_selector=_selector_if_present(found, "podSelector", field, problems),
        namespace_selector=_selector_if_present(found, "namespaceSelector", field, problems),
        ip_block=read_ip_block(found["ipBlock"], join(field, "ipBlock"), problems) if "ipBlock" in present else None,
    )


def _selector_if_present(found: Mapping[str, Any], key: str, field: str, problems: Problems):
    if found.get(key) is None:
        return None
    return read_selector(found[key], join(field, key), problems)


def read_ip_block(value: Any, field: str, problems: Problems) -> Optional[IPBlock]:
    """cidr minus except, normalised; every except strictly inside cidr and of its family."""
    found = mapping(value, field, problems)
    if found is None:
        return None
    known_fields(found, ("cidr", "except"), field, problems)
    if found.get("cidr") in (None, ""):
        problems.add(join(field, "cidr"), "Required value")
    cidr = _network(found.get("cidr") or None, join(field, "cidr"), problems)
    excepts = sequence(or_default(found.get("except"), []), join(field, "except"), problems) or []
    inside = []
    for i, text in enumerate(excepts):
        path = "%s.except[%d]" % (field, i)
        network = _network(text, path, problems)
        if network is None or cidr is None:
            continue
        if network.version != cidr.version:
            problems.add(path, invalid(text, "must be a strict subset of `cidr` (%s is IPv%d)" % (cidr, cidr.version)))
        elif not network.subnet_of(cidr) or network.prefixlen <= cidr.prefixlen:
            problems.add(path, invalid(text, "must be a strict subset of `cidr` (%s)" % cidr))
        else:
            inside.append(network)
    if cidr is None:
        return None
    return IPBlock(cidr=str(cidr), excepts=tuple(str(n) for n in sorted(set(inside))))


def _network(value: Any, field: str, problems: Problems):
    if value is None or string(value, field, problems) is None:
        return None
    try:
        network, host_bits = read_cidr(value)
    except ValueError as reason:
        problems.add(field, invalid(value, str(reason)))
        return None
    if host_bits:
        problems.warn(field, "CIDR value %s has host bits set; using %s" % (quoted(value), network))
    return network


def read_port(value: Any, field: str, problems: Problems) -> Optional[PortSpec]:
    """protocol (default TCP), port (number, name, or missing = all), endPort (numeric port only)."""
    found = mapping(or_default(value, {}), field, problems)
    if found is None:
        return None
    known_fields(found, PORT_FIELDS, field, problems)
    protocol = _protocol(found.get("protocol"), join(field, "protocol"), problems)
    port, end_port = found.get("port"), found.get("endPort")
    port_path, end_path = join(field, "port"), join(field, "endPort")
    if end_port is not None and integer(end_port, end_path, problems) is None:
        end_port = None
    if port is None:
        if end_port is not None:
            problems.add(end_path, "may not be specified when `port` is not specified")
    elif isinstance(port, bool) or not isinstance(port, (int, str)):
        problems.add(port_path, "must be a port number or a port name, not %s" % quoted(port))
    elif isinstance(port, int):
        check(port_number, port, port_path, problems)
        if end_port is not None:
            check(port_number, end_port, end_path, problems)
            if end_port < port:
                problems.add(end_path, "must be >= port (%d), not %d" % (port, end_port))
    else:
        if end_port is not None:
            problems.add(end_path, "may not be specified when `port` is non-numeric (%s)" % quoted(port))
        hint = " (write a port number without quotes)" if port.isdigit() else ""
        check(port_name, port, port_path, problems, hint)
    if end_port == port:  # a one-port range is that port
        end_port = None
    return PortSpec(protocol=protocol, port=port, end_port=end_port)


def _protocol(value: Any, field: str, problems: Problems) -> str:
    if value is None:
        return "TCP"
    if value not in PROTOCOLS:
        hint = " (protocols are upper case)" if isinstance(value, str) and value.upper() in PROTOCOLS else ""
        supported = ", ".join(PROTOCOLS)
        problems.add(field, "Unsupported value %s: supported values: %s%s" % (quoted(value), supported, hint))
    return str(value)
