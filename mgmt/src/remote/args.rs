//! Argument types of the REMOTE program that are more than plain XDR: strings bounded by
//! REMOTE_STRING_MAX, and flags words that name the bits their call supports.

use super::protocol::STRING_MAX;
use crate::rpc::xdr::{Decode, XdrError, XdrReader};

/// `remote_nonnull_string`: every string argument is at most REMOTE_STRING_MAX bytes.
impl Decode for String {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_string(STRING_MAX)
    }
}

/// A call's `unsigned int flags`, with the bits it supports in its type: a handler cannot
/// take flags without saying which it honours, and the dispatcher refuses the rest in
/// libvirt's words before the handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags<const SUPPORTED: u32>(pub u32);

impl<const SUPPORTED: u32> Flags<SUPPORTED> {
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

impl<const SUPPORTED: u32> Decode for Flags<SUPPORTED> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_u32().map(Flags)
    }

    fn unsupported_flags(&self) -> u32 {
        self.0 & !SUPPORTED
    }
}

/// A call that takes a flags word and supports none of its bits.
pub type NoFlags = Flags<0>;
