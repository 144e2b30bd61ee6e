//! The Intel MultiProcessor table (MP spec 1.4): how a kernel without ACPI learns the CPUs,
//! the IOAPIC and how ISA interrupts reach it. Placed at the start of the EBDA (the first
//! place MP-spec scanners look, via the BDA's EBDA segment); the configuration table follows
//! the floating pointer and may run on into the reserved BIOS area below 1 MiB.
//!
//! ISA IRQs 0-15 go to IOAPIC pins 0-15 one to one. There is no "IRQ 0 -> pin 2" override
//! (what QEMU/SeaBIOS describe for the PC's PIT behind the 8259): this machine has no PIT or
//! PIC, so IRQ 0 has no source to reroute, and Linux on KVM times with the LAPIC/kvmclock.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{Immutable, IntoBytes, KnownLayout};

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

/// The MP floating pointer structure (MP spec 4.1).
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct FloatingPointer {
    signature: [u8; 4],
    config_addr: U32,
    /// In 16-byte units.
    length: u8,
    spec_rev: u8,
    checksum: u8,
    /// Feature byte 1 = 0: a configuration table is present; byte 2 = 0: no IMCR (virtual
    /// wire mode).
    features: [u8; 5],
}

/// The configuration table header (MP spec 4.2).
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct ConfigHeader {
    signature: [u8; 4],
    length: U16,
    spec_rev: u8,
    checksum: u8,
    oem_id: [u8; 8],
    product_id: [u8; 12],
    oem_table_pointer: U32,
    oem_table_size: U16,
    entry_count: U16,
    local_apic_addr: U32,
    extended_length: U16,
    extended_checksum: u8,
    reserved: u8,
}

/// Processor entry (MP spec 4.3.1).
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct ProcessorEntry {
    entry_type: u8,
    apic_id: u8,
    apic_version: u8,
    flags: u8,
    signature: U32,
    features: U32,
    reserved: [u8; 8],
}

/// Bus entry (MP spec 4.3.2).
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct BusEntry {
    entry_type: u8,
    bus_id: u8,
    bus_type: [u8; 6],
}

/// I/O APIC entry (MP spec 4.3.3).
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct IoApicEntry {
    entry_type: u8,
    id: u8,
    version: u8,
    flags: u8,
    address: U32,
}

/// I/O and local interrupt assignment entries (MP spec 4.3.4, 4.3.5): the same layout.
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct InterruptEntry {
    entry_type: u8,
    kind: u8,
    flags: U16,
    source_bus: u8,
    source_irq: u8,
    dest_id: u8,
    dest_pin: u8,
}

const FLOATING_POINTER_SIZE: usize = size_of::<FloatingPointer>();
const HEADER_SIZE: usize = size_of::<ConfigHeader>();
const PROCESSOR_ENTRY_SIZE: usize = size_of::<ProcessorEntry>();
const OTHER_ENTRY_SIZE: usize = size_of::<InterruptEntry>();
const _: () = {
    assert!(size_of::<BusEntry>() == OTHER_ENTRY_SIZE);
    assert!(size_of::<IoApicEntry>() == OTHER_ENTRY_SIZE);
};

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_sub(*b))
}

fn processor_entry(apic_id: u8) -> ProcessorEntry {
    ProcessorEntry {
        entry_type: ENTRY_PROCESSOR,
        apic_id,
        apic_version: APIC_VERSION,
        flags: CPU_ENABLED | if apic_id == 0 { CPU_BOOT_PROCESSOR } else { 0 },
        signature: U32::new(CPU_SIGNATURE),
        features: U32::new(CPU_FEATURES),
        reserved: [0; 8],
    }
}

