# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan is a pure function of (desired, actual): these tests need no kernel."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.hoststate import HostState, IpSet, SetMember
from ansible_collections.netpol.fleet.plugins.module_utils.ipset_text import parse_save, render_restore, set_arguments
from ansible_collections.netpol.fleet.plugins.module_utils.ipsets import (
    PlanError,
    SetChange,
    build_set,
    check_name,
    plan,
)

WEB = build_set("netpol4-web", "hash:net", "inet", ["10.0.0.1/32", "10.1.0.0/16"])


def kernel(*sets: IpSet):
    """What read_state would return after the sets were restored as rendered."""
    return parse_save(render_restore(sets))


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
    assert not result.changed and result.changes == () and result.before == result.after == ()


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
    result = plan([web2], kernel(WEB), {})
    assert result.before == ("netpol4-web: create hash:net family inet maxelem 65536", "netpol4-web: 10.0.0.1")
    assert result.after == ("netpol4-web: create hash:net family inet maxelem 65536", "netpol4-web: 10.0.0.2")


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
    assert result.before[0] != result.after[0]


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
    stale = IpSet("netpol4-web-t", "hash:net", "inet", (SetMember("10.9.9.9"),))
    result = plan([WEB], kernel(WEB, stale), {})
    assert result.script == ("destroy netpol4-web-t",)
    assert result.changes == (SetChange("netpol4-web-t", destroyed=True),)


def test_purge_by_names_to_keep_destroys_only_the_others_whatever_the_kept_members():
    old = IpSet("netpol4-old", "hash:ip", "inet", (SetMember("10.0.0.7"),))
    result = plan([], kernel(WEB, old), {}, purge_prefix="netpol4-", keep=["netpol4-web"])
    assert result.script == ("destroy netpol4-old",)
    assert result.changes == (SetChange("netpol4-old", removed=("10.0.0.7",), destroyed=True),)


def test_purge_destroys_unreferenced_and_keeps_referenced_prefixed_sets():
    old = IpSet("netpol4-old", "hash:ip", "inet", (SetMember("10.0.0.7"),))
    used = IpSet("netpol4-used", "hash:ip", "inet")
    foreign = IpSet("other", "hash:ip", "inet")
    actual = kernel(WEB, old, used, foreign)
    result = plan([WEB], actual, {"netpol4-used": 2}, purge_prefix="netpol4-")
    assert result.script == ("destroy netpol4-old",)
    assert result.kept_referenced == ("netpol4-used",)
    assert result.changes == (SetChange("netpol4-old", removed=("10.0.0.7",), destroyed=True),)
    assert result.before == ("netpol4-old: create hash:ip family inet maxelem 65536", "netpol4-old: 10.0.0.7")


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
    assert built.members == (SetMember("10.0.0.1"),)
    assert built.options == (("counters", ""),)


def test_members_as_strings_with_flags_equal_members_as_dicts():
    compact = build_set("netpol4-x", members=["10.0.0.0/8", '10.66.0.0/16 nomatch comment "except: q"',
                                              "10.77.0.0/16 comment one-word", " 10.88.0.0/16 nomatch "])
    spelled_out = build_set("netpol4-x", members=[
        {"entry": "10.0.0.0/8"}, {"entry": "10.66.0.0/16", "nomatch": True, "comment": "except: q"},
        {"entry": "10.77.0.0/16", "comment": "one-word"}, {"entry": "10.88.0.0/16", "nomatch": True}])
    assert compact == spelled_out
    assert render_restore([compact]).splitlines()[2] == 'add netpol4-x 10.66.0.0/16 nomatch comment "except: q"'


def test_set_arguments_give_members_in_the_compact_form_and_build_the_same_set():
    compiled = IpSet("netpol4-x", "hash:net", "inet", (SetMember("10.0.0.0/8"), SetMember("10.66.0.0/16", True, "ns/p except")),
                     (("maxelem", "131072"),))
    arguments = set_arguments(compiled)
    assert arguments["members"] == ["10.0.0.0/8", '10.66.0.0/16 nomatch comment "ns/p except"']
    assert build_set(**{"set_type" if k == "type" else k: v for k, v in arguments.items()}) == compiled


def test_hoststate_sets_pass_through_as_module_arguments():
    compiled = IpSet("netpol4-x", "hash:net", "inet", (SetMember("10.0.0.0/8", True, "except"),),
                     (("maxelem", "1024"), ("counters", "true")))
    item = HostState("h", sets=(compiled,)).to_dict()["sets"][0]
    built = build_set(item["name"], item["type"], item["family"], item["members"], item["options"])
    assert built == IpSet("netpol4-x", "hash:net", "inet", compiled.members, (("counters", ""), ("maxelem", "1024")))


def test_purge_takes_several_prefixes_and_spares_lookalikes():
    sets = [IpSet(n, "hash:ip", "inet") for n in ("netpol4-a", "netpol6-b", "netpolitics")]
    result = plan([], kernel(*sets), {}, purge_prefix=("netpol4-", "netpol6-"))
    assert result.script == ("destroy netpol4-a", "destroy netpol6-b")
