#!/bin/sh
# /init of the Linux guest (busybox): report what the guest sees, one fact a line between
# LINUX-GUEST-OK and LINUX-GUEST-DONE, then leave as the kernel command line asks:
# linux.end=poweroff (default), linux.end=reboot, or linux.end=shell (a shell on the console).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel could not give us one: take it now.
exec </dev/console >/dev/console 2>&1

echo LINUX-GUEST-OK

# Modules listed in dependency order by build.sh; a failure is reported, not fatal.
for module in $(cat /lib/modules/load-order 2>/dev/null); do
    insmod "/lib/modules/$module" || echo "module: $module not loaded"
done

# Prints the entries of a directory on one line, or "none".
list_dir() {
    set -- $(ls "$1" 2>/dev/null)
    if [ $# -eq 0 ]; then echo none; else echo "$*"; fi
}

cmdline=$(cat /proc/cmdline)
echo "linux: $(uname -r)"
echo "cpus: $(grep -c '^processor' /proc/cpuinfo)"
echo "memory: $(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) MiB"
echo "cmdline: $cmdline"
echo "block: $(list_dir /sys/block)"
echo "net: $(list_dir /sys/class/net)"
echo LINUX-GUEST-DONE

case " $cmdline " in
*" linux.end=shell "*)
    # cttyhack gives the shell a controlling terminal, so ^C and job control work.
    setsid cttyhack sh
    poweroff -f
    ;;
*" linux.end=reboot "*) reboot -f ;;
*) poweroff -f ;;
esac
# poweroff/reboot -f do not return; if they fail, stay rather than panic on init's exit.
while :; do sleep 3600; done
