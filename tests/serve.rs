//! `vmm serve` driven by real virsh: create/destroy of a transient domain, define/start/
//! destroy/undefine of a persistent one, the state directory across a SIGKILL, `virsh edit`,
//! and the refusals (a second domain, `<graphics>`, malformed and oversized XML) with the
//! server still answering.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Served {
    child: Child,
    socket: PathBuf,
}

impl Served {
    fn start(dir: &common::TempDir, state: &Path) -> Served {
        let socket = dir.path("serve.sock");
        let state_dir = ["--state-dir".as_ref(), state.as_os_str()];
        let child = common::spawn_serve(&socket, &state_dir, Stdio::inherit());
        Served { child, socket }
    }

    /// (ok, stdout, stderr) of one virsh command.
    fn try_virsh(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let uri = format!("qemu+unix:///system?socket={}", self.socket.display());
        let out = Command::new("virsh")
            .args(["-c", &uri])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("virsh runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn virsh(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.try_virsh(args, &[]);
        assert!(ok, "virsh {args:?}: {err}");
        out
    }

    fn refused(&self, args: &[&str], why: &str) {
        let (ok, _, err) = self.try_virsh(args, &[]);
        assert!(!ok && err.contains(why), "virsh {args:?}: {err}");
        self.virsh(&["list", "--all"]);
    }

    fn list(&self) -> String {
        self.virsh(&["list", "--all", "--name"]).trim().to_string()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        common::kill_and_reap(&mut self.child);
    }
}

fn domain_xml(name: &str, memory_mib: u32, disk: &Path, serial: &Path, extra: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64'>hvm</type><cmdline>end=wait test=cpus,blk</cmdline></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <source file='{}'/><target dev='vda' bus='virtio'/><serial>srv0</serial>
    </disk>
    <serial type='file'><source path='{}'/><target port='0'/></serial>
    {extra}
    <memballoon model='none'/>
  </devices>
</domain>",
        disk.display(),
        serial.display()
    )
}

