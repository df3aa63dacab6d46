# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks inside a Linux network namespace on the controller
description:
  - A managed host is a Linux network namespace on the controller, as created by C(ip netns add);
    O(remote_addr) (normally C(ansible_host)) is its name.
  - Commands run inside the namespace through C(ip netns exec), so a module sees the namespace's
    interfaces, addresses, routes and firewall, and nothing of the controller's.
  - Namespaces share the controller's filesystem, so files move exactly as with the
    P(ansible.builtin.local#connection) connection.
  - This is how the collection's lab, molecule scenarios and integration tests run many
    "hosts" on one machine.
author:
  - netpol.fleet contributors (@netpol)
version_added: 0.1.0
extends_documentation_fragment:
  - ansible.builtin.connection_pipelining
options:
  remote_addr:
    description:
      - Name of the network namespace, as listed by C(ip netns list).
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_netns_name
  ip_executable:
    description:
      - The iproute2 C(ip) command on the controller, by name (searched in E(PATH)) or by path.
    type: str
    default: ip
    vars:
      - name: ansible_netns_ip_executable
  become_success_timeout:
    description:
      - Seconds to wait for become to succeed, as for the P(ansible.builtin.local#connection) connection.
    type: int
    default: 10
    vars:
      - name: ansible_local_become_success_timeout
  become_strip_preamble:
    description:
      - Strip internal become output preceding command execution, as for the
        P(ansible.builtin.local#connection) connection.
    type: bool
    default: true
    vars:
      - name: ansible_local_become_strip_preamble
notes:
  - The controller must run as root (entering a network namespace needs C(CAP_SYS_ADMIN)).
  - The namespace must exist before the first task; the P(netpol.fleet.lab#role) role creates them.
  - Modules run with whatever Python the task's interpreter setting names, resolved on the controller's
    own filesystem. Interpreter discovery may pick a wrapper (for example a pyenv shim) that does not
    run inside C(ip netns exec); set C(ansible_python_interpreter) to C({{ ansible_playbook_python }}) for
    namespace hosts, as the collection's lab inventory does, so modules run with the controller's own Python.
  - The remote user is ignored; tasks run as the user running Ansible, as with the local connection.
seealso:
  - name: ip-netns(8)
    description: Manual page of C(ip netns).
    link: https://man7.org/linux/man-pages/man8/ip-netns.8.html
"""

EXAMPLES = r"""
# inventory: two hosts that are network namespaces on the controller
# all:
#   hosts:
#     lab-web1: {}
#     lab-db:
#       ansible_host: lab-db
#   vars:
#     ansible_connection: netpol.fleet.netns
#     ansible_python_interpreter: "{{ ansible_playbook_python }}"

- name: Show each namespace's own addresses
  hosts: all
  gather_facts: false
  tasks:
    - name: List addresses inside the namespace
      ansible.builtin.command: ip -brief address show
      changed_when: false
"""

import os
import shlex
import shutil

import ansible.constants as C
from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection
from ansible.utils.display import Display

display = Display()

# Where `ip netns add` creates the bind mounts that name a namespace.
NETNS_RUN_DIR = "/run/netns"


def netns_command(ip_executable: str, namespace: str, shell: str, cmd: str) -> str:
    """The shell line that runs `cmd` with `shell` inside `namespace`."""
    return " ".join(shlex.quote(word) for word in (ip_executable, "netns", "exec", namespace, shell, "-c", cmd))


class Connection(LocalConnection):
    """Local connection whose commands enter a network namespace first."""

    transport = "netpol.fleet.netns"
    has_pipelining = True

    def _connect(self) -> "Connection":
        if not self._connected:
            self._ip = self._find_ip()
            self._namespace = self._existing_namespace()
            display.vvv("ESTABLISH NETNS CONNECTION TO %s" % self._namespace, host=self._namespace)
        return super()._connect()

    def _describe(self) -> str:
        return "namespace %r" % self.get_option("remote_addr")

    def _find_ip(self) -> str:
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure(
                "netns: %s: entering a network namespace needs root on the controller (running as uid %d)"
                % (self._describe(), os.geteuid())
            )
        ip = shutil.which(self.get_option("ip_executable"))
        if ip is None:
            raise AnsibleConnectionFailure(
                "netns: %s: ip_executable %r not found; install iproute2"
                % (self._describe(), self.get_option("ip_executable"))
            )
        return ip

    def _existing_namespace(self) -> str:
        namespace = self.get_option("remote_addr")
        if not namespace or "/" in namespace or namespace in (".", ".."):
            raise AnsibleConnectionFailure("netns: %s: ansible_host is not a namespace name" % self._describe())
        if not os.path.exists(os.path.join(NETNS_RUN_DIR, namespace)):
            raise AnsibleConnectionFailure(
                "netns: %s: ansible_host names a network namespace that does not exist "
                "(see `ip netns list`; build the lab first)" % self._describe()
            )
        return namespace

    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = True) -> tuple[int, bytes, bytes]:
        """Run `cmd` inside the namespace; stdin (pipelined modules) passes straight through."""
        self._connect()
        shell = C.DEFAULT_EXECUTABLE or "/bin/sh"
        wrapped = netns_command(self._ip, self._namespace, shell, cmd)
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
