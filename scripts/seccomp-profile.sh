#!/usr/bin/env bash
# Lists the system calls (and ioctl requests) each kind of VMM thread makes, as the seccomp
# allow-lists in vmm/src/seccomp/lists.rs need them: runs the given test binaries (built
# already, e.g. `cargo test --no-run`) with target/<profile>/vmm wrapped in strace, then
# groups every thread's calls by the thread's name.
#   scripts/seccomp-profile.sh target/debug/deps/boot-* target/debug/deps/management-* ...
# Run the VMM with --seccomp=off meanwhile? No need: the wrapper adds it, so a call missing
# from today's lists is seen, not fatal.
set -euo pipefail
(($#)) || { echo "usage: $0 TEST-BINARY..." >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
traces=$(mktemp -d /tmp/seccomp-profile.XXXXXX)
for vmm in "$root"/target/{debug,release}/vmm; do
    [[ -x $vmm && ! -e $vmm.real ]] || continue
    mv "$vmm" "$vmm.real"
    cat > "$vmm" <<WRAP
#!/bin/sh
# Written by scripts/seccomp-profile.sh; the real binary is vmm.real.
case "\$1" in run|serve) cmd=\$1; shift; set -- "\$cmd" --seccomp=off "\$@";; esac
# strace attaches to this shell and follows it into the VMM, so the tests' signals reach
# the VMM itself (a VMM under strace would see strace detach on SIGTERM and run on).
strace -f -qq -e raw=ioctl -o "$traces/trace.\$\$" -p \$\$ 2>/dev/null &
until grep -q '^TracerPid:[[:space:]]*[1-9]' /proc/\$\$/status; do sleep 0.01; done
exec "$vmm.real" "\$@"
WRAP
    chmod +x "$vmm"
done
restore() {
    for vmm in "$root"/target/{debug,release}/vmm; do
        [[ -e $vmm.real ]] && mv -f "$vmm.real" "$vmm"
    done
    return 0
}
trap restore EXIT
for test in "$@"; do
    echo "seccomp-profile: $test" >&2
    CI=true "$test" --test-threads 1 >/dev/null 2>&1 || echo "seccomp-profile: $test failed (traced runs are slow)" >&2
done
python3 "$root/scripts/seccomp-profile.py" "$traces"/trace.*
