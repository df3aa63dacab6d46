# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entry normalisation, restore rendering and save parsing. The expected entries are what
`ipset save` (7.17) printed for the same input; tests/integration/test_module_ipset.py re-checks
them against the installed tool."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import IpSet, SetMember
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import (
    EntryError,
    SavedSet,
    _address_text,
    auto_maxelem,
    check_comment,
    normalize_entry,
    parse_references,
    parse_save,
    render_create,
    render_entry,
    render_restore,
)

# (type, family, entry as given, entry as ipset save prints it)
NORMALISED = [
    ("hash:ip", "inet", "10.0.0.1", "10.0.0.1"),
    ("hash:ip", "inet", "10.0.0.1/32", "10.0.0.1"),
    ("hash:net", "inet", "10.0.0.9/32", "10.0.0.9"),
    ("hash:net", "inet", "10.2.3.4/24", "10.2.3.0/24"),
    ("hash:net", "inet", " 10.0.0.0/31 ", "10.0.0.0/31"),
    ("hash:ip", "inet6", "FD00::1/128", "fd00::1"),
    ("hash:ip", "inet6", "1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
    ("hash:ip", "inet6", "1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ("hash:ip", "inet6", "::ffff:1.2.3.4", "::ffff:1.2.3.4"),
    ("hash:ip", "inet6", "::1.2.3.4", "::1.2.3.4"),
    ("hash:ip", "inet6", "64:ff9b::1.2.3.4", "64:ff9b::102:304"),
    ("hash:ip", "inet6", "::1", "::1"),
    ("hash:net", "inet6", "fd00::1/64", "fd00::/64"),
    ("hash:net", "inet6", "fd00:0:0:1::5", "fd00:0:0:1::5"),
    ("hash:ip,port", "inet", "1.2.3.4,80", "1.2.3.4,tcp:80"),
    ("hash:ip,port", "inet", "1.2.3.4,UDP:53", "1.2.3.4,udp:53"),
    ("hash:ip,port", "inet", "1.2.3.4,sctp:5", "1.2.3.4,sctp:5"),
    ("hash:ip,port", "inet", "1.2.3.4,udplite:4", "1.2.3.4,udplite:4"),
    ("hash:ip,port", "inet", "1.2.3.4,tcp:0", "1.2.3.4,tcp:0"),
    ("hash:net,port", "inet", "1.2.3.4/24,tcp:80", "1.2.3.0/24,tcp:80"),
    ("hash:net,port", "inet6", "fd00::/64,udp:53", "fd00::/64,udp:53"),
    ("hash:net,iface", "inet", "1.2.3.4/32,eth0", "1.2.3.4,eth0"),
    ("hash:net,iface", "inet", "1.2.3.0/24,physdev:eth1", "1.2.3.0/24,physdev:eth1"),
    ("hash:net", "inet", "10.0.0.0/32", "10.0.0.0"),
    ("hash:net", "inet", "0.0.0.0/1", "0.0.0.0/1"),
    ("hash:net", "inet6", "::/1", "::/1"),
    ("hash:net", "inet6", "fd00:0:0:0:0:0:0:0/16", "fd00::/16"),
]

REFUSED = [
    ("hash:net", "inet", "0.0.0.0/0", "two halves 0.0.0.0/1 and 128.0.0.0/1"),
    ("hash:net", "inet6", "::/0", "::/1 and 8000::/1"),
    ("hash:ip", "inet", "10.0.0.4/31", "use a hash:net set"),
    ("hash:ip", "inet6", "::", "all-zero address"),
    ("hash:net", "inet", "300.0.0.0/8", "not an IP address"),
    ("hash:net", "inet", "10.0.0.1-10.0.0.5", "not an IP address"),
    ("hash:net", "inet", "fd00::/64", "not an address of family inet"),
    ("hash:net", "inet6", "10.0.0.0/8", "not an address of family inet6"),
    ("hash:net", "inet", "10.0.0.0/8,tcp:80", "does not fit a hash:net set"),
    ("hash:ip,port", "inet", "1.2.3.4", "does not fit"),
    ("hash:ip,port", "inet", "1.2.3.4,tcp:80-90", "ranges are not supported"),
    ("hash:ip,port", "inet", "1.2.3.4,65536", "not a port number"),
    ("hash:ip,port", "inet", "1.2.3.4,icmp:ping", "protocol 'icmp' is not supported"),
    ("hash:net,iface", "inet", "1.2.3.0/24,averyveryverylongname", "not an interface name"),
    ("hash:net,iface", "inet", "1.2.3.0/24,bogus:eth0", "not an interface name"),
    ("hash:net", "inet", "0.0.0.0", "all-zero address"),
    ("hash:net", "inet", "010.0.0.1", "not an IP address"),
    ("hash:net", "inet", "10.0.0.0/33", "not an IP address"),
    ("hash:ip", "inet", "10.0.0.0/24", "use a hash:net set"),
    ("hash:net", "inet6", "fe80::1%eth0", "not an IP address"),
]


@pytest.mark.parametrize("set_type,family,given,printed", NORMALISED)
def test_entries_are_normalised_as_ipset_prints_them(set_type, family, given, printed):
    assert normalize_entry(set_type, family, given) == printed
    assert normalize_entry(set_type, family, printed) == printed  # idempotent: parsed state compares equal


@pytest.mark.parametrize("set_type,family,given,why", REFUSED)
def test_entries_the_kernel_would_refuse_or_expand_are_refused(set_type, family, given, why):
    with pytest.raises(EntryError) as error:
        normalize_entry(set_type, family, given)
    assert why in str(error.value)


def printed_by_ipset(text: str) -> str:
    """What ipset prints for an address or CIDR, worked out by ipaddress (the slow path's way)."""
    net = ipaddress.ip_network(text, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return _address_text(net.network_address)
    return "%s/%d" % (_address_text(net.network_address), net.prefixlen)


FAMILIES = {"inet": (32, ipaddress.IPv4Address), "inet6": (128, ipaddress.IPv6Address)}


@settings(deadline=None)  # no timing in a test: speed lives in bench/
@given(st.sampled_from(sorted(FAMILIES)), st.data())
def test_the_fast_path_for_printed_entries_agrees_with_full_normalisation(family, data):
    bits, address_type = FAMILIES[family]
    short = st.integers(1, 2 ** 16 - 1)  # many zero groups: the compressions inet_ntop chooses
    value = data.draw(st.integers(1, 2 ** bits - 1) | short | short.map(lambda v: v << (bits - 16)))
    address = address_type(value)
    length = data.draw(st.integers(1, bits))
    for text in (str(address), address.exploded, "%s/%d" % (address, length), "%s/%d" % (address.exploded, length)):
        expected = printed_by_ipset(text)
        if expected in ("0.0.0.0", "::"):
            continue  # refused (all-zero), see REFUSED
        assert normalize_entry("hash:net", family, text) == expected
        assert normalize_entry("hash:net", family, expected) == expected


@pytest.mark.parametrize("comment", ['say "hi"', "two\nlines", "x" * 256])
def test_comments_ipset_cannot_store_are_refused(comment):
    with pytest.raises(EntryError):
        check_comment(comment)


def test_a_255_byte_comment_is_fine():
    assert check_comment("x" * 255) == "x" * 255


def test_maxelem_grows_by_powers_of_two_past_the_default():
    assert [auto_maxelem(n) for n in (0, 65536, 65537, 131073)] == [65536, 65536, 131072, 262144]


DB = IpSet(
    "netpol4-db",
    "hash:net",
    "inet",
    (SetMember("10.0.0.0/8"), SetMember("10.66.0.0/16", nomatch=True, comment="except: quarantine")),
    (("hashsize", "4096"), ("timeout", "600")),
)


def test_render_restore_creates_and_fills_with_implied_options():
    assert render_restore([DB]) == (
        "create netpol4-db hash:net family inet hashsize 4096 maxelem 65536 timeout 600 comment\n"
        "add netpol4-db 10.0.0.0/8\n"
        'add netpol4-db 10.66.0.0/16 nomatch comment "except: quarantine"\n'
    )


def test_render_create_under_another_name_for_the_temporary_copy():
    assert render_create(IpSet("netpol6-x", "hash:ip", "inet6"), "netpol6-x-t") == (
        "create netpol6-x-t hash:ip family inet6 maxelem 65536"
    )


SAVE = """\
create foreign hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
add foreign 1.1.1.1
create netpol4-db hash:net family inet hashsize 4096 maxelem 65536 timeout 600 counters comment bucketsize 12 initval 0x5e80efaa
add netpol4-db 10.66.0.0/16 timeout 599 packets 3 bytes 180 nomatch comment "except: quarantine"
add netpol4-db 10.0.0.0/8 timeout 12 packets 0 bytes 0
create netpol4-empty hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2
"""


def test_parse_save_keeps_what_we_own_and_drops_runtime_noise():
    sets = parse_save(SAVE, lambda name: name.startswith("netpol"))
    assert sorted(sets) == ["netpol4-db", "netpol4-empty"]
    assert sets["netpol4-db"] == SavedSet(
        "netpol4-db",
        "hash:net",
        "inet",
        ("10.0.0.0/8", '10.66.0.0/16 nomatch comment "except: quarantine"'),
        (("comment", ""), ("counters", ""), ("maxelem", "65536"), ("timeout", "600")),
    )
    assert sets["netpol4-empty"].entries == ()


def test_save_output_in_another_layout_is_read_line_by_line_to_the_same_sets():
    reordered = "# written by hand\n" + "\n".join(sorted(SAVE.splitlines(), key=lambda line: not line.startswith("create")))
    assert parse_save(reordered) == parse_save(SAVE)  # the plain layout, split per set


def test_render_then_parse_round_trips_members():
    parsed = parse_save(render_restore([DB]))["netpol4-db"]
    assert parsed.entries == tuple(sorted(map(render_entry, DB.members)))


def test_parse_references_from_list_terse():
    text = (
        "Name: netpol4-a\nType: hash:net\nRevision: 7\nHeader: family inet hashsize 1024\n"
        "Size in memory: 456\nReferences: 2\nNumber of entries: 0\n\n"
        "Name: other\nType: hash:ip\nReferences: 0\nNumber of entries: 0\n"
    )
    assert parse_references(text) == {"netpol4-a": 2, "other": 0}
