//! ACPI tables for a hardware-reduced x86 platform (ACPI 6.5), built with the acpi_tables crate:
//! RSDP → XSDT → FADT (→ DSDT) and MADT.
//!
//! - FADT: hardware-reduced, with the sleep control/status and reset registers of
//!   devices::acpi::PmControl.
//! - MADT: one local APIC per vCPU (APIC id = vCPU index, as CPUID says), the IOAPIC, the
//!   PC's IRQ0 → GSI 2 override and the LINT1 NMI.
//! - DSDT: COM1, one LNRO0005 device per virtio-mmio window (how Linux finds virtio-mmio
//!   without a command line), the power button behind a Generic Event Device, and `_S5`.

use acpi_tables::aml::{
    self, Device, EISAName, Field, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If,
    Interrupt, Local, Memory32Fixed, Method, Name, Notify, OpRegion, OpRegionSpace, Package, Path,
    ResourceTemplate, Scope, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use devices::acpi::{
    GED_EVENT_POWER_BUTTON, PM_RESET_OFFSET, PM_RESET_VALUE, PM_SLEEP_CONTROL_OFFSET,
    PM_SLEEP_STATUS_OFFSET, SLEEP_TYPE_S5,
};
use devices::legacy::{COM1_BASE, COM1_IRQ};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{Immutable, IntoBytes};

use super::layout::{
    ACPI_END, ACPI_PM_PORT, ACPI_START, APIC_START, GED_GSI, GED_START, IOAPIC_START,
};
use super::{Error, Result};

const OEM_ID: [u8; 6] = *b"RUSTVM";
const OEM_REVISION: u32 = 1;
/// Tables start on this boundary (the RSDP needs 16; 64 keeps each on its own cache lines).
const TABLE_ALIGN: u64 = 64;

/// IAPC_BOOT_ARCH (FADT): no VGA, no CMOS RTC; no 8042 flag, so Linux does not probe the
/// i8042 (it is here only for the keyboard-controller reset).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// MADT structure types ACPI defines that acpi_tables does not provide.
const MADT_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const MADT_LOCAL_APIC_NMI: u8 = 4;
/// The PC wiring: the PIT's IRQ 0 arrives on IOAPIC pin 2.
const ISA_TIMER_IRQ: u8 = 0;
const ISA_TIMER_GSI: u32 = 2;

/// A virtio-mmio window and its interrupt, as the DSDT describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    pub base: u64,
    pub size: u64,
    pub gsi: u32,
}

/// Writes every table into the ACPI area and returns the RSDP's address.
pub fn setup_acpi(mem: &GuestMemoryMmap, cpus: u8, virtio: &[MmioDevice]) -> Result<GuestAddress> {
    let rsdp_addr = ACPI_START;
    let mut writer = TableWriter {
        mem,
        next: align(rsdp_addr + Rsdp::len() as u64),
    };
    let dsdt = writer.write("DSDT", &create_dsdt(virtio)?)?;
    let fadt = writer.write("FADT", &create_fadt(dsdt))?;
    let madt = writer.write("MADT", &create_madt(cpus))?;
    let mut xsdt = XSDT::new(OEM_ID, *b"RUSTXSDT", OEM_REVISION);
    xsdt.add_entry(fadt);
    xsdt.add_entry(madt);
    let xsdt = writer.write("XSDT", &to_bytes(&xsdt))?;
    let rsdp = to_bytes(&Rsdp::new(OEM_ID, xsdt));
    mem.write_slice(&rsdp, GuestAddress(rsdp_addr))
        .map_err(|e| Error::GuestMemory("the ACPI RSDP", e))?;
    Ok(GuestAddress(rsdp_addr))
}

struct TableWriter<'a> {
    mem: &'a GuestMemoryMmap,
    next: u64,
}

