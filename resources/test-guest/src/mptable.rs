//! Finds the Intel MP table where a BIOS leaves it (MP spec 1.4, 4: the first KiB of the
//! EBDA, the last KiB of base memory, 0xf0000-0xfffff) and counts the processors. Entries are
//! walked by the table's length, as Linux does: qboot (QEMU microvm) leaves the entry count 0.

use crate::physmem::{byte_sum, PhysMem};

const BDA_EBDA_SEGMENT: u64 = 0x40e;
const BDA_BASE_MEMORY_KIB: u64 = 0x413;
const BIOS_ROM: (u64, u64) = (0xf0000, 0x10000);
const HEADER_LEN: u64 = 44;
const ENTRY_PROCESSOR: u8 = 0;
const PROCESSOR_ENTRY_LEN: u64 = 20;
const OTHER_ENTRY_LEN: u64 = 8;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;

#[derive(Debug, PartialEq, Eq)]
pub struct MpInfo {
    /// Enabled processor entries.
    pub cpus: u32,
    /// Of those, the ones flagged as the bootstrap processor.
    pub boot_cpus: u32,
    /// Where the floating pointer structure was found.
    pub pointer: u64,
}

/// A valid floating pointer ("_MP_", length in 16-byte units, zero checksum) on a 16-byte
/// boundary in start..start+len.
fn scan(mem: &impl PhysMem, start: u64, len: u64) -> Option<u64> {
    (start..start + len).step_by(16).find(|&at| {
        mem.read_array::<4>(at) == Some(*b"_MP_")
            && mem.u8(at + 8).is_some_and(|units| {
                units >= 1 && byte_sum(mem, at, u64::from(units) * 16) == Some(0)
            })
    })
}

/// The regions to search, in the MP spec's order: the EBDA's first KiB, the last KiB of
/// base memory per the BDA, the last KiB below 640 KiB (where Linux looks whatever the BDA
/// says), and the BIOS ROM. Zero starts are skipped.
fn regions(mem: &impl PhysMem) -> [(u64, u64); 4] {
    let ebda = u64::from(mem.u16(BDA_EBDA_SEGMENT).unwrap_or(0)) << 4;
    let base_end = match mem.u16(BDA_BASE_MEMORY_KIB) {
        Some(kib @ 2..=640) => u64::from(kib) * 1024,
        _ => 0,
    };
    [
        (ebda, 1024),
        (base_end.saturating_sub(1024), 1024),
        (0x9fc00, 1024),
        BIOS_ROM,
    ]
}

/// Ok(None) if there is no MP table; Err with a reason if one is there but broken.
pub fn find(mem: &impl PhysMem) -> Result<Option<MpInfo>, &'static str> {
    find_with(mem, &mut |_| {})
}

/// The local APIC ids of the enabled processors, into `ids`; how many (0 without a table).
pub fn apic_ids(mem: &impl PhysMem, ids: &mut [u8]) -> usize {
    let mut count = 0;
    let _ = find_with(mem, &mut |id| {
        if let Some(slot) = ids.get_mut(count) {
            *slot = id;
            count += 1;
        }
    });
    count
}

/// `find`, calling `on_cpu` with each enabled processor's local APIC id.
fn find_with(
    mem: &impl PhysMem,
    on_cpu: &mut dyn FnMut(u8),
) -> Result<Option<MpInfo>, &'static str> {
    let Some(pointer) = regions(mem)
        .iter()
        .filter(|(start, _)| *start != 0)
        .find_map(|&(start, len)| scan(mem, start, len))
    else {
        return Ok(None);
    };
    let table = u64::from(mem.u32(pointer + 4).ok_or("floating pointer unreadable")?);
    if table == 0 {
        return Err("floating pointer without a configuration table (default configurations are not supported)");
    }
    if mem.read_array::<4>(table) != Some(*b"PCMP") {
        return Err("floating pointer leads to no PCMP table");
    }
    let len = u64::from(mem.u16(table + 4).ok_or("table unreadable")?);
    if len < HEADER_LEN {
        return Err("configuration table shorter than its header");
    }
    if byte_sum(mem, table, len) != Some(0) {
        return Err("bad configuration table checksum");
    }
    let mut info = MpInfo {
        cpus: 0,
        boot_cpus: 0,
        pointer,
    };
    let (mut at, end) = (table + HEADER_LEN, table + len);
    while at < end {
        let kind = mem.u8(at).ok_or("table unreadable")?;
        let entry_len = match kind {
            ENTRY_PROCESSOR => PROCESSOR_ENTRY_LEN,
            1..=4 => OTHER_ENTRY_LEN,
            _ => return Err("unknown entry type"),
        };
        if at + entry_len > end {
            return Err("entries run past the table");
        }
        if kind == ENTRY_PROCESSOR {
            let flags = mem.u8(at + 3).ok_or("table unreadable")?;
            if flags & CPU_ENABLED != 0 {
                on_cpu(mem.u8(at + 1).ok_or("table unreadable")?);
                info.cpus += 1;
                info.boot_cpus += u32::from(flags & CPU_BOOTSTRAP != 0);
            }
        }
        at += entry_len;
    }
    Ok(Some(info))
}

