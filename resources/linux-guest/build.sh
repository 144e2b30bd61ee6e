#!/usr/bin/env bash
# Builds a Linux guest from Debian bookworm packages without touching the host (nothing is
# installed; the packages are downloaded and unpacked under OUTDIR):
#   OUTDIR/vmlinuz            Debian's kernel (bzImage) that linux-image-amd64 points at
#   OUTDIR/vmlinux            the ELF inside it (extract-vmlinux's method; skipped without xz)
#   OUTDIR/initramfs.cpio.gz  busybox-static + /init (init.sh) + the virtio-mmio modules
#
# Usage: resources/linux-guest/build.sh [OUTDIR]      (default: resources/linux-guest/out)
# Reruns reuse the packages in OUTDIR/debs; `apt-get update` runs only if a lookup or a
# download fails.
#
# Host packages needed (all Debian bookworm): bash, coreutils, findutils, grep, sed, tar,
# dpkg (dpkg-deb), apt (apt-get, apt-cache), gzip, cpio; xz-utils only for OUTDIR/vmlinux.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "${1:-$here/out}"
out=$(cd "${1:-$here/out}" && pwd)
debs=$out/debs
scratch=$out/work

# The modules the guest needs: virtio; ext4 and the crc32c it checksums with (not a declared
# dependency: ext4 asks the crypto API for it at mount time); button and evdev so the ACPI
# power button reaches acpid. Their dependencies are read from the modules themselves.
wanted_modules=(virtio_mmio virtio_blk virtio_net virtio_rng crc32c_generic ext4 button evdev)
# What those depend on in 6.1, unpacked in the first pass so one pass usually suffices.
expected_dependencies=(virtio virtio_ring net_failover failover jbd2 mbcache crc16)

log() { echo "linux-guest: $*" >&2; }

# The linux-image-<abi>-amd64 package that linux-image-amd64 currently depends on.
current_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1 || true
}

# As root, apt-get would warn that its _apt sandbox user cannot write to OUTDIR.
apt_options=()
if ((EUID == 0)); then apt_options=(-o APT::Sandbox::User=root); fi

cached_deb() { compgen -G "$debs/${1}_*.deb" | sort -V | tail -n 1 || true; }

# Prints the path of the package's .deb in $debs, downloading it if it is not there yet.
fetch_deb() {
    local pkg=$1
    if [[ -z $(cached_deb "$pkg") ]]; then
        if ! (cd "$debs" && apt-get "${apt_options[@]}" download -q "$pkg" >&2); then
            log "download of $pkg failed; running apt-get update and retrying"
            apt-get update -q >&2
            (cd "$debs" && apt-get "${apt_options[@]}" download -q "$pkg" >&2)
        fi
    fi
    cached_deb "$pkg"
}

resolve_kernel_package() {
    local pkg
    pkg=$(current_kernel_package)
    if [[ -z $pkg ]]; then
        log "apt does not know linux-image-amd64; running apt-get update"
        apt-get update -q >&2 || true
        pkg=$(current_kernel_package)
    fi
    if [[ -z $pkg ]]; then
        # Offline with no package lists: fall back to a kernel downloaded earlier.
        pkg=$(compgen -G "$debs/linux-image-*-amd64_*.deb" | sort -V | tail -n 1 || true)
        pkg=$(basename "$pkg")
        pkg=${pkg%%_*}
    fi
    [[ -n $pkg ]] || { log "cannot find the current linux-image-*-amd64 package"; exit 1; }
    echo "$pkg"
}

# A tar pattern matching the module's file anywhere in the tree: the file may spell '_' as '-'.
module_pattern() { echo "./lib/modules/*/${1//_/[-_]}.ko"; }

# Unpacks only the named members of the kernel package (dpkg-deb's own data stream, filtered
# by tar) instead of its ~400 MB of modules. Members that are absent are not an error here.
unpack_kernel_members() {
    local deb=$1
    shift
    local errors=$scratch/tar.err
    dpkg-deb --fsys-tarfile "$deb" |
        { tar -x -C "$scratch/kernel" --wildcards "$@" 2>"$errors" || true; }
    grep -v -e 'Not found in archive' -e 'Exiting with failure status' "$errors" >&2 || true
}

