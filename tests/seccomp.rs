//! The per-thread seccomp filters on a real VM: every thread of a running VMM is confined
//! (`Seccomp: 2` in its status), the vCPU threads a `virsh create` starts later too, a call
//! outside a vCPU thread's list kills the process with SIGSYS, and `--seccomp=off` confines
//! nothing. The rest of the suite runs with the filters on (the default), which is what
//! shows the lists are complete.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::VmmRun;

/// The kernel's own tasks in a process: kernel threads and user workers (KVM adds one,
/// `kvm-nx-lpage-recovery`). They never make a system call from user space, so no filter
/// applies to them.
const PF_USER_WORKER: u64 = 0x4000;
const PF_KTHREAD: u64 = 0x20_0000;

fn is_kernel_task(task: &std::path::Path) -> bool {
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    let flags = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().nth(6))
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    flags & (PF_USER_WORKER | PF_KTHREAD) != 0
}

/// (thread name, seccomp mode) of every thread of `pid` but the kernel's.
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    let mut modes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = entry.unwrap().path();
        if is_kernel_task(&task) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        modes.push((field("Name:"), field("Seccomp:")));
    }
    modes.sort();
    modes
}

fn assert_all_confined(pid: u32, want_threads: &[&str]) {
    let modes = seccomp_modes(pid);
    for want in want_threads {
        assert!(
            modes.iter().any(|(name, _)| name.starts_with(want)),
            "no {want} thread in {modes:?}"
        );
    }
    assert!(
        modes.iter().all(|(_, mode)| mode == "2"),
        "a thread is not confined: {modes:?}"
    );
}

fn disk(dir: &common::TempDir) -> String {
    let path = dir.path("disk.img");
    let mut image = b"VMM-DISKsec0".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&path, image).unwrap();
    format!("path={},id=sec0", path.display())
}

#[test]
fn every_thread_of_a_running_vm_is_confined() {
    if !common::kvm_available("every_thread_of_a_running_vm_is_confined") {
        return;
    }
    let dir = common::TempDir::new("seccomp");
    let socket = dir.path("vmm.sock");
    let socket_text = socket.display().to_string();
    let disk = disk(&dir);
    let mut vm = VmmRun::start(
        "seccomp-run",
        &[
            "--cpus",
            "2",
            "--memory",
            "64M",
            "--disk",
            &disk,
            "--rng",
            "--mgmt-socket",
            &socket_text,
            "--cmdline",
            "test=cpus,blk,rng",
        ],
    );
    vm.wait_for_serial("TEST rng PASS", 1);
    // A call, so the management workers have run too.
    let uri = format!("qemu+unix:///system?socket={socket_text}");
    if std::path::Path::new("/usr/bin/virsh").exists() {
        let out = Command::new("virsh")
            .args(["-c", &uri, "list"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    assert_all_confined(
        vm.child.id(),
        &[
            "vmm",
            "vcpu0",
            "vcpu1",
            "virtio-blk-io",
            "mgmt-loop",
            "mgmt-worker",
        ],
    );
    assert!(vm.child.try_wait().unwrap().is_none(), "the VMM died");
    vm.signal(libc::SIGTERM);
}

#[test]
fn a_call_outside_the_vcpu_list_kills_the_vmm_with_sigsys() {
    if !common::kvm_available("a_call_outside_the_vcpu_list_kills_the_vmm_with_sigsys") {
        return;
    }
    let mut child = Command::new(common::VMM)
        .args(["run", "--serial", "none", "--memory", "64M"])
        .env("VMM_SECCOMP_TEST_FORBIDDEN_CALL", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = common::wait_timeout(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        panic!(
            "the VMM kept running: {}",
            common::kill_and_reap(&mut child)
        )
    });
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");

    // The same hook under --seccomp=log is only logged, and the guest runs to its end.
    let status = Command::new(common::VMM)
        .args([
            "run",
            "--serial",
            "none",
            "--memory",
            "64M",
            "--seccomp",
            "log",
        ])
        .args(["--cmdline", "end=exit test=cpus"])
        .env("VMM_SECCOMP_TEST_FORBIDDEN_CALL", "1")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn seccomp_off_confines_nothing() {
    if !common::kvm_available("seccomp_off_confines_nothing") {
        return;
    }
    let mut vm = VmmRun::start("seccomp-off", &["--memory", "64M", "--seccomp", "off"]);
    vm.wait_for_serial("vmm-test-guest ready", 1);
    let modes = seccomp_modes(vm.child.id());
    assert!(modes.iter().all(|(_, mode)| mode == "0"), "{modes:?}");
    vm.signal(libc::SIGTERM);
}

#[test]
fn vcpus_a_client_starts_later_are_confined_too() {
    let test = "vcpus_a_client_starts_later_are_confined_too";
    if !common::managed::clients_available(test) {
        return;
    }
    let dir = common::TempDir::new("seccomp-serve");
    let socket = dir.path("serve.sock");
    let mut served = common::spawn_serve(&socket, &[], Stdio::inherit());
    let serial = dir.path("serial.log");
    let xml = dir.path("d.xml");
    std::fs::write(
        &xml,
        format!(
            "<domain type='kvm'><name>sec</name><memory unit='MiB'>64</memory><vcpu>2</vcpu>
  <os><type>hvm</type><cmdline>test=cpus,blk</cmdline></os><features><acpi/></features>
  <devices><disk type='file' device='disk'><source file='{}'/><target dev='vda'/>
  <serial>sec0</serial></disk>
  <serial type='file'><source path='{}'/></serial></devices></domain>",
            dir.path("disk.img").display(),
            serial.display()
        ),
    )
    .unwrap();
    disk(&dir);
    let uri = format!("qemu+unix:///system?socket={}", socket.display());
    let virsh = |args: &[&str]| {
        let out = Command::new("virsh")
            .args(["-c", &uri])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "virsh {args:?}: {out:?}");
    };
    for _ in 0..2 {
        let _ = std::fs::remove_file(&serial);
        virsh(&["create", &xml.display().to_string()]);
        let deadline = std::time::Instant::now() + common::BOOT_TIMEOUT;
        while !common::read_lossy(&serial).contains("TEST blk PASS") {
            assert!(
                std::time::Instant::now() < deadline,
                "{}",
                common::read_lossy(&serial)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_all_confined(served.id(), &["vmm", "vcpu0", "vcpu1", "virtio-blk-io"]);
        virsh(&["destroy", "sec"]);
    }
    assert!(served.try_wait().unwrap().is_none(), "the VMM died");
    common::kill_and_reap(&mut served);
}
