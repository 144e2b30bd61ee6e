#!/usr/bin/python3
"""RPC benchmark: libvirt-python dom.info() against our VMM's management socket and Debian's
libvirtd (test:///default driver) on a private unix socket, side by side.

For 1, 4, 16 and 64 client threads (each with its own connection), every thread calls
dom.info() in a loop for --seconds; we report calls/s and p50/p99 latency per server, and
the ratios, and each server's CPU time per call: utime + stime from /proc before and after
the run, divided by the calls (ours: its management threads mgmt-loop, mgmt-worker and
mgmt-prio-worker, and the whole process; libvirtd: the whole process). Our guest is
suspended for these runs, so its vCPU adds nothing. Then the guest's CPL3 loop rate (TICK
lines/s of the test guest's ticker) with the management socket idle and with 64 threads
hammering it.

Usage (as root, from the repository; bench/run_rpc.sh sets it up):
  rpc_bench.py --vmm target/release/vmm [--seconds 2] [--threads 1,4,16,64]
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


# Our VMM's management threads (thread names are cut to 15 bytes: "mgmt-prio-worke").
MGMT_THREAD_PREFIX = "mgmt-"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def stat_cpu(text):
    """utime + stime, in seconds, from a /proc/.../stat line (fields 14 and 15; the name in
    parentheses may hold spaces, so count from its closing one)."""
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def cpu_seconds(pid):
    """(management threads, whole process) CPU seconds of `pid` so far. The whole process
    counts threads that have exited too; the management figure counts live mgmt-* threads
    (the server never ends its workers while it runs)."""
    with open(f"/proc/{pid}/stat") as f:
        whole = stat_cpu(f.read())
    mgmt = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        if text[text.index("(") + 1:].startswith(MGMT_THREAD_PREFIX):
            mgmt += stat_cpu(text)
    return mgmt, whole


def hammer(uri, name, threads, seconds, pid=None):
    """Runs `threads` clients for `seconds`; returns (calls/s, p50 us, p99 us, CPU us per call
    of the server `pid` as (management threads, whole process), or None without a pid)."""
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
    start.wait()  # every client is connected: from here on the server sees only dom.info()
    cpu_before = cpu_seconds(pid) if pid else None
    begin = time.perf_counter()
    stop_at[0] = begin + seconds
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - begin
    cpu_after = cpu_seconds(pid) if pid else None
    every = sorted(l for per in latencies for l in per)
    calls = len(every)
    pick = lambda q: every[min(len(every) - 1, int(q * len(every)))] * 1e6
    cpu = None
    if pid:
        cpu = tuple((after - before) / calls * 1e6 for before, after in zip(cpu_before, cpu_after))
    return calls / elapsed, pick(0.50), pick(0.99), cpu


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
    p.add_argument("--threads", default="1,4,16,64", help="client thread counts, comma-separated")
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
              "servers interleaved per thread count; our guest suspended during these runs. "
              "CPU: the server's utime + stime per call (vmm: management threads / whole process).\n")
        print("| threads | vmm calls/s | libvirtd calls/s | ratio | vmm p50 / p99 (us) | libvirtd p50 / p99 (us) "
              "| vmm CPU us/call (mgmt / process) | libvirtd CPU us/call |")
        print("|---|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.threads.split(",")):
            ours = hammer(vmm_uri, vmm_name, n, args.seconds, vmm_proc.pid)
            theirs = hammer(lv_uri, lv_name, n, args.seconds, lv_proc.pid)
            print(f"| {n} | {ours[0]:.0f} | {theirs[0]:.0f} | {ours[0] / theirs[0]:.2f}x | "
                  f"{ours[1]:.0f} / {ours[2]:.0f} | {theirs[1]:.0f} / {theirs[2]:.0f} | "
                  f"{ours[3][0]:.1f} / {ours[3][1]:.1f} | {theirs[3][1]:.1f} |", flush=True)

        control.lookupByName(vmm_name).resume()
        control.close()
        idle = tick_rate(console, 4)
        loaded = [(0.0, 0.0, 0.0, (0.0, 0.0))]
        t = threading.Thread(target=lambda: loaded.__setitem__(0, hammer(vmm_uri, vmm_name, 64, 4.5, vmm_proc.pid)))
        t.start()
        time.sleep(0.25)
        busy = tick_rate(console, 4)
        t.join()
        print(f"\nGuest CPL3 loop (ticker, TICK lines/s): idle socket {idle:.2f}/s, with 64 clients "
              f"hammering dom.info() ({loaded[0][0]:.0f} calls/s, management threads "
              f"{loaded[0][3][0]:.1f} us CPU per call) {busy:.2f}/s: {(1 - busy / idle) * 100:.1f}% slower.")
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
