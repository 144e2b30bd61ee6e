#!/bin/sh
# /init of the Linux test guest: print facts about the machine, then leave as asked
# (linux.end=poweroff (default), reboot or shell on the kernel command line).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo LINUX-GUEST-OK
for m in $(cat /lib/modules/load-order 2>/dev/null); do
    insmod "/lib/modules/$m" 2>/dev/null || echo "module $m: not loaded"
done
echo "linux: $(uname -r)"
echo "cpus: $(grep -c ^processor /proc/cpuinfo)"
echo "memory: $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MiB"
echo "cmdline: $(cat /proc/cmdline)"
echo "block: $(ls /sys/block 2>/dev/null | tr '\n' ' ')"
echo "net: $(ls /sys/class/net 2>/dev/null | tr '\n' ' ')"
echo LINUX-GUEST-DONE
case " $(cat /proc/cmdline) " in
    *" linux.end=shell "*) exec /bin/sh ;;
    *" linux.end=reboot "*) reboot -f ;;
    *) poweroff -f ;;
esac
sleep 1000000
