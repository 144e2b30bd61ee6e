#!/usr/bin/python3
"""virtio I/O benchmarks: our vmm vs Debian's QEMU (-M microvm, virtio-mmio, no vhost) booting
the same test guest, interleaved, medians and ratios (ours / QEMU; higher is better for us).

  disk: a 256 MiB raw file; the guest reads it sequentially in 64 KiB requests and randomly
        in 4 KiB requests, one request in flight, polling at CPL3 (test=blk-bench)
  net:  the guest sends 64-byte frames out a tap, one in flight (test=net-bench); the tap
        lives in a network namespace of the benchmark's own

Usage (root): io_bench.py --vmm PATH --guest ELF [--runs N]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

QEMU = ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-enable-kvm", "-cpu", "host", "-m", "256M",
        "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
        "-global", "virtio-mmio.force-legacy=false", "-device", "isa-debug-exit,iobase=0x501,iosize=2"]


def tsc_hz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    return float("nan")


def run(argv, pattern):
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=300).stdout.decode(errors="replace")
    m = re.search(pattern, out)
    if not m:
        raise RuntimeError(f"{' '.join(argv[:3])}...: no result in {out[-500:]!r}")
    return [int(g) for g in m.groups()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmm", required=True)
    p.add_argument("--guest", required=True)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    hz = tsc_hz()
    work = tempfile.mkdtemp(prefix="io-bench-")
    disk = os.path.join(work, "disk.img")
    with open(disk, "wb") as f:
        f.write(b"VMM-DISKbench")
        f.truncate(256 << 20)
    ns = f"vmmbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["tuntap", "add", "tap0", "mode", "tap"], ["link", "set", "tap0", "up"]):
            subprocess.run(["ip", "netns", "exec", ns, "ip"] + cmd, check=True)
        blk_cmd = "end=exit quiet test=blk-bench bench.seq=1024 bench.rand=4096"
        net_cmd = "end=exit quiet test=net-bench bench.frames=10000"
        blk_re = r"seq64k_n=(\d+) seq64k_tsc=(\d+) rand4k_n=(\d+) rand4k_tsc=(\d+)"
        net_re = r"net-bench PASS frames=(\d+) tsc=(\d+)"
        peers = {
            "vmm": {
                "blk": [args.vmm, "run", "--kernel", args.guest, "--memory", "256M", "--serial", "stdio",
                        "--disk", f"path={disk}", "--cmdline", blk_cmd],
                "net": ["ip", "netns", "exec", ns, args.vmm, "run", "--kernel", args.guest, "--memory", "256M",
                        "--serial", "stdio", "--net", "tap=tap0", "--cmdline", net_cmd],
            },
            "qemu": {
                "blk": QEMU + ["-kernel", args.guest, "-append", blk_cmd, "-drive",
                               f"id=d0,file={disk},format=raw,if=none,aio=threads", "-device", "virtio-blk-device,drive=d0"],
                "net": ["ip", "netns", "exec", ns] + QEMU + ["-kernel", args.guest, "-append", net_cmd, "-netdev",
                        "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off", "-device", "virtio-net-device,netdev=n0"],
            },
        }
        results = {name: {"seq": [], "rand": [], "net": []} for name in peers}
        for _ in range(args.runs):
            for name, cmds in peers.items():
                seq_n, seq_t, rand_n, rand_t = run(cmds["blk"], blk_re)
                results[name]["seq"].append(seq_n * 65536 / (seq_t / hz) / 1e6)
                results[name]["rand"].append(rand_n / (rand_t / hz))
                frames, t = run(cmds["net"], net_re)
                results[name]["net"].append(frames / (t / hz))
        med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
        print(f"Medians of {args.runs} interleaved runs; guest-side timing (TSC), one request in flight.\n")
        print("| metric | vmm | QEMU microvm | ratio vmm/QEMU |")
        print("|---|---|---|---|")
        for key, label, unit in (("seq", "sequential 64 KiB reads", "MB/s"), ("rand", "random 4 KiB reads", "IOPS"),
                                 ("net", "64-byte frames out the tap", "frames/s")):
            ours, theirs = med["vmm"][key], med["qemu"][key]
            print(f"| {label} | {ours:.0f} {unit} | {theirs:.0f} {unit} | {ours / theirs:.2f}x |")
    finally:
        subprocess.run(["ip", "netns", "del", ns])
        os.remove(disk)
        os.rmdir(work)


if __name__ == "__main__":
    sys.exit(main())
