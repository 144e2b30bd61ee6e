//! Finds the Intel MP table where a BIOS would leave it and counts the processors.

use crate::boot::E820;

pub struct MpInfo {
    pub cpus: u32,
    pub boot_cpus: u32,
}

fn bytes(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: identity-mapped low memory; callers stay below 1 MiB or inside the table.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

fn scan(start: u64, len: u64) -> Option<u64> {
    (start..start + len).step_by(16).find(|&a| bytes(a, 4) == b"_MP_" && checksum_ok(bytes(a, 16)))
}

/// Err with a reason if a table is there but broken; Ok(None) if there is none.
pub fn find(_map: &[E820]) -> Result<Option<MpInfo>, &'static str> {
    // SAFETY: the BDA word at 0x40e holds the EBDA segment on PCs.
    let ebda = u64::from(unsafe { core::ptr::read_unaligned(0x40e as *const u16) }) << 4;
    let candidates = [(ebda, 1024), (0x9fc00, 1024), (0xf0000, 0x10000)];
    let Some(fp) = candidates.iter().filter(|(s, _)| *s != 0).find_map(|&(s, l)| scan(s, l)) else {
        return Ok(None);
    };
    let table = u64::from(u32::from_le_bytes([bytes(fp + 4, 1)[0], bytes(fp + 5, 1)[0], bytes(fp + 6, 1)[0], bytes(fp + 7, 1)[0]]));
    if table == 0 || table >= 0x10_0000 || bytes(table, 4) != b"PCMP" {
        return Err("floating pointer leads to no PCMP table");
    }
    let header = bytes(table, 44);
    let len = u16::from_le_bytes([header[4], header[5]]) as usize;
    if !(44..=0x10000).contains(&len) || !checksum_ok(bytes(table, len)) {
        return Err("bad configuration table checksum");
    }
    let count = u16::from_le_bytes([header[34], header[35]]);
    let (mut at, end) = (table + 44, table + len as u64);
    let mut info = MpInfo { cpus: 0, boot_cpus: 0 };
    for _ in 0..count {
        if at >= end {
            return Err("entries run past the table");
        }
        match bytes(at, 1)[0] {
            0 => {
                let flags = bytes(at + 3, 1)[0];
                if flags & 1 != 0 {
                    info.cpus += 1;
                    info.boot_cpus += u32::from(flags & 2 != 0);
                }
                at += 20;
            }
            1..=4 => at += 8,
            _ => return Err("unknown entry type"),
        }
    }
    Ok(Some(info))
}
