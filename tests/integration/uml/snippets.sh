# Shell functions the UML guest tests share (tests/integration/test_uml_*.py). The guest runs its
# script with sh, so this is POSIX sh; it sees the repository read-only at its own path, so a script
# sources it from there:   . $R/tests/integration/uml/snippets.sh

# foreign_firewall HV...: a firewall of each hypervisor's own, in every table the product uses
# (filter, nat and raw of both families) and a set, which the product must leave byte-identical.
foreign_firewall() {
    for hv in "$@"; do
        _foreign_rules "$hv" iptables 192.0.2.7/32
        _foreign_rules "$hv" ip6tables 2001:db8::7/128
        ip netns exec "$hv" ipset create foreign-set hash:ip
    done
}

_foreign_rules() {  # HV TOOL ADDRESS
    ip netns exec "$1" "$2" -A FORWARD -s "$3" -j ACCEPT
    ip netns exec "$1" "$2" -t nat -A POSTROUTING -s "$3" -j RETURN
    ip netns exec "$1" "$2" -t raw -A PREROUTING -s "$3" -j NOTRACK
}

# state HV...: each hypervisor's iptables, ip6tables, ebtables, ipsets, the flags of its bridges and
# its net.bridge sysctls, without comments and counters (the guest's own router solicitations count
# in OUTPUT), for a byte-for-byte comparison before and after.
state() {
    for hv in "$@"; do
        for tool in iptables-save ip6tables-save ebtables-save "ipset save"; do
            ip netns exec "$hv" $tool | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'
        done
        ip netns exec "$hv" sh -c 'grep -H . /sys/class/net/*/bridge/nf_call_ip*tables /proc/sys/net/bridge/*'
    done
}
