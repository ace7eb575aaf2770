# Effective only with DISTRO = "cbox" (every change carries its override :cbox-distro).
# A/B boot selection for RAUC: U-Boot tries the slots in BOOT_ORDER, each at
# most three times (BOOT_x_LEFT); RAUC marks a slot good only after cnaptd is
# ready (cbox-mark-good.service), so a broken update falls back by itself.
# rpi-u-boot-scr already lists file://boot.cmd.in; ours takes its place.
FILESEXTRAPATHS:prepend:cbox-distro := "${THISDIR}/files:"
