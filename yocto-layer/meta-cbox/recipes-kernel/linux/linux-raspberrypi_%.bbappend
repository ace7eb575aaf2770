# Effective only with DISTRO = "cbox" (override :cbox-distro).
# What cnaptd needs from the kernel beyond the board's defconfig: nftables
# with fib, redirect and TPROXY (transparent mode), policy routing, the PAN
# bridge and Bluetooth's BNEP (NAP); BBR for the tunnels.
FILESEXTRAPATHS:prepend:cbox-distro := "${THISDIR}/files:"
SRC_URI:append:cbox-distro = " file://cbox-netfilter.cfg file://cbox-tcp.cfg"
