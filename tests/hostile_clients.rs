//! Clients that break the rules on purpose, against the real VMM: pipelining past the request
//! limit, calls right behind CONNECT_OPEN, sending without ever reading, unbounded event
//! registrations, a live socket path that is not accepting. Each was found by an outside
//! attack on the server; each test failed before its fix.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::managed::{clients_available, Managed, NAME};
use common::raw_rpc::{self, error_message, frame, REMOTE};
use common::{kvm_available, rss_kib, wait_timeout, TempDir, VMM};

const CONNECT_OPEN: i32 = 1;
const CONNECT_GET_TYPE: i32 = 3;
const REGISTER_ANY: i32 = 316;
/// CONNECT_OPEN's arguments: no name, flags 0.
const OPEN_ARGS: [u8; 8] = [0; 8];

fn start(tag: &str) -> Managed {
    Managed::spawn(
        tag,
        &[
            "--memory",
            "64M",
            "--cmdline",
            "quiet test=ticker ticker.count=1000000",
        ],
        &[],
    )
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect to the management socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_reply(s: &mut UnixStream) -> (u32, i32, Vec<u8>) {
    raw_rpc::read_reply(s).expect("a reply (none within 10 s)")
}

fn call(proc_: i32, serial: u32, args: &[u8]) -> Vec<u8> {
    frame(REMOTE, 1, proc_, 0, serial, 0, args)
}

#[test]
fn calls_pipelined_behind_open_and_past_the_limit_are_all_answered() {
    if !kvm_available("calls_pipelined_behind_open_and_past_the_limit_are_all_answered") {
        return;
    }
    let vm = start("pipelined");
    // CONNECT_OPEN runs on a priority worker, CONNECT_GET_TYPE on a normal one, and six calls
    // follow it in one write: one more than the server's five requests in flight. Before,
    // GET_TYPE sometimes ran before the open ("connection not open"), and the last call
    // sometimes waited for good.
    for round in 0..100 {
        let mut s = connect(&vm.socket);
        let mut burst = call(CONNECT_OPEN, 1, &OPEN_ARGS);
        for serial in 2..8 {
            burst.extend(call(CONNECT_GET_TYPE, serial, &[]));
        }
        s.write_all(&burst).unwrap();
        let mut serials = Vec::new();
        for _ in 0..7 {
            let (serial, status, payload) = read_reply(&mut s);
            assert_eq!(
                status,
                0,
                "round {round}, call {serial}: {}",
                error_message(&payload)
            );
            serials.push(serial);
        }
        // The open is answered first (nothing behind it runs before it); the others in any
        // order, as libvirtd's workers answer them.
        assert_eq!(serials[0], 1, "round {round}: {serials:?}");
        serials.sort_unstable();
        assert_eq!(serials, (1..8).collect::<Vec<u32>>(), "round {round}");
    }
    vm.assert_guest_runs();
}

#[test]
fn a_client_that_never_reads_is_not_read_either() {
    if !clients_available("a_client_that_never_reads_is_not_read_either") {
        return;
    }
    let vm = start("never-reads");
    let before = rss_kib(vm.child.id());
    // A call to an unknown program, which the event loop answers itself. Before, those
    // answers were not counted against the client's limits: the server read on and queued
    // replies until the VMM held gigabytes.
    let one = frame(0x1234_5678, 1, 1, 0, 7, 0, &[]);
    let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 2048).collect();
    let mut clients: Vec<UnixStream> = (0..4).map(|_| connect(&vm.ro_socket)).collect();
    let mut accepted = 0usize;
    for s in &clients {
        s.set_nonblocking(true).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut progressed = false;
        for s in &mut clients {
            match s.write(&burst) {
                Ok(n) => {
                    accepted += n;
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("the server dropped a client that only sent calls: {e}"),
            }
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let grown_kib = rss_kib(vm.child.id()).saturating_sub(before);
    // What the sockets' buffers and one read chunk per client can hold, not more.
    assert!(
        accepted < 16 << 20,
        "the server kept reading a client that never reads: {accepted} bytes taken"
    );
    assert!(
        grown_kib < 32 << 10,
        "the VMM grew by {grown_kib} KiB while clients did not read"
    );
    // Others are still served, and the guest runs.
    let (ok, out, err) = vm.virsh_on(&vm.socket, &["domstate", NAME]);
    assert!(ok && out.trim() == "running", "virsh: {err}");
    vm.assert_guest_runs();
}

#[test]
fn event_registrations_per_client_are_bounded() {
    if !kvm_available("event_registrations_per_client_are_bounded") {
        return;
    }
    let vm = start("registrations");
    let mut s = connect(&vm.socket);
    s.write_all(&call(CONNECT_OPEN, 1, &OPEN_ARGS)).unwrap();
    assert_eq!(read_reply(&mut s).1, 0);
    // Lifecycle events (id 0) for any domain (no domain given).
    let args = [0u8; 8];
    let mut refused = None;
    for serial in 2..400u32 {
        s.write_all(&call(REGISTER_ANY, serial, &args)).unwrap();
        let (_, status, payload) = read_reply(&mut s);
        if status != 0 {
            refused = Some((serial - 2, error_message(&payload)));
            break;
        }
    }
    let (accepted, message) = refused.expect("400 registrations on one connection were all taken");
    assert_eq!(accepted, 256, "registrations taken before the refusal");
    assert!(message.contains("too many event callbacks"), "{message}");
    vm.assert_guest_runs();
}

/// A listening socket whose backlog is full: a blocking connect to it waits for good.
fn listener_not_accepting(path: &Path) -> (i32, UnixStream) {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: socket() takes no pointers; the test keeps the descriptor open until it ends.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: sockaddr_un is plain data; all zeroes is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes; listen takes no pointers.
    unsafe {
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
    }
    // With a backlog of 0 one connection is queued; the next connect blocks.
    let queued = UnixStream::connect(path).expect("the one queued connection");
    (fd, queued)
}

#[test]
fn a_live_socket_path_that_is_not_accepting_is_refused_at_once() {
    if !kvm_available("a_live_socket_path_that_is_not_accepting_is_refused_at_once") {
        return;
    }
    let dir = TempDir::new("busy-socket");
    let busy = dir.path("busy.sock");
    let (fd, _queued) = listener_not_accepting(&busy);
    let mut vmm = Command::new(VMM)
        .args(["run", "--memory", "64M", "--mgmt-socket"])
        .arg(&busy)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut vmm, Duration::from_secs(20));
    if status.is_none() {
        let _ = vmm.kill();
    }
    let status = status.expect("the VMM hung on a socket path whose server is not accepting");
    assert!(!status.success());
    let mut stderr = String::new();
    vmm.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("already listening"), "{stderr}");
    assert!(busy.exists(), "the live server's socket file was taken");
    // SAFETY: fd is the listener made above, closed once.
    unsafe { libc::close(fd) };
}

#[test]
fn a_refused_second_vmm_leaves_no_socket_behind() {
    if !kvm_available("a_refused_second_vmm_leaves_no_socket_behind") {
        return;
    }
    let first = start("first-of-two");
    let dir = TempDir::new("second-of-two");
    let fresh = dir.path("fresh.sock");
    let mut second = Command::new(VMM)
        .args(["run", "--memory", "64M", "--mgmt-socket"])
        .arg(&fresh)
        .arg("--mgmt-socket-ro")
        .arg(&first.ro_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut second, Duration::from_secs(20)).expect("second VMM hung");
    assert!(!status.success(), "a second VMM took a live read-only path");
    assert!(
        !fresh.exists(),
        "the refused VMM left {} behind",
        fresh.display()
    );
    first.assert_guest_runs();
}
