#!/usr/bin/env bash
# Builds the radio bench's throwaway Debian VM (docs/testing.md, "The radio
# bench"): a bookworm root filesystem with the real radio stacks (hostapd,
# wpa_supplicant, bluetoothd, btvirt, iw, tc), the stock kernel uncompressed
# for a direct boot, and a tiny initrd of our own that mounts the root and the
# host's folders (9p) and runs the job the host put there.
#
#   sudo hil-tests/radio-vm/build-image.sh          # build once; later calls reuse it
#   CBOX_RADIO_VM_DIR=/somewhere sudo …              # where images are kept
#
# Idempotent: the image lives under a directory named after a hash of this
# script, so a changed recipe builds a new one and an unchanged one is reused.
# Prints the image directory on its last line. Needs root (mmdebstrap in root
# mode) and Debian's package mirror.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091 # scripts/packages.sh, checked on its own
. "$here/../../scripts/packages.sh"

base=${CBOX_RADIO_VM_DIR:-$HOME/.cache/cbox-radio-vm}
recipe=$(sha256sum "$0" | cut -c1-12)
out="$base/$recipe"
if [ -s "$out/rootfs.ext4" ] && [ -s "$out/vmlinux" ] && [ -s "$out/initrd.cpio.gz" ]; then
    echo "radio VM image: up to date"
    echo "$out"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "error: building the radio VM image needs root (mmdebstrap --mode=root)" >&2; exit 1; }
ensure_packages mmdebstrap qemu-system-x86 e2fsprogs xz-utils cpio kmod

mkdir -p "$base"
work=$(mktemp -d "$base.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
started=$(date +%s)

echo "radio VM image: debootstrapping bookworm (about 2 min) …"
# Not the -cloud kernel: it has neither WLAN nor Bluetooth. `mount` is not
# Essential, so it is listed.
mmdebstrap --mode=root --variant=apt --quiet \
    --include=linux-image-amd64,kmod,udev,mount,busybox-static,iproute2,iw,wireless-regdb,hostapd,wpasupplicant,rfkill,bluez,bluez-test-tools,bluez-tools,dbus,python3-dbus,iputils-ping,procps,isc-dhcp-client,dnsmasq-base,curl,openssh-client,openssh-server,gdb,ethtool \
    bookworm "$root" http://deb.debian.org/debian

kver=$(basename "$(ls -d "$root"/lib/modules/*)")
echo "radio VM image: kernel $kver"

# The kernel: the bzImage's xz payload is a vmlinux with a PVH note, which
# QEMU boots directly (no decompression under software emulation).
bz="$root/boot/vmlinuz-$kver"
offset=$(LC_ALL=C grep -abo "$(printf '\3757zXZ')" "$bz" | head -1 | cut -d: -f1)
[ -n "$offset" ] || { echo "error: no xz payload in $bz" >&2; exit 1; }
tail -c +"$((offset + 1))" "$bz" | xz -dc --single-stream >"$work/vmlinux" 2>/dev/null || true
head -c 4 "$work/vmlinux" | grep -q "ELF" || { echo "error: $bz did not give an ELF vmlinux" >&2; exit 1; }

# The initrd: static busybox, the modules to reach the root disk and the 9p
# shares (insmod'ed in dependency order), and an init that hands over to the
# root filesystem's /sbin/cbox-vm-init.
ird="$work/initrd"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,modules}
cp "$root/bin/busybox" "$ird/bin/busybox"
for m in virtio_pci virtio_blk ext4 9pnet_virtio 9p; do
    modprobe -d "$root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' >"$work/modlist"
: >"$ird/modules/order"
while read -r path; do
    path=${path#"$root"}
    name=$(basename "$path")
    case "$name" in
        *.xz) xz -dc "$root$path" >"$ird/modules/${name%.xz}"; name=${name%.xz} ;;
        *) cp "$root$path" "$ird/modules/$name" ;;
    esac
    echo "$name" >>"$ird/modules/order"
done <"$work/modlist"
cat >"$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
while read -r m; do /bin/busybox insmod "/modules/$m" 2>/dev/null; done </modules/order
i=0
while [ ! -b /dev/vda ] && [ "$i" -lt 100 ]; do /bin/busybox sleep 0.05; i=$((i + 1)); done
/bin/busybox mount -t ext4 /dev/vda /newroot || { echo "cbox-vm: no root disk"; echo o >/proc/sysrq-trigger; }
/bin/busybox mount --move /dev /newroot/dev
/bin/busybox umount /proc /sys
exec /bin/busybox switch_root /newroot /sbin/cbox-vm-init
INIT
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.cpio.gz"

# The root's own init: mounts, the host's folders at their own paths (tags
# and paths on the kernel command line: cbox.share=TAG:PATH,…), then the
# job the host wrote (cbox.job=PATH), its exit status beside it, power off.
cat >"$root/sbin/cbox-vm-init" <<'INIT'
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /dev/pts /dev/shm /sys/kernel/debug
mount -t devpts devpts /dev/pts
mount -t debugfs debugfs /sys/kernel/debug
hostname cbox-radio-vm
ip link set lo up
job=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        cbox.share=*)
            for s in $(echo "${arg#cbox.share=}" | tr ',' ' '); do
                mkdir -p "${s#*:}"
                mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 "${s%%:*}" "${s#*:}"
            done ;;
        cbox.job=*) job=${arg#cbox.job=} ;;
    esac
done
if [ -n "$job" ] && [ -f "$job" ]; then
    sh "$job" >"$job.out" 2>&1
    echo "$?" >"$job.exit"
    sync
else
    echo "cbox-vm: no job (cbox.job=$job)"
fi
echo o >/proc/sysrq-trigger
sleep 10
INIT
chmod 755 "$root/sbin/cbox-vm-init"

# A root filesystem image without loop mounts. Booted with snapshot=on, so
# writes are discarded and VMs can share it.
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
size_mb=$(( $(du -sm "$root" | cut -f1) + 256 ))
mkfs.ext4 -q -F -L cbox-radio -d "$root" "$work/rootfs.ext4" "${size_mb}M"

mkdir -p "$out"
mv "$work/vmlinux" "$work/initrd.cpio.gz" "$work/rootfs.ext4" "$out/"
echo "$kver" >"$out/kernel-version"
# Older recipes' images are no longer used.
for old in "$base"/*/; do
    [ "${old%/}" = "$out" ] || rm -rf "${old%/}"
done
echo "radio VM image: built in $(( $(date +%s) - started )) s ($(du -sh "$out" | cut -f1))"
echo "$out"
