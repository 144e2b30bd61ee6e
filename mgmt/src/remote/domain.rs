//! The one domain this process runs, as the protocol names it (`remote_nonnull_domain`), and
//! what the VMM reports about it.

use super::protocol::{DomainState, UUID_LEN};
use crate::rpc::xdr::{Decode, Encode, XdrError, XdrReader, XdrWriter};

/// `remote_nonnull_domain`: name, uuid, id (-1 when not running).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRef {
    pub name: String,
    pub uuid: [u8; UUID_LEN],
    pub id: i32,
}

impl Encode for DomainRef {
    fn encode(&self, w: &mut XdrWriter) {
        (self.name.as_str(), &self.uuid, self.id).encode(w);
    }
}

impl Decode for DomainRef {
    fn decode(r: &mut XdrReader) -> Result<DomainRef, XdrError> {
        let (name, uuid, id) = Decode::decode(r)?;
        Ok(DomainRef { name, uuid, id })
    }
}

/// A snapshot of the domain for queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainStatus {
    pub domain: DomainRef,
    pub state: DomainState,
    /// virDomain*Reason for `state`.
    pub reason: i32,
    pub max_memory_kib: u64,
    pub memory_kib: u64,
    pub vcpus: u32,
    /// Defined (stored, outlives a stop) rather than transient.
    pub persistent: bool,
}

impl DomainStatus {
    pub fn is_active(&self) -> bool {
        !matches!(self.state, DomainState::Shutoff | DomainState::Crashed)
    }
}

/// A random (version 4) UUID.
pub fn random_uuid() -> [u8; UUID_LEN] {
    let mut uuid = [0u8; UUID_LEN];
    // SAFETY: the buffer is valid for 16 bytes; getrandom writes at most that.
    let n = unsafe { libc::getrandom(uuid.as_mut_ptr().cast(), uuid.len(), 0) };
    if n != uuid.len() as isize {
        // No entropy source: time and pid, still unique enough on one host.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        uuid[..8].copy_from_slice(&nanos.to_le_bytes());
        uuid[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// Formats a UUID the usual way (8-4-4-4-12 lowercase hex).
pub fn format_uuid(uuid: &[u8; UUID_LEN]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a UUID with or without dashes.
pub fn parse_uuid(text: &str) -> Option<[u8; UUID_LEN]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut uuid = [0u8; UUID_LEN];
    for (i, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_ref_is_28_bytes_for_test() {
        let d = DomainRef {
            name: "test".into(),
            uuid: [1; 16],
            id: -1,
        };
        let mut w = XdrWriter::new();
        d.encode(&mut w);
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[24..], &[0xff; 4]);
        assert_eq!(DomainRef::decode(&mut XdrReader::new(&bytes)).unwrap(), d);
    }

    #[test]
    fn uuid_text() {
        let u = parse_uuid("6695eb01-f6a4-8304-79aa-97f2502e193f").unwrap();
        assert_eq!(u[0], 0x66);
        assert_eq!(format_uuid(&u), "6695eb01-f6a4-8304-79aa-97f2502e193f");
        assert_eq!(parse_uuid("6695eb01f6a4830479aa97f2502e193f"), Some(u));
        assert_eq!(parse_uuid("xyz"), None);
        assert_eq!(parse_uuid("6695eb01-f6a4-8304-79aa-97f2502e193"), None);
    }
}
