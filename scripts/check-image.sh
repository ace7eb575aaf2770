#!/usr/bin/env bash
# Static checks of the firmware image files (what can be checked without a
# Yocto build or a board):
#   - the Yocto crate list is up to date with Cargo.lock
#   - oelint-adv --release wrynose over the layer: no errors
#   - systemd-analyze verify on every unit (where the tool is available)
#   - shellcheck on the scripts that ship in the image
#   - the device-tree overlay compiles (where dtc is available)
# Called by scripts/test.sh after the workspace is built (the unit check
# points ExecStart at the freshly built daemons).
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER=yocto-layer/meta-cbox
OELINT_VERSION=9.11.2
VENV=${CBOX_TOOLS_VENV:-$HOME/.cache/cbox-tools-venv}

echo "-- crate list (Cargo.lock -> ${LAYER}/recipes-cbox/cbox/cbox-crates.inc)"
python3 scripts/gen-crates-inc.py --check

echo "-- oelint-adv ${OELINT_VERSION} --release wrynose"
if [ ! -x "$VENV/bin/oelint-adv" ] || ! "$VENV/bin/oelint-adv" --version 2>/dev/null | grep -q "$OELINT_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "oelint-adv==${OELINT_VERSION}"
fi
mapfile -t recipes < <(find "$LAYER" -name '*.bb' -o -name '*.bbappend' | sort)
report=$("$VENV/bin/oelint-adv" --release wrynose --quiet "${recipes[@]}" 2>&1 || true)
errors=$(printf '%s\n' "$report" | grep -c ':error:' || true)
warnings=$(printf '%s\n' "$report" | grep -c ':warning:' || true)
printf '%s\n' "$report" | grep ':error:' || true
echo "${#recipes[@]} recipes/appends: ${errors} errors, ${warnings} warnings"
[ "$errors" -eq 0 ] || { echo "error: oelint-adv found errors" >&2; exit 1; }

units=(docs/systemd/*.service "$LAYER"/recipes-cbox/cbox/files/*.service "$LAYER"/recipes-connectivity/cbox-ap/files/*.service)
if command -v systemd-analyze >/dev/null; then
    echo "-- systemd-analyze verify (${#units[@]} units)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # verify wants every ExecStart binary to exist: point them at the build.
    for u in "${units[@]}"; do
        sed -e "s|/usr/bin/cnaptd|$PWD/target/debug/cnaptd|g" \
            -e "s|/usr/bin/snaptd|$PWD/target/debug/snaptd|g" \
            -e "s|/usr/sbin/cbox-provision|$PWD/$LAYER/recipes-cbox/cbox/files/cbox-provision|g" \
            -e "s|/usr/sbin/hostapd|/bin/true|g" \
            -e "s|/usr/bin/rauc|/bin/true|g" "$u" >"$work/$(basename "$u")"
    done
    out=$(cd "$work" && { systemd-analyze verify ./*.service 2>&1 || true; })
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        echo "error: systemd-analyze verify complained" >&2
        exit 1
    fi
    echo "ok"
else
    echo "-- systemd-analyze not available: unit check skipped"
fi

echo "-- shellcheck (image scripts)"
shellcheck -s sh "$LAYER"/recipes-cbox/cbox/files/cbox-provision
echo "ok"

if command -v dtc >/dev/null; then
    echo "-- dtc: board/overlays/cbox-leds.dts"
    dtc -@ -q -I dts -O dtb -o /dev/null board/overlays/cbox-leds.dts
    echo "ok"
else
    echo "-- dtc not available: overlay check skipped"
fi
