SUMMARY = "systemd-networkd configuration of the cbox: PAN bridge with DHCP, uplinks"
DESCRIPTION = "Bridge pan0 (Bluetooth bnep links and the Ethernet PAN port) with the box's \
PAN address and networkd's DHCP server for PAN clients; DHCP on the uplinks; no IP \
hooks at bridge level (transparent mode's TPROXY)."
HOMEPAGE = "https://example.invalid/cbox"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://10-pan0.netdev \
           file://11-pan0.network \
           file://12-eth0-pan.network \
           file://20-uplinks.network \
           file://60-cbox-bridge.conf \
           "

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    install -d ${D}${sysconfdir}/systemd/network
    install -m 0644 ${UNPACKDIR}/*.netdev ${UNPACKDIR}/*.network ${D}${sysconfdir}/systemd/network/
    install -d ${D}${sysconfdir}/sysctl.d
    install -m 0644 ${UNPACKDIR}/60-cbox-bridge.conf ${D}${sysconfdir}/sysctl.d/
}

FILES:${PN} = "${sysconfdir}/systemd/network ${sysconfdir}/sysctl.d"
RDEPENDS:${PN} = "systemd"
