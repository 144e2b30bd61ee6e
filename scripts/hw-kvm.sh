#!/usr/bin/env bash
# Runs a command where KVM uses hardware-style virtualization (VMX/SVM), and exits with its
# status:
#   - on a host that has it (kvm_intel or kvm_amd loaded, or vmx/svm in /proc/cpuinfo),
#     directly;
#   - otherwise (e.g. kvm_pvm hosts) inside a nested guest "L1": QEMU's TCG emulating an AMD
#     CPU with SVM and nested paging (-cpu max), booting Debian's kernel with virtme-ng, which
#     shares this machine's root filesystem (read-only) so the checkout, the built binaries,
#     virsh and python3-libvirt are all there at the same paths. kvm_amd gives L1 a /dev/kvm.
#
# Usage: scripts/hw-kvm.sh [--cpus N] [--memory SIZE] [--timeout SECONDS] [--stall SECONDS]
#                         [--rwdir DIR]... -- CMD [ARG...]
#   CMD runs as root in the current directory, with the caller's CI and RUST_BACKTRACE.
#   /tmp inside L1 is its own RAM; --rwdir DIR (repeatable) shares DIR read-write, e.g. to
#   carry results back. One L1 boot (~50 s here) serves the whole CMD: give it a script that
#   runs many tests. After --timeout (default 1800 s) L1 is stopped and the status is 124.
#   L1 also counts as wedged, and is stopped with status 124, when its heartbeat (a file it
#   touches every 20 s) is older than --stall seconds (default 300), so a hung L1 costs
#   minutes, not the whole timeout; a soft lockup in L1 panics it (status 125).
#
# Installs what it needs on first use: linux-image-amd64 (apt), virtme-ng $VNG_VERSION (pip, in a
# venv at $VMM_LANE_VENV, default /opt/vmm-lane) and L1's QEMU (bookworm-backports, unpacked in
# that venv). L1's CPU model is QEMU's "max".
set -euo pipefail

VNG_VERSION=1.42
venv=${VMM_LANE_VENV:-/opt/vmm-lane}
cpus=2
memory=8G
limit=1800
stall=300
rwdirs=()
while (($#)); do
    case $1 in
    --cpus) cpus=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --rwdir) rwdirs+=("$2"); shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --stall) stall=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "hw-kvm: unknown option $1 (usage: hw-kvm.sh [--cpus N] [--memory SIZE] [--rwdir DIR] -- CMD...)" >&2; exit 2 ;;
    esac
