//! Changing the domain's run state. Each call files a request with the VMM's main loop
//! (through `Hypervisor`) and returns once the loop confirms it.

use super::args::{Flags, NoFlags};
use super::domain::DomainRef;
use super::program::Call;
use super::protocol::START_PAUSED;
use crate::rpc::RemoteError;

/// The shutdown/reboot modes this machine has: the default and the ACPI power button (both
/// press the button); agent, initctl, signal and paravirt modes are refused.
const ACPI_POWER_BUTTON: u32 = 1;
type PowerButtonFlags = Flags<ACPI_POWER_BUTTON>;
/// GRACEFUL: nothing is ever in flight that a hard stop would lose; REMOVE_LOGS: no logs.
type DestroyFlags = Flags<0x3>;

pub fn suspend(call: &Call, dom: DomainRef) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.suspend()
}

pub fn resume(call: &Call, dom: DomainRef) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.resume()
}

pub fn shutdown(call: &Call, dom: DomainRef) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.shutdown()
}

pub fn shutdown_flags(
    call: &Call,
    (dom, _): (DomainRef, PowerButtonFlags),
) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.shutdown()
}

pub fn reboot(call: &Call, (dom, _): (DomainRef, PowerButtonFlags)) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.reboot()
}

pub fn reset(call: &Call, (dom, _): (DomainRef, NoFlags)) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.reset()
}

/// The machine's NMI button: every vCPU gets an NMI (a Linux guest logs it or panics, as
/// its `unknown_nmi_panic` says).
pub fn inject_nmi(call: &Call, (dom, _): (DomainRef, NoFlags)) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.inject_nmi()
}

pub fn destroy(call: &Call, dom: DomainRef) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.destroy()
}

pub fn destroy_flags(call: &Call, (dom, _): (DomainRef, DestroyFlags)) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.destroy()
}

pub fn create(call: &Call, dom: DomainRef) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.create(false)
}

/// → the domain, with its new id.
pub fn create_with_flags(
    call: &Call,
    (dom, flags): (DomainRef, Flags<START_PAUSED>),
) -> Result<DomainRef, RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.create(flags.has(START_PAUSED))?;
    Ok(call.domain(&dom)?.domain)
}