fn wait_for(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + common::BOOT_TIMEOUT;
    loop {
        let text = common::read_lossy(path);
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn virsh_creates_defines_starts_and_undefines_on_vmm_serve() {
    if !common::kvm_available("virsh_creates_defines_starts_and_undefines_on_vmm_serve") {
        return;
    }
    let dir = common::TempDir::new("serve");
    let state = dir.path("state");
    let disk = dir.path("disk.img");
    let mut image = b"VMM-DISKsrv0".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).unwrap();
    let serial = dir.path("serial.log");
    let file = |name: &str, text: String| {
        let path = dir.path(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let web = file("web.xml", domain_xml("web", 96, &disk, &serial, ""));
    let served = Served::start(&dir, &state);
    assert_eq!(served.list(), "");

    // Transient: create boots what the XML says; destroy and it is gone.
    served.virsh(&["create", &web]);
    let report = wait_for(&serial, "TEST blk PASS");
    assert!(
        report.contains("cpus: 2") && report.contains("memory: 96 MiB"),
        "{report}"
    );
    assert_eq!(served.list(), "web");
    assert!(served
        .virsh(&["dominfo", "web"])
        .contains("Persistent:     no"));
    let db = file("db.xml", domain_xml("db", 64, &disk, &serial, ""));
    served.refused(&["create", &db], "this host runs one domain");
    served.virsh(&["destroy", "web"]);
    assert_eq!(served.list(), "");

    // Persistent: define stores it, start boots it, destroy leaves it shut off.
    served.virsh(&["define", &web]);
    assert!(state.join("web.xml").exists());
    served.refused(&["define", &db], "this host runs one domain");
    served.virsh(&["start", "web"]);
    assert!(served.virsh(&["domstate", "web"]).contains("running"));
    // Defining over the running domain changes only what the next start runs.
    let bigger = file("web128.xml", domain_xml("web", 128, &disk, &serial, ""));
    served.virsh(&["define", &bigger]);
    assert!(served
        .virsh(&["dumpxml", "web"])
        .contains("<memory unit='KiB'>98304</memory>"));
    assert!(served
        .virsh(&["dumpxml", "--inactive", "web"])
        .contains("<memory unit='KiB'>131072</memory>"));
    served.refused(&["undefine", "web"], "destroy it first");
    served.virsh(&["destroy", "web"]);
    assert!(served.virsh(&["domstate", "web"]).contains("shut off"));

    // The round trip: what dumpxml prints, define takes back unchanged.
    let printed = served.virsh(&["dumpxml", "--inactive", "web"]);
    let again = file("again.xml", printed.clone());
    served.virsh(&["define", &again]);
    assert_eq!(served.virsh(&["dumpxml", "--inactive", "web"]), printed);

    // virsh edit: dumpxml --inactive, the editor, define.
    let (ok, out, err) =
        served.try_virsh(&["edit", "web"], &[("EDITOR", "sed -i s/131072/65536/g")]);
    assert!(
        ok && out.contains("Domain 'web' XML configuration edited"),
        "{out}{err}"
    );
    assert!(served
        .virsh(&["dumpxml", "--inactive", "web"])
        .contains("<memory unit='KiB'>65536</memory>"));

    // Refusals with clear errors; the server keeps answering.
    let graphics = file(
        "graphics.xml",
        domain_xml("web", 64, &disk, &serial, "<graphics type='vnc'/>"),
    );
    served.refused(&["define", &graphics], "<graphics>");
    let malformed = file("bad.xml", "<domain type='kvm'><name>web".into());
    served.refused(&["define", &malformed], "XML error");
    let huge = domain_xml("web", 64, &disk, &serial, "").replace(
        "<devices>",
        &format!(
            "<description>{}</description><devices>",
            "x".repeat(1 << 21)
        ),
    );
    let huge = file("huge.xml", huge);
    served.refused(&["define", &huge], "at most 1048576");

    // The state dir survives a SIGKILL; a new process lists the domain and starts it.
    let mut served = served;
    common::kill_and_reap(&mut served.child);
    drop(served);
    let served = Served::start(&dir, &state);
    assert_eq!(served.list(), "web");
    assert!(served.virsh(&["domstate", "web"]).contains("shut off"));
    std::fs::write(&serial, "").unwrap();
    served.virsh(&["start", "web"]);
    let report = wait_for(&serial, "TEST blk PASS");
    assert!(report.contains("memory: 64 MiB"), "{report}");
    served.virsh(&["destroy", "web"]);
    served.virsh(&["undefine", "web"]);
    assert_eq!(served.list(), "");
    assert!(!state.join("web.xml").exists());
}

/// libvirt-python against `vmm serve`: createXML/defineXML/create/undefine with the lifecycle
/// events a libvirt client sees for them, the refusals as libvirt error codes, and a process
/// whose memory and file descriptors stay flat over many create/destroy cycles (each run's
/// machine is torn down whole).
#[test]
fn libvirt_python_creates_defines_and_sees_the_events() {
    if !common::managed::python_available("libvirt_python_creates_defines_and_sees_the_events") {
        return;
    }
    let dir = common::TempDir::new("serve-python");
    let served = Served::start(&dir, &dir.path("state"));
    let script = format!(
        r#"
import libvirt as L, os, threading, time
L.registerErrorHandler(lambda *_: None, None)  # the refusals below are expected
L.virEventRegisterDefaultImpl()
threading.Thread(target=lambda: [L.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
events = []
conn = L.open("qemu+unix:///system?socket={socket}")
conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                            lambda c, d, e, det, o: events.append((d.name(), e, det)), None)

def xml(name, mib, end):
    return f"""<domain type='kvm'><name>{{name}}</name><memory unit='MiB'>{{mib}}</memory>
  <vcpu>2</vcpu><os><type>hvm</type><cmdline>end={{end}} test=cpus</cmdline></os>
  <features><acpi/></features>
  <devices><serial type='null'/><memballoon model='none'/></devices></domain>"""

def expect(*want):
    deadline = time.time() + 60
    while events[:len(want)] != list(want) and time.time() < deadline:
        time.sleep(0.02)
    assert events[:len(want)] == list(want), (want, events)
    del events[:len(want)]

def refused(call, code, text):
    try:
        call()
    except L.libvirtError as e:
        assert e.get_error_code() == code and text in str(e), (e.get_error_code(), str(e))
    else:
        raise SystemExit("accepted: " + text)

STARTED = (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
DESTROYED = (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)

# A transient domain: running at once, gone after destroy.
dom = conn.createXML(xml("py", 64, "idle"), 0)
assert (dom.isActive(), dom.isPersistent()) == (1, 0)
state, maxmem, mem, vcpus, _ = dom.info()
assert (state, maxmem, vcpus) == (L.VIR_DOMAIN_RUNNING, 65536, 2), dom.info()
expect(("py",) + STARTED)
refused(lambda: conn.createXML(xml("other", 64, "idle"), 0), L.VIR_ERR_OPERATION_UNSUPPORTED, "one domain")
refused(lambda: conn.defineXML(xml("other", 64, "idle")), L.VIR_ERR_OPERATION_UNSUPPORTED, "one domain")
refused(lambda: conn.createXML("<domain type='kvm'><name>x", 0), L.VIR_ERR_XML_ERROR, "XML error")
dom.destroy()
expect(("py",) + DESTROYED)
assert conn.listAllDomains(0) == []
refused(lambda: conn.lookupByName("py"), L.VIR_ERR_NO_DOMAIN, "py")

# A transient guest that powers itself off is gone too (the events as libvirt's QEMU driver
# sends them: the guest's shutdown finished, then the domain stopped).
conn.createXML(xml("py", 64, "poweroff"), 0)
expect(("py",) + STARTED,
       ("py", L.VIR_DOMAIN_EVENT_SHUTDOWN, L.VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED),
       ("py", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN))
deadline = time.time() + 10
while conn.listAllDomains(0) and time.time() < deadline:
    time.sleep(0.02)
assert conn.listAllDomains(0) == []

# A persistent domain: defined, started, redefined while running, destroyed, undefined.
dom = conn.defineXML(xml("pdom", 64, "idle"))
expect(("pdom", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED))
assert (dom.isActive(), dom.isPersistent()) == (0, 1)
assert [d.name() for d in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_INACTIVE)] == ["pdom"]
dom.create()
expect(("pdom",) + STARTED)
conn.defineXML(xml("pdom", 96, "idle"))
expect(("pdom", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_UPDATED))
assert dom.info()[1] == 65536 and "<memory unit='KiB'>98304</memory>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
refused(dom.undefine, L.VIR_ERR_OPERATION_INVALID, "destroy it first")
dom.destroy()
expect(("pdom",) + DESTROYED)
assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF
dom.create()
expect(("pdom",) + STARTED)
assert dom.info()[1] == 98304, dom.info()
dom.destroy()
expect(("pdom",) + DESTROYED)
dom.undefine()
expect(("pdom", L.VIR_DOMAIN_EVENT_UNDEFINED, L.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED))
assert conn.listAllDomains(0) == []

# Each run's machine (guest RAM, vCPU threads, device fds) goes with it.
def usage():
    with open("/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss, len(os.listdir("/proc/{pid}/fd")), len(os.listdir("/proc/{pid}/task"))

def cycles(n):
    for _ in range(n):
        conn.createXML(xml("cycle", 64, "idle"), 0).destroy()
        expect(("cycle",) + STARTED, ("cycle",) + DESTROYED)

# destroy answers once the domain is shut off; the machine's threads and fds go just after,
# on the main loop. So the figures are read once they have settled.
def steady():
    last = usage()
    while True:
        time.sleep(0.3)
        now = usage()
        if now[1:] == last[1:]:
            return now
        last = now

def back_to(limit):
    deadline = time.time() + 10
    while True:
        now = usage()
        if (now[1] <= limit[1] and now[2] <= limit[2]) or time.time() > deadline:
            return now
        time.sleep(0.05)

cycles(5)
before = steady()
cycles(40)
after = back_to(before)
assert after[0] - before[0] < 4096, ("VmRSS KiB grew", before, after)
assert after[1] <= before[1] and after[2] <= before[2], ("fds or threads stayed", before, after)
print("PYTHON-SERVE-OK", before, after)
"#,
        socket = served.socket.display(),
        pid = served.child.id(),
    );
    common::managed::run_python(&script, "PYTHON-SERVE-OK");
}

/// Unmodified virt-install against `vmm serve`. It finds the disk through a directory storage
/// pool it makes for the disk's directory, reads the capabilities, and sends its domain XML.
/// For a generic OS it asks for an IDE disk and ICH9 USB controllers, which this machine does
/// not have, and the refusal names them; told `bus=virtio` and `--controller usb,model=none`,
/// it creates, defines and boots the VM.
#[test]
fn virt_install_creates_and_boots_a_vm_on_vmm_serve() {
    let test = "virt_install_creates_and_boots_a_vm_on_vmm_serve";
    if !common::kvm_available(test) {
        return;
    }
    if !Path::new("/usr/bin/virt-install").exists() {
        common::skip(
            test,
            "virt-install is not installed (apt-get install virtinst)",
        );
        return;
    }
    let dir = common::TempDir::new("virt-install");
    let served = Served::start(&dir, &dir.path("state"));
    let disk = dir.path("disk.img");
    let mut image = b"VMM-DISKvi0".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).unwrap();
    let kernel = common::test_guest_elf();
    let serial = dir.path("serial.log");
    let uri = format!("qemu+unix:///system?socket={}", served.socket.display());
    let virt_install = |extra: &[String]| {
        let out = Command::new("virt-install")
            .args([
                "--connect",
                &uri,
                "--name",
                "vi",
                "--memory",
                "64",
                "--vcpus",
                "2",
            ])
            .args(["--import", "--osinfo", "detect=on,require=off"])
            .arg(format!(
                "--boot=kernel={},kernel_args=test=cpus,blk",
                kernel.display()
            ))
            .args(["--network", "none", "--graphics", "none", "--noautoconsole"])
            .args(extra)
            .env("HOME", dir.path(""))
            .output()
            .expect("virt-install runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };

    let (ok, text) = virt_install(&[format!("--disk=path={}", disk.display())]);
    assert!(
        !ok && text.contains("bus='ide' of <target> is not supported"),
        "{text}"
    );
    assert_eq!(served.list(), "", "nothing was created");
    // The pool virt-install made for the disk's directory lists the disk.
    let pools = served.virsh(&["pool-list", "--all", "--name"]);
    let pool = pools.trim();
    assert!(!pool.is_empty(), "no pool");
    assert!(served.virsh(&["vol-list", pool]).contains("disk.img"));
    let vol_info = served.virsh(&["vol-info", &disk.display().to_string()]);
    assert!(vol_info.contains("Capacity:       1.00 MiB"), "{vol_info}");
    for (kind, document) in [
        ("storagepool", served.virsh(&["pool-dumpxml", pool])),
        (
            "storagevol",
            served.virsh(&["vol-dumpxml", &disk.display().to_string()]),
        ),
    ] {
        let file = dir.path(&format!("{kind}.xml"));
        std::fs::write(&file, document).unwrap();
        let out = Command::new("virt-xml-validate")
            .arg(&file)
            .arg(kind)
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind}: {out:?}");
    }
    served.refused(
        &["vol-create-as", pool, "new.img", "1M"],
        "not supported by the connection driver: virStorageVolCreateXML",
    );

    let (ok, text) = virt_install(&[
        format!("--disk=path={},bus=virtio,serial=vi0", disk.display()),
        "--controller=usb,model=none".into(),
        format!("--serial=file,path={}", serial.display()),
    ]);
    assert!(ok, "{text}");
    let report = wait_for(&serial, "TEST blk PASS");
    assert!(report.contains("TEST cpus PASS"), "{report}");
    let info = served.virsh(&["dominfo", "vi"]);
    assert!(
        info.contains("running") && info.contains("Persistent:     yes"),
        "{info}"
    );
    served.virsh(&["destroy", "vi"]);
    served.virsh(&["undefine", "vi"]);
    served.virsh(&["pool-destroy", pool]);
    served.virsh(&["pool-undefine", pool]);
    assert_eq!(served.list(), "");
}

/// The socket file and its directory removed under a running server: connected clients keep
/// working, new ones cannot connect, the VMM logs it, and at exit it removes nothing that is
/// not its own (here: a file someone else put at the path).
#[test]
fn removing_the_socket_file_leaves_connected_clients_working() {
    let test = "removing_the_socket_file_leaves_connected_clients_working";
    if !common::managed::python_available(test) {
        return;
    }
    let dir = common::TempDir::new("serve-unlink");
    let sockets = dir.path("sockets");
    std::fs::create_dir_all(&sockets).unwrap();
    let socket = sockets.join("serve.sock");
    let stderr = dir.path("stderr.log");
    let log = std::fs::File::create(&stderr).unwrap();
    let mut served = common::spawn_serve(&socket, &[], log.into());
    let script = format!(
        r#"
import libvirt, os, time
libvirt.registerErrorHandler(lambda *_: None, None)
uri = "qemu+unix:///system?socket={socket}"
conns = [libvirt.open(uri), libvirt.openReadOnly(uri)]
os.unlink("{socket}")
os.rmdir("{sockets}")
for _ in range(3):
    for conn in conns:
        assert conn.listAllDomains(0) == [] and conn.getHostname()
    time.sleep(1)
try:
    libvirt.open(uri)
    raise SystemExit("a new client connected without the socket file")
except libvirt.libvirtError:
    pass
xml = "<domain type='kvm'><name>u</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices><serial type='null'/></devices></domain>"
dom = conns[0].createXML(xml, 0)
assert dom.isActive() == 1
dom.destroy()
print("PYTHON-UNLINK-OK")
"#,
        socket = socket.display(),
        sockets = sockets.display(),
    );
    common::managed::run_python(&script, "PYTHON-UNLINK-OK");
    let log = common::read_lossy(&stderr);
    assert!(
        log.contains("was removed or replaced: connected clients keep working"),
        "{log}"
    );
    // Someone else's file at the path now: the VMM must not remove it when it exits.
    std::fs::create_dir_all(&sockets).unwrap();
    std::fs::write(&socket, "not ours").unwrap();
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(served.id() as i32, libc::SIGTERM) };
    let status = common::wait_timeout(&mut served, Duration::from_secs(10)).expect("it exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not ours");
}
