#!/usr/bin/env python3
"""Side-by-side VM benchmarks: our vmm vs Debian's QEMU (microvm) and a bare KVM_RUN loop.

Every measurement runs the peers interleaved (A, B, A, B, ...) in one process so that both see
the same machine state, and reports medians and ratios (ours / peer).

  start -> first guest serial byte, start -> exit, peak RSS (256 MiB guest, 1 vCPU)
      ours: vmm run --kernel GUEST --memory 256M --cmdline "end=exit quiet"
      qemu: qemu-system-x86_64 -M microvm -enable-kvm ... -kernel GUEST (PVH entry)
  PIO exit round trip (guest CPL3 loop of N `out` to a no-op port, guest TSC ticks per exit)
      ours vs bare_kvm_loop (vmm/examples/bare_kvm_loop.rs)

Usage: vm_bench.py --vmm PATH --guest ELF --bare PATH [--runs N] [--pio-count N]
"""
import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import time


def timed_run(argv, timeout=30.0):
    """Runs argv; returns (ms to first stdout byte, ms to exit, ru_maxrss KiB, exit code, output)."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    fd = proc.stdout.fileno()
    first = None
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            proc.kill()
            raise RuntimeError(f"timeout: {' '.join(argv)}")
        data = os.read(fd, 65536)
        if not data:
            break
        if first is None:
            first = time.perf_counter_ns()
        chunks.append(data)
    _, status, rusage = os.wait4(proc.pid, 0)
    end = time.perf_counter_ns()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = b"".join(chunks).decode(errors="replace")
    first_ms = (first - start) / 1e6 if first else float("nan")
    return first_ms, (end - start) / 1e6, rusage.ru_maxrss, proc.returncode, out


def peak_rss_kib(argv, timeout=30.0):
    """Peak RSS of argv, measured by GNU time. (ru_maxrss of our own child would include this
    Python process's high-water mark: a forked or vforked child inherits it until exec.)"""
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M"] + argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    m = re.search(r"maxrss_kib=(\d+)", proc.stderr.decode(errors="replace"))
    if not m:
        raise RuntimeError(f"no RSS from /usr/bin/time for {' '.join(argv)}")
    return int(m.group(1))


def median(values):
    return statistics.median(values) if values else float("nan")


def boot_bench(args):
    cmdline = "end=exit quiet"
    peers = {
        "vmm": [args.vmm, "run", "--kernel", args.guest, "--memory", "256M", "--cpus", "1",
                "--serial", "stdio", "--cmdline", cmdline],
        "qemu": ["qemu-system-x86_64", "-M", "microvm", "-enable-kvm", "-cpu", "host",
                 "-m", "256M", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
                 "-serial", "stdio", "-no-reboot", "-kernel", args.guest, "-append", cmdline,
                 "-device", "isa-debug-exit,iobase=0x501,iosize=2"],
    }
    expected_rc = {"vmm": 0, "qemu": 1}  # isa-debug-exit: (0 << 1) | 1
    results = {name: {"first": [], "exit": [], "rss": []} for name in peers}
    for _ in range(args.runs):
        for name, argv in peers.items():
            first, total, _, rc, out = timed_run(argv)
            if rc != expected_rc[name] or "vmm-test-guest" not in out:
                raise RuntimeError(f"{name}: exit {rc}, output {out!r}")
            results[name]["first"].append(first)
            results[name]["exit"].append(total)
            results[name]["rss"].append(peak_rss_kib(argv) / 1024)
    return results


def pio_bench(args):
    cmdline = f"end=exit quiet test=pio-bench pio.count={args.pio_count}"
    peers = {
        "vmm": [args.vmm, "run", "--kernel", args.guest, "--memory", "128M",
                "--serial", "stdio", "--cmdline", cmdline],
        "bare": [args.bare, args.guest, cmdline],
    }
    pattern = re.compile(r"TEST pio-bench PASS n=(\d+) tsc=(\d+)")
    ticks = {name: [] for name in peers}
    for _ in range(args.runs):
        for name, argv in peers.items():
            _, _, _, rc, out = timed_run(argv, timeout=120)
            m = pattern.search(out)
            if rc != 0 or not m:
                raise RuntimeError(f"{name}: exit {rc}, output {out!r}")
            ticks[name].append(int(m.group(2)) / int(m.group(1)))
    return ticks


def tsc_khz():
    """Host TSC frequency from the kernel's log-free sources (MHz in /proc/cpuinfo as fallback)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/tsc_freq_khz") as f:
            return float(f.read())
    except OSError:
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1000
    return float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmm", required=True)
    p.add_argument("--guest", required=True)
    p.add_argument("--bare", required=True)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--pio-count", type=int, default=100000)
    args = p.parse_args()

    boot = boot_bench(args)
    pio = pio_bench(args)
    khz = tsc_khz()

    def row(metric, unit, ours, peer, peer_name):
        ratio = ours / peer if peer else float("nan")
        return f"| {metric} | {ours:.2f} {unit} | {peer:.2f} {unit} ({peer_name}) | {ratio:.3f} |"

    print(f"Runs: {args.runs} interleaved per peer; medians. Host TSC {khz / 1000:.0f} MHz.\n")
    print("| metric | vmm | peer | ratio vmm/peer |")
    print("|---|---|---|---|")
    v, q = boot["vmm"], boot["qemu"]
    print(row("start -> first serial byte", "ms", median(v["first"]), median(q["first"]), "QEMU microvm"))
    print(row("start -> exit", "ms", median(v["exit"]), median(q["exit"]), "QEMU microvm"))
    print(row("peak RSS, 256 MiB guest", "MiB", median(v["rss"]), median(q["rss"]), "QEMU microvm"))
    us = lambda t: t / khz * 1000
    print(row("PIO exit round trip (CPL3 out)", "us", us(median(pio["vmm"])), us(median(pio["bare"])), "bare KVM_RUN loop"))
    print(f"\nPIO: {args.pio_count} exits per run; guest TSC ticks per exit: vmm {median(pio['vmm']):.0f}, "
          f"bare {median(pio['bare']):.0f}")


if __name__ == "__main__":
    sys.exit(main())
