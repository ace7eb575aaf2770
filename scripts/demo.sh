#!/usr/bin/env bash
# The main job: the simulated box doing live handovers.
#
#   sudo ./scripts/demo.sh
#
# Builds everything (release), then runs the demo in network namespaces:
# a phone downloads 64 MiB and runs an interactive stream through the box
# while the box walks out of Wi-Fi (planned switch to LTE), comes back, and
# loses its Wi-Fi link abruptly. Ends with a verdict line. Ctrl-C tears the
# world down; a world left by a crashed run is removed at the next start.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "error: the simulated world needs root (network namespaces): sudo $0" >&2
    exit 1
fi

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
ensure_packages iproute2 nftables ethtool curl python3 openssh-server openssh-client wpasupplicant \
    mosquitto mosquitto-clients dnsmasq-base busybox pkg-config libdbus-1-dev
command -v cargo >/dev/null || { echo "error: cargo not found (install Rust with rustup)" >&2; exit 1; }

echo "==> building (release)"
cargo build --release --workspace --locked --quiet
echo "==> running the demo"
exec ./target/release/cbox-world demo
