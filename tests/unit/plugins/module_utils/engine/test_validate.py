# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation as strict as kube-apiserver: the invalid corpus, and the rules one by one."""

from __future__ import annotations

import os
import re

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine import validate
from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
INVALID = sorted(f for f in os.listdir(os.path.join(CORPUS, "invalid")) if f.endswith(".yaml"))


def expectation(name: str):
    """The `# field:` and `# message:` header of a corpus file."""
    with open(os.path.join(CORPUS, "invalid", name), encoding="utf-8") as stream:
        header = dict(re.findall(r"^# (field|message): ?(.*)$", stream.read(), re.MULTILINE))
    return header["field"], header["message"]


def test_the_invalid_corpus_is_large_enough():
    assert len(INVALID) >= 40


@pytest.mark.parametrize("name", INVALID)
def test_invalid_manifest_is_rejected_with_its_field_path(name):
    field, message = expectation(name)
    with pytest.raises(InputErrors) as raised:
        load_policies([], [os.path.join("invalid", name)], base_dir=CORPUS)
    errors = raised.value.errors
    assert [e.field for e in errors] == [field], str(raised.value)
    assert message in errors[0].message
    assert errors[0].source == os.path.join("invalid", name)


def test_the_whole_corpus_fails_together_with_every_error():
    """All errors of all files in one report: users fix everything in one round."""
    with pytest.raises(InputErrors) as raised:
        load_policies([], ["invalid"], base_dir=CORPUS)
    assert {e.source for e in raised.value.errors} == {os.path.join("invalid", n) for n in INVALID}
    assert len(raised.value.errors) == len(INVALID)
    assert len(str(raised.value).splitlines()) == len(INVALID)


def test_an_error_names_file_object_and_field():
    with pytest.raises(InputErrors) as raised:
        load_policies([], ["invalid/endport-below-port.yaml"], base_dir=CORPUS)
    assert str(raised.value) == (
        "invalid/endport-below-port.yaml: shop/np: spec.ingress[0].ports[0].endPort: must be >= port (5432), not 5000"
    )


@pytest.mark.parametrize(
    "value, valid",
    [
        ("app", True), ("app.kubernetes.io/name", True), ("a", True), ("A_b.c-D", True), ("x" * 63, True),
        ("example.com/" + "x" * 63, True), ("x" * 64, False), ("-app", False), ("app-", False), ("", False),
        ("a b", False), ("/app", False), ("example.com/", False), ("Example.com/app", False),
        ("a/b/c", False), ("%s/app" % ("a" * 254), False), ("app_", False),
    ],
)
def test_label_keys_are_qualified_names(value, valid):
    assert (validate.qualified_name(value) == []) is valid


@pytest.mark.parametrize(
    "value, valid",
    [("", True), ("web", True), ("v1.2_3-x", True), ("x" * 63, True), ("x" * 64, False), ("-web", False),
     ("web.", False), ("a b", False), ("café", False)],
)
def test_label_values(value, valid):
    assert (validate.label_value(value) == []) is valid


@pytest.mark.parametrize(
    "value, valid",
    [("http", True), ("h2c", True), ("web-8080", True), ("a" * 15, True), ("a" * 16, False), ("80", False),
     ("HTTP", False), ("my--port", False), ("-http", False), ("http-", False), ("my_port", False), ("", False)],
)
def test_port_names_follow_iana_svc_name(value, valid):
    assert (validate.port_name(value) == []) is valid


@pytest.mark.parametrize("value, valid", [(1, True), (65535, True), (0, False), (65536, False), (-80, False)])
def test_port_numbers(value, valid):
    assert (validate.port_number(value) == []) is valid


@pytest.mark.parametrize(
    "value, label, subdomain",
    [("shop", True, True), ("shop-eu", True, True), ("a.b", False, True), ("Shop", False, False),
     ("shop_eu", False, False), ("-shop", False, False), ("x" * 64, False, True), ("", False, False)],
)
def test_object_names(value, label, subdomain):
    assert (validate.dns1123_label(value) == []) is label
    assert (validate.dns1123_subdomain(value) == []) is subdomain


@pytest.mark.parametrize(
    "text, network, host_bits",
    [
        ("10.0.0.0/8", "10.0.0.0/8", False),
        ("10.1.2.3/8", "10.0.0.0/8", True),
        ("0.0.0.0/0", "0.0.0.0/0", False),
        ("10.0.0.1/32", "10.0.0.1/32", False),
        ("2001:0DB8:0000::/32", "2001:db8::/32", False),
        ("2001:db8::1/64", "2001:db8::/64", True),
        ("::/0", "::/0", False),
    ],
)
def test_cidrs_are_normalised(text, network, host_bits):
    found, bits = validate.read_cidr(text)
    assert (str(found), bits) == (network, host_bits)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("10.0.0.0", "valid CIDR"), ("10.0.0.0/33", "at most 32"), ("2001:db8::/129", "at most 128"),
        ("10.0.0.0/08", "leading 0s"), ("10.0.0.010/32", "leading 0s"), ("10.0.0.0/255.0.0.0", "valid CIDR"),
        ("::ffff:10.0.0.0/104", "IPv4-mapped"), ("fe80::%eth0/64", "valid IP"), ("10.0.0.0/-1", "valid CIDR"),
        ("10.0.0.0/ 8", "valid CIDR"), ("", "valid CIDR"), ("10.0.0/8", "valid IP"),
    ],
)
def test_invalid_cidrs(text, reason):
    with pytest.raises(ValueError, match=reason):
        validate.read_cidr(text)


@pytest.mark.parametrize("text, network", [("10.0.0.1", "10.0.0.1/32"), ("2001:DB8::1", "2001:db8::1/128"),
                                           ("10.0.0.0/8", "10.0.0.0/8")])
def test_an_address_is_its_host_prefix(text, network):
    assert str(validate.read_address_or_cidr(text)[0]) == network


@pytest.mark.parametrize("text", ["10.0.0.0/08", "10.0.0.0/255.0.0.0", "::ffff:10.0.0.1", "010.0.0.1", "10.1", ""])
def test_addresses_and_cidrs_have_one_grammar(text):
    with pytest.raises(ValueError):
        validate.read_address_or_cidr(text)
