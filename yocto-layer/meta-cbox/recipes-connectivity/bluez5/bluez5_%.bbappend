# Effective only with DISTRO = "cbox" (every change carries its override :cbox-distro).
# BlueZ as a PAN network access point (NAP) for phones and PDAs. cnaptd
# registers the NAP (org.bluez.NetworkServer1, bridge pan0) and runs the
# pairing agent; this only sets the adapter defaults.
FILESEXTRAPATHS:prepend:cbox-distro := "${THISDIR}/files:"
SRC_URI:append:cbox-distro = " file://main.conf"

# The PAN profiles (NAP, PANU): on by default in oe-core, named here so
# that the image keeps them if the default changes.
PACKAGECONFIG:append:cbox-distro = " network-profiles"

# cbox-distro is the cbox distro's override (DISTROOVERRIDES in
# conf/distro/cbox.conf), which oelint-adv cannot see; bitbake's parse in
# scripts/yocto-check.sh checks it.
# nooelint: oelint.func.specific
do_install:append:cbox-distro() {
    install -d ${D}${sysconfdir}/bluetooth
    install -m 0644 ${UNPACKDIR}/main.conf ${D}${sysconfdir}/bluetooth/main.conf
}
