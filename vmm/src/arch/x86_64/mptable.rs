//! The Intel MultiProcessor table (MP spec 1.4): how a kernel without ACPI learns the CPUs,
//! the IOAPIC and how ISA interrupts reach it. Placed in the BIOS area, where kernels scan.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    APIC_START, BDA_EBDA_SEGMENT, EBDA_START, HIGH_RAM_START, IOAPIC_START, MPTABLE_START,
};
use super::{Error, Result};

const MPC_SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x20;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
const ISA_IRQS: u8 = 16;
const FLOATING_POINTER_SIZE: usize = 16;
const HEADER_SIZE: usize = 44;
/// Interrupt types of IO/local interrupt entries.
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Largest vCPU count: APIC ids 0..n-1 plus the IOAPIC's id n must fit in 8 bits (0xff is
/// the broadcast id).
pub const MAX_CPUS: u8 = 254;

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_sub(*b))
}

/// Builds the MP floating pointer followed by the configuration table for `num_cpus`.
pub fn build_mptable(num_cpus: u8, table_addr: u64) -> Result<Vec<u8>> {
    if num_cpus == 0 || num_cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(num_cpus));
    }
    let ioapic_id = num_cpus;
    let mut entries: Vec<u8> = Vec::new();
    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        entries.extend_from_slice(&[0, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']); // bus 0: ISA
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    for irq in 0..ISA_IRQS {
        // ISA IRQ n -> IOAPIC pin n, bus defaults (edge, active high).
        let kind = if irq == 0 {
            INT_TYPE_EXTINT
        } else {
            INT_TYPE_INT
        };
        entries.extend_from_slice(&[3, kind, 0, 0, 0, irq, ioapic_id, irq]);
    }
    entries.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]); // LINT0
    entries.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]); // LINT1
    let entry_count = u16::from(num_cpus) + 1 + 1 + u16::from(ISA_IRQS) + 2;

    let table_len = HEADER_SIZE + entries.len();
    let mut table = Vec::with_capacity(FLOATING_POINTER_SIZE + table_len);
    // Floating pointer: config table right after it.
    let config_addr = (table_addr + FLOATING_POINTER_SIZE as u64) as u32;
    let mut fp = Vec::with_capacity(FLOATING_POINTER_SIZE);
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&config_addr.to_le_bytes());
    fp.extend_from_slice(&[1, MPC_SPEC_REV, 0, 0, 0, 0, 0, 0]);
    fp[10] = checksum(&fp);
    table.extend_from_slice(&fp);

    let mut header = Vec::with_capacity(HEADER_SIZE);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&(table_len as u16).to_le_bytes());
    header.extend_from_slice(&[MPC_SPEC_REV, 0]);
    header.extend_from_slice(b"RUSTVMM ");
    header.extend_from_slice(b"vmm         ");
    header.extend_from_slice(&[0; 6]); // OEM table pointer and size
    header.extend_from_slice(&entry_count.to_le_bytes());
    header.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    header.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    let start = table.len();
    table.extend_from_slice(&header);
    table.extend_from_slice(&entries);
    table[start + 7] = checksum(&table[start..]);
    Ok(table)
}

/// Writes the MP table into the BIOS area and points the BDA at the EBDA.
pub fn setup_mptable(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<()> {
    let table = build_mptable(num_cpus, MPTABLE_START)?;
    if MPTABLE_START + table.len() as u64 > HIGH_RAM_START {
        return Err(Error::TooManyCpus(num_cpus));
    }
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(|e| Error::GuestMemory("the MP table", e))?;
    mem.write_obj((EBDA_START >> 4) as u16, GuestAddress(BDA_EBDA_SEGMENT))
        .map_err(|e| Error::GuestMemory("the BIOS data area", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_counts() {
        for cpus in [1u8, 2, 8, 254] {
            let t = build_mptable(cpus, MPTABLE_START).unwrap();
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum");
            let config = &t[16..];
            assert_eq!(&config[0..4], b"PCMP");
            let len = u16::from_le_bytes([config[4], config[5]]) as usize;
            assert_eq!(len, config.len());
            assert_eq!(sum(config), 0, "config table checksum");
            let count = u16::from_le_bytes([config[34], config[35]]);
            assert_eq!(count, u16::from(cpus) + 20);
            let processors: Vec<&[u8]> = config[44..].chunks(20).take(cpus as usize).collect();
            assert!(processors
                .iter()
                .all(|p| p[0] == 0 && p[3] & CPU_ENABLED != 0));
            assert_eq!(
                processors
                    .iter()
                    .filter(|p| p[3] & CPU_BOOT_PROCESSOR != 0)
                    .count(),
                1
            );
            assert_eq!(
                processors.last().unwrap()[1],
                cpus - 1,
                "APIC ids are the indexes"
            );
        }
    }

    #[test]
    fn pointer_points_at_the_table() {
        let t = build_mptable(2, 0xf0000).unwrap();
        assert_eq!(u32::from_le_bytes([t[4], t[5], t[6], t[7]]), 0xf0010);
    }

    #[test]
    fn too_many_cpus() {
        assert!(build_mptable(0, MPTABLE_START).is_err());
        assert!(build_mptable(255, MPTABLE_START).is_err());
    }

    #[test]
    fn written_where_kernels_look() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        setup_mptable(&mem, 4).unwrap();
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(MPTABLE_START))
            .unwrap();
        assert_eq!(&sig, b"_MP_");
        assert_eq!(
            mem.read_obj::<u16>(GuestAddress(BDA_EBDA_SEGMENT)).unwrap(),
            0x9fc0
        );
    }
}
