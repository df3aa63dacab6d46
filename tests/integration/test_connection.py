# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netns connection plugin runs modules inside the right namespace and moves files."""

from __future__ import annotations

import ipaddress

from conftest import run_adhoc, session_prefix, write_lab_inventory

C1, C2, C3, C4 = (session_prefix("npa", name) for name in ("c1", "c2", "c3", "c4"))

HOSTS = {
    "a": {"netpol_addresses": ["10.77.0.1/24", "fd77::1/64"]},
    "b": {"netpol_addresses": ["10.77.0.2/24", "fd77::2/64"]},
    "c": {"netpol_addresses": ["10.77.0.3/24", "fd77::3/64"]},
}


def global_addresses(ip_brief: str) -> set:
    """Addresses on eth0 from `ip -brief address`, link-local ones left out."""
    words = ip_brief.split()[2:]
    return {word for word in words if not ipaddress.ip_interface(word).is_link_local}


def test_each_host_reports_its_own_addresses(make_lab):
    lab = make_lab(C1, HOSTS)
    results = run_adhoc("all", lab.inventory, "ansible.builtin.command", "ip -brief address show dev eth0")
    assert {host: global_addresses(r["stdout"]) for host, r in results.items()} == {
        C1 + name: set(spec["netpol_addresses"]) for name, spec in HOSTS.items()
    }


def test_modules_see_the_namespace_network_not_the_controller(make_lab):
    lab = make_lab(C2, {"a": HOSTS["a"]})
    results = run_adhoc("all", lab.inventory, "ansible.builtin.setup", "gather_subset=network")
    facts = results[C2 + "a"]["ansible_facts"]
    assert set(facts["ansible_interfaces"]) == {"lo", "eth0"}
    assert facts["ansible_eth0"]["ipv4"]["address"] == "10.77.0.1"


def test_copy_into_a_host_and_fetch_it_back(make_lab, tmp_path):
    lab = make_lab(C3, {"a": HOSTS["a"]})
    remote, fetched = tmp_path / "remote.txt", tmp_path / "fetched"
    copied = run_adhoc("all", lab.inventory, "ansible.builtin.copy", "content='from the controller\n' dest=%s" % remote)
    assert copied[C3 + "a"]["changed"] is True
    run_adhoc("all", lab.inventory, "ansible.builtin.fetch", "src=%s dest=%s/ flat=true" % (remote, fetched))
    assert (fetched / "remote.txt").read_text() == "from the controller\n"


def test_missing_namespace_is_unreachable_with_its_name(lab_root, tmp_path):
    inventory = write_lab_inventory(tmp_path, C4, {"ghost": {"netpol_addresses": ["10.77.0.9/24"]}})
    results = run_adhoc("all", inventory, "ansible.builtin.ping", check=False)
    ghost = results[C4 + "ghost"]
    assert ghost["unreachable"] is True
    assert "namespace '%sghost'" % C4 in ghost["msg"] and "does not exist" in ghost["msg"]
