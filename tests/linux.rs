//! Boots a real Linux guest (Debian's kernel + a busybox initramfs, resources/linux-guest).
//!
//! Runs only where KVM uses hardware virtualization (VMX/SVM). On a PVM host (kvm_pvm) a stock
//! kernel's CPL0 code is emulated instruction by instruction and does not boot usefully under
//! any VMM (see resources/linux-guest/README.md), so the test says so and skips; CI runs it
//! in the nested lane (scripts/hw-kvm.sh), where kvm_amd runs under QEMU's TCG. Set
//! VMM_LINUX_TESTS=1 to run it anyway.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::managed::{clients_available, python_available, run_python, Managed, NAME};
use common::{kvm_available, report_value, NetNs, TempDir, VmmRun};

/// Why Linux boot tests cannot run on this host, if they cannot.
fn skip_reason() -> Option<String> {
    if std::env::var_os("VMM_LINUX_TESTS").is_some() {
        return None;
    }
    if common::hardware_kvm() {
        return None;
    }
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    Some(if pvm {
        "KVM here is kvm_pvm (no VMX/SVM): a stock Linux kernel does not boot usefully under PVM; \
         run this test binary through scripts/hw-kvm.sh (the nested lane, as CI does), or set \
         VMM_LINUX_TESTS=1 to try anyway"
            .into()
    } else {
        "no hardware virtualization (vmx/svm) on this host".into()
    })
}

/// `--kernel K --initrd I` for the guest, if `test` can run here (it says why not otherwise).
fn linux_guest_for(test: &str) -> Option<Vec<String>> {
    if let Some(reason) = skip_reason() {
        eprintln!("{test}: skipped: {reason}");
        return None;
    }
    if !kvm_available(test) {
        return None;
    }
    let (kernel, initrd) = linux_guest();
    Some(vec![
        "--kernel".into(),
        kernel.display().to_string(),
        "--initrd".into(),
        initrd.display().to_string(),
    ])
}

/// The guest's flags followed by `more`, as `VmmRun` takes them.
fn with_guest<'a>(guest: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    guest
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// Builds the guest with the recipe if it is not there yet.
fn linux_guest() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../resources/linux-guest");
    let out = root.join("out");
    let (kernel, initrd) = (out.join("vmlinuz"), out.join("initramfs.cpio.gz"));
    if !kernel.exists() || !initrd.exists() {
        let status = Command::new("bash")
            .arg(root.join("build.sh"))
            .arg(&out)
            .status()
            .expect("run build.sh");
        assert!(status.success(), "resources/linux-guest/build.sh failed");
    }
    (kernel, initrd)
}

/// Generous: under nested KVM (the lane: QEMU TCG, then KVM inside it) a boot takes 40-80 s
/// and a whole run up to 160 s.
const LINUX_TIMEOUT: Duration = Duration::from_secs(600);

/// A 16 MiB ext4 image holding hello.txt with `text`.
fn ext4_disk(dir: &TempDir, text: &str) -> PathBuf {
    let stage = dir.path("stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("hello.txt"), text).unwrap();
    let image = dir.path("disk.img");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&stage)
        .arg(&image)
        .arg("16M")
        .status()
        .expect("run mkfs.ext4 (apt-get install e2fsprogs)");
    assert!(status.success(), "mkfs.ext4 failed");
    image
}

