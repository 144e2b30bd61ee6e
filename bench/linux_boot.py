#!/usr/bin/env python3
"""Linux boot benchmark: our vmm vs Debian's QEMU (-M microvm, ACPI) booting the same Debian
kernel (bzImage) and busybox initramfs (resources/linux-guest), interleaved (vmm, qemu, vmm,
qemu, ...) in one process, medians and ratios (ours / QEMU; lower is better for us).

Needs hardware-style KVM (VMX/SVM): on kvm_pvm hosts run it through scripts/hw-kvm.sh, as
bench/run_linux_boot.sh does. For every run, timed from spawn by this harness:
  first byte   the guest's first console byte on the VMM's stdout (under QEMU that is the
               bzImage's real-mode setup code, "Probing EDD", which our VMM's 64-bit entry skips)
  first log    the kernel's first log line ("[    0.000000] Linux version"), comparable for both
  init         the end of the line LINUX-GUEST-OK (the guest's /init runs)
  exit         the VMM process has exited after the guest's `poweroff -f` (ACPI S5)
  peak RSS     of the VMM process, by GNU time (%M): each VMM runs under /usr/bin/time, whose
               wait4 sees only the VMM (ru_maxrss of our own child would include this Python
               process's high-water mark, inherited until exec)
and, from the console, the guest clock ([ seconds ] of the kernel's "Run /init" line).

  ours: vmm run --kernel K --initrd I --cpus N --memory M --no-reboot --cmdline CMDLINE
  qemu: qemu-system-x86_64 -M microvm,acpi=on,rtc=on -enable-kvm -cpu host -smp N -m M -nodefaults
        -no-user-config -nographic -serial stdio -no-reboot -kernel K -initrd I -append CMDLINE

rtc=on: without an RTC, QEMU 7.2's microvm still lets Linux probe the CMOS ports (its FADT does
not say "no CMOS RTC", as ours does), and rtc_cmos then spins in mc146818_avoid_UIP until it
gives up, which in the nested lane costs QEMU ~45 s of guest time (--qemu-machine to change).

Usage: linux_boot.py --vmm PATH --kernel BZIMAGE --initrd CPIO [--vmm-elf VMLINUX] [--runs N] [--cpus 1,2]
                     [--memory 512M] [--cmdline STRING] [--qemu-machine M] [--out DIR]
                     [--vmm-log-level LEVEL]
--trace-exits (root, where the VMs' KVM is: in L1) counts, per boot, KVM's exits by reason,
the exits to userspace, the port I/O by port and the MSR accesses by MSR, with tracefs hist
triggers on the kvm tracepoints (a diagnosis: it slows the boots, don't time with it).
With --out, every run's console and stderr as timelines (each line with the time from spawn
when it was complete, in ms), the raw numbers (results.json, rewritten after every run) and the
table (table.md) are written there.
"""
import argparse
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CMDLINE = "console=ttyS0 panic=-1 linux.end=poweroff"
OK = b"LINUX-GUEST-OK"
DONE = b"LINUX-GUEST-DONE"
FIRST_LOG = re.compile(rb"\[\s*0\.000000\] Linux version")
RUN_INIT = re.compile(rb"\[\s*(\d+\.\d+)\] Run /init as init process")


def peers(args, cpus):
    ours = [args.vmm, "run", "--kernel", args.kernel, "--initrd", args.initrd, "--cpus", str(cpus),
            "--memory", args.memory, "--serial", "stdio", "--no-reboot", "--cmdline", args.cmdline]
    if args.vmm_log_level:
        ours += ["--log-level", args.vmm_log_level]
    qemu = [args.qemu, "-M", args.qemu_machine, "-enable-kvm", "-cpu", "host", "-smp", str(cpus),
            "-m", args.memory, "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-no-reboot", "-kernel", args.kernel, "-initrd", args.initrd, "-append", args.cmdline]
    boots = {"vmm": ours, "qemu": qemu}
    if args.vmm_elf:
        pvh = list(ours)
        pvh[pvh.index("--kernel") + 1] = args.vmm_elf
        boots["vmm-pvh"] = pvh
    return boots


