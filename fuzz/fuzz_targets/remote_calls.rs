//! The REMOTE procedures' handlers, past their argument decoding: a sequence of calls to the
//! VMM's real host (vmm::host::Host, as `vmm serve` runs it with no state directory) through
//! the real management server, on a socket. Each input gets a new host and server, so a
//! domain or pool one input defines is gone for the next. Every call must be answered (a
//! reply or an error) on a connection that stays open.
//!
//! Left out: the calls that boot a VM (the target runs no main loop, and a boot per input is
//! what the integration tests do), CONNECT_CLOSE (it ends the connection, rightly), and the
//! storage calls that create, wipe, resize or delete files, since fuzzed pool paths would
//! reach the host's files.
//!
//! An input is a sequence of calls, each: the procedure's number (two bytes, big-endian; one
//! the table lacks or that is left out picks one of the procedures left), the arguments'
//! length (two bytes, big-endian), the arguments. scripts/fuzz-record-rpc.py writes real
//! clients' sessions in this form.
#![no_main]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mgmt::remote::protocol::{procedure as p, REMOTE_PROGRAM, REMOTE_VERSION};
use mgmt::{RemoteServer, ServerConfig};
use vmm::host::Host;
use vmm::main_loop::{MainLoop, Requests};
use vmm::placement::VcpuPlacement;

const NOT_FUZZED: &[i32] = &[
    p::CONNECT_CLOSE,
    p::DOMAIN_CREATE,
    p::DOMAIN_CREATE_XML,
    p::DOMAIN_CREATE_WITH_FLAGS,
    p::STORAGE_POOL_BUILD,
    p::STORAGE_VOL_CREATE_XML,
    p::STORAGE_VOL_CREATE_XML_FROM,
    p::STORAGE_VOL_DELETE,
    p::STORAGE_VOL_WIPE,
    p::STORAGE_VOL_WIPE_PATTERN,
    p::STORAGE_VOL_RESIZE,
];
/// Calls per input, and the largest arguments one may carry.
const MAX_CALLS: usize = 16;
/// Message types (virnetprotocol.x).
const CALL: u32 = 0;
const REPLY: u32 = 1;
/// How long a call may go unanswered before it is a finding.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

struct Fixture {
    requests: Arc<Requests>,
    procedures: Vec<i32>,
    socket: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let main_loop = MainLoop::new().expect("a main loop");
        let requests = main_loop.requests();
        // Kept for the process's life: the host's requests wake its loop.
        std::mem::forget(main_loop);
        let procedures = mgmt::remote::procedure_numbers()
            .filter(|n| !NOT_FUZZED.contains(n))
            .collect();
        let dir = std::env::temp_dir().join(format!("vmm-fuzz-calls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a socket directory");
        Fixture {
            requests,
            procedures,
            socket: dir.join("remote.sock"),
        }
    })
}

fn frame(procedure: i32, serial: u32, args: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(28 + args.len());
    v.extend_from_slice(&((28 + args.len()) as u32).to_be_bytes());
    for word in [
        REMOTE_PROGRAM,
        REMOTE_VERSION,
        procedure as u32,
        CALL,
        serial,
        0,
    ] {
        v.extend_from_slice(&word.to_be_bytes());
    }
    v.extend_from_slice(args);
    v
}

/// The next message's type and serial (its body is read and dropped).
fn next_message(s: &mut UnixStream) -> (u32, u32) {
    let mut length = [0u8; 4];
    s.read_exact(&mut length)
        .expect("a reply: the server answers every call and keeps the connection");
    let length = u32::from_be_bytes(length) as usize;
    assert!(length >= 28, "a message shorter than its header");
    let mut rest = vec![0u8; length - 4];
    s.read_exact(&mut rest).expect("the whole message");
    let word = |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    (word(12), word(16))
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let mut calls = Vec::new();
    let mut rest = data;
    while let [number_high, number_low, high, low, tail @ ..] = rest {
        if calls.len() == MAX_CALLS {
            break;
        }
        let length = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (args, after) = tail.split_at(length);
        let number = i32::from(u16::from_be_bytes([*number_high, *number_low]));
        let procedure = if fixture.procedures.binary_search(&number).is_ok() {
            number
        } else {
            fixture.procedures[number as usize % fixture.procedures.len()]
        };
        calls.push((procedure, args));
        rest = after;
    }
    let host = Host::new(fixture.requests.clone(), None, None, VcpuPlacement::Auto);
    let config = ServerConfig {
        socket: fixture.socket.clone(),
        min_workers: 1,
        max_workers: 2,
        prio_workers: 1,
        keepalive_interval: 0,
        ..ServerConfig::default()
    };
    // The host is not given the server (`set_server`): the two would hold each other and
    // outlive the input. So the host emits no lifecycle events here.
    let server = RemoteServer::start(config, host.clone()).expect("the server starts");
    let mut s = UnixStream::connect(&fixture.socket).expect("connect");
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).expect("timeout");
    s.write_all(&frame(p::CONNECT_OPEN, 0, &[0; 8]))
        .expect("open");
    assert_eq!(next_message(&mut s), (REPLY, 0));
    for (i, (procedure, args)) in calls.iter().enumerate() {
        let serial = i as u32 + 1;
        s.write_all(&frame(*procedure, serial, args))
            .expect("the server takes a well-formed call");
        // Events and stream data may come first; the call's reply must come.
        loop {
            let (kind, got) = next_message(&mut s);
            if kind == REPLY && got == serial {
                break;
            }
        }
    }
    drop(s);
    drop(host);
    drop(server);
});
