//! Management thread: the libvirt remote RPC surface, so that unmodified `virsh` and
//! libvirt-python can manage the VM.
//!
//! - `rpc`: the generic layer (XDR, framing, the server with its event loop and workers,
//!   the `Program` trait). It knows no procedures.
//! - `remote`: the REMOTE program on top of it, and what it needs from the VMM
//!   (`Hypervisor`).
//! - `cpuset`: host CPU sets (libvirt cpuset text, cpumap bitmaps); `host`: host facts and
//!   the documents made of them; `xml`: the writer those documents use.

pub mod cpuset;
pub mod host;
pub mod remote;
pub mod rpc;
pub mod storage;
pub mod thread_hook;
pub mod xml;

pub use remote::{Hypervisor, RemoteServer};
pub use rpc::ServerConfig;

#[cfg(test)]
mod tests;
