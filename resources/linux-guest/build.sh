#!/usr/bin/env bash
# Builds a Linux guest from Debian bookworm packages, without installing anything on the host:
#   OUTDIR/vmlinuz             Debian's kernel (bzImage)
#   OUTDIR/initramfs.cpio.gz   busybox-static + /init (init.sh) + the virtio-mmio modules
#   bash resources/linux-guest/build.sh [OUTDIR]     (default: resources/linux-guest/out)
# Needs: apt-get (download only), dpkg-deb, cpio, gzip, find. Reruns reuse the downloads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)
debs=$out/debs
work=$out/work
mkdir -p "$debs"

# The current kernel package behind linux-image-amd64, and busybox.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $kernel_pkg ]]; then
    apt-get update -qq
    kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
for pkg in "$kernel_pkg" busybox-static; do
    if ! ls "$debs/${pkg}"_*.deb >/dev/null 2>&1; then
        (cd "$debs" && { apt-get download "$pkg" || { apt-get update -qq && apt-get download "$pkg"; }; })
    fi
done

rm -rf "$work"
mkdir -p "$work/kernel" "$work/busybox" "$work/root"
dpkg-deb -x "$(ls "$debs/${kernel_pkg}"_*.deb | head -1)" "$work/kernel"
dpkg-deb -x "$(ls "$debs"/busybox-static_*.deb | head -1)" "$work/busybox"
release=$(ls "$work/kernel/lib/modules" | head -1)
cp "$work/kernel/boot/vmlinuz-$release" "$out/vmlinuz"

root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,lib/modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
for tool in sh mount umount cat echo ls uname grep sed awk head wc insmod poweroff reboot sleep ip; do
    ln -sf busybox "$root/bin/$tool"
done
cp "$here/init.sh" "$root/init"
chmod +x "$root/init"

# virtio over MMIO and its devices, with their dependencies, in load order.
moddir=$work/kernel/lib/modules/$release/kernel
modules=(
    drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_mmio.ko
    drivers/block/virtio_blk.ko net/core/failover.ko drivers/net/net_failover.ko
    drivers/net/virtio_net.ko drivers/char/hw_random/virtio-rng.ko
)
: > "$root/lib/modules/load-order"
for m in "${modules[@]}"; do
    for candidate in "$moddir/$m" "$moddir/$m.xz" "$moddir/$m.zst"; do
        if [[ -f $candidate ]]; then
            name=$(basename "$m")
            case $candidate in
                *.xz) xz -dc "$candidate" > "$root/lib/modules/$name" ;;
                *.zst) zstd -qdc "$candidate" > "$root/lib/modules/$name" ;;
                *) cp "$candidate" "$root/lib/modules/$name" ;;
            esac
            echo "$name" >> "$root/lib/modules/load-order"
            break
        fi
    done
done

(cd "$root" && find . | cpio --quiet -o -H newc | gzip -9) > "$out/initramfs.cpio.gz"
rm -rf "$work"
echo "built $out/vmlinuz ($release) and $out/initramfs.cpio.gz"
