# Effective only with DISTRO = "cbox" (every change carries :cbox).
# BlueZ as a PAN network access point (NAP) for phones and PDAs. cnaptd
# registers the NAP (org.bluez.NetworkServer1, bridge pan0) and runs the
# pairing agent; this only sets the adapter defaults.
FILESEXTRAPATHS:prepend:cbox := "${THISDIR}/files:"
SRC_URI:append:cbox = " file://main.conf"

# The network plugin provides the PAN profiles (NAP, PANU).
PACKAGECONFIG:append:cbox = " network"

do_install:append:cbox() {
    install -d ${D}${sysconfdir}/bluetooth
    install -m 0644 ${UNPACKDIR}/main.conf ${D}${sysconfdir}/bluetooth/main.conf
}
