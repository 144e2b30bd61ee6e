//! Boots the built-in test guest under KVM and checks what it reports.

mod common;

use std::time::{Duration, Instant};

use common::{kvm_available, report_value, run_to_end};

fn assert_clean_pass(tag: &str, result: &common::Finished) {
    result.assert_success();
    result.assert_console_has(&["RESULT PASS"]);
    assert!(
        !result.serial.contains(" FAIL"),
        "{tag}: console:\n{}",
        result.serial
    );
    // A vCPU that asked to end the VM (debug-exit) stops there: it never runs on into the
    // guest's fallbacks (S5, i8042 reset, triple fault), however slowly the loop acts.
    assert!(
        !result.stderr.contains("triple fault"),
        "{tag}: stderr:\n{}",
        result.stderr
    );
    assert!(
        !result.stderr.contains("panicked"),
        "{tag}: stderr:\n{}",
        result.stderr
    );
}

#[test]
fn one_vcpu_reports_the_machine() {
    if !kvm_available("one_vcpu_reports_the_machine") {
        return;
    }
    let r = run_to_end(
        "boot1",
        &[
            "--memory",
            "256M",
            "--cmdline",
            "end=exit test=serial,e820,cpuid,cpus cpus=1",
        ],
    );
    assert_clean_pass("1 vCPU", &r);
    assert_eq!(report_value(&r.serial, "cpus:"), Some("1"));
    assert_eq!(report_value(&r.serial, "memory:"), Some("256 MiB"));
    assert_eq!(report_value(&r.serial, "boot:"), Some("pvh"));
    assert_eq!(
        report_value(&r.serial, "cmdline:"),
        Some("end=exit test=serial,e820,cpuid,cpus cpus=1")
    );
    assert!(r.serial.contains("hypervisor=KVMKVMKVM"), "{}", r.serial);
    // The TSC rate comes from the VMM (KVM_GET_TSC_KHZ in CPUID 0x40000010), not a guess.
    let tsc = report_value(&r.serial, "tsc:").unwrap_or("");
    assert!(tsc.ends_with("kHz (cpuid 0x40000010)"), "tsc: {tsc}");
}

#[test]
fn two_vcpus_are_in_the_mp_table() {
    if !kvm_available("two_vcpus_are_in_the_mp_table") {
        return;
    }
    let r = run_to_end(
        "boot2",
        &["--cpus", "2", "--cmdline", "end=exit test=cpus cpus=2"],
    );
    assert_clean_pass("2 vCPUs", &r);
    assert_eq!(report_value(&r.serial, "cpus:"), Some("2"));
}

#[test]
fn linux64_entry_boots_the_same_guest() {
    if !kvm_available("linux64_entry_boots_the_same_guest") {
        return;
    }
    let r = run_to_end(
        "linux64",
        &[
            "--boot",
            "linux64",
            "--memory",
            "128M",
            "--cmdline",
            "end=exit test=e820",
        ],
    );
    assert_clean_pass("linux64", &r);
    assert_eq!(report_value(&r.serial, "boot:"), Some("linux64"));
    assert_eq!(report_value(&r.serial, "memory:"), Some("128 MiB"));
}

#[test]
fn large_memory_is_split_around_the_mmio_hole() {
    if !kvm_available("large_memory_is_split_around_the_mmio_hole") {
        return;
    }
    let r = run_to_end(
        "bigmem",
        &["--memory", "5G", "--cmdline", "end=exit test=e820"],
    );
    assert_clean_pass("5G", &r);
    assert_eq!(report_value(&r.serial, "memory:"), Some("5120 MiB"));
    assert!(
        r.serial.contains("e820: 0x100000000-"),
        "no RAM above 4 GiB:\n{}",
        r.serial
    );
}

