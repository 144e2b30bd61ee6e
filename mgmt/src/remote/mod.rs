//! The REMOTE program (libvirt's remote_protocol.x, served as libvirtd's
//! remote_daemon_dispatch.c serves it) on the generic RPC layer, plus the QEMU program that
//! answers "not supported".
//!
//! - `procedures`: the table, one procedure a line; `program`: dispatch, access checks and
//!   the typed bridge to handlers; `args`: argument types (bounded strings, flags).
//! - Handlers by area: `connect` (connection), `definitions` (create, define, undefine
//!   from domain XML), `node` (host data: capabilities, stats, free
//!   memory, sysinfo), `queries`, `lifecycle`, `cpus`, `events`, `stats` (per-device and
//!   domain statistics), `domstats` (the grouped statistics), `console` (the console
//!   stream), `storage` (directory pools and their volumes), `unsupported`.
//! - `filters`: the list flags; `typed_params`: the named values statistics calls return.
//! - `domain`: `remote_nonnull_domain` and the status snapshot; `hypervisor`: what the VMM
//!   provides; `protocol`: the numbers.

mod args;
mod connect;
mod console;
mod cpus;
mod definitions;
pub mod domain;
mod domstats;
mod errors;
mod events;
mod filters;
pub mod hypervisor;
mod lifecycle;
mod node;
mod procedures;
mod program;
pub mod protocol;
mod qemu;
mod queries;
mod stats;
mod storage;
pub mod typed_params;
mod unsupported;

use std::sync::Arc;

pub use domain::{DomainRef, DomainStatus};
pub use hypervisor::{CpuTimes, DiskStats, Hypervisor, InterfaceStats, VcpuInfo};

use crate::rpc::{Program, Server, ServerConfig};
use events::{Callback, DomainEvent};
use program::RemoteProgram;
use protocol::Lifecycle;
use qemu::QemuProgram;

/// Decodes a REMOTE call's arguments the way the dispatcher does before running it, and
/// runs nothing: None if the table has no such procedure. For the fuzz targets, which reach
/// every procedure through this, a new one included.
pub fn check_call_args(procedure: i32, args: &[u8]) -> Option<Result<(), crate::rpc::RemoteError>> {
    program::find(procedure).map(|p| (p.check_args)(args))
}

/// The numbers of every REMOTE procedure, ascending.
pub fn procedure_numbers() -> impl Iterator<Item = i32> {
    program::procedures().iter().map(|p| p.number)
}

/// What the REMOTE program keeps about one client (libvirtd's daemonClientPrivate).
#[derive(Default)]
pub struct RemoteClient {
    /// CONNECT_OPEN succeeded.
    open: bool,
    /// CONNECT_OPEN asked for a read-only connection.
    readonly: bool,
    callbacks: Vec<Callback>,
    next_callback_id: i32,
}

/// The management server: the RPC server carrying the REMOTE and QEMU programs.
pub struct RemoteServer {
    server: Server<RemoteClient>,
}

impl RemoteServer {
    /// Binds the sockets and starts serving `hypervisor`.
    pub fn start(
        config: ServerConfig,
        hypervisor: Arc<dyn Hypervisor>,
    ) -> Result<RemoteServer, String> {
        let programs: Vec<Arc<dyn Program<RemoteClient>>> = vec![
            Arc::new(RemoteProgram::new(hypervisor)),
            Arc::new(QemuProgram),
        ];
        Ok(RemoteServer {
            server: Server::start(config, programs)?,
        })
    }

    /// Sends a lifecycle event to every subscribed client, from the server's event loop.
    pub fn emit_lifecycle(&self, domain: &DomainRef, event: Lifecycle) {
        self.server
            .post(Box::new(DomainEvent::lifecycle(domain, event)));
    }

    /// Sends a reboot event (the guest reset) to every subscribed client.
    pub fn emit_reboot(&self, domain: &DomainRef) {
        self.server.post(Box::new(DomainEvent::reboot(domain)));
    }

    /// Connected clients (for tests and logs).
    pub fn client_count(&self) -> usize {
        self.server.client_count()
    }
}
