//! Console streams on the wire: the opening call's reply, data both ways on its serial,
//! finish, abort, the end from the server's side, and the bounds on both directions.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{dom_arg, start, wait_until, Peer};
use crate::remote::protocol::{procedure as p, REMOTE_PROGRAM};
use crate::rpc::error::code;
use crate::rpc::stream::{MAX_STREAMS_PER_CLIENT, STREAM_BACKLOG, STREAM_CHUNK_MAX};
use crate::rpc::wire::{self, Frame, Header};
use crate::rpc::xdr::{XdrReader, XdrWriter};
use crate::rpc::{RemoteError, StreamEndpoint, StreamRead, StreamWaker};

const STREAM: i32 = 3;
const OK: i32 = 0;
const ERROR: i32 = 1;
const CONTINUE: i32 = 2;

/// An endpoint that echoes what it takes, takes at most `room` bytes when that is set, and
/// with `flood` has endless output.
#[derive(Default)]
pub(super) struct FakeConsole {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    waker: Option<StreamWaker>,
    room: Option<usize>,
    echo: VecDeque<u8>,
    typed: Vec<u8>,
    flood: bool,
    served: usize,
    closes: usize,
    ended: bool,
}

impl FakeConsole {
    pub(super) fn open(&self, device: Option<&str>, waker: StreamWaker) -> Result<(), RemoteError> {
        if let Some(name) = device.filter(|d| *d != "serial0") {
            return Err(RemoteError::new(
                code::INTERNAL_ERROR,
                10,
                format!("cannot find character device {name}"),
            ));
        }
        self.state.lock().unwrap().waker = Some(waker);
        Ok(())
    }

    fn change(&self, f: impl FnOnce(&mut FakeState)) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            f(&mut state);
            state.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn get<R>(&self, f: impl FnOnce(&FakeState) -> R) -> R {
        f(&self.state.lock().unwrap())
    }
}

impl StreamEndpoint for FakeConsole {
    fn read(&self, max: usize) -> StreamRead {
        let mut s = self.state.lock().unwrap();
        if s.flood {
            s.served += max;
            return StreamRead::Data(vec![b'x'; max]);
        }
        if !s.echo.is_empty() {
            let n = max.min(s.echo.len());
            return StreamRead::Data(s.echo.drain(..n).collect());
        }
        if s.ended {
            StreamRead::Eof
        } else {
            StreamRead::Empty
        }
    }

    fn write(&self, data: &[u8]) -> usize {
        let mut s = self.state.lock().unwrap();
        let n = s.room.map_or(data.len(), |room| room.min(data.len()));
        if let Some(room) = s.room.as_mut() {
            *room -= n;
        }
        s.typed.extend_from_slice(&data[..n]);
        s.echo.extend(&data[..n]);
        n
    }

    fn close(&self) {
        self.state.lock().unwrap().closes += 1;
    }
}

/// Opens the console; returns the call's serial, which the stream's packets carry.
fn open_console(peer: &mut Peer, device: Option<&str>) -> (i32, u32, Vec<u8>) {
    let mut w = XdrWriter::from_vec(dom_arg());
    w.put_optional(device, |w, s| w.put_string(s));
    w.put_u32(0);
    let (status, payload) = peer.call(p::DOMAIN_OPEN_CONSOLE, &w.into_inner());
    (status, peer.serial, payload)
}

fn send_stream(peer: &mut Peer, serial: u32, status: i32, payload: &[u8]) {
    let h = Header {
        program: REMOTE_PROGRAM,
        version: 1,
        procedure: p::DOMAIN_OPEN_CONSOLE,
        kind: STREAM,
        serial,
        status,
    };
    peer.stream.write_all(&wire::frame(&h, payload)).unwrap();
}

fn next_stream(peer: &mut Peer) -> Frame {
    let f = peer.next().expect("a stream packet");
    assert_eq!(
        (f.header.kind, f.header.procedure),
        (STREAM, p::DOMAIN_OPEN_CONSOLE),
        "{:?}",
        f.header
    );
    f
}

/// Reads stream packets until `want` bytes of data have arrived.
fn read_data(peer: &mut Peer, serial: u32, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        let f = next_stream(peer);
        assert_eq!((f.header.serial, f.header.status), (serial, CONTINUE));
        assert!(!f.payload.is_empty(), "no end of stream before the data");
        got.extend_from_slice(&f.payload);
    }
    got
}

