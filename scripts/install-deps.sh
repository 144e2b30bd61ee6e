#!/usr/bin/env bash
# Installs the Debian packages this project needs to build, test and benchmark.
# Run as root (or with sudo) on Debian bookworm. Safe to run again.
#   libglib2.0-dev pkg-config   glib-sys (the main loop runs on GLib)
#   qemu-system-x86 time        the benchmark's baseline (qemu-system-x86_64 -M microvm), peak RSS
#   busybox-static cpio xz-utils   resources/linux-guest/build.sh (the Linux guest's initramfs;
#                               xz unpacks the vmlinux inside the bzImage, for the PVH boot)
#   libvirt-clients python3-libvirt   the real management clients the tests drive (virsh,
#                               libvirt-python for /usr/bin/python3)
#   libxml2-utils               xmllint, which virt-xml-validate runs: the tests validate
#                               capabilities and domcapabilities against libvirt's schemas
#   libvirt-daemon              the RPC benchmark's baseline (libvirtd with the test driver)
#   iproute2 e2fsprogs          the network tests' namespaces and taps (ip); the Linux test's
#                               ext2 disk (mkfs.ext2)
#   stress-ng                   a CPU hog for running the suite under load, as CI machines are
#   collectd-core prometheus-libvirt-exporter   the monitoring agents the monitoring test
#                               points at our socket (collectd's virt plugin, the exporter)
#   virtinst                    virt-install, which the serve test points at `vmm serve`
#   g++ util-linux              libFuzzer (built by libfuzzer-sys, scripts/fuzz.sh); losetup and
#                               mount for the fault tests' full and failing disks
set -euo pipefail
packages=(libglib2.0-dev pkg-config qemu-system-x86 time busybox-static cpio xz-utils
          libvirt-clients python3-libvirt libxml2-utils libvirt-daemon iproute2 e2fsprogs stress-ng
          collectd-core prometheus-libvirt-exporter virtinst g++ util-linux)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # Some machines come with a newer qemu-utils (bookworm-backports) than bookworm's QEMU
    # allows: it Breaks qemu-system-common (< 8.0), so apt refuses qemu-system-x86. Take
    # bookworm's qemu-utils with bookworm's QEMU (nothing here uses qemu-img).
    downgrade=()
    installed=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    from_sources=$(apt-cache madison qemu-utils | awk -F'|' 'NR == 1 { gsub(/ /, "", $2); print $2 }')
    if [[ " ${missing[*]} " == *" qemu-system-x86 "* && -n $installed && -n $from_sources ]] &&
        dpkg --compare-versions "$installed" gt "$from_sources"; then
        echo "install-deps: qemu-utils $installed is newer than bookworm's QEMU allows; taking $from_sources" >&2
        downgrade=(--allow-downgrades "qemu-utils=$from_sources")
    fi
    apt-get install -y --no-install-recommends "${downgrade[@]}" "${missing[@]}"
fi
