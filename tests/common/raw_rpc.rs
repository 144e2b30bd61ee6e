//! Hand-made libvirt RPC frames, for what no real client sends: bad lengths, unknown
//! programs, pipelined calls, clients that never read.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A frame: the length word, the six header words, then `payload`.
pub fn frame(
    program: u32,
    version: u32,
    proc_: i32,
    kind: i32,
    serial: u32,
    status: i32,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((28 + payload.len()) as u32).to_be_bytes());
    for v in [
        program,
        version,
        proc_ as u32,
        kind as u32,
        serial,
        status as u32,
    ] {
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

pub const REMOTE: u32 = 0x2000_8086;

/// Sends `bytes`, then reads one reply frame (None if the server closed the connection).
pub fn exchange(socket: &Path, bytes: &[u8]) -> Option<(i32, Vec<u8>)> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    read_reply(&mut s).map(|(_, status, payload)| (status, payload))
}

/// Reads one reply frame: (serial, status, payload); None if the connection ended first.
pub fn read_reply(s: &mut UnixStream) -> Option<(u32, i32, Vec<u8>)> {
    read_message(s).map(|m| (m.serial, m.status, m.payload))
}

/// One message of any type, as `read_message` gives it.
pub struct Message {
    pub kind: i32,
    pub serial: u32,
    pub status: i32,
    pub payload: Vec<u8>,
}

/// Reads one message (reply, event or stream packet); None if the connection ended first.
pub fn read_message(s: &mut UnixStream) -> Option<Message> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    s.read_exact(&mut rest).ok()?;
    let word = |i: usize| [rest[i], rest[i + 1], rest[i + 2], rest[i + 3]];
    Some(Message {
        kind: i32::from_be_bytes(word(12)),
        serial: u32::from_be_bytes(word(16)),
        status: i32::from_be_bytes(word(20)),
        payload: rest[24..].to_vec(),
    })
}

pub fn error_message(payload: &[u8]) -> String {
    let len = u32::from_be_bytes([payload[12], payload[13], payload[14], payload[15]]) as usize;
    String::from_utf8_lossy(&payload[16..16 + len]).into_owned()
}

/// True if the server closed the connection without answering.
pub fn closed_without_reply(socket: &Path, bytes: &[u8]) -> bool {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}
