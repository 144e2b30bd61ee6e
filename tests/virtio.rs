//! virtio-mmio devices seen from the test guest's own polling driver.

mod common;

use std::process::Command;

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
                "end=exit test=rng,virtio,virtio-irq",
            ],
        );
        r.assert_success();
        r.assert_console_has(&[
            // Found through the DSDT: COM1, the rng, the power button and its GED.
            "acpi: rsdp=0xe0000 tables=5 devices=4",
            "TEST rng PASS len=64 varied=true interrupt_status=true",
            "RESULT PASS pass=3 fail=0",
        ]);
        // The interrupt path: device -> irqfd -> the IOAPIC pin's MSI route -> the LAPIC,
        // then (where the guest can enter CPL0) its IDT gate; else it stays pending in the IRR.
        let taken = "TEST virtio-irq PASS pin=5 vector=0x41 path=interrupt pending_before=false delivered=true pending_after=false";
        let pending =
            "TEST virtio-irq PASS pin=5 vector=0x41 path=irr pending_before=false pending_after=true";
        if common::hardware_kvm() {
            r.assert_console_has(&[taken, "cpl0: from_cpl3=yes"]);
        } else if common::kvm_is_pvm() {
            r.assert_console_has(&[pending, "cpl0: from_cpl3=no"]);
        } else {
            assert!(
                r.serial.contains(taken) || r.serial.contains(pending),
                "{}",
                r.serial
            );
        }
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

/// A disk image with `VMM-DISK<id>` at sector 0.
fn disk_image(dir: &common::TempDir, name: &str, id: &str) -> std::path::PathBuf {
    let path = dir.path(name);
    let mut bytes = vec![0u8; 1 << 20];
    let label = format!("VMM-DISK{id}");
    bytes[..label.len()].copy_from_slice(label.as_bytes());
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The pattern the guest's blk-write check writes to sector 1, from the stamp it prints.
fn expected_sector(stamp: u64) -> Vec<u8> {
    (0..512)
        .map(|i| (stamp >> ((i % 8) * 8)) as u8 ^ i as u8)
        .collect()
}

fn stamp_in(console: &str) -> u64 {
    let word = console
        .split_whitespace()
        .find_map(|w| w.strip_prefix("stamp=0x"))
        .expect("blk-write prints its stamp");
    u64::from_str_radix(word, 16).unwrap()
}

#[test]
fn guest_uses_writable_and_read_only_disks() {
    if !kvm_available("guest_uses_writable_and_read_only_disks") {
        return;
    }
    let dir = common::TempDir::new("disks");
    let rw = disk_image(&dir, "rw.img", "disk0");
    let ro = disk_image(&dir, "ro.img", "ro1");
    let ro_before = std::fs::read(&ro).unwrap();
    let rw_arg = format!("path={},id=disk0", rw.display());
    let ro_arg = format!("path={},readonly=on,id=ro1", ro.display());
    let r = run_to_end(
        "disks",
        &[
            "--disk",
            &rw_arg,
            "--disk",
            &ro_arg,
            "--cmdline",
            "end=exit test=blk,blk-write,blk-ro",
        ],
    );
    r.assert_success();
    r.assert_console_has(&[
        "TEST blk PASS id=disk0",
        "TEST blk-write PASS",
        "TEST blk-ro PASS",
        "RESULT PASS pass=3 fail=0",
    ]);
    let on_disk = std::fs::read(&rw).unwrap();
    assert_eq!(
        &on_disk[512..1024],
        &expected_sector(stamp_in(&r.serial))[..],
        "the guest's write reached the file"
    );
    assert_eq!(
        std::fs::read(&ro).unwrap(),
        ro_before,
        "the read-only image is untouched"
    );
}

/// The guest writes and flushes, then the VMM is killed outright: the file has the data.
#[test]
fn flushed_data_survives_sigkill() {
    if !kvm_available("flushed_data_survives_sigkill") {
        return;
    }
    let dir = common::TempDir::new("sigkill");
    let rw = disk_image(&dir, "rw.img", "d");
    let arg = format!("path={}", rw.display());
    let mut run = common::VmmRun::start(
        "sigkill-vm",
        &["--disk", &arg, "--cmdline", "test=blk-write"],
    );
    // The RESULT line follows the whole TEST line (the guest writes a byte at a time).
    run.wait_for_serial("RESULT PASS", 1);
    run.signal(libc::SIGKILL);
    let r = run.finish();
    assert_eq!(r.status.code(), None, "killed by a signal");
    let on_disk = std::fs::read(&rw).unwrap();
    assert_eq!(
        &on_disk[512..1024],
        &expected_sector(stamp_in(&r.serial))[..]
    );
}

#[test]
fn guest_talks_to_the_host_over_virtio_net() {
    if !kvm_available("guest_talks_to_the_host_over_virtio_net") {
        return;
    }
    let Some(ns) = common::NetNs::new("arp") else {
        return;
    };
    let run = common::VmmRun::start_in(
        &ns,
        "arp",
        &[
            "--memory",
            "64M",
            "--net",
            "tap=tap0,mac=52:54:00:12:34:56",
            "--cmdline",
            "end=exit test=net net.ip=10.0.2.2 net.peer=10.0.2.1",
        ],
    );
    let r = run.finish();
    r.assert_success();
    let console = r.serial;
    assert!(
        console.contains("TEST net PASS mac=52:54:00:12:34:56 peer_mac="),
        "{console}"
    );
    // The reply came from the host's side of the tap: the peer MAC is the tap's own.
    let link = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "cat",
            "/sys/class/net/tap0/address",
        ])
        .output()
        .unwrap();
    let tap_mac = String::from_utf8_lossy(&link.stdout).trim().to_string();
    assert!(
        console.contains(&format!("peer_mac={tap_mac}")),
        "tap {tap_mac}:\n{console}"
    );
}

/// A burst of numbered frames from the host at a guest that re-posts its only RX buffer
/// slowly: every frame arrives once, in order (the device stops reading the tap meanwhile).
#[test]
fn a_slow_guest_loses_no_frames() {
    if !kvm_available("a_slow_guest_loses_no_frames") {
        return;
    }
    let Some(ns) = common::NetNs::new("burst") else {
        return;
    };
    let mut run = common::VmmRun::start_in(
        &ns,
        "burst",
        &[
            "--memory",
            "64M",
            "--net",
            "tap=tap0,mac=52:54:00:12:34:56",
            "--cmdline",
            "end=exit quiet test=net-rx net.count=50",
        ],
    );
    run.wait_for_serial("net-rx: ready", 1);
    let burst = "import socket, struct\n\
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
s.bind(('tap0', 0))\n\
head = bytes.fromhex('525400123456020000000001') + b'\\x88\\xb5'\n\
for i in range(50):\n    s.send(head + struct.pack('>I', i) + bytes(46))\n";
    let sent = Command::new("ip")
        .args(["netns", "exec", &ns.name, "/usr/bin/python3", "-c", burst])
        .status()
        .unwrap();
    assert!(sent.success());
    let r = run.finish();
    r.assert_success();
    let text = r.serial;
    assert!(
        text.contains("TEST net-rx PASS frames=50 in_order=true"),
        "{text}"
    );
}