def timed_boot(argv, timeout, trace=None):
    """Runs argv under GNU time; returns a dict of times (ms from spawn), RSS, status and the
    timestamped stdout/stderr chunks."""
    with tempfile.NamedTemporaryFile(prefix="linux-boot-rss-", mode="r") as rss_file:
        if trace:
            trace.start()
        start = time.perf_counter_ns()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "maxrss_kib=%M", "-o", rss_file.name] + argv,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        ms = lambda t: (t - start) / 1e6
        streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
        chunks = {"out": [], "err": []}
        console = b""
        first = first_log = ok = done = None
        deadline = time.monotonic() + timeout
        while streams:
            ready, _, _ = select.select(list(streams), [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"timeout after {timeout} s: {' '.join(argv)}\n"
                                   f"console tail: {console[-800:].decode(errors='replace')}")
            now = time.perf_counter_ns()
            for fd in ready:
                data = os.read(fd, 65536)
                if not data:
                    del streams[fd]
                    continue
                name = streams[fd]
                chunks[name].append((ms(now), data))
                if name != "out":
                    continue
                if first is None:
                    first = now
                console += data
                if first_log is None and FIRST_LOG.search(console):
                    first_log = now
                # The end of the marker's line: the guest has run /init's echo.
                if ok is None and re.search(OK + rb"\r?\n", console):
                    ok = now
                if done is None and DONE in console:
                    done = now
        _, status, _ = os.wait4(proc.pid, 0)
        end = time.perf_counter_ns()
        exits = trace.stop() if trace else None
        m = re.search(r"maxrss_kib=(\d+)", rss_file.read())
    m_init = RUN_INIT.search(console)
    return {
        "first_ms": ms(first) if first else None,
        "first_log_ms": ms(first_log) if first_log else None,
        "init_ms": ms(ok) if ok else None,
        "done_ms": ms(done) if done else None,
        "exit_ms": ms(end),
        "rss_mib": int(m.group(1)) / 1024 if m else None,
        "guest_run_init_s": float(m_init.group(1)) if m_init else None,
        "status": os.waitstatus_to_exitcode(status),
        "console": console,
        "chunks": chunks,
        "exits": exits,
    }


# AMD SVM exit codes (the lane's L1 is AMD), as the kvm_exit tracepoint reports them.
SVM_EXITS = {0x00: "read_cr0", 0x03: "read_cr3", 0x04: "read_cr4", 0x08: "read_cr8", 0x10: "write_cr0",
             0x13: "write_cr3", 0x14: "write_cr4", 0x18: "write_cr8", 0x41: "excp_db", 0x43: "excp_bp",
             0x46: "excp_ud", 0x4e: "excp_pf", 0x60: "intr", 0x61: "nmi", 0x63: "init", 0x64: "vintr",
             0x6e: "rdtsc", 0x6f: "rdpmc", 0x72: "cpuid", 0x74: "iret", 0x77: "pause", 0x78: "hlt",
             0x79: "invlpg", 0x7b: "ioio", 0x7c: "msr", 0x7f: "shutdown", 0x81: "vmmcall", 0x87: "rdtscp",
             0x89: "wbinvd", 0x8a: "monitor", 0x8b: "mwait", 0x8d: "xsetbv", 0x8f: "efer_write_trap",
             0x400: "npf", 0x401: "avic_incomplete_ipi", 0x402: "avic_unaccelerated_access"}
KVM_EXITS = {2: "io", 3: "hypercall", 5: "hlt", 6: "mmio", 7: "irq_window_open", 8: "shutdown",
             10: "intr", 17: "internal_error", 24: "system_event"}
TRACES = (("kvm_exit", "exit_reason"), ("kvm_userspace_exit", "reason"), ("kvm_pio", "port"),
          ("kvm_msr", "ecx"))


class ExitTrace:
    """Counts kvm tracepoint hits by one field with hist triggers, around one boot."""

    def __init__(self):
        self.root = next((d for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
                          if os.path.exists(os.path.join(d, "events"))), None)
        if self.root is None:
            subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
            self.root = "/sys/kernel/tracing"

    def _trigger(self, event, text):
        with open(os.path.join(self.root, "events", "kvm", event, "trigger"), "w") as f:
            f.write(text)

    def start(self):
        for event, key in TRACES:
            self._trigger(event, f"hist:keys={key}:sort=hitcount.descending:size=4096")

    def stop(self):
        counts = {}
        for event, key in TRACES:
            with open(os.path.join(self.root, "events", "kvm", event, "hist")) as f:
                text = f.read()
            self._trigger(event, f"!hist:keys={key}:sort=hitcount.descending:size=4096")
            counts[event] = {int(k): int(n) for k, n in
                             re.findall(r"\{ \w+:\s+(\d+)\s*\} hitcount:\s+(\d+)", text)}
        return counts


def exit_summary(counts, top=8):
    """One line per event: the total and the commonest keys."""
    names = {"kvm_exit": SVM_EXITS, "kvm_userspace_exit": KVM_EXITS}
    lines = []
    for event, by_key in counts.items():
        total = sum(by_key.values())
        fmt = lambda k: names[event].get(k, hex(k)) if event in names else hex(k)
        common = ", ".join(f"{fmt(k)} {n}" for k, n in sorted(by_key.items(), key=lambda kv: -kv[1])[:top])
        lines.append(f"{event}: {total} ({common})")
    return lines


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def save_run(out, label, r):
    """Writes each stream as a timeline: every line prefixed with the time (ms from spawn) of
    the chunk that completed it."""
    for name, suffix in (("out", "console"), ("err", "stderr")):
        with open(os.path.join(out, f"{label}.{suffix}.txt"), "w") as f:
            pending = b""
            for t, data in r["chunks"][name]:
                pending += data
                *done, pending = pending.split(b"\n")
                for line in done:
                    text = line.rstrip(b"\r").decode(errors="replace")
                    f.write(f"{t:10.1f} {text}\n")
            if pending:
                f.write(f"{'end':>10} {pending.decode(errors='replace')}\n")


def warm_caches(args):
    """Reads what the boots read, once: in the lane, the host's root reaches L1 through 9p, and a
    first exec of QEMU (its libraries, firmware) or of our VMM is seconds slower than the next."""
    for argv in ([args.vmm, "--version"], [args.qemu, "-version"]):
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paths = [args.kernel, args.initrd]
    for root in ("/usr/share/qemu", "/usr/lib/ipxe/qemu", "/usr/share/seabios", "/usr/share/qboot"):
        for dirpath, _, names in os.walk(root, followlinks=False):
            paths += [os.path.join(dirpath, n) for n in names]
    for path in paths:
        try:
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass
        except OSError:
            pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmm", required=True)
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpus", default="1", help="vCPU counts, comma-separated (e.g. 1,2)")
    p.add_argument("--memory", default="512M")
    p.add_argument("--cmdline", default=CMDLINE)
    p.add_argument("--qemu-machine", default="microvm,acpi=on,rtc=on", help="QEMU's -M")
    p.add_argument("--timeout", type=float, default=900, help="seconds per boot")
    p.add_argument("--vmm-log-level", help="our VMM's --log-level (its stderr is saved with --out)")
    p.add_argument("--trace-exits", action="store_true", help="count KVM exits per boot (tracefs; slows boots)")
    p.add_argument("--out", help="directory for logs, results.json and table.md")
    p.add_argument("--vmm-elf", help="also boot our VMM on this ELF (the vmlinux inside --kernel) through its "
                                     "PVH note: the boot without the guest's decompressor (peer vmm-pvh)")
    args = p.parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)

    cpu_counts = [int(c) for c in args.cpus.split(",")]
    metrics = ("first_ms", "first_log_ms", "init_ms", "exit_ms", "rss_mib", "guest_run_init_s")
    results = {}
    started = time.monotonic()
    trace = ExitTrace() if args.trace_exits else None
    warm_caches(args)
    exit_lines = []
    for cpus in cpu_counts:
        results[cpus] = {name: {m: [] for m in metrics} for name in peers(args, cpus)}
    # Interleaved: every round boots each peer once for each vCPU count.
    for run in range(args.runs):
        for cpus in cpu_counts:
            for name, argv in peers(args, cpus).items():
                r = timed_boot(argv, args.timeout, trace)
                label = f"{name}-{cpus}cpu-run{run + 1}"
                if args.out:
                    save_run(args.out, label, r)
                if r["exits"]:
                    exit_lines += [f"{label}:"] + [f"  {line}" for line in exit_summary(r["exits"])]
                    if args.out:
                        with open(os.path.join(args.out, f"{label}.exits.json"), "w") as f:
                            json.dump(r["exits"], f, indent=1)
                if r["status"] != 0 or r["init_ms"] is None or r["done_ms"] is None:
                    raise RuntimeError(f"{label}: exit {r['status']}, console tail "
                                       f"{r['console'][-1500:].decode(errors='replace')}")
                for m in metrics:
                    results[cpus][name][m].append(r[m])
                if args.out:
                    with open(os.path.join(args.out, "results.json"), "w") as f:
                        json.dump({"args": vars(args), "results": results}, f, indent=1)
                f = lambda v, fmt=".0f": "-" if v is None else format(v, fmt)
                print(f"{label}: first {f(r['first_ms'])} ms, log {f(r['first_log_ms'])} ms, "
                      f"init {f(r['init_ms'])} ms, exit {f(r['exit_ms'])} ms, RSS {f(r['rss_mib'], '.1f')} MiB, "
                      f"guest Run /init at {f(r['guest_run_init_s'], '.3f')} s "
                      f"({time.monotonic() - started:.0f} s elapsed)",
                      file=sys.stderr, flush=True)

    pvh = bool(args.vmm_elf)

    def row(metric, unit, key, fmt, by_peer):
        med = {name: median(values[key]) for name, values in by_peer.items()}
        cells = [f"{med['vmm']:{fmt}} {unit}"] + ([f"{med['vmm-pvh']:{fmt}} {unit}"] if pvh else [])
        cells.append(f"{med['qemu']:{fmt}} {unit}")
        ratio = lambda name: f"{med[name] / med['qemu']:.3f}" if med["qemu"] else "nan"
        cells += [ratio("vmm")] + ([ratio("vmm-pvh")] if pvh else [])
        return f"| {metric} | " + " | ".join(cells) + " |"

    lines = [f"Runs: {args.runs} per VMM and vCPU count, interleaved; medians. Memory {args.memory}, "
             f"command line `{args.cmdline}`; QEMU `-M {args.qemu_machine}`."
             + (f" vmm-pvh: our VMM on {args.vmm_elf} (PVH entry)." if pvh else ""), ""]
    header = (["vmm"] + (["vmm-pvh"] if pvh else []) + ["QEMU microvm", "ratio vmm/QEMU"]
              + (["ratio vmm-pvh/QEMU"] if pvh else []))
    for cpus in cpu_counts:
        by_peer = results[cpus]
        lines += [f"{cpus} vCPU{'s' if cpus > 1 else ''}:", "",
                  "| metric | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
        lines.append(row("start -> first console byte", "ms", "first_ms", ".0f", by_peer))
        lines.append(row("start -> kernel's first log line", "ms", "first_log_ms", ".0f", by_peer))
        lines.append(row("start -> LINUX-GUEST-OK (init)", "ms", "init_ms", ".0f", by_peer))
        lines.append(row("start -> exit after poweroff", "ms", "exit_ms", ".0f", by_peer))
        lines.append(row("peak RSS", "MiB", "rss_mib", ".1f", by_peer))
        lines.append(row("guest clock at `Run /init`", "s", "guest_run_init_s", ".3f", by_peer))
        spread = ", ".join(f"{name} {min(v['init_ms']):.0f}-{max(v['init_ms']):.0f} ms"
                           for name, v in by_peer.items())
        lines += ["", f"Init, range over runs: {spread}.", ""]
    if exit_lines:
        lines += ["KVM exits per boot (tracefs hist triggers; traced boots, times inflated):", "",
                  "```"] + exit_lines + ["```", ""]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(os.path.join(args.out, "table.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
