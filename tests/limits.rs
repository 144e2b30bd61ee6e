//! README's limits, each pushed past 10^5 times against a running VM: every attempt gets its
//! clear answer (an error, a wait or a closed connection), and VmRSS stays flat.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::managed::{Managed, UUID};
use common::raw_rpc::{self, error_message, frame, read_message, REMOTE};
use common::{kvm_available, rss_kib};

const CONNECT_OPEN: i32 = 1;
const CONNECT_GET_TYPE: i32 = 3;
const DOMAIN_DEFINE_XML: i32 = 11;
const DOMAIN_LOOKUP_BY_NAME: i32 = 23;
const DOMAIN_RESUME: i32 = 28;
const DOMAIN_SUSPEND: i32 = 34;
const DOMAIN_OPEN_CONSOLE: i32 = 201;
const REGISTER_ANY: i32 = 316;
/// Message types and statuses (virnetprotocol.x).
const REPLY: i32 = 1;
const STREAM: i32 = 3;
const STATUS_ERROR: i32 = 1;
const STATUS_CONTINUE: i32 = 2;
/// VIR_DOMAIN_CONSOLE_FORCE.
const CONSOLE_FORCE: u32 = 1;
/// The largest stream packet (VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX).
const STREAM_CHUNK_MAX: usize = 262_120;
const OPEN_ARGS: [u8; 8] = [0; 8];
/// libvirt's error codes (virerror.h) the refusals carry.
const VIR_ERR_XML_ERROR: i32 = 27;
const VIR_ERR_CONFIG_UNSUPPORTED: i32 = 67;

/// Abusive operations per limit.
const ABUSES: usize = 100_000;
/// Growth allowed over the abuse: allocator noise, not a queue.
const FLAT_KIB: u64 = 4 << 10;

fn start(tag: &str, extra: &[&str]) -> Managed {
    let mut args = vec![
        "--memory",
        "64M",
        "--cmdline",
        "quiet test=ticker ticker.count=1000000",
    ];
    args.extend_from_slice(extra);
    Managed::spawn(tag, &args, &[])
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect to the management socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn call(proc_: i32, serial: u32, args: &[u8]) -> Vec<u8> {
    frame(REMOTE, 1, proc_, 0, serial, 0, args)
}

fn reply(s: &mut UnixStream) -> (u32, i32, Vec<u8>) {
    raw_rpc::read_reply(s).expect("a reply (none within 10 s)")
}

/// An open connection.
fn open(socket: &Path) -> UnixStream {
    let mut s = connect(socket);
    s.write_all(&call(CONNECT_OPEN, 1, &OPEN_ARGS)).unwrap();
    assert_eq!(reply(&mut s).1, 0, "CONNECT_OPEN");
    s
}

/// XDR string.
fn xdr_string(text: &[u8]) -> Vec<u8> {
    let mut v = (text.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(text);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

/// The libvirt error code of an error reply.
fn error_code(payload: &[u8]) -> i32 {
    i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
}

/// Runs `abuse` ABUSES times after ABUSES/10 of warm-up (allocator pools, thread stacks),
/// and checks that the VMM's VmRSS grew by at most FLAT_KIB meanwhile.
fn assert_flat(vm: &Managed, what: &str, abuse: impl FnMut(usize)) {
    assert_flat_over(vm, what, ABUSES, abuse);
}

/// `assert_flat` over `count` abuses (for those that send a megabyte each).
fn assert_flat_over(vm: &Managed, what: &str, count: usize, mut abuse: impl FnMut(usize)) {
    for i in 0..count / 10 {
        abuse(i);
    }
    let pid = vm.child.id();
    let before = rss_kib(pid);
    let started = Instant::now();
    for i in 0..count {
        abuse(i);
    }
    let after = rss_kib(pid);
    eprintln!(
        "{what}: {count} in {:.1} s, VmRSS {before} -> {after} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        after <= before + FLAT_KIB,
        "{what}: VmRSS grew from {before} to {after} KiB over {count} abuses"
    );
    vm.assert_guest_runs();
}

/// Past `--mgmt-max-clients`, a connection waits at the socket until a client leaves; and
/// clients that come and go 10^5 times leave nothing behind.
#[test]
fn clients_past_the_limit_wait_and_churn_stays_flat() {
    if !kvm_available("clients_past_the_limit_wait_and_churn_stays_flat") {
        return;
    }
    let vm = start("max-clients", &["--mgmt-max-clients", "4"]);
    let held: Vec<UnixStream> = (0..4).map(|_| open(&vm.socket)).collect();
    let mut waiting = connect(&vm.socket);
    waiting
        .write_all(&call(CONNECT_OPEN, 1, &OPEN_ARGS))
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        waiting.read(&mut byte).is_err(),
        "a fifth client was served past --mgmt-max-clients 4"
    );
    drop(held);
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = [0u8; 3];
    waiting
        .read_exact(&mut rest)
        .expect("served once a client left");
    drop(waiting);

    assert_flat(&vm, "connect, open, close", |_| {
        drop(open(&vm.socket));
    });
}

/// A length word past libvirt's 32 MiB message (plus its own four bytes) closes the
/// connection before anything is allocated.
#[test]
fn oversized_messages_close_the_connection_and_stay_flat() {
    if !kvm_available("oversized_messages_close_the_connection_and_stay_flat") {
        return;
    }
    let vm = start("oversized", &[]);
    let mut huge = ((32 << 20) + 5u32).to_be_bytes().to_vec();
    huge.extend_from_slice(&[0; 24]);
    assert_flat(&vm, "length words of 32 MiB + 5", |_| {
        assert!(
            raw_rpc::closed_without_reply(&vm.ro_socket, &huge),
            "an oversized message was answered"
        );
    });
}

/// Calls pipelined far past the five in flight per client are all answered, in turn: the
/// server stops reading the client meanwhile instead of queueing its calls.
#[test]
fn pipelined_calls_past_the_in_flight_limit_are_answered_and_flat() {
    if !kvm_available("pipelined_calls_past_the_in_flight_limit_are_answered_and_flat") {
        return;
    }
    let vm = start("in-flight", &[]);
    let mut s = open(&vm.ro_socket);
    let batch: Vec<u8> = (0..1000u32)
        .flat_map(|serial| call(CONNECT_GET_TYPE, serial, &[]))
        .collect();
    let mut writer = s.try_clone().unwrap();
    // Each abuse is one call; they go out in batches of 1000 from a writer thread while this
    // thread reads the answers.
    let (go, batches) = std::sync::mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        for () in batches {
            writer.write_all(&batch).expect("the server keeps reading");
        }
    });
    let mut answered = 0usize;
    assert_flat(&vm, "pipelined GET_TYPE calls", |i| {
        if i % 1000 == 0 {
            go.send(()).unwrap();
        }
        let (_, status, payload) = reply(&mut s);
        assert_eq!(status, 0, "{}", error_message(&payload));
        answered += 1;
    });
    drop(go);
    sender.join().unwrap();
    assert_eq!(answered, ABUSES + ABUSES / 10);
}

