//! virtio-mmio devices seen from the test guest's own polling driver.

mod common;

use common::{kvm_available, run_to_end};

#[test]
fn guest_reads_entropy_from_virtio_rng() {
    if !kvm_available("guest_reads_entropy_from_virtio_rng") {
        return;
    }
    for boot in ["pvh", "linux64"] {
        let r = run_to_end(
            "rng",
            &[
                "--rng",
                "--boot",
                boot,
                "--memory",
                "64M",
                "--cmdline",
                "end=exit test=rng,virtio",
            ],
        );
        r.assert_success();
        r.assert_console_has(&[
            "virtio_mmio.device=4K@0xd0000000:5",
            "TEST rng PASS len=64 varied=true interrupt_status=true",
            "RESULT PASS pass=2 fail=0",
        ]);
    }
}

#[test]
fn without_the_device_the_check_fails() {
    if !kvm_available("without_the_device_the_check_fails") {
        return;
    }
    let r = run_to_end(
        "no-rng",
        &["--memory", "64M", "--cmdline", "end=exit test=rng"],
    );
    assert_eq!(r.status.code(), Some(1));
    r.assert_console_has(&["TEST rng FAIL no virtio-rng device"]);
}
