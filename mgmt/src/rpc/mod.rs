//! The generic RPC layer, like libvirt's src/rpc: it frames, routes and schedules calls, and
//! knows nothing of any program's procedures.
//!
//! - `xdr`: the XDR codec, bounded decoders, and the `Decode`/`Encode` traits typed
//!   arguments and results implement.
//! - `wire`: framing, the message header, incremental frame reassembly.
//! - `error`: the error reply and libvirt's error numbers.
//! - `program`: the `Program` trait a program implements, and `Broadcast` for its events.
//! - `stream`: streams bound to a call (the console), and what their far end implements.
//! - `server`: event loop, worker pool, clients, keepalive, streams (see its lock rules).

pub mod error;
pub mod program;
pub mod server;
pub mod stream;
pub mod wire;
pub mod xdr;

pub use error::RemoteError;
pub use program::{Broadcast, Program, Scheduling};
pub use server::{Client, Server, ServerConfig};
pub use stream::{StreamEndpoint, StreamRead, StreamWaker};
