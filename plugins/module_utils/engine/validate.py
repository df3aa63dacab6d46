# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The syntax rules kube-apiserver applies, one function per rule, and shape checks.

Rule functions return the reasons a value is invalid (empty list: valid), worded like
the apiserver's own messages. Shape checks record a problem and return None when a
value has the wrong type, so readers go on and report every error in one pass.

CIDR decision (kube-apiserver ValidateIPBlock / IsValidCIDRForLegacyField): the served
default (StrictIPCIDRValidation off, still alpha in 1.35) accepts a CIDR with host bits
set ("10.0.0.1/24") and every dataplane uses the masked network, so we accept it,
normalise it to "10.0.0.0/24" and warn, as the apiserver does. Forms whose meaning is
ambiguous we reject, like the strict mode does: leading zeros (octal or decimal?),
IPv4-mapped IPv6 addresses (which family?), zone indexes, netmask notation. IPv6 is
normalised to its compressed, lower-case form.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Collection, List, Mapping, Optional, Tuple, Union

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import Problems

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_LEADING_ZERO_OCTET = re.compile(r"(^|\.)0\d")


def quoted(value: Any) -> str:
    """A value as users typed it, quoted, for messages."""
    return "'%s'" % value if isinstance(value, str) else repr(value)


def invalid(value: Any, reason: str) -> str:
    return "invalid value %s: %s" % (quoted(value), reason)


def _length_and_form(value: str, limit: int, form: re.Pattern, description: str) -> List[str]:
    """The two checks most apiserver name rules make: at most `limit` characters, and `form`."""
    reasons = []
    if len(value) > limit:
        reasons.append("must be no more than %d characters" % limit)
    if not form.match(value):
        reasons.append(description)
    return reasons


def dns1123_label(value: str) -> List[str]:
    """Namespace names."""
    return _length_and_form(
        value, 63, _DNS1123_LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character",
    )


def dns1123_subdomain(value: str) -> List[str]:
    """Object names such as a NetworkPolicy's, and label key prefixes."""
    return _length_and_form(
        value, 253, _DNS1123_SUBDOMAIN,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
        "or '.', and must start and end with an alphanumeric character",
    )


