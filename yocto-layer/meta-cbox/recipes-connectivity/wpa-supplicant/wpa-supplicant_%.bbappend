# Effective only with DISTRO = "cbox" (every change carries its override :cbox-distro).
# wpa_supplicant on wlan0 with a control socket cnaptd (group cbox) can use.
# Its configuration lives on /data (the root file system is read-only and
# wpa_supplicant saves networks added at run time next to its config file).
FILESEXTRAPATHS:prepend:cbox-distro := "${THISDIR}/files:"
SRC_URI:append:cbox-distro = " file://wpa_supplicant-wlan0.conf file://cbox-wlan0.conf"

SYSTEMD_SERVICE:${PN}:append:cbox-distro = " wpa_supplicant@wlan0.service"

# cbox-distro is the cbox distro's override (DISTROOVERRIDES in
# conf/distro/cbox.conf), which oelint-adv cannot see; bitbake's parse in
# scripts/yocto-check.sh checks it.
# nooelint: oelint.func.specific
do_install:append:cbox-distro() {
    install -d ${D}${datadir}/cbox ${D}${systemd_system_unitdir}/wpa_supplicant@wlan0.service.d
    install -m 0644 ${UNPACKDIR}/wpa_supplicant-wlan0.conf ${D}${datadir}/cbox/wpa_supplicant-wlan0.conf
    install -m 0644 ${UNPACKDIR}/cbox-wlan0.conf ${D}${systemd_system_unitdir}/wpa_supplicant@wlan0.service.d/cbox.conf
}

FILES:${PN}:append:cbox-distro = " ${datadir}/cbox ${systemd_system_unitdir}/wpa_supplicant@wlan0.service.d"
