#!/usr/bin/env bash
# The hosted relay links no box code: snaptd's dependency tree must contain
# none of the box's Bluetooth, D-Bus, serial, Wi-Fi, netlink or GPIO crates,
# nor certificate issuance (rcgen: cboxctl's `pki` feature only).
#
#   scripts/check-deps.sh            # checks snaptd's tree (cargo tree)
#   scripts/check-deps.sh --stdin    # checks a `cargo tree --prefix none` listing on stdin
set -euo pipefail
cd "$(dirname "$0")/.."

FORBIDDEN='bluer|dbus|dbus-tokio|libdbus-sys|serialport|tokio-serial|wpactrl|rtnetlink|netlink-sys|gpiocdev|gpiocdev-embedded-hal|embedded-hal|rcgen'

if [ "${1:-}" = "--stdin" ]; then
    tree=$(cat)
else
    tree=$(cargo tree -p snaptd -e normal --prefix none --locked)
fi
found=$(printf '%s\n' "$tree" | sed 's/ (\*)//' | sort -u | grep -E "^($FORBIDDEN) " || true)
if [ -n "$found" ]; then
    echo "error: the hosted relay (snaptd) depends on box-only crates:" >&2
    printf '  %s\n' "$found" >&2
    exit 1
fi
echo "ok: snaptd links none of: ${FORBIDDEN//|/, }"
