//! Boots the built-in test guest under KVM and checks what it reports.

mod common;

use common::{kvm_available, report_value, run_to_end};

fn assert_clean_pass(tag: &str, result: &common::Finished) {
    assert!(
        result.status.success(),
        "{tag}: {:?}\nconsole:\n{}\nstderr:\n{}",
        result.status,
        result.serial,
        result.stderr
    );
    assert!(
        result.serial.contains("RESULT PASS"),
        "{tag}: console:\n{}",
        result.serial
    );
    assert!(
        !result.serial.contains(" FAIL"),
        "{tag}: console:\n{}",
        result.serial
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
