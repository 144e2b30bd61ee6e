//! A program, as libvirt's virNetServerProgram: the (number, version) pair calls are routed
//! by, how each procedure is scheduled, and the dispatcher that runs it. The server knows no
//! program's procedures; `D` is the per-client private data the programs share (libvirt's
//! client privateData).

use super::error::RemoteError;
use super::server::Client;
use super::wire::Header;
use super::xdr::XdrWriter;

/// How the server schedules one procedure's calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scheduling {
    /// May run on the priority workers, so that slow calls cannot hold it up (destroy).
    pub priority: bool,
    /// The client's later calls are not parsed until this one is answered, so none can run
    /// before it (CONNECT_OPEN: priority workers would otherwise overtake it).
    pub barrier: bool,
    /// Answered on the event-loop thread itself: the call reads a snapshot and never waits,
    /// so handing it to a worker (a wakeup and two thread switches) would cost more than
    /// running it. Anything that may block stays on the workers.
    pub inline: bool,
}

pub trait Program<D>: Send + Sync {
    fn number(&self) -> u32;
    fn version(&self) -> u32;
    /// Scheduling of `procedure`; unknown procedures get the default (their error reply is
    /// the dispatcher's to make).
    fn scheduling(&self, procedure: i32) -> Scheduling;
    /// Runs one call (header `call`) on a worker, with no server or client lock held: decodes
    /// `args`, writes the result into `reply` (which already holds the reply header), or
    /// returns the error. A handler may bind a stream to the call (`Client::open_stream`).
    fn dispatch(
        &self,
        client: &Client<D>,
        call: &Header,
        args: &[u8],
        reply: &mut XdrWriter,
    ) -> Result<(), RemoteError>;
}

/// A message a program sends unasked (an event), to whichever clients want it. Posted from
/// any thread; the server's event loop asks each client's private data what to send.
pub trait Broadcast<D>: Send {
    /// Appends this event's messages for one client (called with that client locked).
    fn messages_for(&self, data: &D, out: &mut Vec<Vec<u8>>);
}