impl TableWriter<'_> {
    /// Writes `table` at the next aligned address; returns that address.
    fn write(&mut self, what: &'static str, table: &[u8]) -> Result<u64> {
        let at = self.next;
        let end = at + table.len() as u64;
        if end > ACPI_END {
            return Err(Error::Table("the ACPI tables (they outgrow the BIOS area)"));
        }
        self.mem
            .write_slice(table, GuestAddress(at))
            .map_err(|e| Error::GuestMemory(what, e))?;
        self.next = align(end);
        Ok(at)
    }
}

fn align(addr: u64) -> u64 {
    addr.next_multiple_of(TABLE_ALIGN)
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn io_register(port: u64) -> GAS {
    GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, port)
}

/// Hardware-reduced FADT: no PM1/GPE blocks, sleep and reset through PmControl's ports.
pub fn create_fadt(dsdt: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, *b"RUSTFACP", OEM_REVISION)
        .dsdt_64(dsdt)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        // The power button is a control-method device (PNP0C0C in the DSDT).
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.sleep_control_reg = io_register(ACPI_PM_PORT + PM_SLEEP_CONTROL_OFFSET);
    fadt.sleep_status_reg = io_register(ACPI_PM_PORT + PM_SLEEP_STATUS_OFFSET);
    fadt.reset_reg = io_register(ACPI_PM_PORT + PM_RESET_OFFSET);
    fadt.reset_value = PM_RESET_VALUE;
    fadt.iapc_boot_arch = (IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT).into();
    to_bytes(&fadt.finalize())
}

#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    kind: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: U32,
    flags: U16,
}

#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct LocalApicNmi {
    kind: u8,
    length: u8,
    processor_uid: u8,
    flags: U16,
    lint: u8,
}

macro_rules! aml_from_bytes {
    ($t:ty) => {
        impl Aml for $t {
            fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
                sink.vec(self.as_bytes());
            }
        }
    };
}
aml_from_bytes!(InterruptSourceOverride);
aml_from_bytes!(LocalApicNmi);

/// One enabled local APIC per vCPU, the IOAPIC (its id follows the CPUs', as in the MP
/// table), the timer override and the NMI line of every local APIC.
pub fn create_madt(cpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"RUSTAPIC",
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    for cpu in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(cpus, IOAPIC_START as u32, 0));
    madt.add_structure(InterruptSourceOverride {
        kind: MADT_INTERRUPT_SOURCE_OVERRIDE,
        length: 10,
        bus: 0,
        source: ISA_TIMER_IRQ,
        gsi: ISA_TIMER_GSI.into(),
        flags: 0.into(), // conforms to the bus: edge, active high
    });
    madt.add_structure(LocalApicNmi {
        kind: MADT_LOCAL_APIC_NMI,
        length: 6,
        processor_uid: 0xff, // all processors
        flags: 0.into(),
        lint: 1,
    });
    to_bytes(&madt)
}

/// An edge-triggered, active-high interrupt this device consumes.
fn edge_interrupt(gsi: u32) -> Interrupt {
    Interrupt::new(true, true, false, false, gsi)
}

fn window(base: u64, size: u64) -> Result<Memory32Fixed> {
    let base = u32::try_from(base).map_err(|_| Error::AddressTooHigh("an MMIO window", base))?;
    let size = u32::try_from(size).map_err(|_| Error::AddressTooHigh("an MMIO window", size))?;
    Ok(Memory32Fixed::new(true, base, size))
}

