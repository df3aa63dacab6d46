#!/usr/bin/env bash
# Build (once) or reuse a kube-apiserver for the Kubernetes-source integration tests, and make
# sure Debian's etcd is installed. Prints the binary's path on its last line of stdout.
#
# No kube-apiserver binary is packaged on the registries this project reaches, but Debian's
# `kubernetes` source package (1.20.2, all Go dependencies vendored) builds one offline with
# Debian's golang-go. The result lives OUTSIDE the clone, in $NETPOL_KUBE_CACHE, so every clone
# and every CI run on this machine pays the ~30-minute cold build once; a second caller waits
# on the flock instead of building in parallel.
#
#   NETPOL_KUBE_CACHE  cache root (default /var/cache/netpol-fleet)
#   NETPOL_KUBE_NICE   niceness of the Go build (default 19: the machine is shared)
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # ensure_packages

CACHE_ROOT=${NETPOL_KUBE_CACHE:-/var/cache/netpol-fleet}
NICENESS=${NETPOL_KUBE_NICE:-19}
# The source package and the upstream version inside it (Debian's "+really" re-versioning).
SRC_PACKAGE=kubernetes
KUBE_VERSION=1.20.2
DEST=$CACHE_ROOT/kube-apiserver-$KUBE_VERSION
BINARY=$DEST/bin/kube-apiserver
BUILD_PACKAGES=(golang-go golang-github-modern-go-reflect2-dev etcd-server rsync jq make patch)

log() { echo "build-apiserver: $*" >&2; }

binary_works() { [ -x "$BINARY" ] && "$BINARY" --version 2>/dev/null | grep -q "v$KUBE_VERSION"; }


# deb-src lines for the Debian archive(s) the machine's own sources use, in a private apt
# configuration: the system's sources, lists and caches are never touched.
private_apt_options() {
    local apt_dir=$1
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    python3 - "$apt_dir/sources.list" <<'PY'
import glob, re, sys
lines = set()
for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
        uris = fields.get("URIs", "").split()
        if "deb" not in fields.get("Types", "").split() or not any("/debian" in u for u in uris):
            continue
        signed = fields.get("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg")
        for uri in uris:
            if uri.rstrip("/").endswith("debian-security"):
                continue  # the kubernetes source lives in the main archive
            for suite in fields.get("Suites", "").split():
                lines.add(f"deb-src [signed-by={signed}] {uri} {suite} {fields.get('Components', 'main')}")
for path in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        for line in open(path):
            m = re.match(r"^\s*deb\s+(\[[^\]]*\]\s+)?(\S*/debian/?)\s+(\S+)\s+(.*)$", line)
            if m:
                lines.add(f"deb-src {m.group(1) or ''}{m.group(2)} {m.group(3)} {m.group(4).strip()}")
    except OSError:
        pass
if not lines:
    sys.exit("build-apiserver: no Debian archive found in /etc/apt/sources.list(.d)")
open(sys.argv[1], "w").write("\n".join(sorted(lines)) + "\n")
PY
    echo -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
         -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
}

fetch_source() {
    local work=$1 apt_opts
    apt_opts=$(private_apt_options "$work/apt")
    # shellcheck disable=SC2086
    apt-get $apt_opts update -qq >&2
    mkdir -p "$work/download"
    # shellcheck disable=SC2086
    (cd "$work/download" && apt-get $apt_opts source --download-only "$SRC_PACKAGE" >&2)
    local orig debian_tar
    orig=$(ls "$work"/download/"${SRC_PACKAGE}"_*"really${KUBE_VERSION}".orig.tar.* 2>/dev/null | head -1)
    debian_tar=$(ls "$work"/download/"${SRC_PACKAGE}"_*.debian.tar.* 2>/dev/null | head -1)
    [ -n "$orig" ] || { log "the archive's $SRC_PACKAGE source is not $KUBE_VERSION: $(ls "$work/download")"; exit 1; }
    rm -rf "$work/src" && mkdir -p "$work/src"
    tar -xf "$orig" -C "$work/src" --strip-components=1
    tar -xf "$debian_tar" -C "$work/src"
    # Debian's own patches, as its build applies them (quilt order).
    local patch_name
    while read -r patch_name; do
        [ -n "$patch_name" ] && [ "${patch_name#\#}" = "$patch_name" ] || continue
        patch -d "$work/src" -p1 --forward --quiet < "$work/src/debian/patches/$patch_name" >&2
    done < "$work/src/debian/patches/series"
}

# The vendored reflect2 1.0.1 crashes under Go >= 1.18 (SIGSEGV in mapiternext while serialising
# maps); Debian's packaged 1.0.2 is the fixed release with the same API.
replace_reflect2() {
    local src=$1 packaged=/usr/share/gocode/src/github.com/modern-go/reflect2
    [ -d "$packaged" ] || { log "$packaged missing (golang-github-modern-go-reflect2-dev)"; exit 1; }
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -a "$packaged" "$src/vendor/github.com/modern-go/reflect2"
}

build() {
    local work=$DEST/work
    [ -d "$work/src/vendor" ] || fetch_source "$work"
    replace_reflect2 "$work/src"
    log "building kube-apiserver $KUBE_VERSION at nice $NICENESS (cold: ~30 min on 2 loaded cores)"
    # GOPATH mode, as debian/rules builds it; the Go build cache stays in the cache dir so a
    # rebuild reuses it.
    mkdir -p "$work/src/.go/src/k8s.io" "$DEST/gocache"
    [ -L "$work/src/.go/src/k8s.io/kubernetes" ] || ln -s ../../.. "$work/src/.go/src/k8s.io/kubernetes"
    (cd "$work/src" && env GOPATH="$work/src/.go" PATH="/usr/lib/go/bin:$PATH" CGO_ENABLED=0 \
        GO111MODULE=off GOFLAGS= GOCACHE="$DEST/gocache" HOME="$work/home" \
        nice -n "$NICENESS" make WHAT=cmd/kube-apiserver >&2)
    mkdir -p "$DEST/bin"
    install -m 0755 "$work/src/_output/bin/kube-apiserver" "$BINARY.new"
    mv "$BINARY.new" "$BINARY"
    binary_works || { log "the built binary does not report v$KUBE_VERSION"; exit 1; }
    # The sources and objects (~3 GB) are not needed once the binary is there.
    rm -rf "$work" "$DEST/gocache"
}

main() {
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/kube-apiserver-$KUBE_VERSION.lock"
    if ! flock -n 9; then
        log "another build holds $CACHE_ROOT/kube-apiserver-$KUBE_VERSION.lock; waiting"
        flock 9
    fi
    ensure_packages "${BUILD_PACKAGES[@]}"
    if binary_works; then
        log "reusing $BINARY"
    else
        build
    fi
    echo "$BINARY"
}

main "$@"
