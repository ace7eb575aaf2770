SUMMARY = "cbox board support: modem udev rules, LED/button pin map and overlay"
DESCRIPTION = "Installs board/ of the cbox repository: udev rules naming the LTE modem's \
ports, the pin map cnaptd reads, and the status-LED/button device-tree overlay."
HOMEPAGE = "https://example.invalid/cbox"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# The files live in board/ of the checkout (single source; CBOX_TOPDIR is set
# in conf/layer.conf).
FILESEXTRAPATHS:prepend := "${CBOX_TOPDIR}/board/udev:${CBOX_TOPDIR}/board/pinmap:${CBOX_TOPDIR}/board/overlays:"
SRC_URI = "file://99-cbox-modem.rules \
           file://rpi4.toml \
           file://rpi5.toml \
           file://cbox-leds.dts \
           "

S = "${UNPACKDIR}"

DEPENDS = "dtc-native"
COMPATIBLE_MACHINE = "^rpi$"

inherit deploy

# The Pi 5's header is on its RP1 (another gpiochip): its own pin map.
CBOX_PINMAP = "${@'rpi5.toml' if d.getVar('MACHINE').startswith('raspberrypi5') else 'rpi4.toml'}"

do_compile() {
    dtc -@ -I dts -O dtb -o ${B}/cbox-leds.dtbo ${UNPACKDIR}/cbox-leds.dts
}

do_install() {
    install -d ${D}${nonarch_base_libdir}/udev/rules.d ${D}${sysconfdir}/cbox
    install -m 0644 ${UNPACKDIR}/99-cbox-modem.rules ${D}${nonarch_base_libdir}/udev/rules.d/
    install -m 0644 ${UNPACKDIR}/${CBOX_PINMAP} ${D}${sysconfdir}/cbox/pinmap.toml
}

do_deploy() {
    install -d ${DEPLOYDIR}
    install -m 0644 ${B}/cbox-leds.dtbo ${DEPLOYDIR}/cbox-leds.dtbo
}
addtask deploy after do_compile before do_build

FILES:${PN} = "${nonarch_base_libdir}/udev/rules.d ${sysconfdir}/cbox/pinmap.toml"
