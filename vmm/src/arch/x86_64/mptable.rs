//! The Intel MultiProcessor table (MP spec 1.4): how a kernel without ACPI learns the CPUs,
//! the IOAPIC and how ISA interrupts reach it. Placed at the start of the EBDA (the first
//! place MP-spec scanners look, via the BDA's EBDA segment); the configuration table follows
//! the floating pointer and may run on into the reserved BIOS area below 1 MiB.
//!
//! ISA IRQs 0-15 go to IOAPIC pins 0-15 one to one. There is no "IRQ 0 -> pin 2" override
//! (what QEMU/SeaBIOS describe for the PC's PIT behind the 8259): this machine has no PIT or
//! PIC, so IRQ 0 has no source to reroute, and Linux on KVM times with the LAPIC/kvmclock.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    ACPI_START, APIC_START, BDA_EBDA_SEGMENT, EBDA_START, IOAPIC_START, MAX_VCPUS,
};
use super::{Error, Result};

const MPC_SPEC_REV: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x20;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
/// CPU signature (family 6) and feature flags (FPU, APIC) in processor entries; kernels take
/// the real values from CPUID.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const ISA_BUS_ID: u8 = 0;
const ISA_IRQS: u8 = 16;
const FLOATING_POINTER_SIZE: usize = 16;
const HEADER_SIZE: usize = 44;
const PROCESSOR_ENTRY_SIZE: usize = 20;
const OTHER_ENTRY_SIZE: usize = 8;
/// Entry types.
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
/// Interrupt types of IO/local interrupt entries.
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity/trigger "conforms to the bus" (ISA: edge, active high).
const IRQ_FLAGS_BUS_DEFAULT: u16 = 0;
const IOAPIC_ENABLED: u8 = 1;
const ALL_LOCAL_APICS: u8 = 0xff;

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_sub(*b))
}

fn processor_entry(apic_id: u8) -> [u8; PROCESSOR_ENTRY_SIZE] {
    let flags = CPU_ENABLED | if apic_id == 0 { CPU_BOOT_PROCESSOR } else { 0 };
    let mut e = [0u8; PROCESSOR_ENTRY_SIZE];
    e[..4].copy_from_slice(&[ENTRY_PROCESSOR, apic_id, APIC_VERSION, flags]);
    e[4..8].copy_from_slice(&CPU_SIGNATURE.to_le_bytes());
    e[8..12].copy_from_slice(&CPU_FEATURES.to_le_bytes());
    e
}

fn interrupt_entry(entry: u8, kind: u8, irq: u8, dest_id: u8, dest_pin: u8) -> [u8; 8] {
    let [f0, f1] = IRQ_FLAGS_BUS_DEFAULT.to_le_bytes();
    [entry, kind, f0, f1, ISA_BUS_ID, irq, dest_id, dest_pin]
}

/// Total size of the floating pointer plus the table for `num_cpus`.
pub const fn mptable_size(num_cpus: u8) -> usize {
    FLOATING_POINTER_SIZE
        + HEADER_SIZE
        + num_cpus as usize * PROCESSOR_ENTRY_SIZE
        + (2 + ISA_IRQS as usize + 2) * OTHER_ENTRY_SIZE
}

// The largest table fits between the EBDA and 1 MiB.
const _: () = assert!(EBDA_START + mptable_size(MAX_VCPUS) as u64 <= ACPI_START);

/// The MP floating pointer followed by the configuration table for `num_cpus`, for placing at
/// guest address `table_addr`.
pub fn build_mptable(num_cpus: u8, table_addr: u64) -> Result<Vec<u8>> {
    if num_cpus == 0 || num_cpus > MAX_VCPUS {
        return Err(Error::TooManyCpus(num_cpus));
    }
    let ioapic_id = num_cpus;
    let mut entries: Vec<u8> = Vec::with_capacity(mptable_size(num_cpus));
    for apic_id in 0..num_cpus {
        entries.extend_from_slice(&processor_entry(apic_id));
    }
    entries.extend_from_slice(&[ENTRY_BUS, ISA_BUS_ID, b'I', b'S', b'A', b' ', b' ', b' ']);
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, IOAPIC_ENABLED]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    for irq in 0..ISA_IRQS {
        entries.extend_from_slice(&interrupt_entry(
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            irq,
            ioapic_id,
            irq,
        ));
    }
    // The PC wiring of every local APIC: LINT0 from the (absent) 8259, LINT1 as NMI.
    entries.extend_from_slice(&interrupt_entry(
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_EXTINT,
        0,
        ALL_LOCAL_APICS,
        0,
    ));
    entries.extend_from_slice(&interrupt_entry(
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_NMI,
        0,
        ALL_LOCAL_APICS,
        1,
    ));
    let entry_count = u16::from(num_cpus) + 1 + 1 + u16::from(ISA_IRQS) + 2;
    let table_len =
        u16::try_from(HEADER_SIZE + entries.len()).map_err(|_| Error::TooManyCpus(num_cpus))?;
    let config_addr = u32::try_from(table_addr + FLOATING_POINTER_SIZE as u64)
        .map_err(|_| Error::AddressTooHigh("the MP table", table_addr))?;

    let mut table = Vec::with_capacity(mptable_size(num_cpus));
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&config_addr.to_le_bytes());
    // Length in 16-byte units, spec revision, checksum, then feature bytes: 0 means "a
    // configuration table is present", no IMCR (virtual wire mode).
    table.extend_from_slice(&[1, MPC_SPEC_REV, 0, 0, 0, 0, 0, 0]);
    table[10] = checksum(&table[..FLOATING_POINTER_SIZE]);

    let config = table.len();
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&table_len.to_le_bytes());
    table.extend_from_slice(&[MPC_SPEC_REV, 0]); // revision, checksum (below)
    table.extend_from_slice(b"RUSTVMM "); // OEM id, 8 bytes
    table.extend_from_slice(b"vmm         "); // product id, 12 bytes
    table.extend_from_slice(&[0; 6]); // OEM table pointer and size
    table.extend_from_slice(&entry_count.to_le_bytes());
    table.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[config + 7] = checksum(&table[config..]);
    Ok(table)
}