module_name() { local base=${1##*/}; base=${base%.ko}; echo "${base//-/_}"; }

# The comma-separated depends= field of a module's .modinfo section.
module_dependencies() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' '
}

declare -A module_file=() builtin=() visited=()
load_order=()
missing=()

index_modules() {
    module_file=() builtin=()
    local f
    while IFS= read -r f; do
        module_file[$(module_name "$f")]=$f
    done < <(find "$scratch/kernel/lib/modules" -name '*.ko')
    local builtin_list
    builtin_list=$(compgen -G "$scratch/kernel/lib/modules/*/modules.builtin" | head -n 1 || true)
    if [[ -n $builtin_list ]]; then
        while IFS= read -r f; do builtin[$(module_name "$f")]=1; done <"$builtin_list"
    fi
}

# Depth first: a module's dependencies are loaded before it.
order_module() {
    local name=$1 dep
    [[ -z ${visited[$name]:-} ]] || return 0
    visited[$name]=1
    if [[ -n ${builtin[$name]:-} ]]; then
        return 0
    fi
    if [[ -z ${module_file[$name]:-} ]]; then
        missing+=("$name")
        return 0
    fi
    for dep in $(module_dependencies "${module_file[$name]}"); do
        order_module "$dep"
    done
    load_order+=("$name")
}

order_modules() {
    visited=() load_order=() missing=()
    index_modules
    local name
    for name in "${wanted_modules[@]}"; do order_module "$name"; done
}

# The ELF kernel inside the bzImage: the payload is an xz stream (CONFIG_KERNEL_XZ); try each
# xz magic in the file until one decompresses to an ELF, as scripts/extract-vmlinux does.
extract_vmlinux() {
    local bzimage=$1 target=$2 offset
    rm -f "$target"
    command -v xz >/dev/null || { log "no xz: skipping vmlinux"; return 0; }
    for offset in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bzimage" | cut -d: -f1 || true); do
        tail -c "+$((offset + 1))" "$bzimage" | xz -dc --single-stream >"$target.tmp" 2>/dev/null || true
        if cmp -s -n 4 <(printf '\177ELF') "$target.tmp"; then
            mv "$target.tmp" "$target"
            return 0
        fi
    done
    rm -f "$target.tmp"
    log "no ELF found inside $bzimage: skipping vmlinux"
}

# The initramfs tree: busybox with every applet linked, /init, the modules and their order.
build_root() {
    local root=$1 release=$2 applet name
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,lib/modules}
    cp "$scratch/busybox/bin/busybox" "$root/bin/busybox"
    # The static busybox runs on any x86-64 Linux host, so it can list its own applets.
    while IFS= read -r applet; do
        [[ $applet == bin/busybox ]] && continue
        ln -sf /bin/busybox "$root/$applet"
    done < <("$root/bin/busybox" --list-full)
    cp "$here/init.sh" "$root/init"
    chmod 755 "$root/init"
    : >"$root/lib/modules/load-order"
    for name in "${load_order[@]}"; do
        cp "${module_file[$name]}" "$root/lib/modules/$name.ko"
        echo "$name.ko" >>"$root/lib/modules/load-order"
    done
    echo "$release" >"$root/lib/modules/release"
}

main() {
    local started=$SECONDS kernel_pkg kernel_deb busybox_deb release name patterns
    mkdir -p "$debs"
    kernel_pkg=$(resolve_kernel_package)
    kernel_deb=$(fetch_deb "$kernel_pkg")
    busybox_deb=$(fetch_deb busybox-static)
    [[ -n $kernel_deb && -n $busybox_deb ]] || { log "packages missing in $debs"; exit 1; }
    log "kernel $(basename "$kernel_deb"), busybox $(basename "$busybox_deb")"

    rm -rf "$scratch"
    mkdir -p "$scratch/kernel" "$scratch/busybox" "$scratch/root"
    dpkg-deb -x "$busybox_deb" "$scratch/busybox"

    patterns=('./boot/vmlinuz-*' './lib/modules/*/modules.builtin')
    for name in "${wanted_modules[@]}" "${expected_dependencies[@]}"; do
        patterns+=("$(module_pattern "$name")")
    done
    unpack_kernel_members "$kernel_deb" "${patterns[@]}"
    order_modules
    # Dependencies not guessed above: one more pass per level of the dependency tree.
    local before
    while ((${#missing[@]} > 0)); do
        before=${#module_file[@]}
        patterns=()
        for name in "${missing[@]}"; do patterns+=("$(module_pattern "$name")"); done
        log "unpacking further modules: ${missing[*]}"
        unpack_kernel_members "$kernel_deb" "${patterns[@]}"
        order_modules
        if ((${#module_file[@]} == before)); then
            log "not in the kernel package (the guest will report them): ${missing[*]}"
            break
        fi
    done

    local vmlinuz
    vmlinuz=$(compgen -G "$scratch/kernel/boot/vmlinuz-*" | head -n 1 || true)
    [[ -n $vmlinuz ]] || { log "no /boot/vmlinuz-* in $kernel_deb"; exit 1; }
    release=${vmlinuz##*/vmlinuz-}
    cp "$vmlinuz" "$out/vmlinuz"
    extract_vmlinux "$out/vmlinuz" "$out/vmlinux"

    build_root "$scratch/root" "$release"
    (cd "$scratch/root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -9n) \
        >"$out/initramfs.cpio.gz.tmp"
    mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
    rm -rf "$scratch"
    log "built $release in $((SECONDS - started)) s: modules ${load_order[*]}"
    log "$out/vmlinuz $out/initramfs.cpio.gz$([[ -f $out/vmlinux ]] && echo " $out/vmlinux")"
}

main
