SUMMARY = "RAUC update bundle of the cbox image"
DESCRIPTION = "Signed bundle that installs cbox-image into the inactive root slot."
HOMEPAGE = "https://example.invalid/cbox"
LICENSE = "MIT"

# Everything comes from the image; the bundle class adds its own files.
SRC_URI = ""

inherit bundle

RAUC_BUNDLE_COMPATIBLE = "cbox-rpi"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_FORMAT = "verity"
RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "cbox-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# Signing material: set in local.conf or the kas file (never in the layer).
RAUC_KEY_FILE ?= "${TOPDIR}/rauc-keys/development-1.key.pem"
RAUC_CERT_FILE ?= "${TOPDIR}/rauc-keys/development-1.cert.pem"
