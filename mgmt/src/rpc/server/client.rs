//! One connection: its socket, the message being read (rx), complete calls waiting for a worker
//! (counted by `nrequests`), replies and events waiting to be written (tx), and the programs'
//! private data `D`. Everything mutable is behind the client lock (taken after the server
//! lock).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::streams::OpenStream;
use crate::rpc::stream::{StreamEndpoint, StreamWaker};
use crate::rpc::wire::{Frame, FrameError, FrameReader, Header};
use crate::rpc::RemoteError;

/// Most bytes read from a socket at once; unprocessed bytes wait here while the client is at
/// its request limit, so this also bounds a client's receive memory.
pub const READ_CHUNK: usize = 64 * 1024;

/// Untracked messages (events, stream data) join the last queued untracked one up to this
/// size: a backlog is then a few hundred large buffers, not 10^5 small ones whose freed
/// memory the allocator keeps in fragments.
const COALESCE_UNTRACKED: usize = 64 * 1024;

/// A message to write; `tracked` replies release one request slot when fully written.
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub written: usize,
    pub tracked: bool,
    /// Messages in `bytes` (untracked ones are merged).
    pub messages: usize,
}

pub struct ClientState<D> {
    reader: FrameReader,
    /// Bytes read but not yet parsed (at most READ_CHUNK).
    unparsed: Vec<u8>,
    pub tx: VecDeque<Outgoing>,
    pub tx_bytes: usize,
    /// Messages in tx, counted before merging.
    pub tx_messages: usize,
    /// Messages read and not yet answered: calls dispatched or queued, and the replies the
    /// event loop made itself (errors, keepalive pongs) until they are written. At the limit
    /// nothing more is parsed or read, so a client that never reads is bounded too.
    pub nrequests: usize,
    /// A call that must finish before the next is parsed (CONNECT_OPEN) is in flight: later
    /// calls wait, so a priority worker cannot run them before it.
    barrier: bool,
    /// The client said it speaks keepalive: the server may ping it.
    pub keepalive: bool,
    pub last_heard: Instant,
    pub pings_unanswered: u32,
    pub closed: bool,
    /// Event-loop interest currently registered (read, write).
    pub interest: (bool, bool),
    /// Streams bound to this client's calls (the console).
    pub(super) streams: Vec<OpenStream>,
    /// What the programs keep about this client.
    pub data: D,
}

pub struct Client<D> {
    pub id: u64,
    pub stream: UnixStream,
    /// It connected through the read-only socket.
    pub readonly: bool,
    /// Wakes the event loop for this client (stream endpoints call it).
    waker: StreamWaker,
    state: Mutex<ClientState<D>>,
}

/// What reading from the socket produced.
pub enum ReadOutcome {
    /// Complete frames, in order.
    Frames(Vec<Frame>),
    /// The peer closed the connection, or broke the protocol: drop the client.
    Closed(String),
}

impl<D: Default> Client<D> {
    pub(super) fn new(
        id: u64,
        stream: UnixStream,
        readonly: bool,
        waker: StreamWaker,
    ) -> Client<D> {
        Client {
            id,
            stream,
            readonly,
            waker,
            state: Mutex::new(ClientState {
                reader: FrameReader::new(),
                unparsed: Vec::new(),
                tx: VecDeque::new(),
                tx_bytes: 0,
                tx_messages: 0,
                nrequests: 0,
                barrier: false,
                keepalive: false,
                last_heard: Instant::now(),
                pings_unanswered: 0,
                closed: false,
                interest: (true, false),
                streams: Vec::new(),
                data: D::default(),
            }),
        }
    }
}

impl<D> Client<D> {
    pub(super) fn lock(&self) -> MutexGuard<'_, ClientState<D>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the programs' data for this client, under the client lock.
    pub fn with_data<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut self.lock().data)
    }

    /// The client speaks keepalive (it said so): ping it when it falls silent.
    pub fn enable_keepalive(&self) {
        self.lock().keepalive = true;
    }

    /// What a stream endpoint calls to have the event loop move its data.
    pub fn stream_waker(&self) -> StreamWaker {
        self.waker.clone()
    }

    /// Binds a stream to the call with header `call`: it starts once the call's (successful)
    /// reply is queued. For a handler, which must then return Ok.
    pub fn open_stream(
        &self,
        call: &Header,
        endpoint: Arc<dyn StreamEndpoint>,
    ) -> Result<(), RemoteError> {
        self.lock().open_stream(call, endpoint)
    }
}

