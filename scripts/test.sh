#!/usr/bin/env bash
# The whole cbox test suite, as CI runs it (.ci/run calls exactly this).
#
#   sudo ./scripts/test.sh            # everything
#   FUZZ_SECONDS=0 ./scripts/test.sh  # skip the fuzz smoke run
#
# Installs what it needs with apt-get (idempotent; oelint-adv into a venv
# from PyPI), then: formatting, clippy with warnings as errors, the purity
# check of the protocol core, a short cargo-fuzz smoke run when a nightly
# toolchain is available, the static checks of the firmware image, and every
# workspace test (unit, property, simulation, doc vectors, real binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

# System packages the suite needs; installed only when missing.
# shellcheck source=scripts/packages.sh
. scripts/packages.sh
ensure_packages shellcheck device-tree-compiler systemd iproute2 nftables ethtool curl \
    python3 python3-venv openssh-server openssh-client wpasupplicant mosquitto mosquitto-clients dnsmasq-base busybox haproxy \
    chromium chromium-driver fonts-dejavu-core zbar-tools librsvg2-bin \
    pkg-config libdbus-1-dev dbus-daemon dbus-bin python3-dbus
command -v cargo >/dev/null || { echo "error: cargo not found (install Rust with rustup)" >&2; exit 1; }

step "shellcheck"
shellcheck scripts/*.sh hil-tests/radio-vm/*.sh .ci/run

step "rustfmt"
cargo fmt --all -- --check

# The Yocto check (bitbake parsing the layer against the real layers) is
# mostly one core of Python: it runs beside the compile-only steps below and
# is joined before anything that measures time (the simulated world).
step "firmware image: meta-cbox against the real Yocto wrynose layers — started beside the build"
yocto_log=$(mktemp)
./scripts/yocto-check.sh </dev/null >"$yocto_log" 2>&1 &
yocto_pid=$!
trap 'kill "$yocto_pid" 2>/dev/null || true' EXIT

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "protocol core is pure: no tokio in wire/session (and the other sans-IO crates)"
if cargo tree -p wire -p session -p decision -p modem-at -p wpa-ctrl -p status -p panel -p pairing -p stream-codec -e normal --prefix none --locked | grep -E '^(tokio|mio|socket2) '; then
    echo "error: the pure crates depend on an async runtime or socket crate" >&2
    exit 1
fi
echo "ok"

step "the hosted relay links no box code"
# The guard must catch a box crate (checked on a listing that has one) …
if printf 'tokio v1.0.0\nbluer v0.17.4\n' | scripts/check-deps.sh --stdin >/dev/null 2>&1; then
    echo "error: scripts/check-deps.sh let a box crate through" >&2
    exit 1
fi
# … and find none in snaptd's real tree.
scripts/check-deps.sh

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
if [ "$FUZZ_SECONDS" -gt 0 ] && cargo +nightly --version >/dev/null 2>&1; then
    step "fuzz smoke: ${FUZZ_SECONDS}s per target over the committed corpus"
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
    for target in decode server; do
        # Run on a copy of the corpus so the committed one stays as it is.
        work=$(mktemp -d)
        cp -r "firmware/fuzz/corpus/$target/." "$work/"
        log="$work.log"
        status=0
        cargo +nightly fuzz run --fuzz-dir firmware/fuzz "$target" "$work" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1 || status=$?
        grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
        rm -rf "$work"
        if [ "$status" -ne 0 ]; then
            tail -n 40 "$log" >&2
            echo "error: fuzz target $target failed (exit $status)" >&2
            exit 1
        fi
        rm -f "$log"
    done
elif [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzz smoke skipped: no nightly toolchain (see docs/testing.md)"
fi

step "build the daemons (the integration tests run the real binaries)"
cargo build --workspace --locked

step "firmware image: meta-cbox against the real Yocto wrynose layers (bitbake parse, variables, task graph)"
# Skips with a message when neither the layers nor a local mirror of them
# are present (docs/image.md, "Checking the layer").
yocto_status=0
wait "$yocto_pid" || yocto_status=$?
cat "$yocto_log"
rm -f "$yocto_log"
if [ "$yocto_status" -ne 0 ]; then
    echo "error: the Yocto check failed (exit $yocto_status)" >&2
    exit 1
fi

step "simulated world: the scenario suite (real daemons in network namespaces)"
if [ "$(id -u)" -eq 0 ]; then
    ./target/debug/cbox-world run --json target/hil-report.json hil-tests/scenarios/*.toml
else
    echo "skipped: needs root (network namespaces)"
fi

step "firmware image: static checks"
./scripts/check-image.sh


step "browser for the status page test: selenium in a venv (PyPI)"
SELENIUM_VERSION=4.40.0
BROWSER_VENV="${CBOX_TOOLS_VENV:-$HOME/.cache/cbox-tools-venv}-browser"
if ! "$BROWSER_VENV/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null; then
    python3 -m venv "$BROWSER_VENV"
    "$BROWSER_VENV/bin/pip" install --quiet --disable-pip-version-check "selenium==$SELENIUM_VERSION"
fi
export CBOX_BROWSER_PYTHON="$BROWSER_VENV/bin/python"
echo "ok: $("$CBOX_BROWSER_PYTHON" -c 'import selenium; print("selenium", selenium.__version__)'), $(chromium --version 2>/dev/null | head -1)"

step "bluetoothd test double: python-dbusmock in a venv (PyPI) over Debian's python3-dbus"
DBUSMOCK_VERSION=0.38.1
DBUSMOCK_VENV="${CBOX_TOOLS_VENV:-$HOME/.cache/cbox-tools-venv}-dbusmock"
if ! "$DBUSMOCK_VENV/bin/python" -c "import dbus, dbusmock, sys; sys.exit(dbusmock.__version__ != '$DBUSMOCK_VERSION')" 2>/dev/null; then
    # Debian's interpreter: the venv sees its python3-dbus (a C extension
    # PyPI would have to build).
    /usr/bin/python3 -m venv --system-site-packages "$DBUSMOCK_VENV"
    "$DBUSMOCK_VENV/bin/pip" install --quiet --disable-pip-version-check "python-dbusmock==$DBUSMOCK_VERSION"
fi
export CBOX_DBUSMOCK_PYTHON="$DBUSMOCK_VENV/bin/python"
echo "ok: $("$CBOX_DBUSMOCK_PYTHON" -c 'import dbus, dbusmock; print("python-dbusmock", dbusmock.__version__, "dbus-python", dbus.__version__)')"

step "radio bench: the Debian VM with the real radio stacks (built once, then reused)"
# The radio tests (hil-tests/tests/radio_*.rs) boot it under QEMU; see
# docs/testing.md, "The radio bench".
if [ "$(id -u)" -eq 0 ]; then
    hil-tests/radio-vm/build-image.sh
else
    echo "skipped: building the image needs root (the radio tests will say so)"
fi

step "cargo test --workspace"
# Unit, integration and property tests and the benches' test mode (there
# are no doc tests); the examples are compiled by clippy above, not linked
# again here.
results=$(mktemp)
cargo test --workspace --lib --bins --tests --benches --locked 2>&1 | tee "$results"
passed=$(grep -Eo '[0-9]+ passed' "$results" | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$results" | awk '{s += $1} END {print s + 0}')
rm -f "$results"
echo
echo "cbox: $passed passed, $failed failed"
