//! How a guest's life ends: reset with and without --no-reboot, triple fault, host signals
//! with the terminal restored, the interactive prompt, pause/resume from another thread.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kvm_available, run_to_end, VmmRun, VMM};

const BANNER: &str = "vmm-test-guest: hello";

#[test]
fn reset_reboots_the_guest() {
    if !kvm_available("reset_reboots_the_guest") {
        return;
    }
    let mut run = VmmRun::start("reboot", &["--cmdline", "end=reset"]);
    run.wait_for_serial(BANNER, 3);
    run.signal(libc::SIGTERM);
    let r = run.finish();
    assert_eq!(r.status.code(), Some(0), "stderr:\n{}", r.stderr);
    assert!(
        r.stderr.contains("terminating on signal 15"),
        "stderr:\n{}",
        r.stderr
    );
}

#[test]
fn no_reboot_turns_reset_into_exit() {
    if !kvm_available("no_reboot_turns_reset_into_exit") {
        return;
    }
    let r = run_to_end("noreboot", &["--no-reboot", "--cmdline", "end=reset"]);
    assert_eq!(r.status.code(), Some(0), "stderr:\n{}", r.stderr);
    assert_eq!(
        r.serial.matches(BANNER).count(),
        1,
        "console:\n{}",
        r.serial
    );
}

#[test]
fn guest_sees_its_own_reboot() {
    if !kvm_available("guest_sees_its_own_reboot") {
        return;
    }
    let r = run_to_end("selfreset", &["--cmdline", "end=exit test=reset,serial"]);
    r.assert_success();
    assert_eq!(
        r.serial.matches(BANNER).count(),
        2,
        "console:\n{}",
        r.serial
    );
    r.assert_console_has(&["TEST reset PASS rebooted"]);
    r.assert_console_has(&["RESULT PASS pass=2 fail=0"]);
}

#[test]
fn triple_fault_is_reported_not_hung() {
    if !kvm_available("triple_fault_is_reported_not_hung") {
        return;
    }
    let r = run_to_end("triple", &["--no-reboot", "--cmdline", "end=triple-fault"]);
    assert_eq!(r.status.code(), Some(0), "stderr:\n{}", r.stderr);
    assert!(r.stderr.contains("triple fault"), "stderr:\n{}", r.stderr);

    // Without --no-reboot a triple fault is a reset, as on real hardware.
    let mut run = VmmRun::start("triple-reboot", &["--cmdline", "end=triple-fault"]);
    run.wait_for_serial(BANNER, 2);
    run.signal(libc::SIGINT);
    let r = run.finish();
    assert_eq!(r.status.code(), Some(0), "stderr:\n{}", r.stderr);
}

#[test]
fn prompt_takes_commands_from_stdin() {
    if !kvm_available("prompt_takes_commands_from_stdin") {
        return;
    }
    let mut run = VmmRun::start_interactive("prompt", &[]);
    run.wait_for_serial("guest> ", 1);
    let mut stdin = run.child.stdin.take().expect("stdin pipe");
    stdin.write_all(b"help\ninfo\n").unwrap();
    run.wait_for_serial("cpus: 1", 2);
    stdin.write_all(b"poweroff\n").unwrap();
    let r = run.finish();
    assert_eq!(r.status.code(), Some(0), "console:\n{}", r.serial);
    r.assert_console_has(&["poweroff"]);
    r.assert_console_has(&["powering off"]);
}

/// SIGTERM while the guest owns the terminal: the VMM exits 0 and the terminal is cooked again.
#[test]
fn sigterm_restores_the_terminal() {
    if !kvm_available("sigterm_restores_the_terminal") {
        return;
    }
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let cooked = tcgetattr(&pty.slave).unwrap();
    assert!(cooked
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
    let slave = std::fs::File::from(pty.slave);
    let mut child = Command::new(VMM)
        .args(["run", "--serial", "stdio"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Drain the console so the guest never blocks on a full pty.
    let master = std::fs::File::from(pty.master);
    let drain = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { master }, &mut out);
        out
    });
    let deadline = Instant::now() + common::BOOT_TIMEOUT;
    while tcgetattr(&slave)
        .unwrap()
        .local_flags
        .contains(LocalFlags::ICANON)
    {
        assert!(Instant::now() < deadline, "terminal never went raw");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status =
        common::wait_timeout(&mut child, common::BOOT_TIMEOUT).expect("vmm exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    let after = tcgetattr(&slave).unwrap();
    assert!(
        after
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO),
        "terminal left raw"
    );
    assert_eq!(after.input_flags, cooked.input_flags);
    drop(slave);
    let _ = join_drain(drain);
}

fn join_drain(drain: std::thread::JoinHandle<Vec<u8>>) -> Option<Vec<u8>> {
    // The reader ends with EIO once every slave fd is closed; don't wait on it forever.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !drain.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drain.is_finished().then(|| drain.join().ok()).flatten()
}
