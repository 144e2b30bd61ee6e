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
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(common::VMM)
            .args(["serve", "--mgmt-socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
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
