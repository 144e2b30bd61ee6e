//! The REMOTE program on the RPC layer: its procedure table (one line a procedure, in
//! `procedures`), the access checks libvirtd's dispatcher makes before any handler, and the
//! typed bridge from a call's bytes to a handler's arguments and back.

use std::sync::Arc;

use super::domain::{format_uuid, DomainRef, DomainStatus};
use super::errors::{invalid_arg, no_domain, rpc_error};
use super::procedures::PROCEDURES;
use super::protocol::{REMOTE_PROGRAM, REMOTE_VERSION};
use super::{Hypervisor, RemoteClient};
use crate::rpc::error::{code, domain, RemoteError};
use crate::rpc::wire::Header;
use crate::rpc::xdr::{Decode, Encode, XdrReader, XdrWriter};
use crate::rpc::{Client, Program, Scheduling};
use crate::storage::StoragePools;

/// What a handler sees of the call: the VMM, the client that made it, and its header (to
/// bind a stream to).
pub struct Call<'a> {
    pub hypervisor: &'a dyn Hypervisor,
    /// The host's directory storage pools (virt-install names disks through them).
    pub storage: &'a StoragePools,
    pub client: &'a Client<RemoteClient>,
    pub header: &'a Header,
}

impl Call<'_> {
    /// The domain's snapshot; None while this host has no domain.
    pub fn status(&self) -> Option<DomainStatus> {
        self.hypervisor.status()
    }

    /// Checks that a `remote_nonnull_domain` argument names our domain (by UUID, as
    /// libvirtd does: the id a client echoes back may be stale), and returns its status.
    pub fn domain(&self, asked: &DomainRef) -> Result<DomainStatus, RemoteError> {
        let status = self.status().filter(|s| s.domain.uuid == asked.uuid);
        let Some(status) = status else {
            return Err(no_domain(format!(
                "no domain with matching uuid '{}' ({})",
                format_uuid(&asked.uuid),
                asked.name
            )));
        };
        Ok(status)
    }
}

/// Runs one procedure's call: decodes its arguments, refuses unsupported flags, runs the
/// handler and encodes its result.
pub type Run = fn(&Call, &[u8], &mut XdrWriter) -> Result<(), RemoteError>;

/// Decodes one procedure's arguments and checks their flags, without running anything: what
/// the fuzz targets exercise for every procedure in the table.
pub type CheckArgs = fn(&[u8]) -> Result<(), RemoteError>;

/// One procedure.
pub struct Procedure {
    pub number: i32,
    /// The libvirt API function it serves, as errors name it.
    pub name: &'static str,
    pub run: Run,
    pub check_args: CheckArgs,
    pub attributes: u8,
}

/// Procedure attributes (or-ed in the table).
pub mod attr {
    /// Allowed before CONNECT_OPEN.
    pub const BEFORE_OPEN: u8 = 1;
    /// Changes state: refused on read-only connections.
    pub const MUTATING: u8 = 2;
    /// May run on the priority workers.
    pub const PRIORITY: u8 = 4;
    /// Later calls of the client wait for it (CONNECT_OPEN).
    pub const BARRIER: u8 = 8;
    /// Never waits (reads the domain's snapshot): answered on the event-loop thread.
    pub const INLINE: u8 = 16;
}

impl Procedure {
    fn has(&self, attribute: u8) -> bool {
        self.attributes & attribute != 0
    }
}

/// The bridge from bytes to a typed handler; the table's `procedure!` lines instantiate it.
pub fn invoke<A: Decode, R: Encode>(
    call: &Call,
    args: &[u8],
    reply: &mut XdrWriter,
    name: &'static str,
    handler: fn(&Call, A) -> Result<R, RemoteError>,
) -> Result<(), RemoteError> {
    let args = decode_checked::<A>(args, name)?;
    handler(call, args)?.encode(reply);
    Ok(())
}

