//! `virsh console` and libvirt-python's `openConsole` over the RPC stream, with real clients:
//! typing at the test guest's prompt and reading its answer, Ctrl-] and a destroy ending the
//! session, one session at a time with `--force` taking over, and a client that stops
//! reading blocking neither the guest nor the server.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::managed::{python_available, run_python, Managed, NAME};
use common::{read_lossy, rss_kib};

/// virsh console needs a terminal: this runs it on a pty (Python's pty module), types
/// `keys` once it is connected, waits for `expect` in what it prints, optionally presses
/// Ctrl-] and prints the output and exit status.
const VIRSH_ON_A_PTY: &str = r#"
import os, pty, select, sys, termios, time
uri, keys, expect, escape = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
extra = sys.argv[5:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("virsh", ["virsh", "-c", uri, "console", "testvm", *extra])
out = b""
closed = False
def read_until(needle, seconds):
    global out, closed
    deadline = time.time() + seconds
    while needle.encode() not in out and time.time() < deadline and not closed:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                closed = True
            out += data
    return needle.encode() in out
connected = read_until("Escape character is", 30)
# Keys typed before virsh puts the terminal in raw mode would be flushed: wait for it.
# (A virsh that fails instead, e.g. a refused open, ends the wait by closing the pty.)
deadline = time.time() + 30
while connected and termios.tcgetattr(fd)[3] & termios.ICANON and time.time() < deadline:
    read_until("\0", 0.05)
    if closed:
        break
print("CONNECTED" if connected else "NOT-CONNECTED", flush=True)
if connected and keys:
    os.write(fd, keys.encode().decode("unicode_escape").encode())
if expect:
    print("SAW" if read_until(expect, 30) else "MISSED", flush=True)
if escape:
    os.write(fd, b"\x1d")
# A held session lasts until the test ends it (a takeover, a destroy).
deadline = time.time() + 90
status = None
while status is None and time.time() < deadline:
    read_until("\0", 0.2)
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.WEXITSTATUS(st)
print("OUTPUT", repr(out))
print("EXIT", status)
"#;

/// Runs virsh console on a pty as `VIRSH_ON_A_PTY` says; returns what the driver printed.
fn virsh_console(vm: &Managed, keys: &str, expect: &str, escape: bool, extra: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            VIRSH_ON_A_PTY,
            &Managed::uri(&vm.socket),
            keys,
            expect,
        ])
        .arg(if escape { "1" } else { "0" })
        .args(extra)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The same driver started in the background (a session held while the test goes on).