#[test]
fn data_goes_both_ways_on_the_calls_serial_until_the_client_finishes() {
    let (_server, vm, path) = start("console", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (status, serial, payload) = open_console(&mut peer, None);
    assert_eq!((status, payload.len()), (OK, 0), "void reply first");
    send_stream(&mut peer, serial, CONTINUE, b"hello\r");
    assert_eq!(read_data(&mut peer, serial, 6), b"hello\r");
    // Packets for a serial with no stream are ignored, as libvirtd ignores them.
    send_stream(&mut peer, serial + 100, CONTINUE, b"lost");
    send_stream(&mut peer, serial, OK, &[]);
    let f = next_stream(&mut peer);
    assert_eq!(
        (f.header.serial, f.header.status, f.payload.len()),
        (serial, OK, 0)
    );
    assert_eq!(
        vm.console.get(|s| (s.typed.clone(), s.closes)),
        (b"hello\r".to_vec(), 1)
    );
    assert_eq!(
        peer.call(p::DOMAIN_GET_INFO, &dom_arg()).0,
        OK,
        "the connection goes on"
    );
}

#[test]
fn abort_and_the_servers_end_are_confirmed() {
    let (_server, vm, path) = start("console-end", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (_, serial, _) = open_console(&mut peer, Some("serial0"));
    send_stream(&mut peer, serial, ERROR, &[]);
    let f = next_stream(&mut peer);
    assert_eq!(
        (f.header.serial, f.header.status),
        (serial, OK),
        "abort confirmed"
    );

    // The domain stops: an empty data packet ends the stream; the client's finish is confirmed.
    let (_, serial, _) = open_console(&mut peer, None);
    vm.console.change(|s| s.ended = true);
    let f = next_stream(&mut peer);
    assert_eq!(
        (f.header.serial, f.header.status, f.payload.len()),
        (serial, CONTINUE, 0)
    );
    send_stream(&mut peer, serial, OK, &[]);
    assert_eq!(next_stream(&mut peer).header.status, OK);
    assert_eq!(vm.console.get(|s| s.closes), 2);
}

#[test]
fn bad_devices_and_oversized_packets_get_errors() {
    let (_server, _vm, path) = start("console-bad", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (status, _, payload) = open_console(&mut peer, Some("serial7"));
    assert_eq!(status, ERROR);
    let error = RemoteError::decode(&mut XdrReader::new(&payload)).unwrap();
    assert!(error.message.contains("serial7"), "{}", error.message);

    let (_, serial, _) = open_console(&mut peer, None);
    send_stream(&mut peer, serial, CONTINUE, &vec![0; STREAM_CHUNK_MAX + 1]);
    let f = next_stream(&mut peer);
    assert_eq!(f.header.status, ERROR);
    let error = RemoteError::decode(&mut XdrReader::new(&f.payload)).unwrap();
    assert!(
        error.message.contains("over the limit"),
        "{}",
        error.message
    );
    assert_eq!(peer.call(p::DOMAIN_GET_INFO, &dom_arg()).0, OK);
}

#[test]
fn a_connection_holds_at_most_four_streams() {
    let (_server, vm, path) = start("console-many", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let serials: Vec<u32> = (0..MAX_STREAMS_PER_CLIENT)
        .map(|_| {
            let (status, serial, _) = open_console(&mut peer, None);
            assert_eq!(status, OK);
            serial
        })
        .collect();
    let (status, _, payload) = open_console(&mut peer, None);
    assert_eq!(status, ERROR, "a fifth stream was opened");
    let error = RemoteError::decode(&mut XdrReader::new(&payload)).unwrap();
    assert_eq!(error.code, code::OPERATION_FAILED);
    assert!(
        error.message.contains("at most 4 streams"),
        "{}",
        error.message
    );
    // The refused endpoint was closed, and finishing one stream frees its slot.
    assert_eq!(vm.console.get(|s| s.closes), 1);
    send_stream(&mut peer, serials[0], OK, &[]);
    assert_eq!(next_stream(&mut peer).header.status, OK);
    assert_eq!(open_console(&mut peer, None).0, OK);
}

#[test]
fn input_the_endpoint_cannot_take_stops_the_client_being_read() {
    let (_server, vm, path) = start("console-in", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (_, serial, _) = open_console(&mut peer, None);
    vm.console.change(|s| s.room = Some(0));
    for i in 0..5u8 {
        send_stream(&mut peer, serial, CONTINUE, &[b'a' + i; 1000]);
    }
    // Five packets hold the client's five request slots: the call behind them waits.
    peer.send(REMOTE_PROGRAM, p::DOMAIN_GET_INFO, 0, &dom_arg());
    peer.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        peer.next().is_none(),
        "nothing is answered while the input waits"
    );
    peer.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    vm.console.change(|s| s.room = None);
    let mut echoed = 0;
    loop {
        let f = peer.next().expect("echo and reply");
        if f.header.kind == 1 {
            assert_eq!(f.header.status, OK);
            break;
        }
        echoed += f.payload.len();
    }
    wait_until("all input delivered", || {
        vm.console.get(|s| s.typed.len()) == 5000
    });
    let typed = vm.console.get(|s| s.typed.clone());
    let expected: Vec<u8> = (0..5u8).flat_map(|i| [b'a' + i; 1000]).collect();
    assert_eq!(typed, expected, "in order, nothing lost");
    assert!(echoed <= 5000);
}

#[test]
fn a_client_that_stops_reading_stops_the_endpoint_being_read() {
    let (_server, vm, path) = start("console-out", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (_, serial, _) = open_console(&mut peer, None);
    vm.console.change(|s| s.flood = true);
    wait_until("output to flow", || vm.console.get(|s| s.served) > 0);
    std::thread::sleep(Duration::from_millis(200));
    let settled = |vm: &super::FakeVm| {
        let before = vm.console.get(|s| s.served);
        std::thread::sleep(Duration::from_millis(300));
        (before, vm.console.get(|s| s.served))
    };
    let (before, after) = settled(&vm);
    assert_eq!(
        before, after,
        "reading stops while the client does not read"
    );
    // The backlog, what the socket buffers hold, and one chunk.
    assert!(after < STREAM_BACKLOG + (4 << 20), "served {after}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = 0;
    while read < 4 * after && Instant::now() < deadline {
        read += read_data(&mut peer, serial, 1).len();
    }
    assert!(
        vm.console.get(|s| s.served) > after,
        "it resumes as the client reads"
    );
    drop(peer);
    wait_until("the stream to close with its client", || {
        vm.console.get(|s| s.closes) == 1
    });
}