/// CPUs from the MP table (1 without one, as for a uniprocessor PC); Err if the table is
/// broken or does not flag exactly one bootstrap processor. Ok also says where it came from.
pub fn cpu_count(mem: &impl PhysMem) -> Result<(u32, &'static str), &'static str> {
    match find(mem)? {
        Some(mp) if mp.boot_cpus != 1 => Err("must flag exactly one boot CPU"),
        Some(mp) => Ok((mp.cpus, "MP table")),
        None => Ok((1, "no MP table")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physmem::FakeMem;

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        bytes[at] = sum.wrapping_neg();
    }

    /// A table with the given processor flags, an ISA bus and an IOAPIC, `count` in the
    /// header as given (qboot writes 0).
    fn table(cpu_flags: &[u8], count: u16) -> Vec<u8> {
        let mut t = vec![0u8; 44];
        t[..4].copy_from_slice(b"PCMP");
        t[6] = 4;
        t[34..36].copy_from_slice(&count.to_le_bytes());
        for (id, flags) in cpu_flags.iter().enumerate() {
            t.extend_from_slice(&[0, id as u8, 0x14, *flags]);
            t.extend_from_slice(&[0; 16]);
        }
        t.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
        t.extend_from_slice(&[2, 2, 0x14, 1, 0, 0, 0xc0, 0xfe]);
        let len = t.len() as u16;
        t[4..6].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 7);
        t
    }

    fn pointer(table_at: u32) -> [u8; 16] {
        let mut p = [0u8; 16];
        p[..4].copy_from_slice(b"_MP_");
        p[4..8].copy_from_slice(&table_at.to_le_bytes());
        p[8] = 1;
        p[9] = 4;
        fix_checksum(&mut p, 10);
        p
    }

    fn low_memory() -> FakeMem {
        FakeMem::new(0x400, 0x100000 - 0x400)
    }

    #[test]
    fn qboot_layout_in_last_kib_of_base_memory() {
        let mut mem = low_memory();
        mem.put(0x9fc00, &pointer(0x9fc10));
        mem.put(0x9fc10, &table(&[3], 0));
        assert_eq!(
            find(&mem),
            Ok(Some(MpInfo {
                cpus: 1,
                boot_cpus: 1,
                pointer: 0x9fc00
            }))
        );
    }

    #[test]
    fn ebda_and_bios_rom_are_searched() {
        let mut mem = low_memory();
        mem.put(BDA_EBDA_SEGMENT, &0x9000u16.to_le_bytes());
        mem.put(0x90020, &pointer(0x90100));
        mem.put(0x90100, &table(&[3, 1, 1, 0], 7));
        assert_eq!(
            find(&mem),
            Ok(Some(MpInfo {
                cpus: 3,
                boot_cpus: 1,
                pointer: 0x90020
            }))
        );

        let mut mem = low_memory();
        mem.put(0xf5a30, &pointer(0xf5b00));
        mem.put(0xf5b00, &table(&[3, 1], 4));
        assert_eq!(find(&mem).map(|m| m.map(|i| i.cpus)), Ok(Some(2)));
    }

    #[test]
    fn base_memory_size_from_the_bda() {
        let mut mem = low_memory();
        mem.put(BDA_BASE_MEMORY_KIB, &512u16.to_le_bytes());
        mem.put(0x7fc00, &pointer(0x7fc10));
        mem.put(0x7fc10, &table(&[3, 1], 0));
        assert_eq!(
            find(&mem),
            Ok(Some(MpInfo {
                cpus: 2,
                boot_cpus: 1,
                pointer: 0x7fc00
            }))
        );
    }

    #[test]
    fn no_table_and_broken_tables() {
        assert_eq!(find(&low_memory()), Ok(None));

        let mut mem = low_memory();
        let mut p = pointer(0x9fc10);
        p[11] ^= 1; // pointer checksum broken: not a pointer at all
        mem.put(0x9fc00, &p);
        mem.put(0x9fc10, &table(&[3], 0));
        assert_eq!(find(&mem), Ok(None));

        let mut mem = low_memory();
        let mut t = table(&[3], 0);
        t[50] ^= 0x40;
        mem.put(0x9fc00, &pointer(0x9fc10));
        mem.put(0x9fc10, &t);
        assert_eq!(find(&mem), Err("bad configuration table checksum"));

        let mut mem = low_memory();
        mem.put(0x9fc00, &pointer(0x80000));
        assert_eq!(find(&mem), Err("floating pointer leads to no PCMP table"));
    }

    #[test]
    fn two_boot_cpus_are_counted_as_such() {
        let mut mem = low_memory();
        mem.put(0x9fc00, &pointer(0x9fc10));
        mem.put(0x9fc10, &table(&[3, 3], 0));
        assert_eq!(find(&mem).map(|m| m.map(|i| i.boot_cpus)), Ok(Some(2)));
        assert!(cpu_count(&mem).is_err());
    }

    #[test]
    fn apic_ids_of_enabled_processors() {
        let mut mem = FakeMem::new(0x9fc00, 0x400);
        let t = table(&[CPU_ENABLED | CPU_BOOTSTRAP, 0, CPU_ENABLED], 3);
        mem.put(0x9fc00, &t);
        let mut ids = [0u8; 4];
        assert_eq!(apic_ids(&mem, &mut ids), 0, "no floating pointer yet");
        let mut with_pointer = FakeMem::new(0x9f000, 0x1000);
        with_pointer.put(0x9fc40, &t);
        let mut fp = [0u8; 16];
        fp[..4].copy_from_slice(b"_MP_");
        fp[4..8].copy_from_slice(&0x9fc40u32.to_le_bytes());
        fp[8] = 1;
        fix_checksum(&mut fp, 10);
        with_pointer.put(0x9fc00, &fp);
        assert_eq!(apic_ids(&with_pointer, &mut ids), 2);
        assert_eq!(&ids[..2], &[0, 2]);
    }

    #[test]
    fn cpu_count_without_a_table_is_one() {
        assert_eq!(cpu_count(&low_memory()), Ok((1, "no MP table")));
    }
}
