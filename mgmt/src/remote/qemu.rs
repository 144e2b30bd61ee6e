//! libvirt's QEMU program (qemu-monitor-command, qemu-agent-command): a driver with no QEMU
//! monitor answers every call VIR_ERR_NO_SUPPORT, not an RPC error, so virsh prints "not
//! supported".

use super::protocol::QEMU_PROGRAM;
use crate::rpc::error::{code, domain};
use crate::rpc::wire::Header;
use crate::rpc::xdr::XdrWriter;
use crate::rpc::{Client, Program, RemoteError, Scheduling};

const QEMU_VERSION: u32 = 1;

pub struct QemuProgram;

impl<D> Program<D> for QemuProgram {
    fn number(&self) -> u32 {
        QEMU_PROGRAM
    }

    fn version(&self) -> u32 {
        QEMU_VERSION
    }

    fn scheduling(&self, _: i32) -> Scheduling {
        Scheduling::default()
    }

    fn dispatch(
        &self,
        _: &Client<D>,
        call: &Header,
        _: &[u8],
        _: &mut XdrWriter,
    ) -> Result<(), RemoteError> {
        let function = match call.procedure {
            1 => "virDomainQemuMonitorCommand".to_string(),
            6 => "virDomainQemuAgentCommand".to_string(),
            8 => "virDomainQemuMonitorCommandWithFiles".to_string(),
            n => format!("QEMU procedure {n}"),
        };
        Err(RemoteError::new(
            code::NO_SUPPORT,
            domain::DOMAIN,
            format!("this function is not supported by the connection driver: {function}"),
        ))
    }
}