fn serial_aml(sink: &mut Vec<u8>) {
    let port = COM1_BASE as u16;
    let irq = edge_interrupt(COM1_IRQ);
    let io = IO::new(port, port, 1, 8);
    let crs = ResourceTemplate::new(vec![&io, &irq]);
    Device::new(
        "COM1".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0501")),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

/// Device `VRnn`: what Linux's virtio_mmio driver matches (QEMU's microvm and Firecracker
/// describe their windows the same way).
fn virtio_aml(index: usize, dev: &MmioDevice, sink: &mut Vec<u8>) -> Result<()> {
    let name = format!("VR{index:02}");
    let uid = index as u32;
    let mem = window(dev.base, dev.size)?;
    let irq = edge_interrupt(dev.gsi);
    let crs = ResourceTemplate::new(vec![&mem, &irq]);
    Device::new(
        name.as_str().into(),
        vec![
            &Name::new("_HID".into(), &"LNRO0005"),
            &Name::new("_UID".into(), &uid),
            &Name::new("_CCA".into(), &aml::ONE),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
    Ok(())
}

/// The power button and the Generic Event Device that signals it: on the GED's interrupt the
/// OS runs `_EVT`, which reads (and so clears) the event register and notifies PWRB.
fn power_button_aml(sink: &mut Vec<u8>) -> Result<()> {
    Device::new(
        "PWRB".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0C0C")),
            &Name::new("_UID".into(), &aml::ZERO),
        ],
    )
    .to_aml_bytes(sink);

    // Only the interrupt: Linux's acpi-ged refuses a _CRS with anything else ("unable to
    // parse IRQ resource"). The event register is the OperationRegion below, as in QEMU.
    let irq = edge_interrupt(GED_GSI);
    let crs = ResourceTemplate::new(vec![&irq]);
    let base = GED_START as u32;
    let region = OpRegion::new("GDST".into(), OpRegionSpace::SystemMemory, &base, &4u32);
    let field = Field::new(
        "GDST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        vec![FieldEntry::Named(*b"GDAT", 32)],
    );
    let events = Path::new("GDAT");
    let store = aml::Store::new(&Local(0), &events);
    let button = GED_EVENT_POWER_BUTTON;
    let masked = aml::And::new(&Local(1), &Local(0), &button);
    let pressed = aml::Equal::new(&Local(1), &button);
    let power_button = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&power_button, &0x80u8);
    let on_button = If::new(&pressed, vec![&notify]);
    let evt = Method::new("_EVT".into(), 1, true, vec![&store, &masked, &on_button]);
    Device::new(
        "GED_".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
            &region,
            &field,
            &evt,
        ],
    )
    .to_aml_bytes(sink);
    Ok(())
}

/// The DSDT: devices in `\_SB_`, `_S5_` at the root.
pub fn create_dsdt(virtio: &[MmioDevice]) -> Result<Vec<u8>> {
    let mut devices = Vec::new();
    serial_aml(&mut devices);
    for (index, dev) in virtio.iter().enumerate() {
        virtio_aml(index, dev, &mut devices)?;
    }
    power_button_aml(&mut devices)?;

    let mut body = Scope::raw("\\_SB_".into(), devices);
    // _S5_: SLP_TYPa, SLP_TYPb (one register here, so b is unused).
    let s5 = Package::new(vec![&SLEEP_TYPE_S5, &0u8]);
    Name::new("_S5_".into(), &s5).to_aml_bytes(&mut body);

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, *b"RUSTDSDT", OEM_REVISION);
    dsdt.append_slice(&body);
    Ok(dsdt.as_slice().to_vec())
}

/// The test guest's AML reader, so that the DSDT is checked by decoding it, and the guest's
/// reader is checked against what the VMM really generates.
#[cfg(test)]
#[path = "../../../../resources/test-guest/src/aml.rs"]
mod guest_aml;

#[cfg(test)]
mod tests {
    use super::guest_aml;
    use super::*;
    use crate::arch::x86_64::layout::{
        MAX_VCPUS, VIRTIO_FIRST_GSI, VIRTIO_MMIO_COUNT, VIRTIO_MMIO_START, VIRTIO_MMIO_WINDOW_SIZE,
    };
    use crate::arch::x86_64::memory::arch_memory_regions;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Checks the common header: signature, length field = table size, zero checksum.
    fn assert_table(table: &[u8], signature: &[u8; 4]) {
        assert_eq!(&table[..4], signature);
        assert_eq!(
            u32_at(table, 4) as usize,
            table.len(),
            "{signature:?} length"
        );
        assert_eq!(sum(table), 0, "{signature:?} checksum");
    }

