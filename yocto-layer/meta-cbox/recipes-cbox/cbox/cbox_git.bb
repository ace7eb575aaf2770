SUMMARY = "cbox daemons: cnaptd (box), snaptd (server-side relay), cboxctl"
DESCRIPTION = "Seamless uplink relay for PAN clients: every TCP/UDP session survives \
moves between Wi-Fi and LTE through one mutually authenticated tunnel per SNAPT."
HOMEPAGE = "https://example.invalid/cbox"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# By default the checkout this layer lives in (CBOX_TOPDIR, layer.conf); a
# release build sets CBOX_GIT_URI to the project's repository and pins SRCREV.
CBOX_GIT_URI ??= "git://${CBOX_TOPDIR};protocol=file"
SRC_URI = "${CBOX_GIT_URI};branch=main \
           file://cnapt.toml \
           file://cbox.conf \
           file://cbox-sysusers.conf \
           file://cbox-provision \
           file://cbox-provision.service \
           file://cbox-mark-good.service \
           file://cbox-dbus.conf \
           "
PV = "0.1.0+git"
# Development builds follow main; a release pins SRCREV.
SRCREV ??= "${AUTOREV}"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates pkgconfig ptest-cargo systemd useradd

# bluer talks to bluetoothd through libdbus.
DEPENDS += "dbus"

CARGO_LOCK_SRC_DIR = "${S}"

PACKAGES =+ "${PN}-snaptd ${PN}-provision"

SYSTEMD_PACKAGES = "${PN} ${PN}-snaptd ${PN}-provision"
SYSTEMD_SERVICE:${PN} = "cnaptd.service cbox-mark-good.service"
SYSTEMD_SERVICE:${PN}-snaptd = "snaptd.service"
SYSTEMD_SERVICE:${PN}-provision = "cbox-provision.service"
SYSTEMD_AUTO_ENABLE:${PN}-snaptd = "disable"

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --home-dir /nonexistent --no-create-home --shell /sbin/nologin cbox"

do_install:append() {
    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/cbox ${D}${libdir}/tmpfiles.d ${D}${libdir}/sysusers.d
    install -m 0644 ${S}/docs/systemd/cnaptd.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/docs/systemd/snaptd.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${UNPACKDIR}/cbox-provision.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${UNPACKDIR}/cbox-mark-good.service ${D}${systemd_system_unitdir}/
        # The root file system is read-only: the configuration lives on /data
    # (cbox-provision puts it there), /etc points at it.
    install -d ${D}${datadir}/cbox
    install -m 0644 ${UNPACKDIR}/cnapt.toml ${D}${datadir}/cbox/cnapt.toml
    ln -sf /data/cbox/cnapt.toml ${D}${sysconfdir}/cbox/cnapt.toml
    install -m 0644 ${UNPACKDIR}/cbox.conf ${D}${libdir}/tmpfiles.d/cbox.conf
    install -m 0644 ${UNPACKDIR}/cbox-sysusers.conf ${D}${libdir}/sysusers.d/cbox.conf
    install -d ${D}${sbindir}
    install -m 0755 ${UNPACKDIR}/cbox-provision ${D}${sbindir}/cbox-provision
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${UNPACKDIR}/cbox-dbus.conf ${D}${datadir}/dbus-1/system.d/cbox.conf
}

FILES:${PN} = "${bindir}/cnaptd ${bindir}/cboxctl ${sysconfdir}/cbox ${datadir}/cbox ${datadir}/dbus-1/system.d \
               ${systemd_system_unitdir}/cnaptd.service ${systemd_system_unitdir}/cbox-mark-good.service \
               ${libdir}/tmpfiles.d/cbox.conf ${libdir}/sysusers.d/cbox.conf"
FILES:${PN}-snaptd = "${bindir}/snaptd ${systemd_system_unitdir}/snaptd.service"
FILES:${PN}-provision = "${sbindir}/cbox-provision ${systemd_system_unitdir}/cbox-provision.service"

RDEPENDS:${PN} = "${PN}-provision dbus"
RDEPENDS:${PN}-provision = "busybox"
