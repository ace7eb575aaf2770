SUMMARY = "Wi-Fi access point of the cbox for phones (hostapd on wlan1, bridged into pan0)"
DESCRIPTION = "hostapd's base configuration for the box's access point on the PAN side and \
its unit. The BSS starts disabled: cnaptd sets the name, the per-box passphrase and the \
security through hostapd's control socket and starts it ([pan.wifi] in cnapt.toml). Runs \
when a second radio named wlan1 is present (a USB Wi-Fi adapter on the Pi)."
HOMEPAGE = "https://example.invalid/cbox"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://cbox-ap.conf \
           file://cbox-hostapd.service \
           "

S = "${UNPACKDIR}"

inherit allarch systemd

do_install() {
    install -d ${D}${sysconfdir}/hostapd ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/cbox-ap.conf ${D}${sysconfdir}/hostapd/cbox-ap.conf
    install -m 0644 ${UNPACKDIR}/cbox-hostapd.service ${D}${systemd_system_unitdir}/cbox-hostapd.service
}

SYSTEMD_SERVICE:${PN} = "cbox-hostapd.service"
FILES:${PN} = "${sysconfdir}/hostapd ${systemd_system_unitdir}/cbox-hostapd.service"
RDEPENDS:${PN} = "hostapd"