/// Debian's stock kernel with ACPI only (no virtio on the command line): it finds the disk
/// and the NIC through the DSDT, brings up both vCPUs from the MADT, mounts the disk, pings
/// the host through the tap, and its `poweroff` (ACPI S5) ends the VMM.
#[test]
fn debian_kernel_uses_acpi_devices_and_powers_off() {
    let Some(guest) = linux_guest_for("debian_kernel_uses_acpi_devices_and_powers_off") else {
        return;
    };
    let dir = TempDir::new("linux-disk");
    let disk = ext4_disk(&dir, "VMM-LINUX-DISK");
    let disk_arg = format!("path={},readonly=on", disk.display());
    let Some(ns) = NetNs::new("linux") else {
        return;
    };
    let run = VmmRun::start_in(
        &ns,
        "linux",
        &with_guest(
            &guest,
            &[
                "--cpus",
                "2",
                "--memory",
                "512M",
                "--disk",
                &disk_arg,
                "--net",
                "tap=tap0",
                "--log-level",
                "info",
                "--cmdline",
                "console=ttyS0 panic=-1 linux.mount=vda linux.ip=10.0.2.15/24 linux.peer=10.0.2.1",
            ],
        ),
    );
    let r = run.finish_within(LINUX_TIMEOUT);
    r.assert_success();
    r.assert_console_has(&["LINUX-GUEST-OK", "LINUX-GUEST-DONE"]);
    r.assert_report("cpus:", "2");
    let cmdline = report_value(&r.serial, "cmdline:").unwrap_or("");
    assert!(!cmdline.contains("virtio_mmio"), "ACPI only: {cmdline}");
    assert!(report_value(&r.serial, "block:")
        .unwrap_or("")
        .contains("vda"));
    assert!(report_value(&r.serial, "net:")
        .unwrap_or("")
        .contains("eth0"));
    r.assert_report("mount:", "vda VMM-LINUX-DISK");
    r.assert_report("ping:", "10.0.2.1 ok");
    assert!(
        r.stderr.contains("guest powered off through ACPI S5"),
        "stderr:\n{}",
        r.stderr
    );
}

/// `reboot` through the FADT's reset register, turned into an exit by --no-reboot.
#[test]
fn debian_kernel_boots_to_init_and_reboots_out() {
    let Some(guest) = linux_guest_for("debian_kernel_boots_to_init_and_reboots_out") else {
        return;
    };
    let r = VmmRun::start(
        "linux",
        &with_guest(
            &guest,
            &[
                "--cpus",
                "1",
                "--memory",
                "512M",
                "--no-reboot",
                "--log-level",
                "info",
                "--cmdline",
                "console=ttyS0 reboot=acpi panic=-1 linux.end=reboot",
            ],
        ),
    )
    .finish_within(LINUX_TIMEOUT);
    r.assert_success();
    r.assert_console_has(&["LINUX-GUEST-OK", "LINUX-GUEST-DONE", "memory: "]);
    r.assert_report("cpus:", "1");
    assert!(
        r.stderr
            .contains("guest reset through the ACPI reset register"),
        "stderr:\n{}",
        r.stderr
    );
}

/// The ELF inside Debian's bzImage (the recipe's out/vmlinux), entered through its PVH note as
/// Firecracker and Cloud Hypervisor boot Linux: no decompressor, no setup header, the command
/// line, initrd, memory map and RSDP handed over in hvm_start_info. `--boot pvh` refuses a
/// kernel without the note, so this is the PVH path, not the 64-bit one.
#[test]
fn debian_vmlinux_boots_through_its_pvh_note() {
    let Some(guest) = linux_guest_for("debian_vmlinux_boots_through_its_pvh_note") else {
        return;
    };
    let vmlinux = PathBuf::from(&guest[1]).with_file_name("vmlinux");
    assert!(
        vmlinux.exists(),
        "{}: resources/linux-guest/build.sh extracts it when xz is installed (xz-utils)",
        vmlinux.display()
    );
    let dir = TempDir::new("linux-pvh");
    let disk = ext4_disk(&dir, "VMM-LINUX-PVH");
    let disk_arg = format!("path={},readonly=on", disk.display());
    let vmlinux = vmlinux.display().to_string();
    let r = VmmRun::start(
        "linux",
        &[
            "--kernel",
            &vmlinux,
            "--boot",
            "pvh",
            &guest[2],
            &guest[3],
            "--cpus",
            "2",
            "--memory",
            "512M",
            "--disk",
            &disk_arg,
            "--cmdline",
            "console=ttyS0 panic=-1 linux.mount=vda",
        ],
    )
    .finish_within(LINUX_TIMEOUT);
    r.assert_success();
    r.assert_console_has(&["LINUX-GUEST-OK", "LINUX-GUEST-DONE"]);
    r.assert_report("cpus:", "2");
    r.assert_report("mount:", "vda VMM-LINUX-PVH");
    // The memory map reached Linux through hvm_start_info (without one it stops in
    // init_pvh_bootparams): nearly all of the 512 MiB is there.
    let mib: u64 = report_value(&r.serial, "memory:")
        .and_then(|m| m.trim_end_matches(" MiB").parse().ok())
        .unwrap_or(0);
    assert!(mib > 400, "memory: {mib} MiB\nconsole:\n{}", r.serial);
}

