//! Domains from domain XML: create (boot a transient domain), define (store the persistent
//! one) and undefine. The VMM reads and checks the XML; these handlers bound and pass it.

use super::args::Flags;
use super::domain::DomainRef;
use super::program::Call;
use super::protocol::START_PAUSED;
use crate::rpc::RemoteError;

/// VIR_DOMAIN_START_VALIDATE / VIR_DOMAIN_DEFINE_VALIDATE: check the XML against the schema.
/// The reader is stricter than the schema (it refuses what it cannot honour), so asking for
/// it changes nothing.
const VALIDATE_CREATE: u32 = 16;
const VALIDATE_DEFINE: u32 = 1;
/// VIR_DOMAIN_START_FORCE_BOOT: there is never a managed save image to discard.
const FORCE_BOOT: u32 = 8;
/// AUTODESTROY, BYPASS_CACHE and RESET_NVRAM are refused: nothing here honours them.
type CreateFlags = Flags<{ START_PAUSED | FORCE_BOOT | VALIDATE_CREATE }>;
/// MANAGED_SAVE, SNAPSHOTS_METADATA, NVRAM, KEEP_NVRAM, CHECKPOINTS_METADATA, TPM, KEEP_TPM:
/// the domain has none of these, so there is nothing to keep or remove.
type UndefineFlags = Flags<0x7f>;

/// `{xml_desc, flags}` → the booted domain.
pub fn create_xml(
    call: &Call,
    (xml, flags): (String, CreateFlags),
) -> Result<DomainRef, RemoteError> {
    call.hypervisor.create_xml(&xml, flags.has(START_PAUSED))
}

/// `{xml}` → the defined domain.
pub fn define_xml(call: &Call, xml: String) -> Result<DomainRef, RemoteError> {
    call.hypervisor.define_xml(&xml)
}

/// `{xml, flags}` → the defined domain.
pub fn define_xml_flags(
    call: &Call,
    (xml, _): (String, Flags<VALIDATE_DEFINE>),
) -> Result<DomainRef, RemoteError> {
    call.hypervisor.define_xml(&xml)
}

pub fn undefine(call: &Call, dom: DomainRef) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.undefine()
}

pub fn undefine_flags(
    call: &Call,
    (dom, _): (DomainRef, UndefineFlags),
) -> Result<(), RemoteError> {
    call.domain(&dom)?;
    call.hypervisor.undefine()
}
