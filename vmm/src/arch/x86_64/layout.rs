//! Where the VMM puts things in guest-physical memory and port space (x86_64): the one map
//! the device setup, the ACPI tables and the MP table all read. Everything the boot protocols
//! need lives in the first MiB; the kernel is loaded at HIGH_RAM_START or above. The devices
//! crate knows only its devices' register sizes; the bases are chosen here.

use devices::acpi::{GED_SIZE, PM_SIZE};
use devices::legacy::{COM1_IRQ, IOAPIC_PINS, IOAPIC_SIZE};

/// GDT used to enter the kernel (4 descriptors: null, code, data, TSS).
pub const BOOT_GDT: u64 = 0x500;
/// An empty IDT (limit 0): any early exception is a triple fault, reported by the VMM.
pub const BOOT_IDT: u64 = 0x520;
/// PVH: hvm_start_info, then the module list and the memory map right after it.
pub const PVH_INFO_START: u64 = 0x6000;
pub const PVH_MODLIST_START: u64 = 0x6040;
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// Linux 64-bit boot protocol: boot_params ("zero page").
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack of the Linux 64-bit entry (grows down, below the page tables).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity page tables for the Linux 64-bit entry: PML4, one PDPT, four PDs (0..4 GiB in
/// 2 MiB pages).
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
pub const PDE_COUNT: u64 = 4;
/// The kernel command line (NUL terminated).
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Extended BIOS data area: the MP table goes here; reserved up to 1 MiB in the e820 map.
pub const EBDA_START: u64 = 0x9fc00;
pub const MPTABLE_START: u64 = EBDA_START;
/// ACPI: the RSDP where Linux scans for it (the BIOS area 0xe0000-0xfffff), the other tables
/// after it; all inside the reserved range below 1 MiB.
pub const ACPI_START: u64 = 0xe_0000;
pub const ACPI_END: u64 = 0x10_0000;
/// BIOS data area word holding the EBDA segment (where MP-spec scanners look first).
pub const BDA_EBDA_SEGMENT: u64 = 0x40e;
/// RAM above the legacy first MiB; kernels and initrds go here.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Devices live in [3 GiB, 4 GiB); RAM beyond 3 GiB continues at 4 GiB.
pub const MMIO_GAP_START: u64 = 3 << 30;
pub const MMIO_GAP_END: u64 = 4 << 30;
/// The ACPI Generic Event Device's register window, just below the virtio-mmio windows.
pub const GED_START: u64 = 0xcfff_f000;
/// virtio-mmio: VIRTIO_MMIO_COUNT windows of VIRTIO_MMIO_WINDOW_SIZE from VIRTIO_MMIO_START.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_WINDOW_SIZE: u64 = 0x1000;
pub const VIRTIO_MMIO_COUNT: usize = 18;
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const APIC_START: u64 = 0xfee0_0000;
/// KVM's real-mode TSS (three pages) and identity-map page, inside the gap.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP: u64 = 0xfffb_c000;
/// Smallest guest RAM the layout supports (boot tables, kernel at 1 MiB, some room).
pub const MIN_MEMORY: u64 = 8 << 20;

/// Interrupt lines (IOAPIC pins): the ISA ones below VIRTIO_FIRST_GSI (COM1 on 4), one per
/// virtio device from VIRTIO_FIRST_GSI, and the GED on the last pin, so the virtio devices
/// keep a contiguous run.
pub const VIRTIO_FIRST_GSI: u32 = 5;
pub const GED_GSI: u32 = 23;

/// Port of the first ACPI PM register (where Cloud Hypervisor puts its sleep control).
pub const ACPI_PM_PORT: u64 = 0x3c0;

/// Largest vCPU count: APIC ids 0..n-1 plus the IOAPIC's id n must fit in 8 bits, and 0xff is
/// the broadcast id.
pub const MAX_VCPUS: u8 = 254;

// The fixed boot structures must not overlap one another.
const _: () = {
    assert!(BOOT_GDT + 4 * 8 <= BOOT_IDT);
    assert!(PVH_MEMMAP_START + 16 * 24 <= ZERO_PAGE_START);
    assert!(ZERO_PAGE_START + 4096 <= BOOT_STACK_POINTER);
    assert!(BOOT_STACK_POINTER < PML4_START);
    assert!(PDE_START + PDE_COUNT * 4096 <= CMDLINE_START);
    assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
    assert!(ACPI_END == HIGH_RAM_START);
    assert!(IOAPIC_START >= MMIO_GAP_START && APIC_START < MMIO_GAP_END);
    assert!(IOAPIC_START + IOAPIC_SIZE <= APIC_START);
    assert!(GED_START >= MMIO_GAP_START && GED_START + GED_SIZE <= VIRTIO_MMIO_START);
    assert!(VIRTIO_MMIO_START + VIRTIO_MMIO_COUNT as u64 * VIRTIO_MMIO_WINDOW_SIZE <= IOAPIC_START);
    assert!(APIC_START + 4096 <= KVM_IDENTITY_MAP);
    assert!(KVM_IDENTITY_MAP + 4096 == KVM_TSS_ADDRESS);
    assert!(KVM_TSS_ADDRESS + 3 * 4096 <= MMIO_GAP_END);
};

// The interrupt lines are distinct IOAPIC pins.
const _: () = {
    assert!(COM1_IRQ < VIRTIO_FIRST_GSI);
    assert!(VIRTIO_FIRST_GSI as usize + VIRTIO_MMIO_COUNT <= GED_GSI as usize);
    assert!((GED_GSI as usize) < IOAPIC_PINS);
};

// The PM registers are clear of the ISA ports the machine uses (COM1 at 0x3f8).
const _: () = assert!(ACPI_PM_PORT + PM_SIZE <= devices::legacy::COM1_BASE);