    fn virtio(n: usize) -> Vec<MmioDevice> {
        (0..n)
            .map(|i| MmioDevice {
                base: VIRTIO_MMIO_START + i as u64 * VIRTIO_MMIO_WINDOW_SIZE,
                size: VIRTIO_MMIO_WINDOW_SIZE,
                gsi: VIRTIO_FIRST_GSI + i as u32,
            })
            .collect()
    }

    #[test]
    fn fadt_is_hardware_reduced_with_sleep_and_reset_registers() {
        let fadt = create_fadt(0xe_1000);
        assert_table(&fadt, b"FACP");
        assert_eq!(fadt.len(), 276, "ACPI 6.5 FADT");
        let flags = u32_at(&fadt, 112);
        assert_ne!(flags & Flags::HwReducedAcpi as u32, 0);
        assert_ne!(flags & Flags::ResetRegSup as u32, 0);
        assert_eq!(u64_at(&fadt, 140), 0xe_1000, "X_DSDT");
        assert_eq!(u32_at(&fadt, 40), 0, "no 32-bit DSDT");
        // reset_reg (GAS at 116), value at 128; sleep control/status GAS at 244/256.
        assert_eq!(fadt[116], 1, "reset register in I/O space");
        assert_eq!(u64_at(&fadt, 120), ACPI_PM_PORT + PM_RESET_OFFSET);
        assert_eq!(fadt[128], PM_RESET_VALUE);
        assert_eq!(u64_at(&fadt, 248), ACPI_PM_PORT + PM_SLEEP_CONTROL_OFFSET);
        assert_eq!(u64_at(&fadt, 260), ACPI_PM_PORT + PM_SLEEP_STATUS_OFFSET);
        assert_eq!((fadt[244], fadt[245]), (1, 8));
    }

    #[test]
    fn madt_has_one_local_apic_per_cpu() {
        for cpus in [1u8, 2, 4, 8, MAX_VCPUS] {
            let madt = create_madt(cpus);
            assert_table(&madt, b"APIC");
            assert_eq!(u32_at(&madt, 36), APIC_START as u32);
            let mut at = 44;
            let (mut lapics, mut ioapics, mut overrides, mut nmis) = (Vec::new(), 0, 0, 0);
            while at < madt.len() {
                let (kind, len) = (madt[at], madt[at + 1] as usize);
                match kind {
                    0 => {
                        assert_eq!(len, 8);
                        assert_eq!(u32_at(&madt, at + 4), 1, "enabled");
                        lapics.push((madt[at + 2], madt[at + 3]));
                    }
                    1 => {
                        assert_eq!(madt[at + 2], cpus, "IOAPIC id after the CPUs'");
                        assert_eq!(u32_at(&madt, at + 4), IOAPIC_START as u32);
                        ioapics += 1;
                    }
                    2 => {
                        assert_eq!((madt[at + 3], u32_at(&madt, at + 4)), (0, 2));
                        overrides += 1;
                    }
                    4 => {
                        assert_eq!((madt[at + 2], madt[at + 5]), (0xff, 1));
                        nmis += 1;
                    }
                    other => panic!("unexpected MADT entry {other}"),
                }
                at += len;
            }
            assert_eq!(at, madt.len(), "entries fill the table exactly");
            let expected: Vec<(u8, u8)> = (0..cpus).map(|c| (c, c)).collect();
            assert_eq!(lapics, expected);
            assert_eq!((ioapics, overrides, nmis), (1, 1, 1));
        }
    }

