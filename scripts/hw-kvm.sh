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
# Usage: scripts/hw-kvm.sh [--cpus N] [--memory SIZE] [--timeout SECONDS] [--rwdir DIR]...
#                         -- CMD [ARG...]
#   CMD runs as root in the current directory, with the caller's CI and RUST_BACKTRACE.
#   /tmp inside L1 is its own RAM; --rwdir DIR (repeatable) shares DIR read-write, e.g. to
#   carry results back. One L1 boot (~50 s here) serves the whole CMD: give it a script that
#   runs many tests. After --timeout (default 1800 s) L1 is stopped and the status is 124.
#
# Installs what it needs on first use: qemu-system-x86 and linux-image-amd64 (apt), virtme-ng
# (pip, in a venv at $VMM_LANE_VENV, default /opt/vmm-lane). Pinned for repeatable runs: the
# QEMU of Debian bookworm (7.2), its CPU model "max", and virtme-ng $VNG_VERSION.
set -euo pipefail

VNG_VERSION=1.42
venv=${VMM_LANE_VENV:-/opt/vmm-lane}
cpus=2
memory=8G
limit=1800
rwdirs=()
while (($#)); do
    case $1 in
    --cpus) cpus=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --rwdir) rwdirs+=("$2"); shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
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

install_lane() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
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
}

install_lane
kernel=$(compgen -G '/boot/vmlinuz-*-amd64' | sort -V | tail -n 1)
# Results come back through a shared directory: the command's exit status, at least.
share=$(mktemp -d /tmp/hw-kvm.XXXXXX)
trap 'rm -rf "$share"' EXIT
{
    echo "set -u"
    echo "modprobe kvm_amd && modprobe tun || { echo 'hw-kvm: no kvm_amd in L1' >&2; echo 125 >$(printf %q "$share")/status; exit; }"
    printf 'export CI=%q RUST_BACKTRACE=%q\n' "${CI:-}" "${RUST_BACKTRACE:-}"
    printf 'cd %q\n' "$PWD"
    printf '%q ' "$@"
    echo
    echo "echo \$? >$(printf %q "$share")/status"
} >"$share/run.sh"

rw=(--rwdir "$share")
for dir in "${rwdirs[@]}"; do rw+=(--rwdir "$dir"); done
log "booting L1 ($(basename "$kernel"), QEMU TCG -cpu max, $cpus CPUs, $memory) to run: $*"
started=$SECONDS
lane_status=0
# Through pipes: QEMU reopens /proc/self/fd/1 and 2 for L1's output, which truncates them when
# they are files (a CI log redirected to a file would lose everything before the lane).
# --verbose puts L1's kernel console on stderr (virtme-ng sends it to /dev/null otherwise), and
# loglevel=4 keeps it to warnings, errors and panics: an L1 that dies must say why.
PATH=$venv/bin:$PATH timeout -k 30 "$limit" vng --verbose --run "$kernel" --disable-kvm \
    --disable-microvm --cpus "$cpus" --memory "$memory" --qemu-opts="-cpu max" \
    --append "loglevel=4" "${rw[@]}" \
    --exec "bash $share/run.sh" </dev/null 2> >(cat >&2) | cat || lane_status=$?
log "L1 finished in $((SECONDS - started)) s"
if ((lane_status == 124 || lane_status == 137)); then
    log "stopped after $limit s"
    exit 124
fi
if [[ ! -s $share/status ]]; then
    log "the command left no exit status (L1 did not boot or crashed)"
    exit 125
fi
exit "$(cat "$share/status")"
