#!/bin/sh
# /init of the Linux guest (busybox): report what the guest sees, one fact a line between
# LINUX-GUEST-OK and LINUX-GUEST-DONE, then leave as the kernel command line asks:
# linux.end=poweroff (default), linux.end=reboot, linux.end=shell (a shell on the console), or
# linux.end=wait (stay up until the ACPI power button is pressed, then power off).
# Optional checks: linux.mount=DEV (mount DEV read-only, print /hello.txt on it) and
# linux.ip=ADDR/PREFIX linux.peer=ADDR (configure eth0, ping the peer).
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

# The value of KEY=... on the kernel command line, or nothing.
arg() {
    for word in $cmdline; do
        case $word in "$1="*) echo "${word#*=}" && return ;; esac
    done
}

# Waits up to 5 s for a sysfs path (devices probe as their modules load).
wait_for() {
    tries=50
    while [ ! -e "$1" ] && [ $tries -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
}

mount_check() {
    dev=$(arg linux.mount)
    [ -n "$dev" ] || return 0
    mkdir -p /mnt
    if mount -t ext4 -o ro "/dev/$dev" /mnt; then
        echo "mount: $dev $(cat /mnt/hello.txt)"
        umount /mnt
    else
        echo "mount: $dev failed"
    fi
}

ping_check() {
    ip=$(arg linux.ip) peer=$(arg linux.peer)
    [ -n "$ip" ] && [ -n "$peer" ] || return 0
    ip link set eth0 up && ip addr add "$ip" dev eth0
    if ping -c 3 -W 5 "$peer" >/dev/null 2>&1; then
        echo "ping: $peer ok"
    else
        echo "ping: $peer failed"
    fi
}

echo "linux: $(uname -r)"
echo "cpus: $(grep -c '^processor' /proc/cpuinfo)"
echo "memory: $(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo) MiB"
echo "cmdline: $cmdline"
# Devices named by the checks below may still be probing: give them a moment to appear.
[ -z "$(arg linux.mount)" ] || wait_for "/sys/class/block/$(arg linux.mount)"
[ -z "$(arg linux.ip)" ] || wait_for /sys/class/net/eth0
echo "block: $(list_dir /sys/block)"
echo "net: $(list_dir /sys/class/net)"
mount_check
ping_check
echo LINUX-GUEST-DONE

case " $cmdline " in
*" linux.end=shell "*)
    # cttyhack gives the shell a controlling terminal, so ^C and job control work.
    setsid cttyhack sh
    poweroff -f
    ;;
*" linux.end=reboot "*) reboot -f ;;
*" linux.end=wait "*)
    # busybox acpid maps the button's KEY_POWER (evdev) to event PWRF and runs
    # /etc/acpi/PWRF/00000080 for it.
    mkdir -p /etc/acpi/PWRF
    printf '#!/bin/sh\necho "power button: powering off"\npoweroff -f\n' >/etc/acpi/PWRF/00000080
    chmod 755 /etc/acpi/PWRF/00000080
    # acpid opens the event devices there are when it starts: wait for the button's.
    tries=100
    until ls /dev/input/event* >/dev/null 2>&1 || [ $tries -eq 0 ]; do
        tries=$((tries - 1))
        sleep 0.1
    done
    acpid -f -c /etc/acpi -l /dev/console &
    acpid_pid=$!
    # Ready only once acpid holds the button's event device: a press before that is lost.
    tries=100
    until ls -l "/proc/$acpid_pid/fd" 2>/dev/null | grep -q /dev/input/event; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || { echo "acpid: no input device open"; break; }
        sleep 0.1
    done
    echo "LINUX-GUEST-WAITING"
    while :; do sleep 3600; done
    ;;
*) poweroff -f ;;
esac
# poweroff/reboot -f do not return; if they fail, stay rather than panic on init's exit.
while :; do sleep 3600; done
