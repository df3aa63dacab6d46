# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan is a pure function of (desired, actual): these tests need no kernel."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import HostState, IpSet, SetMember
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import (
    SavedSet,
    parse_save,
    render_saved,
    set_arguments,
    split_plain,
    to_saved,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import (
    PlanError,
    SetChange,
    _line_by_line,
    build_set,
    check_name,
    diff,
    plan,
    read_state,
    sets_from_text,
)

WEB = build_set("netpol4-web", "hash:net", "inet", ["10.0.0.1/32", "10.1.0.0/16"])


def kernel(*sets: SavedSet):
    """What read_state would return after the sets were restored as rendered."""
    return parse_save(render_saved(sets))


def test_a_missing_set_is_filled_under_its_own_name():
    result = plan([WEB], {}, {})
    assert result.script == (
        "create netpol4-web hash:net family inet maxelem 65536",
        "add netpol4-web 10.0.0.1",
        "add netpol4-web 10.1.0.0/16",
    )
    assert result.temporaries == ("netpol4-web",)  # what a rollback destroys
    assert result.changes == (SetChange("netpol4-web", added=("10.0.0.1", "10.1.0.0/16"), created=True),)


def test_an_equal_set_plans_nothing():
    result = plan([WEB], kernel(WEB), {"netpol4-web": 3})
    assert not result.changed and result.changes == () and diff(result, [WEB], kernel(WEB)) == ((), ())


def test_equal_after_normalisation_and_despite_hashsize():
    spelled_differently = build_set("netpol4-web", "hash:net", "inet", ["10.1.2.3/16", "10.0.0.1"], {"hashsize": 64})
    assert not plan([spelled_differently], kernel(WEB), {}).changed


def test_changed_members_are_swapped_in_after_every_fill():
    other = build_set("netpol4-db", members=["192.0.2.0/24"])
    web2 = build_set("netpol4-web", members=["10.0.0.2", "10.1.0.0/16"])
    result = plan([web2, other], kernel(WEB), {})
    assert result.script == (
        "create netpol4-web-t hash:net family inet maxelem 65536",
        "add netpol4-web-t 10.0.0.2",
        "add netpol4-web-t 10.1.0.0/16",
        "create netpol4-db hash:net family inet maxelem 65536",
        "add netpol4-db 192.0.2.0/24",
        "swap netpol4-web-t netpol4-web",
        "destroy netpol4-web-t",
    )
    assert result.changes[0] == SetChange("netpol4-web", added=("10.0.0.2",), removed=("10.0.0.1",))
    assert result.temporaries == ("netpol4-web-t", "netpol4-db")


def test_a_partly_filled_new_set_left_by_a_killed_run_is_completed_by_a_swap():
    partial = build_set("netpol4-web", members=["10.0.0.1"])
    result = plan([WEB], kernel(partial), {})
    assert result.script[-2:] == ("swap netpol4-web-t netpol4-web", "destroy netpol4-web-t")
    assert result.changes == (SetChange("netpol4-web", added=("10.1.0.0/16",)),)


def test_diff_has_the_set_header_as_context_and_one_line_per_member():
    web2 = build_set("netpol4-web", members=["10.0.0.2", "10.1.0.0/16"])
    before, after = diff(plan([web2], kernel(WEB), {}), [web2], kernel(WEB))
    assert before == ("netpol4-web: create hash:net family inet maxelem 65536", "netpol4-web: 10.0.0.1")
    assert after == ("netpol4-web: create hash:net family inet maxelem 65536", "netpol4-web: 10.0.0.2")


def test_diff_shows_what_a_hashed_set_name_stands_for():
    # compile labels a set's first member with the key its name hashes; the header line repeats it.
    labelled = build_set("netpol4-web", members=['10.0.0.1 comment "pods {app=web|} in namespace shop"', "10.0.0.2"])
    before, after = diff(plan([labelled], kernel(WEB), {}), [labelled], kernel(WEB))
    assert after[0] == "netpol4-web: create hash:net family inet comment maxelem 65536  # pods {app=web|} in namespace shop"
    assert before[0] == "netpol4-web: create hash:net family inet maxelem 65536"
    member_comment = build_set("netpol4-web", members=["10.0.0.0", '10.0.0.2 comment "only mine"'])
    assert diff(plan([member_comment], kernel(WEB), {}), [member_comment], kernel(WEB))[1][0].endswith("maxelem 65536")


def test_a_labelled_first_member_keeps_the_fast_path_and_is_checked_like_the_others():
    fast = build_set("netpol4-web", "hash:ip", members=["10.0.0.2", '10.0.0.1 comment "pods"'])
    assert fast.entries == ('10.0.0.1 comment "pods"', "10.0.0.2") and ("comment", "") in fast.options
    with pytest.raises(PlanError, match="listed twice"):
        build_set("netpol4-web", "hash:ip", members=["10.0.0.1", '10.0.0.1 comment "pods"'])
    with pytest.raises(PlanError, match=r"members\[1\]"):
        build_set("netpol4-web", "hash:ip", members=["10.0.0.2", '10.0.0.300 comment "pods"'])


def test_a_nomatch_or_comment_change_is_a_member_change():
    flagged = build_set("netpol4-web", members=[{"entry": "10.0.0.1", "comment": "db"},
                                                {"entry": "10.1.0.0/16", "nomatch": True}])
    result = plan([flagged], kernel(WEB), {})
    assert result.changes[0].added == ('10.0.0.1 comment "db"', "10.1.0.0/16 nomatch")
    assert result.changes[0].removed == ("10.0.0.1", "10.1.0.0/16")
    assert result.script[0] == "create netpol4-web-t hash:net family inet maxelem 65536 comment"


def test_an_option_change_rebuilds_through_a_swap():
    bigger = build_set("netpol4-web", members=["10.0.0.1", "10.1.0.0/16"], options=[["maxelem", "1024"]])
    result = plan([bigger], kernel(WEB), {})
    assert result.script[0] == "create netpol4-web-t hash:net family inet maxelem 1024"
    assert "swap netpol4-web-t netpol4-web" in result.script
    before, after = diff(result, [bigger], kernel(WEB))
    assert before[0] != after[0]


def test_more_members_than_the_default_raise_maxelem():
    many = build_set("netpol4-many", "hash:ip", members=["10.%d.%d.%d" % (i >> 16, i >> 8 & 255, i & 255)
                                                         for i in range(1, 65538)])
    assert plan([many], {}, {}).script[0] == "create netpol4-many hash:ip family inet maxelem 131072"


def test_an_unreferenced_type_change_is_replaced_in_the_same_restore():
    as_ip = build_set("netpol4-web", "hash:ip", members=["10.0.0.1"])
    result = plan([as_ip], kernel(WEB), {"netpol4-web": 0})
    assert result.script[-2:] == ("destroy netpol4-web", "rename netpol4-web-t netpol4-web")
    assert result.changes[0].created and result.changes[0].destroyed


def test_a_referenced_type_or_family_change_is_refused_before_anything_happens():
    as_v6 = build_set("netpol4-web", family="inet6", members=["fd00::/64"])
    with pytest.raises(PlanError, match="netpol4-web changes from hash:net inet to hash:net inet6 .* referenced 1 "
                                        ".*give the new type a new set name"):
        plan([as_v6], kernel(WEB), {"netpol4-web": 1})


def test_stale_temporaries_of_a_killed_run_are_destroyed_first():
    stale = SavedSet("netpol4-web-t", "hash:net", "inet", ("10.9.9.9",), (("maxelem", "65536"),))
    result = plan([WEB], kernel(WEB, stale), {})
    assert result.script == ("destroy netpol4-web-t",)
    assert result.changes == (SetChange("netpol4-web-t", destroyed=True),)


def test_purge_by_names_to_keep_destroys_only_the_others_whatever_the_kept_members():
    old = build_set("netpol4-old", "hash:ip", members=["10.0.0.7"])
    result = plan([], kernel(WEB, old), {}, purge_prefix="netpol4-", keep=["netpol4-web"])
    assert result.script == ("destroy netpol4-old",)
    assert result.changes == (SetChange("netpol4-old", removed=("10.0.0.7",), destroyed=True),)


def test_purge_destroys_unreferenced_and_keeps_referenced_prefixed_sets():
    old = build_set("netpol4-old", "hash:ip", members=["10.0.0.7"])
    used = build_set("netpol4-used", "hash:ip")
    foreign = build_set("other", "hash:ip")
    actual = kernel(WEB, old, used, foreign)
    result = plan([WEB], actual, {"netpol4-used": 2}, purge_prefix="netpol4-")
    assert result.script == ("destroy netpol4-old",)
    assert result.kept_referenced == ("netpol4-used",)
    assert result.changes == (SetChange("netpol4-old", removed=("10.0.0.7",), destroyed=True),)
    assert diff(result, [WEB], actual)[0] == ("netpol4-old: create hash:ip family inet maxelem 65536", "netpol4-old: 10.0.0.7")


def test_absent_destroys_and_refuses_when_referenced():
    assert plan([], kernel(WEB), {}, absent=["netpol4-web"]).script == ("destroy netpol4-web",)
    assert not plan([], {}, {}, absent=["netpol4-web"]).changed
    with pytest.raises(PlanError, match="netpol4-web is to be absent but is referenced 1"):
        plan([], kernel(WEB), {"netpol4-web": 1}, absent=["netpol4-web"])


def test_a_set_cannot_be_both_present_and_absent():
    with pytest.raises(PlanError, match="both present and absent"):
        plan([WEB], {}, {}, absent=["netpol4-web"])


@pytest.mark.parametrize("name", ["", "a" * 30, "has space", "-dash", "netpol4-web-t", 'q"uote'])
def test_names_that_leave_no_room_for_the_temporary_are_refused(name):
    with pytest.raises(PlanError):
        check_name(name)


def test_a_29_character_name_is_the_longest():
    assert check_name("n" * 29) == "n" * 29


@pytest.mark.parametrize("kwargs,why", [
    (dict(set_type="hash:bitmap"), "type 'hash:bitmap' is not one of"),
    (dict(family="inet4"), "family 'inet4'"),
    (dict(members=["10.0.0.0/0"]), "two halves"),
    (dict(members=[{"entry": "10.0.0.1", "nomatch": True}], set_type="hash:ip"), "nomatch needs a hash:net"),
    (dict(members=["10.0.0.1", {"entry": "10.0.0.1/32", "comment": "x"}]), "listed twice"),
    (dict(members=[{"address": "10.0.0.1"}]), "members[0]: {'address': '10.0.0.1'}: use a string or a dict"),
    (dict(members=["10.0.0.1", "10.0.0.0/33"]), "set netpol4-x: members[1]: '10.0.0.0/33' is not an IP address"),
    (dict(members=["10.0.0.0/8 nomatch", "10.1.0.0/16 match"]), "members[1]: '10.1.0.0/16 match': only nomatch"),
    (dict(members=['10.0.0.0/8 comment "open']), 'members[0]: \'10.0.0.0/8 comment "open\': write the comment as'),
    (dict(members=[{"entry": "10.0.0.0/8", "nomatch": "maybe"}]), "members[0]: nomatch='maybe' is not a boolean"),
    (dict(options={"netmask": 24}), "option 'netmask' is not one of"),
    (dict(options={"maxelem": "lots"}), "not a whole number"),
    (dict(options={"counters": "maybe"}), "not a boolean"),
    (dict(members=["10.0.0.1", "10.0.0.2"], options={"maxelem": 1}), "2 members exceed maxelem 1"),
])
def test_invalid_desired_sets_are_refused_with_the_reason(kwargs, why):
    with pytest.raises(PlanError) as error:
        build_set("netpol4-x", **kwargs)
    assert why in str(error.value)


def test_duplicates_collapse_and_flags_accept_yaml_spellings():
    built = build_set("netpol4-x", members=["10.0.0.1", "10.0.0.1/32"], options={"counters": "yes", "skbinfo": False})
    assert built.entries == ("10.0.0.1",)
    assert built.options == (("counters", ""), ("maxelem", "65536"))


def test_members_as_strings_with_flags_equal_members_as_dicts():
    compact = build_set("netpol4-x", members=["10.0.0.0/8", '10.66.0.0/16 nomatch comment "except: q"',
                                              "10.77.0.0/16 comment one-word", " 10.88.0.0/16 nomatch "])
    spelled_out = build_set("netpol4-x", members=[
        {"entry": "10.0.0.0/8"}, {"entry": "10.66.0.0/16", "nomatch": True, "comment": "except: q"},
        {"entry": "10.77.0.0/16", "comment": "one-word"}, {"entry": "10.88.0.0/16", "nomatch": True}])
    assert compact == spelled_out
    assert render_saved([compact]).splitlines()[2] == 'add netpol4-x 10.66.0.0/16 nomatch comment "except: q"'


def test_set_arguments_give_members_in_the_compact_form_and_build_the_same_set():
    compiled = IpSet("netpol4-x", "hash:net", "inet", (SetMember("10.0.0.0/8"), SetMember("10.66.0.0/16", True, "ns/p except")),
                     (("maxelem", "131072"),))
    arguments = set_arguments(compiled)
    assert arguments["members"] == ["10.0.0.0/8", '10.66.0.0/16 nomatch comment "ns/p except"']
    assert build_set(**{"set_type" if k == "type" else k: v for k, v in arguments.items()}) == to_saved(compiled)


def test_hoststate_sets_pass_through_as_module_arguments():
    compiled = IpSet("netpol4-x", "hash:net", "inet", (SetMember("10.0.0.0/8", True, "except"),),
                     (("maxelem", "1024"), ("counters", "true")))
    item = HostState("h", sets=(compiled,)).to_dict()["sets"][0]
    built = build_set(item["name"], item["type"], item["family"], item["members"], item["options"])
    assert built == SavedSet("netpol4-x", "hash:net", "inet", ('10.0.0.0/8 nomatch comment "except"',),
                             (("comment", ""), ("counters", ""), ("maxelem", "1024")))


def test_purge_takes_several_prefixes_and_spares_lookalikes():
    sets = [build_set(n, "hash:ip") for n in ("netpol4-a", "netpol6-b", "netpolitics")]
    result = plan([], kernel(*sets), {}, purge_prefix=("netpol4-", "netpol6-"))
    assert result.script == ("destroy netpol4-a", "destroy netpol6-b")


CIDRS = st.tuples(st.ip_addresses(v=4), st.integers(1, 32)).map(lambda a: str(ipaddress.ip_network(a, strict=False)))


@settings(deadline=None)  # no timing in a test: speed lives in bench/
@given(st.sampled_from(["hash:ip", "hash:net"]), st.lists(st.ip_addresses(v=4).map(str) | CIDRS, max_size=20))
def test_plain_strings_take_the_fast_path_to_the_same_set_as_members_one_by_one(set_type, entries):
    entries = [e for e in entries if not e.startswith("0.0.0.0") and (set_type == "hash:net" or "/" not in e)]
    one_by_one = [{"entry": entry} for entry in entries]  # dicts never take the fast path
    assert build_set("netpol4-x", set_type, members=entries) == build_set("netpol4-x", set_type, members=one_by_one)


def test_content_in_ipset_save_form_reads_back_the_sets_it_renders():
    flagged = build_set("netpol4-x", members=["10.0.0.0/8", '10.66.0.0/16 nomatch comment "except: q"'],
                        options={"hashsize": 64})
    ports = build_set("netpol6-p", "hash:ip,port", "inet6", ["fd00::1,udp:53", "fd00::2,80"])
    assert sets_from_text("# compiled\n\n" + render_saved([flagged, ports])) == [flagged, ports]


@pytest.mark.parametrize("text,why", [
    ("create a hash:ip\nflush a\n", "line 2: 'flush a': only create and add lines are read"),
    ("create a\n", "line 1: 'create a': create needs a set name and a type"),
    ("create a hash:ip\ncreate a hash:net\n", "line 2: 'create a hash:net': a second create line for a"),
    ("create a hash:ip family inet maxelem\n", "set a: line 1: 'maxelem' is not a create option with its value"),
    ("create a hash:ip netmask 24\n", "set a: line 1: 'netmask' is not a create option"),
    ("create a hash:ip\nadd a 10.0.0.1\nadd a 10.0.0.300\n", "set a: line 3: '10.0.0.300' is not an IP address"),
    ("create a-t hash:ip\n", "reserved for temporary sets"),
])
def test_content_errors_name_the_line(text, why):
    with pytest.raises(PlanError) as error:
        sets_from_text(text)
    assert why in str(error.value)


ENTRIES = {"hash:ip": ["10.0.0.1", "10.0.0.2"], "hash:net": ["10.0.0.0/8", '10.66.0.0/16 nomatch comment "q"'],
           "hash:ip,port": ["10.0.0.1,udp:53"]}


@settings(deadline=None)  # no timing in a test: speed lives in bench/
@given(st.lists(st.tuples(st.sampled_from(sorted(ENTRIES)), st.integers(0, 2)), max_size=4))
def test_the_plain_layout_split_in_c_reads_what_the_line_reader_reads(shapes):
    sets = [build_set("netpol4-s%d" % i, set_type, members=ENTRIES[set_type][:count])
            for i, (set_type, count) in enumerate(shapes)]
    text = render_saved(sets)
    assert split_plain(text) == _line_by_line(text)
    assert sets_from_text(text) == sets


@pytest.mark.parametrize("text", [
    "# a comment\ncreate a hash:ip\n", "create a hash:ip\n\nadd a 10.0.0.1\n", "create a hash:ip\nadd b 10.0.0.1\n",
    "create a hash:ip\ncreate b hash:ip\nadd a 10.0.0.1\n", "create a hash:ip\nflush a\n", " create a hash:ip\n",
])
def test_any_other_layout_is_left_to_the_line_reader(text):
    assert split_plain(text) is None


# ---------------------------------------------------------------- reading: a listing that did not reach us whole


class Ipset:
    """ipset answering each subcommand with the given outputs, one per call."""

    def __init__(self, lists, saves):
        self.outputs = {"list": list(lists), "save": list(saves)}
        self.calls = []

    def run_command(self, argv, data=None, **kwargs):
        self.calls.append(argv[1])
        return 0, self.outputs[argv[1]].pop(0), ""


LISTED = ("Name: netpol4-web\nType: hash:net\nRevision: 7\nHeader: family inet hashsize 1024 maxelem 65536\n"
          "Size in memory: 500\nReferences: 1\nNumber of entries: 1\n")
SAVED = "create netpol4-web hash:net family inet hashsize 1024 maxelem 65536\nadd netpol4-web 10.0.0.1\n"


def test_a_set_listing_or_save_that_came_empty_is_read_again():
    tool = Ipset(["", LISTED], ["", SAVED])
    saved, references = read_state(tool, "ipset", ["netpol4-web"])
    assert saved["netpol4-web"].entries == ("10.0.0.1",) and references == {"netpol4-web": 1}
    assert tool.calls == ["list", "list", "save", "save"]


def test_a_set_listing_cut_within_a_header_is_read_again():
    tool = Ipset([LISTED[:60], LISTED], [SAVED])
    assert read_state(tool, "ipset", ["netpol4-web"])[1] == {"netpol4-web": 1}


def test_a_host_without_sets_is_empty_when_two_listings_say_so():
    tool = Ipset(["", ""], [])
    assert read_state(tool, "ipset", ["netpol4-web"]) == ({}, {})