fn interrupt_entry(entry_type: u8, kind: u8, irq: u8, dest_id: u8, dest_pin: u8) -> InterruptEntry {
    InterruptEntry {
        entry_type,
        kind,
        flags: U16::new(IRQ_FLAGS_BUS_DEFAULT),
        source_bus: ISA_BUS_ID,
        source_irq: irq,
        dest_id,
        dest_pin,
    }
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
        entries.extend_from_slice(processor_entry(apic_id).as_bytes());
    }
    let isa = BusEntry {
        entry_type: ENTRY_BUS,
        bus_id: ISA_BUS_ID,
        bus_type: *b"ISA   ",
    };
    entries.extend_from_slice(isa.as_bytes());
    let ioapic = IoApicEntry {
        entry_type: ENTRY_IOAPIC,
        id: ioapic_id,
        version: IOAPIC_VERSION,
        flags: IOAPIC_ENABLED,
        address: U32::new(IOAPIC_START as u32),
    };
    entries.extend_from_slice(ioapic.as_bytes());
    for irq in 0..ISA_IRQS {
        let e = interrupt_entry(ENTRY_IO_INTERRUPT, INT_TYPE_INT, irq, ioapic_id, irq);
        entries.extend_from_slice(e.as_bytes());
    }
    // The PC wiring of every local APIC: LINT0 from the (absent) 8259, LINT1 as NMI.
    for (kind, lint) in [(INT_TYPE_EXTINT, 0), (INT_TYPE_NMI, 1)] {
        let e = interrupt_entry(ENTRY_LOCAL_INTERRUPT, kind, 0, ALL_LOCAL_APICS, lint);
        entries.extend_from_slice(e.as_bytes());
    }
    let entry_count = u16::from(num_cpus) + 1 + 1 + u16::from(ISA_IRQS) + 2;
    let table_len =
        u16::try_from(HEADER_SIZE + entries.len()).map_err(|_| Error::TooManyCpus(num_cpus))?;
    let config_addr = u32::try_from(table_addr + FLOATING_POINTER_SIZE as u64)
        .map_err(|_| Error::AddressTooHigh("the MP table", table_addr))?;

    let mut pointer = FloatingPointer {
        signature: *b"_MP_",
        config_addr: U32::new(config_addr),
        length: 1,
        spec_rev: MPC_SPEC_REV,
        checksum: 0,
        features: [0; 5],
    };
    pointer.checksum = checksum(pointer.as_bytes());
    let header = ConfigHeader {
        signature: *b"PCMP",
        length: U16::new(table_len),
        spec_rev: MPC_SPEC_REV,
        checksum: 0,
        oem_id: *b"RUSTVMM ",
        product_id: *b"vmm         ",
        oem_table_pointer: U32::new(0),
        oem_table_size: U16::new(0),
        entry_count: U16::new(entry_count),
        local_apic_addr: U32::new(APIC_START as u32),
        extended_length: U16::new(0),
        extended_checksum: 0,
        reserved: 0,
    };

    let mut table = Vec::with_capacity(mptable_size(num_cpus));
    table.extend_from_slice(pointer.as_bytes());
    let config = table.len();
    table.extend_from_slice(header.as_bytes());
    table.extend_from_slice(&entries);
    // The header's checksum byte covers the whole configuration table, entries included.
    table[config + std::mem::offset_of!(ConfigHeader, checksum)] = checksum(&table[config..]);
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

    /// FNV-1a, to compare whole tables with what the hand-packed builder wrote.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    #[test]
    fn structures_have_the_spec_sizes() {
        assert_eq!(size_of::<FloatingPointer>(), 16);
        assert_eq!(size_of::<ConfigHeader>(), 44);
        assert_eq!(size_of::<ProcessorEntry>(), 20);
        assert_eq!(size_of::<BusEntry>(), 8);
        assert_eq!(size_of::<IoApicEntry>(), 8);
        assert_eq!(size_of::<InterruptEntry>(), 8);
    }

    /// The bytes the byte-offset builder this replaced produced, for 2 vCPUs at EBDA_START.
    const TWO_CPU_TABLE: &str = "\
        5f4d505f10fc090001048b000000000050434d50f400046b52555354564d4d20766d6d20202020202020\
        202000000000000016000000e0fe000000000000140300060000010200000000000000000000000114010006\
        00000102000000000000000000000100495341202020020220010000c0fe0300000000000200030000000001\
        02010300000000020202030000000003020303000000000402040300000000050205030000000006020603\
        000000000702070300000000080208030000000009020903000000000a020a03000000000b020b03000000\
        000c020c03000000000d020d03000000000e020e03000000000f020f040300000000ff00040100000000ff01";

    #[test]
    fn same_bytes_as_the_hand_packed_table() {
        let hex: String = build_mptable(2, EBDA_START)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, TWO_CPU_TABLE);
        for (cpus, len, hash) in [
            (1u8, 240, 0x8052_8947_d384_bea3_u64),
            (2, 260, 0x8798_a7ed_0a3b_0cb1),
            (MAX_VCPUS, 5300, 0x3a36_9bf0_a298_2b57),
        ] {
            let t = build_mptable(cpus, EBDA_START).unwrap();
            assert_eq!((t.len(), fnv1a(&t)), (len, hash), "{cpus} vCPUs");
        }
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
