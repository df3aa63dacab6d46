# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netns connection: the command line it builds and the errors that stop a task before it runs."""

from __future__ import annotations

from unittest import mock

import pytest
import yaml
from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.connection.local import Connection as LocalConnection

from ansible_collections.netpol.fleet.plugins.connection import netns

DEFAULTS = {option: spec.get("default") for option, spec in yaml.safe_load(netns.DOCUMENTATION)["options"].items()}


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A fake /run/netns holding one namespace, `web1`."""
    (tmp_path / "web1").touch()
    monkeypatch.setattr(netns, "NETNS_RUN_DIR", str(tmp_path))
    return tmp_path


def connection(**options):
    """The plugin with its documented defaults and the given options, as Ansible would set them."""
    conn = netns.Connection(PlayContext(), None)
    conn._options.update({**DEFAULTS, "remote_addr": "web1", "pipelining": True, **options})
    return conn


def test_ansible_host_names_the_namespace():
    remote_addr = yaml.safe_load(netns.DOCUMENTATION)["options"]["remote_addr"]
    assert "ansible_host" in [var["name"] for var in remote_addr["vars"]]
    assert remote_addr["default"] == "inventory_hostname"


@pytest.mark.parametrize("cmd, expected", [
    ("echo hi", "/usr/sbin/ip netns exec web1 /bin/sh -c 'echo hi'"),
    ("/usr/bin/python3 && echo 'x y'", "/usr/sbin/ip netns exec web1 /bin/sh -c '/usr/bin/python3 && echo '\"'\"'x y'\"'\"''"),
])
def test_netns_command_quotes_the_whole_command_for_one_shell(cmd, expected):
    assert netns.netns_command("/usr/sbin/ip", "web1", "/bin/sh", cmd) == expected


def test_commands_run_in_the_namespace_named_by_ansible_host(run_dir):
    conn = connection(remote_addr="web1")
    with mock.patch("os.geteuid", return_value=0), \
            mock.patch("shutil.which", return_value="/usr/sbin/ip"), \
            mock.patch.object(LocalConnection, "exec_command", return_value=(0, b"ok", b"")) as local:
        assert conn.exec_command("id -u", in_data=b"stdin") == (0, b"ok", b"")
    local.assert_called_once_with("/usr/sbin/ip netns exec web1 /bin/sh -c 'id -u'", in_data=b"stdin", sudoable=True)


def test_missing_namespace_names_it(run_dir):
    conn = connection(remote_addr="db9")
    with mock.patch("os.geteuid", return_value=0), mock.patch("shutil.which", return_value="/usr/sbin/ip"):
        with pytest.raises(AnsibleConnectionFailure, match=r"namespace 'db9': ansible_host names a network namespace that does not exist"):
            conn.exec_command("true")


@pytest.mark.parametrize("name", ["../etc", "", ".."])
def test_a_path_is_not_a_namespace_name(run_dir, name):
    conn = connection(remote_addr=name)
    with mock.patch("os.geteuid", return_value=0), mock.patch("shutil.which", return_value="/usr/sbin/ip"):
        with pytest.raises(AnsibleConnectionFailure, match="is not a namespace name"):
            conn.exec_command("true")


def test_not_root_is_refused_before_anything_runs(run_dir):
    conn = connection(remote_addr="web1")
    with mock.patch("os.geteuid", return_value=1000), mock.patch.object(LocalConnection, "exec_command") as local:
        with pytest.raises(AnsibleConnectionFailure, match=r"namespace 'web1': .*needs root.*uid 1000"):
            conn.exec_command("true")
    local.assert_not_called()


def test_missing_ip_names_the_option(run_dir):
    conn = connection(remote_addr="web1", ip_executable="/nonexistent/ip")
    with mock.patch("os.geteuid", return_value=0):
        with pytest.raises(AnsibleConnectionFailure, match=r"ip_executable '/nonexistent/ip' not found"):
            conn.exec_command("true")