    #[test]
    fn tables_chain_from_the_rsdp() {
        let mem = GuestMemoryMmap::from_ranges(&arch_memory_regions(32 << 20)).unwrap();
        let rsdp_addr = setup_acpi(&mem, 4, &virtio(3)).unwrap();
        assert_eq!(rsdp_addr.0, ACPI_START);
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, rsdp_addr).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(sum(&rsdp), 0, "extended checksum");
        assert_eq!(rsdp[15], 2, "revision 2: has an XSDT");

        let read_table = |addr: u64| {
            let mut header = [0u8; 8];
            mem.read_slice(&mut header, GuestAddress(addr)).unwrap();
            let mut table = vec![0u8; u32_at(&header, 4) as usize];
            mem.read_slice(&mut table, GuestAddress(addr)).unwrap();
            assert!(addr + table.len() as u64 <= ACPI_END);
            table
        };
        let xsdt = read_table(u64_at(&rsdp, 24));
        assert_table(&xsdt, b"XSDT");
        assert_eq!(xsdt.len(), 36 + 2 * 8);
        let fadt = read_table(u64_at(&xsdt, 36));
        assert_table(&fadt, b"FACP");
        assert_table(&read_table(u64_at(&xsdt, 44)), b"APIC");
        let dsdt = read_table(u64_at(&fadt, 140));
        assert_table(&dsdt, b"DSDT");
    }

    #[test]
    fn every_table_fits_with_the_most_cpus_and_devices() {
        let mem = GuestMemoryMmap::from_ranges(&arch_memory_regions(32 << 20)).unwrap();
        setup_acpi(&mem, MAX_VCPUS, &virtio(VIRTIO_MMIO_COUNT)).unwrap();
    }

    #[test]
    fn dsdt_declares_every_device() {
        for n in [0usize, 1, 3, 18] {
            let devices = virtio(n);
            let dsdt = create_dsdt(&devices).unwrap();
            assert_table(&dsdt, b"DSDT");
            let decoded = guest_aml::parse(&dsdt[36..]).unwrap();
            assert_eq!(decoded.dropped, 0);
            assert_eq!(
                decoded.devices().len(),
                n + 3,
                "COM1, PWRB, GED and {n} virtio"
            );
            assert_eq!(decoded.s5, Some(SLEEP_TYPE_S5));

            let com1: Vec<_> = decoded.find("PNP0501").collect();
            assert_eq!(com1.len(), 1);
            assert_eq!(com1[0].io, Some((COM1_BASE as u16, 8)));
            assert_eq!(com1[0].irq, Some(COM1_IRQ));

            let button: Vec<_> = decoded.find("PNP0C0C").collect();
            assert_eq!((button.len(), &button[0].name), (1, b"PWRB"));

            let ged: Vec<_> = decoded.find("ACPI0013").collect();
            assert_eq!(ged.len(), 1);
            assert_eq!(
                ged[0].memory, None,
                "Linux's acpi-ged takes only an interrupt"
            );
            assert_eq!(ged[0].region, Some((GED_START, 4)));
            assert_eq!(ged[0].irq, Some(GED_GSI));
            assert!(ged[0].has_evt, "the GED needs _EVT to notify the button");

            let found: Vec<_> = decoded.find("LNRO0005").collect();
            assert_eq!(found.len(), n);
            for (i, (dev, want)) in found.iter().zip(&devices).enumerate() {
                assert_eq!(dev.name, *format!("VR{i:02}").as_bytes());
                assert_eq!(dev.uid, Some(i as u64));
                assert_eq!(dev.memory, Some((want.base as u32, want.size as u32)));
                assert_eq!(dev.irq, Some(want.gsi));
                assert!(dev.coherent);
            }
        }
    }

    #[test]
    fn windows_above_4_gib_are_refused() {
        let far = [MmioDevice {
            base: 1 << 32,
            size: 0x1000,
            gsi: 5,
        }];
        assert!(matches!(
            create_dsdt(&far),
            Err(Error::AddressTooHigh(_, _))
        ));
    }
}
