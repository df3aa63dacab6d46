# shellcheck shell=bash
# Shell functions shared by the scripts under tests/ that prepare this machine (bash; sourced).
# The sourcing script defines log() (its own prefix on stderr).

# Wait up to 10 minutes for a dpkg lock another apt run holds (the machine is shared).
APT_LOCK_TIMEOUT=(-o DPkg::Lock::Timeout=600)

# ensure_packages PKG...: install those of the Debian packages that are not installed yet.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    # A machine whose package lists were never fetched has no candidate: update once then.
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        apt-get "${APT_LOCK_TIMEOUT[@]}" update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK_TIMEOUT[@]}" install -y -qq \
        --no-install-recommends "${missing[@]}" >&2
}
