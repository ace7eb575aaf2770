# Effective only with DISTRO = "cbox" (every change carries :cbox).
# A/B boot selection for RAUC: U-Boot tries the slots in BOOT_ORDER, each at
# most three times (BOOT_x_LEFT); RAUC marks a slot good only after cnaptd is
# ready (cbox-mark-good.service), so a broken update falls back by itself.
FILESEXTRAPATHS:prepend:cbox := "${THISDIR}/files:"
SRC_URI:append:cbox = " file://boot.cmd.in"
