#!/bin/sh
# PID 1 of a user-mode-linux guest booted by tests/integration/uml.py.
# The host's root filesystem is mounted read-only (hostfs, kernel option ro): the guest can write
# nowhere on the host except NETPOL_UML_WORK (the test's own directory, mounted read-write at
# /run/work). Everything a tool writes elsewhere (/tmp, /run, HOME, ...) goes to guest tmpfs.
# NETPOL_UML_WORK comes from the kernel command line (unknown key=value options reach init's
# environment); the test's script is /run/work/script.sh, its output /run/work/output, its exit
# status /run/work/rc.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
for dir in /tmp /run /var/tmp /var/lib /var/log /var/cache; do
    mount -t tmpfs tmpfs "$dir"
done
mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm  # Python multiprocessing (ansible)
mkdir -p /run/work /run/netns /run/lock
mount -t hostfs -o "$NETPOL_UML_WORK" hostfs /run/work
# The repository (its venv, playbooks, this script) may lie under a directory just covered with tmpfs,
# a clone in /tmp say: shown again, read-only, at its own path.
mkdir -p "$NETPOL_UML_REPO" && mount -r -t hostfs -o "$NETPOL_UML_REPO" hostfs "$NETPOL_UML_REPO"
# Everything the tests use is built into the kernel (tests/uml/config.fragment): no module to load,
# and iptables/ip6tables are iptables-nft, as on the host. The init namespace's loopback is down
# until someone sets it up, like any namespace's.
ip link set lo up
mkdir -p /run/home
# Ansible: its remote temporary directory defaults to the passwd home (/root, read-only here).
export ANSIBLE_REMOTE_TMP=/tmp/ansible-remote ANSIBLE_LOCAL_TMP=/tmp/ansible-local
export HOME=/run/home TMPDIR=/tmp LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
cd /run/work || exit 1
sh /run/work/script.sh > /run/work/output 2>&1
echo $? > /run/work/rc
sync
halt -f 2>/dev/null || poweroff -f