/// A string argument longer than REMOTE_STRING_MAX (4 MiB) is refused from its length word,
/// before its bytes are read or allocated.
#[test]
fn oversized_string_arguments_are_refused_and_flat() {
    if !kvm_available("oversized_string_arguments_are_refused_and_flat") {
        return;
    }
    let vm = start("long-string", &[]);
    let mut s = open(&vm.ro_socket);
    let args = ((4 << 20) + 1u32).to_be_bytes();
    assert_flat(&vm, "4 MiB + 1 names", |i| {
        s.write_all(&call(DOMAIN_LOOKUP_BY_NAME, i as u32, &args))
            .unwrap();
        let (_, status, payload) = reply(&mut s);
        assert_eq!(status, 1, "an oversized string was taken");
        assert!(!error_message(&payload).is_empty());
    });
}

/// Malformed domain XML is an XML error each time; XML past 1 MiB is refused by size (a
/// thousand times: each is a megabyte on the wire).
#[test]
fn bad_and_oversized_domain_xml_is_refused_and_flat() {
    if !kvm_available("bad_and_oversized_domain_xml_is_refused_and_flat") {
        return;
    }
    let vm = start("bad-xml", &[]);
    let mut s = open(&vm.socket);
    let mut big = b"<domain type='kvm'><name>".to_vec();
    big.resize((1 << 20) + 1, b'x');
    let big = xdr_string(&big);
    assert_flat_over(&vm, "domain XML of 1 MiB + 1", 1000, |i| {
        s.write_all(&call(DOMAIN_DEFINE_XML, i as u32, &big))
            .unwrap();
        let (_, status, payload) = reply(&mut s);
        assert_eq!(status, 1);
        assert_eq!(error_code(&payload), VIR_ERR_CONFIG_UNSUPPORTED);
        assert!(
            error_message(&payload).contains("at most 1048576 are read"),
            "{}",
            error_message(&payload)
        );
    });
    let malformed = xdr_string(b"<domain type='kvm'><name>web</name><memory>64<");
    assert_flat(&vm, "malformed domain XML", |i| {
        s.write_all(&call(DOMAIN_DEFINE_XML, i as u32, &malformed))
            .unwrap();
        let (_, status, payload) = reply(&mut s);
        assert_eq!(status, 1);
        assert_eq!(error_code(&payload), VIR_ERR_XML_ERROR);
    });
    assert!(vm
        .virsh(&["dumpxml", "--inactive", common::managed::NAME])
        .contains(UUID));
}

