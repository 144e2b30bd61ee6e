//! Bad command lines get one clear line naming the flag or file, never a panic.

mod common;

use std::process::Command;

use common::VMM;

fn vmm(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(VMM).args(args).output().expect("run vmm");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clear_error(args: &[&str], code: i32, expected: &str) {
    let (status, stderr) = vmm(args);
    assert_eq!(status, Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn missing_kernel_file() {
    assert_clear_error(
        &["run", "--kernel", "/nonexistent/bzImage"],
        1,
        "vmm: --kernel /nonexistent/bzImage: No such file or directory",
    );
}

#[test]
fn missing_initrd_file() {
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    assert_clear_error(
        &["run", "--kernel", exe, "--initrd", "/nonexistent/initrd"],
        1,
        "vmm: --initrd /nonexistent/initrd: No such file or directory",
    );
}

#[test]
fn kernel_that_is_not_a_kernel() {
    if !common::kvm_available("kernel_that_is_not_a_kernel") {
        return;
    }
    let dir = common::TempDir::new("junk");
    let junk = dir.path("junk");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    assert_clear_error(
        &["run", "--kernel", junk.to_str().unwrap()],
        1,
        "cannot load the kernel",
    );
}

#[test]
fn memory_values() {
    assert_clear_error(
        &["run", "--memory", "1M"],
        1,
        "--memory: 1 MiB is too small",
    );
    assert_clear_error(
        &["run", "--memory", "64T"],
        1,
        "--memory: 64 TiB is more than this host's",
    );
    assert_clear_error(&["run", "--memory", "lots"], 2, "--memory");
}

#[test]
fn cpu_and_serial_values() {
    assert_clear_error(&["run", "--cpus", "0"], 2, "--cpus");
    assert_clear_error(&["run", "--serial", "tcp:1"], 2, "--serial");
    assert_clear_error(
        &["run", "--serial", "file=/nonexistent/dir/log"],
        1,
        "--serial file=/nonexistent/dir/log: No such file or directory",
    );
}

#[test]
fn acpi_and_sigterm_values() {
    assert_clear_error(
        &["run", "--on-sigterm", "reboot"],
        2,
        "'reboot' is not one of shutdown, powerdown",
    );
    assert_clear_error(&["run", "--no-acpi=yes"], 2, "--no-acpi");
}

#[test]
fn unknown_flag() {
    assert_clear_error(&["run", "--bogus"], 2, "--bogus");
}

#[test]
fn disk_values() {
    assert_clear_error(
        &["run", "--disk", "path=/nonexistent/disk.img"],
        1,
        "vmm: --disk path=/nonexistent/disk.img: No such file or directory",
    );
    assert_clear_error(
        &["run", "--disk", "readonly=on"],
        2,
        "path=FILE is required",
    );
    assert_clear_error(&["run", "--disk", "path=/tmp,bogus=1"], 2, "--disk");
}

#[test]
fn net_values() {
    assert_clear_error(
        &["run", "--net", "mac=52:54:00:00:00:01"],
        2,
        "tap=NAME is required",
    );
    assert_clear_error(
        &["run", "--net", "tap=t0,mac=01:02:03:04:05:06"],
        2,
        "multicast",
    );
}

#[test]
fn domain_xml_conflicts_with_machine_flags_and_is_refused_by_element() {
    let dir = std::env::temp_dir().join(format!("vmm-cli-xml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("d.xml");
    std::fs::write(
        &file,
        "<domain type='kvm'><name>x</name><memory unit='MiB'>64</memory>\
         <devices><graphics type='vnc'/></devices></domain>",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    assert_clear_error(
        &["run", "--xml", path],
        1,
        "element <graphics> in <devices> is not supported",
    );
    assert_clear_error(
        &["run", "--xml", path, "--cpus", "2"],
        2,
        "cannot be used with",
    );
    assert_clear_error(
        &["run", "--xml", "/nonexistent/d.xml"],
        1,
        "--xml /nonexistent/d.xml: No such file or directory",
    );
    std::fs::write(&file, "<domain").unwrap();
    assert_clear_error(&["run", "--xml", path], 1, "malformed XML");
    let _ = std::fs::remove_dir_all(&dir);
}
