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
# Kernel modules: the guest's are under /usr/lib/uml/modules; modprobe wants them under
# lib/modules/$(uname -r) of a root it is given (-d). The kernel itself calls the same modprobe
# when a tool needs a module (a table, a match).
mkdir -p /run/modules/lib/modules
ln -s "/usr/lib/uml/modules/$(uname -r)" "/run/modules/lib/modules/$(uname -r)"
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/modules "$@"\n' > /run/modprobe
chmod 0755 /run/modprobe
echo /run/modprobe > /proc/sys/kernel/modprobe
# br_netfilter is never loaded on demand (and the product looks for its sysctls); the rest is loaded
# up front too, so no tool's first call waits for a module: what the backends and tests use (ebtables-nft
# runs its matches through nft_compat; iptables here is the legacy one, see below). Never the legacy
# tables (iptable_*, ebtable_*): the tools load those they need.
/run/modprobe -a bridge br_netfilter veth 8021q nf_tables nft_compat nft_ct nft_limit \
    nft_log nft_reject nf_nat nf_conntrack nf_conntrack_netlink nfnetlink_log \
    xt_physdev xt_conntrack xt_comment xt_set xt_addrtype xt_CT xt_multiport xt_limit xt_NFLOG xt_mark xt_tcpudp \
    xt_state xt_LOG xt_REDIRECT xt_nat ipt_REJECT ip6t_REJECT \
    ebt_among ebt_arp ebt_ip ebt_ip6 ebt_vlan ebt_mark ebt_mark_m ebt_nflog ebt_limit ebt_pkttype configs \
    ip_set ip_set_hash_ip ip_set_hash_net ip_set_hash_netiface ip_set_hash_ipport ip_set_hash_mac \
    ip_set_hash_ipmac ip_set_list_set 2>/run/modprobe.err ||
    { echo "guest: modprobe failed:" >&2; cat /run/modprobe.err >&2; }
ip link set lo up
# This kernel has nf_tables for the bridge family only (CONFIG_NF_TABLES_IPV4/IPV6 are not set): in the
# guest, iptables and ip6tables are the legacy ones (same xtables matches and targets, same save text);
# ebtables stays ebtables-nft, as on the host. Only the guest's PATH changes.
mkdir -p /run/bin
for tool in iptables ip6tables; do
    for suffix in "" -save -restore; do
        ln -s "/usr/sbin/$tool-legacy$suffix" "/run/bin/$tool$suffix"
    done
done
export PATH=/run/bin:$PATH
mkdir -p /run/home
# Ansible: its remote temporary directory defaults to the passwd home (/root, read-only here).
export ANSIBLE_REMOTE_TMP=/tmp/ansible-remote ANSIBLE_LOCAL_TMP=/tmp/ansible-local
export HOME=/run/home TMPDIR=/tmp LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
cd /run/work || exit 1
sh /run/work/script.sh > /run/work/output 2>&1
echo $? > /run/work/rc
sync
halt -f 2>/dev/null || poweroff -f