/// The decoding half of `invoke`; the handler only names the argument type.
pub fn check_args<A: Decode, R>(
    args: &[u8],
    name: &'static str,
    _handler: fn(&Call, A) -> Result<R, RemoteError>,
) -> Result<(), RemoteError> {
    decode_checked::<A>(args, name).map(drop)
}

fn decode_checked<A: Decode>(args: &[u8], name: &'static str) -> Result<A, RemoteError> {
    let args = A::decode(&mut XdrReader::new(args))?;
    let unsupported = args.unsupported_flags();
    if unsupported != 0 {
        return Err(invalid_arg(format!(
            "unsupported flags ({unsupported:#x}) in function {name}"
        )));
    }
    Ok(args)
}

/// One line of the procedure table: number, API name, handler, attributes.
macro_rules! procedure {
    ($number:expr, $name:literal, $handler:path) => {
        procedure!($number, $name, $handler, 0)
    };
    ($number:expr, $name:literal, $handler:path, $attributes:expr) => {
        $crate::remote::program::Procedure {
            number: $number,
            name: $name,
            run: |call, args, reply| {
                $crate::remote::program::invoke(call, args, reply, $name, $handler)
            },
            check_args: |args| $crate::remote::program::check_args(args, $name, $handler),
            attributes: $attributes,
        }
    };
}
pub(super) use procedure;

/// Every procedure of the table, by number.
pub fn procedures() -> &'static [Procedure] {
    PROCEDURES
}

pub(super) fn find(number: i32) -> Option<&'static Procedure> {
    PROCEDURES
        .binary_search_by_key(&number, |p| p.number)
        .ok()
        .map(|i| &PROCEDURES[i])
}

pub struct RemoteProgram {
    hypervisor: Arc<dyn Hypervisor>,
    storage: StoragePools,
}

impl RemoteProgram {
    pub fn new(hypervisor: Arc<dyn Hypervisor>) -> RemoteProgram {
        RemoteProgram {
            hypervisor,
            storage: StoragePools::new(),
        }
    }
}

/// libvirtd's checks before a handler: the connection is open, and a read-only one may not
/// change anything.
fn check_access(procedure: &Procedure, client: &Client<RemoteClient>) -> Result<(), RemoteError> {
    let (open, readonly) = client.with_data(|d| (d.open, d.readonly));
    if !procedure.has(attr::BEFORE_OPEN) && !open {
        return Err(rpc_error(
            code::INTERNAL_ERROR,
            "internal error: hypervisor connection not open",
        ));
    }
    if procedure.has(attr::MUTATING) && (readonly || client.readonly) {
        return Err(RemoteError::new(
            code::OPERATION_DENIED,
            domain::REMOTE,
            format!(
                "operation forbidden: read only access prevents {}",
                procedure.name
            ),
        ));
    }
    Ok(())
}

impl Program<RemoteClient> for RemoteProgram {
    fn number(&self) -> u32 {
        REMOTE_PROGRAM
    }

    fn version(&self) -> u32 {
        REMOTE_VERSION
    }

    fn scheduling(&self, procedure: i32) -> Scheduling {
        find(procedure).map_or_else(Scheduling::default, |p| Scheduling {
            priority: p.has(attr::PRIORITY),
            barrier: p.has(attr::BARRIER),
            inline: p.has(attr::INLINE),
        })
    }

    fn dispatch(
        &self,
        client: &Client<RemoteClient>,
        header: &Header,
        args: &[u8],
        reply: &mut XdrWriter,
    ) -> Result<(), RemoteError> {
        let number = header.procedure;
        let procedure = find(number)
            .ok_or_else(|| rpc_error(code::RPC, format!("unknown procedure: {number}")))?;
        check_access(procedure, client)?;
        let call = Call {
            hypervisor: self.hypervisor.as_ref(),
            storage: &self.storage,
            client,
            header,
        };
        (procedure.run)(&call, args, reply)
    }
}
