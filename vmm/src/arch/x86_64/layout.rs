//! Where the VMM puts things in guest-physical memory (x86_64).

/// GDT used to enter the kernel.
pub const BOOT_GDT_START: u64 = 0x500;
/// An empty IDT (limit 0): any early exception is a triple fault, reported by the VMM.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH: hvm_start_info, then the module list and the memory map.
pub const PVH_INFO_START: u64 = 0x6000;
pub const PVH_MODLIST_START: u64 = 0x6040;
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// Linux 64-bit boot protocol: boot_params ("zero page").
pub const ZERO_PAGE_START: u64 = 0x7000;
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity page tables for the Linux 64-bit entry: PML4, one PDPT, four PDs (0..4 GiB).
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
pub const PDE_COUNT: u64 = 4;
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Extended BIOS data area: reserved in the e820 map like on a PC.
pub const EBDA_START: u64 = 0x9fc00;
/// The BIOS area, where the MP floating pointer and table live (Linux scans it).
pub const BIOS_START: u64 = 0xf0000;
pub const MPTABLE_START: u64 = BIOS_START;
/// BIOS data area word holding the EBDA segment.
pub const BDA_EBDA_SEGMENT: u64 = 0x40e;
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Devices live in [3 GiB, 4 GiB); RAM beyond 3 GiB continues at 4 GiB.
pub const MMIO_GAP_START: u64 = 3 << 30;
pub const MMIO_GAP_END: u64 = 4 << 30;
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const APIC_START: u64 = 0xfee0_0000;
/// KVM's real-mode TSS (three pages) and identity-map page, inside the gap.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_START: u64 = 0xfffb_c000;
