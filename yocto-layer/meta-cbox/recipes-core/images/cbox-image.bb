SUMMARY = "cbox connectivity box image"
DESCRIPTION = "Read-only root file system with cnaptd, BlueZ NAP, the Wi-Fi access point \
(hostapd), wpa_supplicant, \
systemd-networkd PAN bridge, RAUC A/B updates and a persistent /data partition."
LICENSE = "MIT"

inherit core-image

IMAGE_FEATURES += "read-only-rootfs"
IMAGE_FEATURES:remove = "debug-tweaks"

IMAGE_INSTALL += "\
    cbox \
    cbox-provision \
        cbox-network \
    cbox-board \
    cbox-ap \
    bluez5 \
    wpa-supplicant \
    iw \
    nftables \
    rauc \
    kernel-module-bnep \
    kernel-module-qmi-wwan \
    kernel-module-option \
    kernel-module-cdc-mbim \
    "

# A/B layout with a persistent /data (files/wic/cbox-rpi.wks).
WKS_FILE = "cbox-rpi.wks"
# The status-LED/button overlay (cbox-board) on the boot partition.
do_image_wic[depends] += "cbox-board:do_deploy"
IMAGE_BOOT_FILES:append = " cbox-leds.dtbo;overlays/cbox-leds.dtbo"
# ext4: the root file system cbox-bundle puts in its RAUC bundle; wic.bz2
# and its bmap: the card image. (The BSP's tar.bz2 and ext3 are not needed.)
IMAGE_FSTYPES = "ext4 wic.bz2 wic.bmap"

# /data must exist as a mount point on the read-only root.
create_data_mountpoint() {
    install -d ${IMAGE_ROOTFS}/data
}
ROOTFS_POSTPROCESS_COMMAND += "create_data_mountpoint"
