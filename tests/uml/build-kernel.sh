#!/usr/bin/env bash
# Build (once) or reuse the user-mode-linux kernel the UML integration tests boot
# (tests/integration/uml.py). Prints the binary's path on its last line of stdout.
#
# Debian's own `user-mode-linux` package has neither conntrack zones nor nf_tables for IPv4/IPv6,
# so the bridge dataplane cannot be applied in it. This builds Linux from Debian's linux-source-6.1
# (the kernel's source with Debian's patches) as ARCH=um: defconfig plus config.fragment beside this
# script, everything built in. The result lives OUTSIDE the clone, in $NETPOL_KUBE_CACHE (shared
# with the test kube-apiserver), under the source package's version and a hash of the fragment's
# option lines: another source version or a changed fragment builds a new kernel, every other caller
# on this machine reuses it at once. A second caller waits on the flock instead of building too.
# Cold, measured into an empty cache on 2 cores shared with other test runs: 46 min wall at nice 19
# (the build got 27% of the CPU: 12.6 CPU-minutes, so about 7 minutes on 2 idle cores), extracting
# the 138 MB source tarball included; the work tree (~1.5 GB) is removed afterwards.
#
#   NETPOL_KUBE_CACHE  cache root (default /var/cache/netpol-fleet)
#   NETPOL_UML_NICE    niceness of the build (default 19: the machine is shared)
#   --path             print where the kernel is (or would be) and exit: no build, no install
#   --check-config F   check the kernel configuration F against config.fragment, as a build does
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # ensure_packages

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT=$HERE/config.fragment
CACHE_ROOT=${NETPOL_KUBE_CACHE:-/var/cache/netpol-fleet}
NICENESS=${NETPOL_UML_NICE:-19}
SRC_PACKAGE=linux-source-6.1
SRC_TARBALL=/usr/src/$SRC_PACKAGE.tar.xz
BUILD_PACKAGES=("$SRC_PACKAGE" xz-utils gcc make flex bison bc libc6-dev libelf-dev)
KMAKE=(make ARCH=um SUBARCH=x86_64)

log() { echo "build-kernel: $*" >&2; }

# The fragment's option lines, comments and blank lines left out (editing a comment rebuilds nothing).
options() { grep -E '^CONFIG_[A-Z0-9_]+=' "$FRAGMENT"; }

source_version() { dpkg-query -W -f='${Version}' "$SRC_PACKAGE" 2>/dev/null; }

destination() {
    local version hash
    version=$(source_version) || { log "$SRC_PACKAGE is not installed (make uml-kernel installs it)"; return 1; }
    hash=$(options | sha256sum | cut -c1-12)
    echo "$CACHE_ROOT/uml-linux-$version-$hash"
}

# Every option line of the fragment must be in the final .config as written: olddefconfig silently
# drops an option whose dependencies are missing, and a kernel without it would only fail in a test.
check_config() {
    local config=$1 line name missing=()
    while read -r line; do
        name=${line%%=*}
        if [ "${line#*=}" = n ]; then
            grep -qx "# $name is not set" "$config" || missing+=("$line")
        else
            grep -qxF "$line" "$config" || missing+=("$line")
        fi
    done < <(options)
    if [ ${#missing[@]} -gt 0 ]; then
        log "the kernel configuration lacks what config.fragment requires: ${missing[*]}"
        log "(olddefconfig dropped them: a dependency is missing from the fragment; see $config)"
        exit 1
    fi
}

binary_works() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q '^6\.1\.'; }

build() {
    local dest=$1 work=$1/work
    [ -f "$SRC_TARBALL" ] || { log "$SRC_TARBALL missing (package $SRC_PACKAGE)"; exit 1; }
    log "building the UML kernel ($SRC_PACKAGE $(source_version)) in $work at nice $NICENESS" \
        "(cold: 12.6 CPU-minutes; 46 min measured at nice 19 on 2 busy cores)"
    rm -rf "$work" && mkdir -p "$work"
    nice -n "$NICENESS" tar -xf "$SRC_TARBALL" -C "$work" --strip-components=1
    cd "$work"
    nice -n "$NICENESS" "${KMAKE[@]}" defconfig >&2
    options > netpol.fragment  # merge_config.sh reads its fragments more than once
    ARCH=um scripts/kconfig/merge_config.sh -m .config netpol.fragment >&2
    nice -n "$NICENESS" "${KMAKE[@]}" olddefconfig >&2
    check_config "$work/.config"
    nice -n "$NICENESS" "${KMAKE[@]}" -j"$(nproc)" linux >&2
    # Stripped: 10 MB instead of 100 (the debug info is for gdb; panics print through kallsyms).
    install -s -m 0755 linux "$dest/linux.new"
    install -m 0644 .config "$dest/config"
    binary_works "$dest/linux.new" || { log "the built kernel does not report a 6.1 version"; exit 1; }
    mv "$dest/linux.new" "$dest/linux"
    cd /
    rm -rf "$work"
}

main() {
    if [ "$(uname -m)" != x86_64 ]; then
        log "user-mode-linux is built for x86_64 here; this machine is $(uname -m)"
        exit 1
    fi
    local dest
    if [ "${1:-}" = --check-config ]; then
        check_config "$2"
        return
    fi
    if [ "${1:-}" = --path ]; then
        dest=$(destination)
        echo "$dest/linux"
        return
    fi
    mkdir -p "$CACHE_ROOT"
    ensure_packages "${BUILD_PACKAGES[@]}"
    dest=$(destination)
    mkdir -p "$dest"
    exec 9>"$dest.lock"
    if ! flock -n 9; then
        log "another build holds $dest.lock; waiting"
        flock 9
    fi
    if binary_works "$dest/linux"; then
        log "reusing $dest/linux"
    else
        build "$dest"
    fi
    echo "$dest/linux"
}

main "$@"
