//! Management thread: the libvirt remote RPC surface, so that unmodified `virsh` and
//! libvirt-python can manage the VM.
//!
//! - `xdr`: the XDR codec, bounded decoders.
//! - `wire`: framing, the message header, incremental frame reassembly, error replies.
//! - `protocol`: program, procedure, error, event and state numbers.
//! - `cpuset`: host CPU sets (libvirt cpuset text, cpumap bitmaps).
//! - `domain`: `remote_nonnull_domain` and the domain's status snapshot.
//! - `server`: event loop, worker pool, clients (see its lock rules).
//! - `dispatch`: the dispatch tables and handlers.
//! - `hypervisor`: what the VMM provides; `host`: facts about the host.

pub mod cpuset;
mod dispatch;
pub mod domain;
pub mod host;
pub mod hypervisor;
pub mod protocol;
pub mod server;
pub mod wire;
pub mod xdr;

pub use hypervisor::Hypervisor;
pub use server::{Server, ServerConfig};
