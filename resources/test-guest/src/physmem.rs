//! Reading guest-physical memory. The parsers (boot info, MP table) go through `PhysMem` so
//! that the host can unit-test them on a byte buffer; in the guest it is the identity map.

/// Everything below 4 GiB is identity mapped by entry.rs's page tables.
pub const MAPPED_END: u64 = 1 << 32;

/// Guest-physical memory as the parsers see it.
pub trait PhysMem {
    /// Fills `buf` from `addr`; false (and `buf` unspecified) if any byte is out of reach.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    fn read_array<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        self.read(addr, &mut buf).then_some(buf)
    }

    fn u8(&self, addr: u64) -> Option<u8> {
        self.read_array::<1>(addr).map(|b| b[0])
    }

    fn u16(&self, addr: u64) -> Option<u16> {
        self.read_array(addr).map(u16::from_le_bytes)
    }

    fn u32(&self, addr: u64) -> Option<u32> {
        self.read_array(addr).map(u32::from_le_bytes)
    }

    fn u64(&self, addr: u64) -> Option<u64> {
        self.read_array(addr).map(u64::from_le_bytes)
    }
}

/// Sum of `len` bytes at `addr` (mod 256), the checksum of BIOS and ACPI tables; None if
/// any byte is unreadable.
pub fn byte_sum(mem: &impl PhysMem, addr: u64, len: u64) -> Option<u8> {
    let mut sum = 0u8;
    let mut chunk = [0u8; 64];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(chunk.len() as u64) as usize;
        if !mem.read(addr + at, &mut chunk[..n]) {
            return None;
        }
        sum = chunk[..n].iter().fold(sum, |s, b| s.wrapping_add(*b));
        at += n as u64;
    }
    Some(sum)
}

/// The guest's own view: physical = virtual below `MAPPED_END`. Address 0 is refused (no
/// table lives there; a zero pointer means "absent").
pub struct IdentityMap;

impl PhysMem for IdentityMap {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let in_reach = addr != 0
            && addr
                .checked_add(buf.len() as u64)
                .is_some_and(|end| end <= MAPPED_END);
        if !in_reach {
            return false;
        }
        for (i, byte) in buf.iter_mut().enumerate() {
            // SAFETY: 1..4 GiB is mapped; holes read as whatever the VMM answers (MMIO
            // exits), never as a fault. Volatile: this is memory the VMM wrote, not ours.
            *byte = unsafe { core::ptr::read_volatile((addr as usize + i) as *const u8) };
        }
        true
    }
}

/// A window of fake guest memory for unit tests.
#[cfg(test)]
pub struct FakeMem {
    pub base: u64,
    pub bytes: Vec<u8>,
}

#[cfg(test)]
impl FakeMem {
    pub fn new(base: u64, len: usize) -> FakeMem {
        FakeMem {
            base,
            bytes: vec![0; len],
        }
    }

    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let at = (addr - self.base) as usize;
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }
}

#[cfg(test)]
impl PhysMem for FakeMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(at) = addr.checked_sub(self.base) else {
            return false;
        };
        let Some(src) = self.bytes.get(at as usize..at as usize + buf.len()) else {
            return false;
        };
        buf.copy_from_slice(src);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_reads_and_bounds() {
        let mut mem = FakeMem::new(0x1000, 16);
        mem.put(0x1000, &[0x78, 0x56, 0x34, 0x12, 0xff]);
        assert_eq!(mem.u32(0x1000), Some(0x1234_5678));
        assert_eq!(mem.u16(0x1003), Some(0xff12));
        assert_eq!(mem.u8(0x1004), Some(0xff));
        assert_eq!(mem.u64(0x1009), None);
        assert_eq!(mem.u8(0xfff), None);
    }

    #[test]
    fn identity_map_refuses_null_and_beyond_4g() {
        let mut buf = [0u8; 8];
        assert!(!IdentityMap.read(0, &mut buf));
        assert!(!IdentityMap.read(MAPPED_END - 4, &mut buf));
        assert!(!IdentityMap.read(u64::MAX - 2, &mut buf));
    }
}
