# Effective only with DISTRO = "cbox" (every change carries its override :cbox-distro).
# RAUC slot layout of the cbox (files/wic/cbox-rpi.wks) and the keyring that
# verifies update bundles: rauc-conf already lists file://system.conf and
# file://${RAUC_KEYRING_FILE} (ca.cert.pem); the files here take their place.
# Both are installed in /usr/lib/rauc/, where system.conf's [keyring] points.
FILESEXTRAPATHS:prepend:cbox-distro := "${THISDIR}/files:"
# The bundle-signing CA: put the fleet's own as files/ca.cert.pem (see
# docs/image.md, OTA; a development keyring comes from meta-rauc's
# scripts/openssl-ca.sh). Without it meta-rauc's example is installed and the
# build warns.