/// Writes the MP table at EBDA_START and points the BDA's EBDA segment word at it.
pub fn setup_mptable(mem: &GuestMemoryMmap, num_cpus: u8) -> Result<()> {
    let table = build_mptable(num_cpus, EBDA_START)?;
    mem.write_slice(&table, GuestAddress(EBDA_START))
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

    /// The configuration table's entries, split by type.
    fn entries(config: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = HEADER_SIZE;
        while at < config.len() {
            let len = if config[at] == ENTRY_PROCESSOR {
                PROCESSOR_ENTRY_SIZE
            } else {
                OTHER_ENTRY_SIZE
            };
            out.push(&config[at..at + len]);
            at += len;
        }
        out
    }

    #[test]
    fn checksums_and_counts() {
        for cpus in [1u8, 2, 8, MAX_VCPUS] {
            let t = build_mptable(cpus, EBDA_START).unwrap();
            assert_eq!(t.len(), mptable_size(cpus));
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum");
            let config = &t[16..];
            assert_eq!(&config[0..4], b"PCMP");
            assert_eq!(
                u16::from_le_bytes([config[4], config[5]]) as usize,
                config.len()
            );
            assert_eq!(sum(config), 0, "configuration table checksum");
            let all = entries(config);
            let count = u16::from_le_bytes([config[34], config[35]]);
            assert_eq!(usize::from(count), all.len());
            let of = |kind: u8| all.iter().filter(|e| e[0] == kind).count();
            assert_eq!(of(ENTRY_PROCESSOR), usize::from(cpus));
            assert_eq!(of(ENTRY_BUS), 1);
            assert_eq!(of(ENTRY_IOAPIC), 1);
            assert_eq!(of(ENTRY_IO_INTERRUPT), 16);
            assert_eq!(of(ENTRY_LOCAL_INTERRUPT), 2);
            assert_eq!(
                u32::from_le_bytes([config[36], config[37], config[38], config[39]]),
                0xfee0_0000
            );
        }
    }

    #[test]
    fn processors_ioapic_and_interrupts() {
        let t = build_mptable(8, EBDA_START).unwrap();
        let all = entries(&t[16..]);
        for (i, p) in all.iter().take(8).enumerate() {
            assert_eq!(p[1], i as u8, "APIC id = index");
            assert_eq!(p[3] & CPU_ENABLED, CPU_ENABLED);
            assert_eq!(
                p[3] & CPU_BOOT_PROCESSOR != 0,
                i == 0,
                "only vCPU 0 is the BSP"
            );
        }
        assert_eq!(&all[8][..2], &[ENTRY_BUS, 0]);
        assert_eq!(&all[8][2..], b"ISA   ");
        assert_eq!(all[9], &[ENTRY_IOAPIC, 8, 0x20, 1, 0x00, 0x00, 0xc0, 0xfe]);
        for irq in 0..16u8 {
            let e = all[10 + irq as usize];
            assert_eq!(e, &[ENTRY_IO_INTERRUPT, INT_TYPE_INT, 0, 0, 0, irq, 8, irq]);
        }
        assert_eq!(
            all[26],
            &[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]
        );
        assert_eq!(
            all[27],
            &[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]
        );
        assert_eq!(all.len(), 28);
    }

    #[test]
    fn pointer_points_at_the_table() {
        let t = build_mptable(2, 0x9fc00).unwrap();
        assert_eq!(u32::from_le_bytes([t[4], t[5], t[6], t[7]]), 0x9fc10);
        assert_eq!((t[8], t[9]), (1, 4), "length 16 bytes, spec 1.4");
    }

    #[test]
    fn cpu_counts_out_of_range() {
        assert!(matches!(
            build_mptable(0, EBDA_START),
            Err(Error::TooManyCpus(0))
        ));
        assert!(matches!(
            build_mptable(255, EBDA_START),
            Err(Error::TooManyCpus(255))
        ));
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        assert!(matches!(
            setup_mptable(&mem, 255),
            Err(Error::TooManyCpus(255))
        ));
    }

    #[test]
    fn written_where_kernels_look() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        setup_mptable(&mem, 4).unwrap();
        // Twice (a reset) leaves the same bytes.
        setup_mptable(&mem, 4).unwrap();
        let mut written = vec![0u8; mptable_size(4)];
        mem.read_slice(&mut written, GuestAddress(0x9fc00)).unwrap();
        assert_eq!(written, build_mptable(4, 0x9fc00).unwrap());
        assert_eq!(
            mem.read_obj::<u16>(GuestAddress(BDA_EBDA_SEGMENT)).unwrap(),
            0x9fc0
        );
    }
}
