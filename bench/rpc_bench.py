#!/usr/bin/python3
"""RPC benchmark: libvirt-python dom.info() against our VMM's management socket and Debian's
libvirtd (test:///default driver) on a private unix socket, side by side.

For 1, 4, 16 and 64 client threads (each with its own connection), every thread calls
dom.info() in a loop for --seconds; we report calls/s and p50/p99 latency per server, and
the ratios. Then the guest's CPL3 loop rate (TICK lines/s of the test guest's ticker) with
the management socket idle and with 64 threads hammering it.

Usage (as root, from the repository; bench/run_rpc.sh sets it up):
  rpc_bench.py --vmm target/release/vmm [--seconds 2]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import libvirt


def quiet(*_):
    pass


libvirt.registerErrorHandler(quiet, None)


def hammer(uri, name, threads, seconds):
    """Runs `threads` clients for `seconds`; returns (calls/s, p50 us, p99 us)."""
    latencies = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def client(i):
        conn = libvirt.open(uri)
        dom = conn.lookupByName(name)
        dom.info()
        start.wait()
        mine = latencies[i]
        now = time.perf_counter
        while True:
            t0 = now()
            dom.info()
            t1 = now()
            mine.append(t1 - t0)
            if t1 >= stop_at[0]:
                break
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait()
    begin = time.perf_counter()
    stop_at[0] = begin + seconds
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - begin
    every = sorted(l for per in latencies for l in per)
    calls = len(every)
    pick = lambda q: every[min(len(every) - 1, int(q * len(every)))] * 1e6
    return calls / elapsed, pick(0.50), pick(0.99)


def wait_for(path, timeout=20):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.05)


def start_libvirtd(workdir):
    run = os.path.join(workdir, "lv-run")
    drivers = os.path.join(workdir, "lv-drivers")  # empty: only the built-in test driver
    os.makedirs(run)
    os.makedirs(drivers)
    conf = os.path.join(workdir, "libvirtd.conf")
    with open(conf, "w") as f:
        f.write(f'listen_tls = 0\nlisten_tcp = 0\nunix_sock_dir = "{run}"\n'
                'unix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n')
    env = dict(os.environ, LIBVIRT_DRIVER_DIR=drivers)
    proc = subprocess.Popen(["/usr/sbin/libvirtd", "-f", conf, "-p", os.path.join(workdir, "libvirtd.pid")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = os.path.join(run, "libvirt-sock")
    wait_for(sock)
    return proc, f"test+unix:///default?socket={sock}", "test"


def start_vmm(vmm, workdir):
    sock = os.path.join(workdir, "vmm.sock")
    console = os.path.join(workdir, "console.log")
    proc = subprocess.Popen([vmm, "run", "--name", "bench", "--memory", "128M", "--serial", f"file={console}",
                             "--cmdline", "quiet test=ticker ticker.count=100000000", "--mgmt-socket", sock],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(sock)
    return proc, f"qemu+unix:///system?socket={sock}", "bench", console


def ticks(console):
    with open(console, errors="replace") as f:
        return f.read().count("TICK")


def tick_rate(console, seconds):
    t0, n0 = time.time(), ticks(console)
    time.sleep(seconds)
    return (ticks(console) - n0) / (time.time() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vmm", required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="rpc-bench-")
    procs = []
    try:
        vmm_proc, vmm_uri, vmm_name, console = start_vmm(args.vmm, workdir)
        procs.append(vmm_proc)
        lv_proc, lv_uri, lv_name = start_libvirtd(workdir)
        procs.append(lv_proc)
        time.sleep(0.5)

        # The test guest cannot idle on PVM hosts (no HLT from CPL3), so its vCPU would take one
        # of the two cores from the server; libvirtd's test domain costs nothing. Suspend it for
        # the throughput runs (dom.info() is served the same way).
        control = libvirt.open(vmm_uri)
        control.lookupByName(vmm_name).suspend()
        print(f"dom.info() from libvirt-python, {args.seconds:.0f} s per run, one connection per thread; "
              "servers interleaved per thread count; our guest suspended during these runs.\n")
        print("| threads | vmm calls/s | libvirtd calls/s | ratio | vmm p50 / p99 (us) | libvirtd p50 / p99 (us) |")
        print("|---|---|---|---|---|---|")
        for n in (1, 4, 16, 64):
            ours = hammer(vmm_uri, vmm_name, n, args.seconds)
            theirs = hammer(lv_uri, lv_name, n, args.seconds)
            print(f"| {n} | {ours[0]:.0f} | {theirs[0]:.0f} | {ours[0] / theirs[0]:.2f}x | "
                  f"{ours[1]:.0f} / {ours[2]:.0f} | {theirs[1]:.0f} / {theirs[2]:.0f} |", flush=True)

        control.lookupByName(vmm_name).resume()
        control.close()
        idle = tick_rate(console, 4)
        loaded = [0.0]
        t = threading.Thread(target=lambda: loaded.__setitem__(0, hammer(vmm_uri, vmm_name, 64, 4.5)[0]))
        t.start()
        time.sleep(0.25)
        busy = tick_rate(console, 4)
        t.join()
        print(f"\nGuest CPL3 loop (ticker, TICK lines/s): idle socket {idle:.2f}/s, with 64 clients "
              f"hammering dom.info() ({loaded[0]:.0f} calls/s) {busy:.2f}/s: "
              f"{(1 - busy / idle) * 100:.1f}% slower.")
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
