//! Calls for hardware this machine does not have (a keyboard, a display): answered as a
//! libvirt driver without the feature answers, VIR_ERR_NO_SUPPORT naming the function, so
//! virsh prints "this function is not supported by the connection driver".

use super::domain::DomainRef;
use super::errors::driver_error;
use super::program::Call;
use crate::rpc::error::code;
use crate::rpc::xdr::{Decode, XdrError, XdrReader};
use crate::rpc::RemoteError;

/// The domain, then arguments that are never looked at (the call is refused whatever they
/// say, so they are not decoded).
pub struct DomainThenAnything(DomainRef);

impl Decode for DomainThenAnything {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        DomainRef::decode(r).map(DomainThenAnything)
    }
}

fn no_support(call: &Call, dom: &DomainRef, function: &str) -> Result<(), RemoteError> {
    call.domain(dom)?;
    Err(driver_error(
        code::NO_SUPPORT,
        format!("this function is not supported by the connection driver: {function}"),
    ))
}

/// There is no display to take a picture of.
pub fn screenshot(
    call: &Call,
    DomainThenAnything(dom): DomainThenAnything,
) -> Result<(), RemoteError> {
    no_support(call, &dom, "virDomainScreenshot")
}

/// There is no keyboard device (the i8042 here only resets the machine).
pub fn send_key(
    call: &Call,
    DomainThenAnything(dom): DomainThenAnything,
) -> Result<(), RemoteError> {
    no_support(call, &dom, "virDomainSendKey")
}