#[test]
fn failing_check_gives_a_failing_exit_status() {
    if !kvm_available("failing_check_gives_a_failing_exit_status") {
        return;
    }
    let r = run_to_end("fail", &["--cmdline", "end=exit test=no-such-check"]);
    assert_eq!(r.status.code(), Some(1), "console:\n{}", r.serial);
    assert!(r.serial.contains("TEST no-such-check FAIL"), "{}", r.serial);
    assert!(
        r.serial.contains("RESULT FAIL pass=0 fail=1"),
        "{}",
        r.serial
    );
}

#[test]
fn pio_exits_round_trip() {
    if !kvm_available("pio_exits_round_trip") {
        return;
    }
    let r = run_to_end(
        "pio",
        &["--cmdline", "end=exit test=pio-bench pio.count=2000"],
    );
    assert_clean_pass("pio-bench", &r);
    assert!(
        r.serial.contains("TEST pio-bench PASS n=2000"),
        "{}",
        r.serial
    );
}

#[test]
fn initrd_is_loaded_and_announced_by_both_protocols() {
    if !kvm_available("initrd_is_loaded_and_announced_by_both_protocols") {
        return;
    }
    let dir = common::TempDir::new("initrd");
    let initrd = dir.path("initrd.img");
    std::fs::write(&initrd, vec![0xa5u8; 12345]).unwrap();
    for boot in ["pvh", "linux64"] {
        let r = run_to_end(
            "initrd",
            &[
                "--boot",
                boot,
                "--memory",
                "64M",
                "--initrd",
                initrd.to_str().unwrap(),
                "--cmdline",
                "end=exit",
            ],
        );
        assert!(r.status.success(), "{boot}: {}", r.stderr);
        let line = report_value(&r.serial, "initrd:").unwrap_or_default();
        assert!(line.ends_with(" 12345"), "{boot}: initrd line {line:?}");
        assert!(
            line.starts_with("0x3ff"),
            "{boot}: initrd should sit at the top of 64M RAM: {line:?}"
        );
    }
}

/// User plus system CPU time of process `pid` so far (all its threads), from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // After "pid (comm) ": state is field 3, utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// `end=halt`: where the guest can enter CPL0 from CPL3 (hardware-style KVM) it halts there
/// with `cli; hlt` and the host CPU goes idle; where it cannot (PVM) it says it spins.
#[test]
fn end_halt_idles_the_host_cpu_where_cpl0_entry_works() {
    if !kvm_available("end_halt_idles_the_host_cpu_where_cpl0_entry_works") {
        return;
    }
    let mut run = common::VmmRun::start("halt", &["--memory", "64M", "--cmdline", "end=halt"]);
    run.wait_for_serial("halt: ", 1);
    // The rest of the line, and time for the VMM to settle after the boot.
    std::thread::sleep(Duration::from_secs(2));
    let console = run.serial_text();
    let pid = run.child.id();
    let (start, t0) = (Instant::now(), cpu_time(pid));
    std::thread::sleep(Duration::from_secs(5));
    let (window, used) = (start.elapsed(), cpu_time(pid) - t0);
    assert!(
        matches!(run.child.try_wait(), Ok(None)),
        "the VMM ended; console:\n{console}"
    );
    let share = used.as_secs_f64() / window.as_secs_f64();
    eprintln!(
        "end=halt: {used:?} of CPU time in {window:?} ({:.0}%)",
        share * 100.0
    );
    let cpl0 = report_value(&console, "cpl0:").unwrap_or("");
    if common::hardware_kvm() {
        assert!(cpl0.starts_with("from_cpl3=yes"), "{console}");
        assert!(
            console.contains("halt: cpl0 (int 0x80, then cli; hlt)\n"),
            "{console}"
        );
        assert!(
            share < 0.2,
            "a halted guest used {used:?} of CPU in {window:?}; console:\n{console}"
        );
    } else if common::kvm_is_pvm() {
        // CPL3 cannot enter CPL0 under PVM: the guest spins, and says so.
        assert!(
            cpl0.starts_with("from_cpl3=no syscall_cs=0x33"),
            "{console}"
        );
        assert!(
            console.contains("halt: spin (cpl0 entry unavailable: SYSCALL stays at CPL3)\n"),
            "{console}"
        );
    } else {
        let works = cpl0.starts_with("from_cpl3=yes");
        let said = if works { "halt: cpl0" } else { "halt: spin" };
        assert!(console.contains(said), "{console}");
    }
}

