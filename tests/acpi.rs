//! ACPI with the test guest under KVM: the guest checks every table, starts the APs the MADT
//! lists, finds virtio devices through the DSDT, powers off through S5 and answers the power
//! button; the command-line announcement stays available.

mod common;

use common::{kvm_available, report_value, run_to_end, TempDir, VmmRun};

const READY: &str = "vmm-test-guest ready";
const BUTTON: &str = "power button pressed: powering off (interrupt pending: yes)";

#[test]
fn guest_checks_the_tables_and_starts_every_cpu() {
    if !kvm_available("guest_checks_the_tables_and_starts_every_cpu") {
        return;
    }
    // 8 vCPUs on a 2-core host too: each AP is a thread that must get scheduled.
    for cpus in ["1", "2", "4", "8"] {
        for boot in ["pvh", "linux64"] {
            let cmdline = format!("end=exit test=acpi,cpus cpus={cpus}");
            let r = run_to_end(
                "acpi-cpus",
                &["--cpus", cpus, "--boot", boot, "--cmdline", &cmdline],
            );
            r.assert_success();
            r.assert_console_has(&["TEST acpi PASS", "TEST cpus PASS"]);
            assert_eq!(report_value(&r.serial, "cpus:"), Some(cpus), "{boot}");
            let ids: Vec<String> = (0..cpus.parse::<u32>().unwrap())
                .map(|i| i.to_string())
                .collect();
            let mut reported: Vec<&str> = report_value(&r.serial, "apic ids:")
                .unwrap_or("")
                .split_whitespace()
                .collect();
            reported.sort_by_key(|id| id.parse::<u32>().unwrap_or(u32::MAX));
            assert_eq!(reported, ids, "every AP reports its own APIC id once");
        }
    }
}

#[test]
fn aps_start_again_after_a_reset() {
    if !kvm_available("aps_start_again_after_a_reset") {
        return;
    }
    // The first boot starts and halts the APs; the reset must return them to wait-for-SIPI.
    let r = run_to_end(
        "acpi-reset",
        &[
            "--cpus",
            "4",
            "--cmdline",
            "end=exit test=reset,cpus cpus=4",
        ],
    );
    r.assert_success();
    r.assert_console_has(&[
        "TEST reset PASS rebooted",
        "TEST cpus PASS started=4 missing=0",
    ]);
    assert_eq!(r.serial.matches("cpus: 4").count(), 2, "{}", r.serial);
}

#[test]
fn virtio_devices_are_found_through_the_dsdt() {
    if !kvm_available("virtio_devices_are_found_through_the_dsdt") {
        return;
    }
    let dir = TempDir::new("acpi-disk");
    let disk = dir.path("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let disk_arg = format!("path={},readonly=on", disk.display());
    let r = run_to_end(
        "acpi-virtio",
        &[
            "--disk",
            &disk_arg,
            "--rng",
            "--cmdline",
            "end=exit test=acpi,rng,blk-ro",
        ],
    );
    r.assert_success();
    let cmdline = report_value(&r.serial, "cmdline:").unwrap_or("");
    assert!(
        !cmdline.contains("virtio_mmio.device"),
        "with ACPI the command line stays clean: {cmdline}"
    );
    r.assert_console_has(&["virtio=2 answering=2", "TEST rng PASS", "TEST blk-ro PASS"]);
}

#[test]
fn command_line_announcement_stays_available() {
    if !kvm_available("command_line_announcement_stays_available") {
        return;
    }
    // Without ACPI: devices on the command line, CPUs from the MP table.
    let r = run_to_end(
        "no-acpi",
        &[
            "--no-acpi",
            "--rng",
            "--cpus",
            "2",
            "--cmdline",
            "end=exit test=rng,cpus cpus=2",
        ],
    );
    r.assert_success();
    assert_eq!(report_value(&r.serial, "acpi:"), Some("none"));
    assert_eq!(report_value(&r.serial, "cpus:"), Some("2"));
    assert!(report_value(&r.serial, "cmdline:")
        .unwrap_or("")
        .contains("virtio_mmio.device=4K@0xd0000000:5"));

    // With ACPI, on request, for kernels built with VIRTIO_MMIO_CMDLINE_DEVICES.
    let r = run_to_end(
        "virtio-cmdline",
        &[
            "--virtio-cmdline",
            "--rng",
            "--cmdline",
            "end=exit test=acpi,rng",
        ],
    );
    r.assert_success();
    assert!(report_value(&r.serial, "cmdline:")
        .unwrap_or("")
        .contains("virtio_mmio.device=4K@0xd0000000:5"));
    r.assert_console_has(&["TEST acpi PASS", "TEST rng PASS"]);
}

#[test]
fn guest_poweroff_through_s5_ends_the_vmm() {
    if !kvm_available("guest_poweroff_through_s5_ends_the_vmm") {
        return;
    }
    let r = run_to_end(
        "s5",
        &["--log-level", "info", "--cmdline", "end=poweroff test=acpi"],
    );
    r.assert_success();
    assert!(
        r.stderr.contains("guest powered off through ACPI S5"),
        "stderr:\n{}",
        r.stderr
    );
}

#[test]
fn sigterm_presses_the_power_button_when_asked() {
    if !kvm_available("sigterm_presses_the_power_button_when_asked") {
        return;
    }
    // The idle guest polls the button and powers off through S5.
    let mut run = VmmRun::start(
        "sigterm-powerdown",
        &["--on-sigterm=powerdown", "--log-level", "info"],
    );
    run.wait_for_serial(READY, 1);
    run.signal(libc::SIGTERM);
    let r = run.finish();
    r.assert_success();
    r.assert_console_has(&[BUTTON]);
    assert!(
        r.stderr.contains("guest powered off through ACPI S5"),
        "{}",
        r.stderr
    );

    // A guest busy at CPL3 ignores the button and keeps running; SIGINT still ends the VMM.
    let mut run = VmmRun::start(
        "sigterm-ignored",
        &[
            "--on-sigterm=powerdown",
            "--cmdline",
            "test=ticker ticker.count=100000",
        ],
    );
    run.wait_for_serial("TICK 2", 1);
    run.signal(libc::SIGTERM);
    run.wait_for_serial("TICK 20", 1);
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "SIGTERM ended the VMM"
    );
    run.signal(libc::SIGINT);
    let r = run.finish();
    assert_eq!(r.status.code(), Some(0));
    assert!(!r.serial.contains("power button pressed"));

    // Without the option SIGTERM ends the VMM and the guest never sees a button.
    let mut run = VmmRun::start("sigterm-default", &[]);
    run.wait_for_serial(READY, 1);
    run.signal(libc::SIGTERM);
    let r = run.finish();
    assert_eq!(r.status.code(), Some(0));
    assert!(
        r.stderr.contains("terminating on signal 15"),
        "{}",
        r.stderr
    );
    assert!(!r.serial.contains("power button pressed"));
}
