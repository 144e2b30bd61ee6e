#!/usr/bin/python3
"""Records real client traffic as seed corpora for the RPC fuzz targets.

Starts `vmm serve`, puts a recording proxy in front of its socket, and drives it with virsh
and libvirt-python: lifecycle, queries, statistics, events, storage pools, refusals. What
each client sends becomes
  CORPUS/rpc_frames/<sha1>    the whole stream (first byte: the harness's piece size)
  CORPUS/remote_args/<sha1>   each frame without its length word (header and arguments)
  CORPUS/domain_xml/<sha1>    every domain and pool document sent or received

usage: fuzz-record-rpc.py VMM_BINARY CORPUS_DIR
"""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import libvirt

VMM, CORPUS = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="vmm-record-")
real = os.path.join(work, "real.sock")
proxy = os.path.join(work, "proxy.sock")
uri = f"qemu+unix:///system?socket={proxy}"
streams = []


def save(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def pump(src, dst, record):
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        if record is not None:
            record.extend(data)
        dst.sendall(data)


def serve_proxy(listener):
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(real)
        sent = bytearray()
        streams.append(sent)
        threading.Thread(target=pump, args=(client, upstream, sent), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, None), daemon=True).start()


def virsh(*args, check=False):
    r = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise SystemExit(f"virsh {' '.join(args)}: {r.stderr}")
    return r.stdout


def domain_xml(name, end):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64'>hvm</type><cmdline>end={end} test=cpus,blk</cmdline></os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_reboot>restart</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <source file='{disk}'/><target dev='vda' bus='virtio'/><serial>rec0</serial>
    </disk>
    <disk type='file' device='disk'>
      <source file='{disk}'/><target dev='vdb' bus='virtio'/><readonly/>
    </disk>
    <serial type='file'><source path='{work}/serial.log'/><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>"""


disk = os.path.join(work, "disk.img")
with open(disk, "wb") as f:
    f.truncate(1 << 20)
os.makedirs(os.path.join(work, "pool"))

server = subprocess.Popen([VMM, "serve", "--mgmt-socket", real], stdin=subprocess.DEVNULL)
deadline = time.time() + 10
while not os.path.exists(real):
    if time.time() > deadline:
        raise SystemExit("vmm serve made no socket")
    time.sleep(0.05)
listener = socket.socket(socket.AF_UNIX)
listener.bind(proxy)
listener.listen(16)
threading.Thread(target=serve_proxy, args=(listener,), daemon=True).start()

try:
    xml_path = os.path.join(work, "web.xml")
    with open(xml_path, "w") as f:
        f.write(domain_xml("web", "wait"))
    save("domain_xml", domain_xml("web", "wait").encode())

    # virsh, as an operator uses it.
    virsh("version")
    virsh("capabilities")
    virsh("domcapabilities")
    virsh("nodeinfo")
    virsh("define", xml_path, check=True)
    virsh("list", "--all")
    virsh("start", "web", check=True)
    time.sleep(2)
    for cmd in [("dominfo", "web"), ("domstate", "--reason", "web"), ("domid", "web"),
                ("domuuid", "web"), ("vcpuinfo", "web"), ("vcpupin", "web"),
                ("vcpucount", "web"), ("domblklist", "web"), ("domblkstat", "web", "vda"),
                ("domblkinfo", "web", "vda"), ("domiflist", "web"), ("domstats", "web"),
                ("domstats", "--raw"), ("dommemstat", "web"), ("schedinfo", "web"),
                ("emulatorpin", "web"), ("nodecpustats",), ("nodememstats",),
                ("freecell", "--all"), ("hostname",), ("sysinfo",), ("uri",)]:
        virsh(*cmd)
    save("domain_xml", virsh("dumpxml", "web").encode())
    save("domain_xml", virsh("dumpxml", "--inactive", "web").encode())
    virsh("vcpupin", "web", "0", "0")
    virsh("suspend", "web")
    virsh("resume", "web")
    virsh("event", "--all", "--timeout", "1")
    virsh("reboot", "web")
    virsh("reset", "web")
    virsh("setmem", "web", "32M")  # refused
    virsh("shutdown", "web")
    virsh("destroy", "web")
    virsh("autostart", "web")
    virsh("undefine", "web")
    virsh("pool-define-as", "p", "dir", "--target", os.path.join(work, "pool"))
    virsh("pool-start", "p")
    virsh("pool-autostart", "p")
    virsh("pool-list", "--all", "--details")
    virsh("pool-info", "p")
    virsh("vol-list", "p")
    save("domain_xml", virsh("pool-dumpxml", "p").encode())
    virsh("pool-destroy", "p")
    virsh("pool-undefine", "p")
    virsh("-r", "list")

    # libvirt-python, as fleet tools and monitoring agents use it.
    libvirt.registerErrorHandler(lambda *_: None, None)
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                     daemon=True).start()
    conn = libvirt.open(uri)
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                lambda *a: None, None)
    conn.getCapabilities()
    conn.getInfo()
    conn.getLibVersion()
    conn.getMaxVcpus(None)
    conn.getFreeMemory()
    conn.getCellsFreeMemory(0, 1)
    dom = conn.createXML(domain_xml("py", "wait"), 0)
    time.sleep(2)
    dom.info()
    dom.state()
    dom.XMLDesc(0)
    dom.vcpus()
    dom.blockStats("vda")
    dom.memoryStats()
    dom.getCPUStats(True)
    conn.getAllDomainStats()
    conn.listAllDomains()
    conn.lookupByName("py").UUIDString()
    conn.lookupByUUIDString(dom.UUIDString())
    dom.suspend()
    dom.resume()
    for call in (lambda: conn.lookupByName("nope"), lambda: conn.defineXML("<domain"),
                 lambda: dom.setMemory(1024)):
        try:
            call()
        except libvirt.libvirtError:
            pass
    dom.destroy()
    conn.close()
finally:
    server.terminate()
    server.wait(timeout=30)

for sent in streams:
    data = bytes(sent)
    if not data:
        continue
    save("rpc_frames", b"\xff" + data)
    calls = bytearray()
    at = 0
    while at + 4 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        save("remote_args", data[at + 4:at + length])
        # remote_calls: the session's calls (procedure, argument length, arguments).
        program, _, procedure, kind = struct.unpack(">IIiI", data[at + 4:at + 20])
        if program == 0x20008086 and kind == 0 and procedure != 1:
            args = data[at + 28:at + length]
            calls += struct.pack(">HH", procedure, len(args)) + args
        at += length
    if calls:
        save("remote_calls", bytes(calls))
print(f"recorded {len(streams)} client streams into {CORPUS}")