/// A kernel whose first instruction KVM cannot run: on PVM hosts `int3` at CPL0 is an
/// emulation failure (KVM_EXIT_INTERNAL_ERROR); with VMX/SVM it is a triple fault (no IDT).
/// Either way the VMM reports it with the registers and ends, never hangs.
#[test]
fn a_vcpu_that_cannot_continue_is_reported() {
    if !kvm_available("a_vcpu_that_cannot_continue_is_reported") {
        return;
    }
    let dir = common::TempDir::new("int3");
    let kernel = dir.path("int3.elf");
    std::fs::write(&kernel, tiny_elf(0x10_0000, &[0xcc, 0xcc, 0xcc, 0xcc])).unwrap();
    let r = run_to_end(
        "int3",
        &[
            "--kernel",
            kernel.to_str().unwrap(),
            "--boot",
            "linux64",
            "--no-reboot",
        ],
    );
    let internal = r.stderr.contains("KVM internal error") && r.status.code() == Some(3);
    let triple = r.stderr.contains("triple fault") && r.status.code() == Some(0);
    assert!(
        internal || triple,
        "status {:?}, stderr:\n{}",
        r.status,
        r.stderr
    );
    // The registers are reported either way. After a shutdown exit KVM on AMD (SVM) has
    // already reinitialised the vCPU (the VMCB is undefined after SHUTDOWN), so they show the
    // reset vector there; an internal error leaves them where the guest stopped.
    let at_the_int3 = r.stderr.contains("rip=0x100000");
    let reset_by_kvm = triple && r.stderr.contains("rip=0xfff0");
    assert!(
        at_the_int3 || reset_by_kvm,
        "registers reported: {}",
        r.stderr
    );
}

/// A minimal ELF64 executable: one PT_LOAD of `code` at `addr`, entry at `addr`.
fn tiny_elf(addr: u64, code: &[u8]) -> Vec<u8> {
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&addr.to_le_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    let offset = 0x1000u64;
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&7u32.to_le_bytes()); // RWX
    for v in [
        offset,
        addr,
        addr,
        code.len() as u64,
        code.len() as u64,
        0x1000,
    ] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.resize(offset as usize, 0);
    elf.extend_from_slice(code);
    elf
}

/// `vmm run --xml FILE`: the test guest described as libvirt domain XML, with its console
/// in the file the XML names, reports the XML's vCPUs, memory and disk.
#[test]
fn a_domain_xml_file_describes_the_machine() {
    if !kvm_available("a_domain_xml_file_describes_the_machine") {
        return;
    }
    let dir = common::TempDir::new("xml-boot");
    let disk = dir.path("disk.img");
    let mut image = b"VMM-DISKxml0".to_vec();
    image.resize(1 << 20, 0);
    std::fs::write(&disk, image).unwrap();
    let serial = dir.path("serial.log");
    let xml = format!(
        "<domain type='kvm'>
  <name>fromxml</name>
  <memory unit='MiB'>96</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64'>hvm</type><cmdline>end=exit test=cpus,blk</cmdline></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <source file='{}'/><target dev='vda' bus='virtio'/><serial>xml0</serial>
    </disk>
    <serial type='file'><source path='{}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>",
        disk.display(),
        serial.display()
    );
    let file = dir.path("domain.xml");
    std::fs::write(&file, xml).unwrap();
    let mut child = std::process::Command::new(common::VMM)
        .args(["run", "--xml"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait_timeout(&mut child, common::BOOT_TIMEOUT);
    let console = common::read_lossy(&serial);
    if status.is_none() {
        common::kill_and_reap(&mut child);
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{console}");
    for want in ["cpus: 2", "memory: 96 MiB", "TEST blk PASS", "RESULT PASS"] {
        assert!(console.contains(want), "no {want:?}:\n{console}");
    }
}