impl<D> ClientState<D> {
    pub fn push(&mut self, bytes: Vec<u8>, tracked: bool) {
        if self.closed {
            return;
        }
        self.tx_bytes += bytes.len();
        self.tx_messages += 1;
        if !tracked {
            if let Some(back) = self.tx.back_mut() {
                if !back.tracked && back.bytes.len() + bytes.len() <= COALESCE_UNTRACKED {
                    // Appending leaves `written` valid: it counts from the front. One
                    // allocation a buffer, not a doubling series.
                    back.bytes
                        .reserve_exact(COALESCE_UNTRACKED - back.bytes.len());
                    back.bytes.extend_from_slice(&bytes);
                    back.messages += 1;
                    return;
                }
            }
        }
        self.tx.push_back(Outgoing {
            bytes,
            written: 0,
            tracked,
            messages: 1,
        });
    }

    /// Parses buffered bytes into frames while the client may have more requests in flight
    /// (`limit` is max-client-requests) and no barrier call (`is_barrier`) waits for its reply.
    pub fn parse(
        &mut self,
        limit: usize,
        is_barrier: &dyn Fn(&Header) -> bool,
    ) -> Result<Vec<Frame>, FrameError> {
        let mut frames = Vec::new();
        let mut offset = 0;
        while offset < self.unparsed.len() && self.nrequests + frames.len() < limit && !self.barrier
        {
            let (used, frame) = self.reader.push(&self.unparsed[offset..])?;
            offset += used;
            if let Some(frame) = frame {
                self.barrier = is_barrier(&frame.header);
                frames.push(frame);
            }
        }
        self.unparsed.drain(..offset);
        Ok(frames)
    }

    /// True when buffered input could be parsed now: a request slot is free and no barrier
    /// call is in flight.
    pub fn wants_parse(&self, limit: usize) -> bool {
        !self.unparsed.is_empty() && self.nrequests < limit && !self.barrier
    }

    /// Reads what the socket has (non-blocking) into `scratch`, the event loop's reusable
    /// buffer, and parses it.
    pub fn read_from(
        &mut self,
        mut stream: &UnixStream,
        limit: usize,
        is_barrier: &dyn Fn(&Header) -> bool,
        scratch: &mut [u8],
    ) -> ReadOutcome {
        let room = READ_CHUNK
            .saturating_sub(self.unparsed.len())
            .min(scratch.len());
        if room > 0 {
            match stream.read(&mut scratch[..room]) {
                Ok(0) => return ReadOutcome::Closed("end of file".into()),
                Ok(n) => {
                    self.unparsed.extend_from_slice(&scratch[..n]);
                    self.last_heard = Instant::now();
                    self.pings_unanswered = 0;
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Closed(e.to_string()),
            }
        }
        match self.parse(limit, is_barrier) {
            Ok(frames) => ReadOutcome::Frames(frames),
            Err(e) => ReadOutcome::Closed(e.to_string()),
        }
    }

    /// Writes as much of tx as the socket takes. Returns how many tracked replies completed,
    /// or Err if the socket failed.
    pub fn write_to(&mut self, mut stream: &UnixStream) -> std::io::Result<usize> {
        let mut completed = 0;
        while let Some(front) = self.tx.front_mut() {
            match stream.write(&front.bytes[front.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    front.written += n;
                    if front.written == front.bytes.len() {
                        if let Some(done) = self.tx.pop_front() {
                            self.tx_bytes -= done.bytes.len();
                            self.tx_messages -= done.messages;
                            completed += usize::from(done.tracked);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.nrequests = self.nrequests.saturating_sub(completed);
        if self.nrequests == 0 {
            self.barrier = false;
        }
        Ok(completed)
    }
}