/// A guest that stays up (`linux.end=wait`) powers off through S5 when the ACPI power button
/// is pressed (`--on-sigterm powerdown`): the GED's interrupt reaches Linux's acpi-ged, the
/// button driver reports KEY_POWER, and acpid runs poweroff.
#[test]
fn debian_kernel_powers_off_on_the_power_button() {
    let Some(guest) = linux_guest_for("debian_kernel_powers_off_on_the_power_button") else {
        return;
    };
    let mut run = VmmRun::start(
        "linux-button",
        &with_guest(
            &guest,
            &[
                "--cpus",
                "4",
                "--memory",
                "512M",
                "--on-sigterm",
                "powerdown",
                "--log-level",
                "info",
                "--cmdline",
                "console=ttyS0 panic=-1 linux.end=wait",
            ],
        ),
    );
    run.wait_for_serial_within("LINUX-GUEST-WAITING", LINUX_TIMEOUT);
    let console = run.serial_text();
    assert!(
        !console.contains("acpid: no input device open"),
        "nothing would hear the button:\n{console}"
    );
    assert_eq!(
        report_value(&console, "cpus:"),
        Some("4"),
        "console:\n{}",
        console
    );
    run.signal(libc::SIGTERM);
    let r = run.finish_within(LINUX_TIMEOUT);
    r.assert_success();
    r.assert_console_has(&["power button: powering off"]);
    assert!(
        r.stderr.contains("guest powered off through ACPI S5"),
        "stderr:\n{}",
        r.stderr
    );
}

/// A guest that stays up, with an ext4 disk and a NIC, reporting both on every boot.
const MANAGED_CMDLINE: &str = "console=ttyS0 panic=-1 linux.end=wait linux.mount=vda \
     linux.ip=10.0.2.15/24 linux.peer=10.0.2.1";

/// A managed Linux guest (2 vCPUs, 512 MiB, a writable ext4 disk, a tap in `ns`).
fn managed_linux(tag: &str, guest: &[String], disk: &str, ns: &NetNs) -> Managed {
    let args = with_guest(
        guest,
        &[
            "--cpus",
            "2",
            "--memory",
            "512M",
            "--disk",
            disk,
            "--net",
            "tap=tap0",
            "--cmdline",
            MANAGED_CMDLINE,
        ],
    );
    Managed::spawn(tag, &args, &["ip", "netns", "exec", &ns.name]).with_patience(LINUX_TIMEOUT)
}

/// The `boot`-th boot is up: it read its disk and pinged the host, and acpid holds the
/// power button.
fn assert_boot_works(vm: &Managed, boot: usize) {
    vm.wait_for_console("LINUX-GUEST-WAITING", boot);
    eprintln!("boot {boot} is up");
    let console = vm.console();
    for line in ["mount: vda VMM-LINUX-DISK", "ping: 10.0.2.1 ok"] {
        assert_eq!(
            console.matches(line).count(),
            boot,
            "boot {boot}: want {line:?} once per boot; console:\n{console}"
        );
    }
    assert!(
        !console.contains("acpid: no input device open"),
        "nothing would hear the button:\n{console}"
    );
}

