//! virsh console: DOMAIN_OPEN_CONSOLE answers the call and binds a stream to it, whose far
//! end is the VMM's serial console (see `rpc::stream` for the packets and flow control).

use super::args::Flags;
use super::domain::DomainRef;
use super::program::Call;
use crate::rpc::RemoteError;

/// VIR_DOMAIN_CONSOLE_FORCE: take the console over from the session holding it.
const CONSOLE_FORCE: u32 = 1;
/// VIR_DOMAIN_CONSOLE_SAFE: refuse if the console cannot be held exclusively; ours always is.
const CONSOLE_SAFE: u32 = 2;

pub fn open_console(
    call: &Call,
    (dom, device, flags): (
        DomainRef,
        Option<String>,
        Flags<{ CONSOLE_FORCE | CONSOLE_SAFE }>,
    ),
) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    let force = flags.has(CONSOLE_FORCE);
    let endpoint =
        call.hypervisor
            .open_console(device.as_deref(), force, call.client.stream_waker())?;
    log::debug!(
        "management client {} holds the console{}",
        call.client.id,
        if force { " (forced)" } else { "" }
    );
    call.client.open_stream(call.header, endpoint)
}