done
(($#)) || { echo "hw-kvm: no command given" >&2; exit 2; }

log() { echo "hw-kvm: $*" >&2; }

has_hardware_kvm() {
    [[ -e /sys/module/kvm_intel || -e /sys/module/kvm_amd ]] ||
        grep -qw -e vmx -e svm /proc/cpuinfo
}

if has_hardware_kvm; then
    exec "$@"
fi

# L1's emulator is QEMU 10 from bookworm-backports, unpacked under $venv/qemu (the system's QEMU
# 7.2 stays the benchmarks' baseline). Measured here: Debian's kernel as L2 reaches init about
# twice as fast under it, and QEMU 7.2's TCG let L1 die at random (see BENCHMARKS.md).
l1_qemu_dir=$venv/qemu
L1_QEMU_PACKAGES=(qemu-system-x86/bookworm-backports qemu-system-data/bookworm-backports
    seabios/bookworm-backports)

install_l1_qemu() {
    [[ -x $l1_qemu_dir/usr/bin/qemu-system-x86_64 ]] && return
    log "installing L1's emulator (${L1_QEMU_PACKAGES[*]}) into $l1_qemu_dir"
    local apt_dir
    apt_dir=$(mktemp -d)
    chmod 755 "$apt_dir" # apt fetches as _apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    echo "deb http://deb.debian.org/debian bookworm-backports main" >"$apt_dir/sources.list"
    # A private source list and package lists: the system's apt configuration is untouched.
    local apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives")
    apt-get "${apt_opts[@]}" update >&2
    (cd "$apt_dir" && apt-get "${apt_opts[@]}" download "${L1_QEMU_PACKAGES[@]}") >&2
    rm -rf "$l1_qemu_dir.new"
    for deb in "$apt_dir"/*.deb; do dpkg -x "$deb" "$l1_qemu_dir.new"; done
    mv "$l1_qemu_dir.new" "$l1_qemu_dir"
    rm -rf "$apt_dir"
}

install_lane() {
    local missing=()
    python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    compgen -G '/boot/vmlinuz-*-amd64' >/dev/null || missing+=(linux-image-amd64)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
    if [[ ! -x $venv/bin/vng ]]; then
        log "installing virtme-ng $VNG_VERSION into $venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q "virtme-ng==$VNG_VERSION" >&2
    fi
    install_l1_qemu
}

install_lane
kernel=$(compgen -G '/boot/vmlinuz-*-amd64' | sort -V | tail -n 1)
# QEMU_MODULE_DIR: its own modules, not the system QEMU's (which refuse to load anyway).
export QEMU_MODULE_DIR=$l1_qemu_dir/usr/lib/x86_64-linux-gnu/qemu
l1_qemu=(--qemu "$l1_qemu_dir/usr/bin/qemu-system-x86_64"
    --qemu-opts="-cpu max -L $l1_qemu_dir/usr/share/qemu -L $l1_qemu_dir/usr/share/seabios")
# Results come back through a shared directory: the command's exit status, at least.
share=$(mktemp -d /tmp/hw-kvm.XXXXXX)
trap 'rm -rf "$share"' EXIT
{
    echo "set -u"
    echo "modprobe kvm_amd && modprobe tun || { echo 'hw-kvm: no kvm_amd in L1' >&2; echo 125 >$(printf %q "$share")/status; exit; }"
    printf 'export CI=%q RUST_BACKTRACE=%q\n' "${CI:-}" "${RUST_BACKTRACE:-}"
    printf 'cd %q\n' "$PWD"
    printf '(while touch %q; do sleep 20; done) &\n' "$share/alive"
    printf '%q ' "$@"
    echo
    echo "echo \$? >$(printf %q "$share")/status"
} >"$share/run.sh"

rw=(--rwdir "$share")
for dir in "${rwdirs[@]}"; do rw+=(--rwdir "$dir"); done
log "booting L1 ($(basename "$kernel"), QEMU TCG -cpu max, $cpus CPUs, $memory) to run: $*"
started=$SECONDS
touch "$share/alive" # L1's own boot counts against --stall too
# Through pipes: QEMU reopens /proc/self/fd/1 and 2 for L1's output, which truncates them when
# they are files (a CI log redirected to a file would lose everything before the lane).
# --verbose puts L1's kernel console on stderr (virtme-ng sends it to /dev/null otherwise), and
# loglevel=4 keeps it to warnings, errors and panics: an L1 that dies must say why.
# softlockup_panic: an L1 CPU stuck in its kernel ends the lane now (vng adds panic=-1).
(
    PATH=$venv/bin:$PATH timeout -k 30 "$limit" vng --verbose --run "$kernel" --disable-kvm \
        --disable-microvm --cpus "$cpus" --memory "$memory" "${l1_qemu[@]}" \
        --append "loglevel=4 softlockup_panic=1" "${rw[@]}" \
        --exec "bash $share/run.sh" </dev/null 2> >(cat >&2) | cat
    echo "${PIPESTATUS[0]}" >"$share/lane-status"
) &
lane=$!
while kill -0 "$lane" 2>/dev/null; do
    sleep 10
    if (($(date +%s) - $(stat -c %Y "$share/alive") > stall)); then
        log "L1's heartbeat stopped more than $stall s ago: it is wedged"
        touch "$share/stalled"
        # QEMU and vng are the processes whose arguments name this lane's share.
        pkill -TERM -f -- "$share" || true
        break
    fi
done
wait "$lane" || true
lane_status=$(cat "$share/lane-status" 2>/dev/null || echo 125)
log "L1 finished in $((SECONDS - started)) s"
if [[ -e $share/stalled ]]; then
    exit 124
fi
if ((lane_status == 124 || lane_status == 137)); then
    log "stopped after $limit s"
    exit 124
fi
if [[ ! -s $share/status ]]; then
    log "the command left no exit status (L1 did not boot or crashed)"
    exit 125
fi
exit "$(cat "$share/status")"
