//! libvirt's error reply (`remote_error`, virNetMessageError) and the virerror numbers this
//! server sends. Every failed call, whichever program, answers with one of these.

use super::wire::{finish_frame, start_frame, Header, Status};
use super::xdr::{XdrError, XdrReader, XdrWriter};

/// Largest string inside an error (VIR_NET_MESSAGE_STRING_MAX).
pub const ERROR_STRING_MAX: usize = 4_194_304;

/// virErrorNumber values we send.
pub mod code {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const OPERATION_DENIED: i32 = 29;
    pub const RPC: i32 = 39;
    pub const NO_DOMAIN: i32 = 42;
    pub const NO_STORAGE_POOL: i32 = 49;
    pub const NO_STORAGE_VOL: i32 = 50;
    pub const OPERATION_INVALID: i32 = 55;
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    pub const OPERATION_TIMEOUT: i32 = 68;
    pub const OPERATION_ABORTED: i32 = 78;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
}

/// virErrorDomain values we send.
pub mod domain {
    pub const RPC: i32 = 7;
    pub const QEMU: i32 = 10;
    pub const STORAGE: i32 = 18;
    pub const REMOTE: i32 = 13;
    pub const DOMAIN: i32 = 20;
}

/// libvirt's `remote_error`: what a failed call returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    pub code: i32,
    pub domain: i32,
    pub message: String,
}

/// VIR_ERR_ERROR.
const ERROR_LEVEL_ERROR: i32 = 2;

impl RemoteError {
    pub fn new(code: i32, domain: i32, message: impl Into<String>) -> RemoteError {
        RemoteError {
            code,
            domain,
            message: message.into(),
        }
    }

    /// Encoded as libvirtd does: message present and repeated in str1, int1/int2 = -1.
    pub fn encode(&self, w: &mut XdrWriter) {
        let message = truncate_to(&self.message, ERROR_STRING_MAX);
        w.put_i32(self.code);
        w.put_i32(self.domain);
        w.put_optional(Some(message), |w, m| w.put_string(m));
        w.put_i32(ERROR_LEVEL_ERROR);
        w.put_u32(0); // dom: absent
        w.put_optional(Some(message), |w, m| w.put_string(m));
        w.put_u32(0); // str2
        w.put_u32(0); // str3
        w.put_i32(-1);
        w.put_i32(-1);
        w.put_u32(0); // net: absent
    }

    pub fn decode(r: &mut XdrReader) -> Result<RemoteError, XdrError> {
        let code = r.get_i32()?;
        let domain = r.get_i32()?;
        let message = r
            .get_optional(|r| r.get_string(ERROR_STRING_MAX))?
            .unwrap_or_default();
        Ok(RemoteError {
            code,
            domain,
            message,
        })
    }

    /// The whole error reply to the call with header `call`.
    pub fn reply_to(&self, call: &Header) -> Vec<u8> {
        let mut w = start_frame(&call.reply(Status::Error));
        self.encode(&mut w);
        finish_frame(w)
    }
}

fn truncate_to(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl From<XdrError> for RemoteError {
    fn from(_: XdrError) -> RemoteError {
        RemoteError::new(code::RPC, domain::RPC, "Unable to decode message payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::wire::FrameReader;

    #[test]
    fn error_reply_matches_libvirtd() {
        // The protocol notes' example: DOMAIN_LOOKUP_BY_NAME "nosuchdom", 112 bytes in all.
        let call = Header {
            program: 0x2000_8086,
            version: 1,
            procedure: 23,
            kind: 0,
            serial: 6,
            status: 0,
        };
        let bytes = RemoteError::new(42, 12, "Domain not found").reply_to(&call);
        assert_eq!(bytes.len(), 112);
        let mut reader = FrameReader::new();
        let frame = reader.push(&bytes).unwrap().1.unwrap();
        assert_eq!(frame.header.kind, 1);
        assert_eq!(frame.header.status, 1);
        assert_eq!(frame.header.serial, 6);
        assert_eq!(&frame.payload[..8], &[0, 0, 0, 42, 0, 0, 0, 12]);
        let e = RemoteError::decode(&mut XdrReader::new(&frame.payload)).unwrap();
        assert_eq!(e.message, "Domain not found");
        assert_eq!(
            &frame.payload[frame.payload.len() - 12..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
    }

    #[test]
    fn long_error_messages_are_cut_on_a_char_boundary() {
        assert_eq!(truncate_to("héllo", 2), "h");
        assert_eq!(truncate_to("abc", 10), "abc");
    }
}