/// Waits until the domain runs again (after a reboot its state reason may be either).
fn wait_until_running(vm: &Managed) {
    let deadline = std::time::Instant::now() + LINUX_TIMEOUT;
    while vm.virsh(&["domstate", NAME]).trim() != "running" {
        assert!(std::time::Instant::now() < deadline, "never running again");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The disk, NIC and guest set-up the managed tests share, or None if they cannot run here.
fn managed_setup(test: &str) -> Option<(Vec<String>, TempDir, String, NetNs)> {
    let guest = linux_guest_for(test)?;
    if !clients_available(test) {
        return None;
    }
    let dir = TempDir::new("linux-managed-disk");
    let disk = ext4_disk(&dir, "VMM-LINUX-DISK");
    let ns = NetNs::new("linuxmgmt")?;
    Some((guest, dir, format!("path={}", disk.display()), ns))
}

/// virsh through a Linux guest's whole lifecycle: suspend/resume, reboot (power button, S5,
/// reset), reset, destroy and start, shutdown. After each restart the new boot reads its disk
/// and reaches the host through its NIC again: every device was reset with the machine, so
/// nothing of the old boot's queues survives into the new one.
#[test]
fn virsh_manages_a_linux_guest() {
    let Some((guest, _dir, disk, ns)) = managed_setup("virsh_manages_a_linux_guest") else {
        return;
    };
    let vm = managed_linux("linux-virsh", &guest, &disk, &ns);
    assert_boot_works(&vm, 1);
    vm.virsh(&["suspend", NAME]);
    vm.wait_for_state("paused (user)");
    vm.virsh(&["resume", NAME]);
    vm.wait_for_state("running (unpaused)");

    vm.virsh(&["reboot", NAME]);
    assert_boot_works(&vm, 2);
    wait_until_running(&vm);

    vm.virsh(&["reset", NAME]);
    assert_boot_works(&vm, 3);

    vm.virsh(&["destroy", NAME]);
    vm.wait_for_state("shut off (destroyed)");
    vm.virsh(&["start", NAME]);
    assert_boot_works(&vm, 4);

    vm.virsh(&["shutdown", NAME]);
    vm.wait_for_state("shut off (shutdown)");
    let console = vm.console();
    assert_eq!(
        console.matches("power button: powering off").count(),
        2,
        "the reboot and the shutdown each press the button once:\n{console}"
    );
}

/// The same lifecycle through libvirt-python's virDomain calls.
#[test]
fn libvirt_python_manages_a_linux_guest() {
    let test = "libvirt_python_manages_a_linux_guest";
    let Some((guest, _dir, disk, ns)) = managed_setup(test) else {
        return;
    };
    if !python_available(test) {
        return;
    }
    let vm = managed_linux("linux-python", &guest, &disk, &ns);
    let uri = Managed::uri(&vm.socket);
    let call = |code: &str| {
        eprintln!("libvirt-python: {code}");
        let script = format!(
            "import libvirt\n\
             c = libvirt.open('{uri}')\n\
             d = c.lookupByName('{NAME}')\n\
             {code}\n\
             print('PYTHON-STEP-OK')\n"
        );
        run_python(&script, "PYTHON-STEP-OK");
    };
    assert_boot_works(&vm, 1);
    call("d.suspend()\nassert d.state()[0] == libvirt.VIR_DOMAIN_PAUSED, d.state()");
    call("d.resume()\nassert d.state()[0] == libvirt.VIR_DOMAIN_RUNNING, d.state()");
    call("d.reboot(0)");
    assert_boot_works(&vm, 2);
    wait_until_running(&vm);
    call("d.reset(0)");
    assert_boot_works(&vm, 3);
    call("d.destroy()\nassert d.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED], d.state()");
    call("d.create()\nassert d.isActive() == 1");
    assert_boot_works(&vm, 4);
    call("d.shutdown()");
    vm.wait_for_state("shut off (shutdown)");
}
