#!/usr/bin/env bash
# Sourced by test.sh and demo.sh: ensure_packages PKG… installs the Debian
# packages that are missing (idempotent; needs root only when one is).
# Package scripts may not start services here (openssh-server would start
# an sshd on the machine): a temporary policy-rc.d refuses, unless the
# machine already has its own.

ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing packages ${missing[*]}; run as root (sudo $0) to install them" >&2
        exit 1
    fi
    echo "==> installing ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    } || rc=$?
    [ "$ours" -eq 1 ] && rm -f "$policy"
    return "$rc"
}