/// Returns once the session works: virsh prints "Connected" before it opens the stream,
/// so an empty line is typed and the guest's new prompt awaited.
fn virsh_console_held(vm: &Managed, extra: &[&str]) -> std::process::Child {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", VIRSH_ON_A_PTY, &Managed::uri(&vm.socket)])
        .args(["\\r", "guest> ", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Byte by byte, not buffered: what follows is for `finish` to read.
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = Vec::new();
    let mut byte = [0u8; 1];
    while lines.iter().filter(|b| **b == b'\n').count() < 2 && stdout.read(&mut byte).unwrap() == 1
    {
        lines.push(byte[0]);
    }
    assert_eq!(String::from_utf8_lossy(&lines), "CONNECTED\nSAW\n");
    child
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start(tag: &str) -> Managed {
    let vm = Managed::spawn(tag, &["--memory", "64M"], &[]);
    vm.wait_for_console("guest> ", 1);
    vm
}

#[test]
fn virsh_console_types_at_the_guest_and_ctrl_bracket_ends_it() {
    if !python_available("virsh_console_types_at_the_guest_and_ctrl_bracket_ends_it") {
        return;
    }
    let vm = start("console-virsh");
    let out = virsh_console(&vm, "info\\r", "memory: 64 MiB", true, &[]);
    assert!(out.contains("CONNECTED\nSAW\n"), "{out}");
    assert!(out.contains("EXIT 0"), "Ctrl-] ends virsh with 0: {out}");
    // The configured console file got the same bytes.
    vm.wait_for_console("memory: 64 MiB", 2);
    assert!(vm.console().contains("guest> info"), "{}", vm.console());

    // Again: the console is free once the first session has finished.
    let out = virsh_console(&vm, "help\\r", "poweroff", true, &[]);
    assert!(out.contains("SAW") && out.contains("EXIT 0"), "{out}");

    // Other device names do not exist.
    let out = virsh_console(&vm, "", "", false, &["--devname", "serial3"]);
    assert!(
        out.contains("cannot find character device serial3"),
        "{out}"
    );
}

#[test]
fn one_session_at_a_time_force_takes_over_and_destroy_ends_it() {
    if !python_available("one_session_at_a_time_force_takes_over_and_destroy_ends_it") {
        return;
    }
    let vm = start("console-force");
    let holder = virsh_console_held(&vm, &[]);
    let refused = virsh_console(&vm, "", "", false, &[]);
    assert!(
        refused.contains("Active console session exists for this domain"),
        "{refused}"
    );
    assert!(!refused.contains("EXIT 0"), "{refused}");
    let taker = virsh_console_held(&vm, &["--force"]);
    let held = finish(holder);
    assert!(
        held.contains("another session took the console over"),
        "{held}\nvmm: {}",
        read_lossy(&vm.dir.path("stderr.log"))
    );
    assert!(held.contains("EXIT 1"), "{held}");
    // The new session ends when the domain is destroyed, as with a QEMU that exits.
    vm.virsh(&["destroy", NAME]);
    let taken = finish(taker);
    assert!(taken.contains("EXIT 0"), "{taken}");
    let out = virsh_console(&vm, "", "", false, &[]);
    assert!(out.contains("domain is not running"), "{out}");
}

#[test]
fn libvirt_python_streams_blocking_and_non_blocking() {
    if !python_available("libvirt_python_streams_blocking_and_non_blocking") {
        return;
    }
    let vm = start("console-python");
    run_python(
        &format!(
            r#"
import libvirt, time
libvirt.virEventRegisterDefaultImpl()
conn = libvirt.open("{uri}")
dom = conn.lookupByName("{NAME}")

# Blocking: send, then read until the answer is there.
st = conn.newStream(0)
dom.openConsole(None, st, 0)
st.send(b"info\r")
got = b""
deadline = time.time() + 30
while b"cpus: 1" not in got and time.time() < deadline:
    got += st.recv(4096)
assert b"cpus: 1" in got, got
st.finish()

# Non-blocking, driven by libvirt's event loop.
st = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
dom.openConsole(None, st, 0)
got = bytearray()
def readable(stream, events, opaque):
    while True:
        data = stream.recv(4096)
        if data == -2 or not data:
            return
        got.extend(data)
st.eventAddCallback(libvirt.VIR_STREAM_EVENT_READABLE, readable, None)
while st.send(b"info\r") == -2:
    libvirt.virEventRunDefaultImpl()
deadline = time.time() + 30
while b"tsc:" not in got and time.time() < deadline:
    libvirt.virEventRunDefaultImpl()
assert b"tsc:" in got, got
st.eventRemoveCallback()
st.finish()

# A read-only connection may not open the console.
ro = libvirt.openReadOnly("{ro_uri}")
try:
    ro.lookupByName("{NAME}").openConsole(None, ro.newStream(0), 0)
    raise SystemExit("a read-only connection opened the console")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED, e
print("STREAMS-OK")
"#,
            uri = Managed::uri(&vm.socket),
            ro_uri = Managed::uri(&vm.ro_socket),
        ),
        "STREAMS-OK",
    );
}

#[test]
fn a_console_client_that_stops_reading_blocks_neither_guest_nor_server() {
    if !python_available("a_console_client_that_stops_reading_blocks_neither_guest_nor_server") {
        return;
    }
    let vm = start("console-stall");
    // One session first, so that what any first use allocates is not counted below.
    let out = virsh_console(&vm, "info\\r", "cpus: 1", true, &[]);
    assert!(out.contains("EXIT 0"), "{out}");
    let rss_before = rss_kib(vm.child.id());
    const COMMANDS: usize = 300;
    // A client that types a lot of commands, each answered by ~500 bytes, and never reads.
    let mut stalled = Command::new("/usr/bin/python3")
        .args([
            "-c",
            &format!(
                r#"
import libvirt, sys
conn = libvirt.open("{uri}")
dom = conn.lookupByName("{NAME}")
st = conn.newStream(0)
dom.openConsole(None, st, 0)
st.send(b"info\r" * {COMMANDS})
print("SENT", flush=True)
sys.stdin.readline()
st.abort()
print("ABORTED", flush=True)
"#,
                uri = Managed::uri(&vm.socket),
            ),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(stalled.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "SENT");
    // The guest answers every command although nobody reads the stream, and the server
    // answers other clients meanwhile.
    let started = Instant::now();
    // One answer in the boot report, one to the first session, then the stalled ones.
    while vm.console().matches("memory: 64 MiB").count() < COMMANDS + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the guest stalled at {} answers",
            vm.console().matches("memory: 64 MiB").count()
        );
        assert_eq!(vm.virsh(&["domstate", NAME]).trim(), "running");
        std::thread::sleep(Duration::from_millis(200));
    }
    let grown = rss_kib(vm.child.id()).saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "the VMM grew by {grown} KiB");
    writeln!(stalled.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ABORTED");
    assert!(stalled.wait().unwrap().success());
    // The console is free again.
    let out = virsh_console(&vm, "info\\r", "cpus: 1", true, &[]);
    assert!(out.contains("SAW") && out.contains("EXIT 0"), "{out}");
}