/// Past 256 event registrations on a connection, each further one is refused.
#[test]
fn event_registrations_past_the_limit_are_refused_and_flat() {
    if !kvm_available("event_registrations_past_the_limit_are_refused_and_flat") {
        return;
    }
    let vm = start("registrations", &[]);
    let mut s = open(&vm.ro_socket);
    let args = [0u8; 8];
    for serial in 0..256 {
        s.write_all(&call(REGISTER_ANY, serial, &args)).unwrap();
        assert_eq!(reply(&mut s).1, 0);
    }
    assert_flat(&vm, "event registrations past 256", |i| {
        s.write_all(&call(REGISTER_ANY, i as u32, &args)).unwrap();
        let (_, status, payload) = reply(&mut s);
        assert_eq!(status, 1);
        assert!(error_message(&payload).contains("too many event callbacks"));
    });
}

/// remote_nonnull_domain for the managed VM: name, UUID, id (the server checks the UUID).
fn domain_ref() -> Vec<u8> {
    let mut v = xdr_string(common::managed::NAME.as_bytes());
    let hex: String = UUID.chars().filter(|c| *c != '-').collect();
    for i in 0..16 {
        v.push(u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
    }
    v.extend_from_slice(&1i32.to_be_bytes());
    v
}

/// Events for a client that never reads queue up to the per-client backlog (16 MiB), and then
/// the client is dropped, with a warning: eight such clients in turn, each with 256 lifecycle
/// registrations, while another connection suspends and resumes the VM (each round queues
/// some 2.3 * 10^5 event messages). Past the first round, VmRSS stays flat: the backlog is
/// kept as large buffers, which the allocator gives back, not as small fragments.
#[test]
fn events_for_a_client_that_never_reads_are_bounded_then_it_is_dropped() {
    if !kvm_available("events_for_a_client_that_never_reads_are_bounded_then_it_is_dropped") {
        return;
    }
    let vm = start("event-backlog", &[]);
    let mut control = open(&vm.socket);
    let dom = domain_ref();
    let mut serial = 0u32;
    let mut toggle = |control: &mut UnixStream| {
        for proc_ in [DOMAIN_SUSPEND, DOMAIN_RESUME] {
            serial += 1;
            control.write_all(&call(proc_, serial, &dom)).unwrap();
            let (_, status, payload) = reply(control);
            assert_eq!(status, 0, "{}", error_message(&payload));
        }
    };
    let pid = vm.child.id();
    let mut after_first = 0;
    for round in 0..8 {
        let mut subscriber = open(&vm.ro_socket);
        let args = [0u8; 8];
        for serial in 0..256 {
            subscriber
                .write_all(&call(REGISTER_ANY, serial, &args))
                .unwrap();
            assert_eq!(reply(&mut subscriber).1, 0);
        }
        // Two events a toggle, 256 messages each, about 100 bytes a message: 16 MiB is
        // reached within some 330 toggles.
        let mut toggles = 0;
        while !vm
            .log()
            .matches("is not reading; dropping it")
            .count()
            .ge(&(round + 1))
        {
            toggle(&mut control);
            toggles += 1;
            assert!(
                toggles < 5000,
                "round {round}: the silent client was never dropped"
            );
        }
        // Its connection ends once what was already sent has been read.
        subscriber
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut sink = Vec::new();
        subscriber
            .read_to_end(&mut sink)
            .expect("the dropped client's connection ends");
        // The server frees the client after closing it; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        // One warning per dropped client: events queued behind the one that dropped it
        // are not pushed to it (they were, and the repeated warnings ended a later round
        // before its client was dropped).
        assert_eq!(
            vm.log().matches("is not reading; dropping it").count(),
            round + 1,
            "round {round}: warnings of dropped clients"
        );
        let rss = if round == 0 {
            after_first = rss_kib(pid);
            after_first
        } else {
            // The backlog goes when the server frees the client, on its own threads: on a
            // loaded host that can take longer than the moment above, so wait for it.
            settled_rss_kib(pid, after_first + FLAT_KIB, Duration::from_secs(15))
        };
        eprintln!("round {round}: dropped after {toggles} toggles; VmRSS {rss} KiB");
        assert!(
            rss <= after_first + FLAT_KIB,
            "round {round}: VmRSS {rss} KiB, {after_first} after the first round"
        );
    }
    vm.assert_guest_runs();
}

/// VmRSS of `pid` once it is at most `limit` KiB, or as it is after `patience`.
fn settled_rss_kib(pid: u32, limit: u64, patience: Duration) -> u64 {
    let deadline = Instant::now() + patience;
    loop {
        let rss = rss_kib(pid);
        if rss <= limit || Instant::now() >= deadline {
            return rss;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// DOMAIN_OPEN_CONSOLE's arguments: the domain, no device name, `flags`.
fn open_console_args(flags: u32) -> Vec<u8> {
    let mut v = domain_ref();
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&flags.to_be_bytes());
    v
}

/// Opens the console as call `serial`: reads what comes first (the previous session's data
/// and its end) up to the call's reply, which must be a success.
fn open_console(s: &mut UnixStream, serial: u32, flags: u32) {
    s.write_all(&call(
        DOMAIN_OPEN_CONSOLE,
        serial,
        &open_console_args(flags),
    ))
    .unwrap();
    loop {
        let m = read_message(s).expect("the console open's reply (none within 10 s)");
        if m.kind == REPLY && m.serial == serial {
            assert_eq!(m.status, 0, "open console: {}", error_message(&m.payload));
            return;
        }
    }
}

/// A stream packet of the console opened by call `serial`.
fn console_packet(serial: u32, status: i32, data: &[u8]) -> Vec<u8> {
    frame(REMOTE, 1, DOMAIN_OPEN_CONSOLE, STREAM, serial, status, data)
}

/// A forced console open takes the console over 10^5 times on one connection: each
/// takeover ends the previous session's stream (so a connection never holds more than the
/// streams limit), each open is answered, and nothing is left behind.
#[test]
fn console_takeovers_are_answered_and_flat() {
    if !kvm_available("console_takeovers_are_answered_and_flat") {
        return;
    }
    let vm = start("console-takeover", &[]);
    let mut s = open(&vm.socket);
    assert_flat(&vm, "forced console opens", |i| {
        open_console(&mut s, 10 + i as u32, CONSOLE_FORCE);
    });
}

/// A console packet one byte over the stream packet limit aborts that stream with a clear
/// error, and the connection goes on: 10^3 times, a quarter of a megabyte each.
#[test]
fn oversized_console_packets_abort_the_stream_and_stay_flat() {
    if !kvm_available("oversized_console_packets_abort_the_stream_and_stay_flat") {
        return;
    }
    let vm = start("console-oversized", &[]);
    let mut s = open(&vm.socket);
    let oversized = vec![b'x'; STREAM_CHUNK_MAX + 1];
    assert_flat_over(&vm, "oversized console packets", 1000, |i| {
        let serial = 10 + i as u32;
        open_console(&mut s, serial, CONSOLE_FORCE);
        s.write_all(&console_packet(serial, STATUS_CONTINUE, &oversized))
            .unwrap();
        loop {
            let m = read_message(&mut s).expect("the stream's error (none within 10 s)");
            if m.kind == STREAM && m.serial == serial && m.status == STATUS_ERROR {
                assert!(
                    error_message(&m.payload).contains("over the limit"),
                    "{}",
                    error_message(&m.payload)
                );
                break;
            }
        }
    });
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads the console stream opened by call `serial` until `end` has come; returns how many
/// bytes came and the last 64 KiB of them.
fn read_console_until(s: &mut UnixStream, serial: u32, end: &[u8]) -> (usize, Vec<u8>) {
    let mut total = 0;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let m = read_message(s).expect("console output (none within 10 s)");
        if m.kind != STREAM || m.serial != serial {
            continue;
        }
        assert_eq!(m.status, STATUS_CONTINUE, "{}", error_message(&m.payload));
        total += m.payload.len();
        tail.extend_from_slice(&m.payload);
        let found = contains(&tail, end);
        tail.drain(..tail.len().saturating_sub(64 << 10));
        if found {
            return (total, tail);
        }
    }
}

/// Guest output for a console client that never reads: the guest prints FLOOD_LINES lines,
/// about 350 KB, five times the session's 64 KiB buffer. (3×10^4 lines, not 10^5: every
/// byte is a port write the vCPU exits for, about 40 µs each on a PVM host.) The guest is never held up, the VMM logs that the client is losing
/// output, VmRSS stays flat, and when the client reads at last it gets the newest output
/// (the flood's end) while the oldest is gone.
#[test]
fn guest_output_a_console_client_never_reads_is_bounded_and_flat() {
    if !kvm_available("guest_output_a_console_client_never_reads_is_bounded_and_flat") {
        return;
    }
    const FLOOD_LINES: usize = 30_000;
    let vm = Managed::spawn(
        "console-output",
        &["--memory", "64M", "--cmdline", "quiet"],
        &[],
    )
    .with_patience(Duration::from_secs(600));
    vm.wait_for_console("guest> ", 1);
    let pid = vm.child.id();
    let mut client = open(&vm.socket);
    open_console(&mut client, 2, 0);
    // A short flood read to its end first, so that first use is not counted.
    let flood =
        |lines: usize| console_packet(2, STATUS_CONTINUE, format!("flood {lines}\r").as_bytes());
    client.write_all(&flood(1000)).unwrap();
    read_console_until(&mut client, 2, b"flood done: 1000 lines");
    let before = rss_kib(pid);
    let started = Instant::now();
    client.write_all(&flood(FLOOD_LINES)).unwrap();
    let done = format!("flood done: {FLOOD_LINES} lines");
    vm.wait_for_console(&done, 1);
    let after = rss_kib(pid);
    let printed: usize = (1..=FLOOD_LINES)
        .map(|n| format!("flood {n}\n").len())
        .sum();
    eprintln!(
        "guest output nobody read: {FLOOD_LINES} lines ({printed} bytes) in {:.1} s, VmRSS {before} -> {after} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        after <= before + FLAT_KIB,
        "VmRSS grew from {before} to {after} KiB"
    );
    assert!(
        vm.log().contains("the client is not reading"),
        "the VMM did not log the lost output:\n{}",
        vm.log()
    );
    // The client reads at last: the newest output is there, much of the flood is not.
    let (received, tail) = read_console_until(&mut client, 2, done.as_bytes());
    eprintln!("the client then read {received} bytes");
    assert!(
        received < printed / 2,
        "{received} of {printed} bytes reached a client that did not read"
    );
    let last = format!("flood {FLOOD_LINES}");
    assert!(
        contains(&tail, last.as_bytes()),
        "the newest output did not reach the client"
    );
    assert_eq!(
        vm.virsh(&["domstate", "--reason", common::managed::NAME])
            .trim(),
        "running (booted)"
    );
}

/// Console input for a guest that never reads its UART: 10^5 packets are sent, the server
/// takes what the receive FIFO and the client's request slots hold and then stops reading
/// that client (the sender blocks) while it serves others; once another client takes the
/// console over, the rest is read and dropped. VmRSS stays flat throughout.
#[test]
fn console_input_the_guest_never_reads_is_bounded_and_flat() {
    if !kvm_available("console_input_the_guest_never_reads_is_bounded_and_flat") {
        return;
    }
    let vm = start("console-input", &[]);
    let pid = vm.child.id();
    let mut typist = open(&vm.socket);
    open_console(&mut typist, 2, 0);
    let before = rss_kib(pid);
    let mut writer = typist.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let flood = std::thread::spawn(move || {
        let packet = console_packet(2, STATUS_CONTINUE, &[b'x'; 64]);
        for _ in 0..ABUSES {
            writer.write_all(&packet).expect("console input is taken");
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // The sender stalls: the server stopped reading it.
    let mut stalled_at = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = sent.load(std::sync::atomic::Ordering::Relaxed);
        if now == stalled_at {
            break;
        }
        stalled_at = now;
    }
    assert!(
        stalled_at < ABUSES / 10,
        "{stalled_at} console packets were taken from a client whose guest reads none"
    );
    let stalled_rss = rss_kib(pid);
    // Others are served meanwhile.
    let mut other = open(&vm.socket);
    other.write_all(&call(CONNECT_GET_TYPE, 2, &[])).unwrap();
    assert_eq!(reply(&mut other).1, 0);
    // A takeover ends the typist's stream; its remaining packets are read and ignored.
    open_console(&mut other, 3, CONSOLE_FORCE);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !flood.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the typist is still blocked after the takeover ({} sent)",
            sent.load(std::sync::atomic::Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    flood.join().expect("every console packet was sent");
    let after = rss_kib(pid);
    eprintln!(
        "console input: stalled after {stalled_at} packets; VmRSS {before} -> {stalled_rss} -> {after} KiB"
    );
    assert!(
        stalled_rss <= before + FLAT_KIB && after <= before + FLAT_KIB,
        "VmRSS {before} -> {stalled_rss} -> {after} KiB"
    );
    vm.assert_guest_runs();
}
