//! Streams bound to a call, as libvirt's (virNetServerStream, remote_daemon_stream.c): the
//! call that opens one is answered first, then both sides send STREAM packets carrying that
//! call's header until one side ends it. What is at the other end of the data (the serial
//! console) implements `StreamEndpoint`; the server moves bytes between it and the client
//! from its event loop.
//!
//! Flow control is bounded both ways:
//! - towards the client, the endpoint is read only while the client's unsent output stays
//!   under `STREAM_BACKLOG` and `STREAM_QUEUED_MAX`; past that the endpoint's own bounded buffer decides (the
//!   console drops its oldest output rather than stall the guest);
//! - from the client, each data packet holds one of the client's request slots until the
//!   endpoint has taken all of it, so a client typing faster than the guest reads simply
//!   stops being read, like any client at its request limit.

use std::sync::Arc;

use super::error::RemoteError;

/// Most data bytes in one packet, libvirt's VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX: what
/// libvirtd sends, and the most a client may send (a bigger packet aborts the stream).
pub const STREAM_CHUNK_MAX: usize = 262_120;

/// Unsent bytes a client may have queued before its streams stop being read.
pub const STREAM_BACKLOG: usize = 1 << 20;

/// Unsent messages a client may have queued before its streams stop being read. Console
/// output comes a few bytes at a time, so without this a stalled client would queue a
/// megabyte as tens of thousands of small packets; with it, output waits in the endpoint's
/// buffer and leaves in big packets once the client reads again.
pub const STREAM_QUEUED_MAX: usize = 64;

/// Streams one client may have open at once.
pub const MAX_STREAMS_PER_CLIENT: usize = 4;

/// What reading an endpoint gave.
pub enum StreamRead {
    Data(Vec<u8>),
    /// Nothing now; the endpoint wakes the server when there is.
    Empty,
    /// The source ended (the domain stopped): the client gets an empty data packet.
    Eof,
    /// The stream cannot go on (another session took the console over).
    Failed(RemoteError),
}

/// The far end of a stream. Called on the server's event loop with the client locked, so
/// an implementation must never block.
pub trait StreamEndpoint: Send + Sync {
    /// Up to `max` bytes for the client.
    fn read(&self, max: usize) -> StreamRead;
    /// Bytes from the client; returns how many it took. Taking fewer means "full": the server
    /// keeps the rest and tries again when woken.
    fn write(&self, data: &[u8]) -> usize;
    /// The client finished or aborted the stream, or went away.
    fn close(&self);
}

/// Wakes the server's event loop for one client: an endpoint calls it when it has data, or
/// room for data, after `read` said Empty or `write` took less than offered. Cheap and safe
/// from any thread (a vCPU thread writing to the console, the VMM's main loop).
#[derive(Clone)]
pub struct StreamWaker(Arc<dyn Fn() + Send + Sync>);

impl StreamWaker {
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> StreamWaker {
        StreamWaker(Arc::new(wake))
    }

    pub fn wake(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for StreamWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamWaker")
    }
}