def qualified_name(value: str) -> List[str]:
    """Label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or "/" in prefix):
        return ["a qualified name must consist of an optional DNS subdomain prefix and '/' and a name"]
    reasons = ["prefix part " + r for r in dns1123_subdomain(prefix)] if slash else []
    if not name:
        return reasons + ["name part must be non-empty"]
    return reasons + ["name part " + r for r in _length_and_form(
        name, 63, _QUALIFIED_NAME,
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character",
    )]


def label_value(value: str) -> List[str]:
    return _length_and_form(
        value, 63, _LABEL_VALUE,
        "a valid label value must be an empty string or consist of alphanumeric characters, '-', "
        "'_' or '.', and must start and end with an alphanumeric character",
    )


def port_name(value: str) -> List[str]:
    """IANA_SVC_NAME (RFC 6335), as kube-apiserver checks named ports."""
    reasons = _length_and_form(
        value, 15, _PORT_NAME_CHARS, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    )
    if "--" in value:
        reasons.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        reasons.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        reasons.append("must not begin or end with a hyphen")
    return reasons


def port_number(value: int) -> List[str]:
    return [] if 1 <= value <= 65535 else ["must be between 1 and 65535, inclusive"]


def read_ip(text: str) -> IPAddress:
    """An IP address; ValueError(reason) for anything ambiguous or malformed."""
    if not text.isascii() or "%" in text:
        raise ValueError("must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)")
    if ":" not in text and _LEADING_ZERO_OCTET.search(text):
        raise ValueError("must not have leading 0s")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("must be a valid IP address (e.g. 10.9.8.7 or 2001:db8::ffff)") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError("must not be an IPv4-mapped IPv6 address")
    return address


def read_cidr(text: str) -> Tuple[IPNetwork, bool]:
    """The network a CIDR names, and whether host bits were set; ValueError(reason) if invalid."""
    address, slash, length = text.partition("/")
    if not slash or not (length.isascii() and length.isdigit()):
        raise ValueError("must be a valid CIDR value (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    if length.startswith("0") and length != "0":
        raise ValueError("must not have leading 0s in the prefix length")
    ip = read_ip(address)
    if int(length) > ip.max_prefixlen:
        raise ValueError("prefix length must be at most %d" % ip.max_prefixlen)
    network = ipaddress.ip_network((ip, int(length)), strict=False)
    return network, network.network_address != ip


def read_address_or_cidr(text: str) -> Tuple[IPNetwork, bool]:
    """An address (as its /32 or /128) or a CIDR, by read_ip's and read_cidr's rules.

    The one grammar of every address list outside manifests (privileged rules, management and
    admin CIDRs, resolvers, controller addresses): what ipBlock rejects is rejected there too.
    """
    if "/" in text:
        return read_cidr(text)
    return ipaddress.ip_network(read_ip(text)), False


def check(rule: Callable[[Any], List[str]], value: Any, field: str, problems: Problems, hint: str = "") -> bool:
    """Apply one rule; every reason it gives becomes one problem for the field."""
    reasons = rule(value)
    if reasons:
        problems.add(field, invalid(value, "; ".join(reasons) + hint))
    return not reasons


# Shape checks: record a type problem and return None, so the caller skips the value.


def type_name(value: Any) -> str:
    """The JSON name of a value's type, as the apiserver would word it."""
    for kind, name in ((type(None), "null"), (bool, "boolean"), (int, "integer"), (float, "number"),
                       (str, "string"), (Mapping, "object"), (list, "array")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def mapping(value: Any, field: str, problems: Problems) -> Optional[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return value
    problems.add(field, "must be an object, not %s" % type_name(value))
    return None


def sequence(value: Any, field: str, problems: Problems) -> Optional[list]:
    if isinstance(value, (list, tuple)):
        return list(value)
    problems.add(field, "must be an array, not %s" % type_name(value))
    return None


def string(value: Any, field: str, problems: Problems) -> Optional[str]:
    if isinstance(value, str):
        return value
    hint = " (quote it in YAML)" if isinstance(value, (bool, int, float)) else ""
    problems.add(field, "must be a string, not %s %s%s" % (type_name(value), quoted(value), hint))
    return None


def integer(value: Any, field: str, problems: Problems) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    problems.add(field, "must be an integer, not %s %s" % (type_name(value), quoted(value)))
    return None


def known_fields(value: Mapping[str, Any], allowed: Collection[str], field: str, problems: Problems) -> None:
    """Strict field validation: every key must be one the API defines."""
    for key in value:
        if key not in allowed:
            problems.add(join(field, str(key)), "unknown field %s" % quoted(key))


def join(field: str, child: str) -> str:
    return "%s.%s" % (field, child) if field else child


def labels(value: Any, field: str, problems: Problems) -> Optional[Mapping[str, str]]:
    """A label map (metadata.labels, matchLabels, inventory labels): keys and values checked."""
    if value is None:
        return {}
    found = mapping(value, field, problems)
    if found is None:
        return None
    result = {}
    for key, val in found.items():
        path = join(field, str(key))
        key_text = string(key, field, problems)
        val_text = string(val, path, problems)
        if key_text is None or val_text is None:
            continue
        check(qualified_name, key_text, path, problems)
        check(label_value, val_text, path, problems)
        result[key_text] = val_text
    return result


def or_default(value: Any, default: Any) -> Any:
    """value, or default when it is missing (None); unlike `or`, a wrong-typed falsy value stays."""
    return default if value is None else value


def required(value: Mapping[str, Any], key: str, field: str, problems: Problems) -> Any:
    """value[key], or None with a 'Required value' problem when missing or null."""
    found = value.get(key)
    if found is None:
        problems.add(join(field, key), "Required value")
    return found
