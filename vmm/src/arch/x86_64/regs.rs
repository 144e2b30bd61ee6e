//! The registers, MSRs, FPU and LAPIC state a vCPU starts with, for each boot protocol.
//! Everything here can run again on reset.

use kvm_bindings::{
    kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, Msrs,
    KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{gdt_entry, kvm_segment_from_gdt};
use super::layout::{
    APIC_START, BOOT_GDT, BOOT_IDT, BOOT_STACK_POINTER, PDE_COUNT, PDE_START, PDPTE_START,
    PML4_START, PVH_INFO_START, ZERO_PAGE_START,
};
use super::{Error, Result};

/// Where and how the boot vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntry {
    /// Linux 64-bit boot protocol: long mode, identity paging, RSI = boot_params.
    Linux64 { entry: GuestAddress },
    /// PVH: 32-bit protected mode, paging off, EBX = hvm_start_info.
    Pvh { entry: GuestAddress },
}

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always set.
const RFLAGS_RESERVED: u64 = 0x2;

const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_ENABLE: u64 = 1 << 11;

/// Boot GDTs: null, code (0x08), data (0x10), TSS (0x18). Linux 64 enters through a 64-bit
/// code segment, PVH through a flat 32-bit one. Flags word: G, D/B, L, AVL in bits 15:12,
/// access byte in bits 7:0.
const GDT_LINUX64: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
const GDT_PVH: [u64; 4] = [
    0,
    gdt_entry(0xc09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
const GDT_CODE: u8 = 1;
const GDT_DATA: u8 = 2;
const GDT_TSS: u8 = 3;

// Page table entry bits.
const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PDE_HUGE_PAGE: u64 = 1 << 7;
const ENTRIES_PER_TABLE: u64 = 512;

// MSRs set at boot.
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MSR_IA32_APIC_BASE: u32 = 0x1b;
const MSR_IA32_CR_PAT: u32 = 0x277;
// KVM's paravirtual MSRs that make the host write guest memory (kvmclock, steal time, async
// page faults, PV EOI): left set across a reset, KVM would keep writing the old boot's
// addresses in the new boot's RAM.
const MSR_KVM_SYSTEM_TIME: u32 = 0x12;
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
const MSR_KVM_ASYNC_PF_EN: u32 = 0x4b56_4d02;
const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
/// The power-on PAT (SDM vol. 3, 13.12.4): WB, WT, UC-, UC, repeated.
const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

// LAPIC local vector table entries and delivery modes (bits 10:8).
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_DELIVERY_MODE_MASK: u32 = 0x700;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// General registers for `entry`; everything not named is zero.
pub fn setup_regs(vcpu: &VcpuFd, entry: &BootEntry) -> Result<()> {
    vcpu.set_regs(&boot_regs(entry))
        .map_err(|e| Error::Kvm("KVM_SET_REGS", e))
}

fn boot_regs(entry: &BootEntry) -> kvm_regs {
    match *entry {
        BootEntry::Linux64 { entry } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry.raw_value(),
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
        BootEntry::Pvh { entry } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry.raw_value(),
            rbx: PVH_INFO_START,
            ..Default::default()
        },
    }
}

fn write_u64s(
    mem: &GuestMemoryMmap,
    what: &'static str,
    start: u64,
    values: impl IntoIterator<Item = u64>,
) -> Result<()> {
    let bytes: Vec<u8> = values.into_iter().flat_map(u64::to_le_bytes).collect();
    mem.write_slice(&bytes, GuestAddress(start))
        .map_err(|e| Error::GuestMemory(what, e))
}

/// Identity map of 0..4 GiB with 2 MiB pages (present, writable): one PML4 entry, four PDPT
/// entries, four full page directories.
pub fn setup_page_tables(mem: &GuestMemoryMmap) -> Result<()> {
    let table = PTE_PRESENT | PTE_WRITABLE;
    write_u64s(mem, "the PML4", PML4_START, [PDPTE_START | table])?;
    write_u64s(
        mem,
        "the PDPT",
        PDPTE_START,
        (0..PDE_COUNT).map(|i| (PDE_START + i * 0x1000) | table),
    )?;
    write_u64s(
        mem,
        "the page directories",
        PDE_START,
        (0..ENTRIES_PER_TABLE * PDE_COUNT).map(|i| (i << 21) | table | PDE_HUGE_PAGE),
    )
}

/// The LDT register a vCPU comes out of reset with (selector 0, usable, empty).
fn reset_ldt() -> kvm_segment {
    kvm_segment {
        limit: 0xffff,
        type_: 2, // LDT
        present: 1,
        ..Default::default()
    }
}

/// Segments, descriptor tables, control registers and (Linux 64-bit) page tables for the
/// boot vCPU. Also undoes what a previous run left in the special registers (x2APIC mode,
/// a pending interrupt, CR2/CR8), so a reset starts like a first boot.
pub fn setup_sregs(mem: &GuestMemoryMmap, vcpu: &VcpuFd, entry: &BootEntry) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu
        .get_sregs()
        .map_err(|e| Error::Kvm("KVM_GET_SREGS", e))?;
    let gdt = match entry {
        BootEntry::Linux64 { .. } => &GDT_LINUX64,
        BootEntry::Pvh { .. } => &GDT_PVH,
    };
    write_u64s(mem, "the boot GDT", BOOT_GDT, gdt.iter().copied())?;
    write_u64s(mem, "the boot IDT", BOOT_IDT, [0])?;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (std::mem::size_of_val(gdt) - 1) as u16;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 0;

    let data = kvm_segment_from_gdt(gdt[GDT_DATA as usize], GDT_DATA);
    sregs.cs = kvm_segment_from_gdt(gdt[GDT_CODE as usize], GDT_CODE);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment_from_gdt(gdt[GDT_TSS as usize], GDT_TSS);
    sregs.ldt = reset_ldt();

    match entry {
        BootEntry::Linux64 { .. } => {
            setup_page_tables(mem)?;
            sregs.cr3 = PML4_START;
            sregs.cr4 = X86_CR4_PAE;
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
            sregs.efer = EFER_LME | EFER_LMA;
        }
        BootEntry::Pvh { .. } => {
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.efer = 0;
        }
    }
    sregs.cr2 = 0;
    sregs.cr8 = 0;
    sregs.interrupt_bitmap = [0; 4];
    // xAPIC mode at the standard base; KVM decides which vCPU is the BSP.
    sregs.apic_base = APIC_START | APIC_BASE_ENABLE | (sregs.apic_base & APIC_BASE_BSP);
    vcpu.set_sregs(&sregs)
        .map_err(|e| Error::Kvm("KVM_SET_SREGS", e))
}

/// x87 control word and MXCSR at their power-on values (all exceptions masked).
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|e| Error::Kvm("KVM_SET_FPU", e))
}

/// (index, value) of every MSR the VMM sets at boot.
pub fn boot_msrs() -> [(u32, u64); 11] {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
    ]
}

pub fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    write_msrs(vcpu, &boot_msrs())
}

/// MSRs a reset must return to their power-on values, which boot_msrs leaves alone because a
/// fresh vCPU already has them: the local APIC back in xAPIC mode at its usual address, the
/// PAT, and KVM's paravirtual MSRs off. KVM may lack some (PV features are optional), so they
/// are written one by one and a refusal is only logged.
pub fn reset_msrs(vcpu: &VcpuFd, bootstrap: bool) {
    let apic_base = APIC_START | APIC_BASE_ENABLE | if bootstrap { APIC_BASE_BSP } else { 0 };
    for (index, data) in [
        (MSR_IA32_APIC_BASE, apic_base),
        (MSR_IA32_CR_PAT, PAT_POWER_ON),
        (MSR_KVM_SYSTEM_TIME, 0),
        (MSR_KVM_SYSTEM_TIME_NEW, 0),
        (MSR_KVM_ASYNC_PF_EN, 0),
        (MSR_KVM_STEAL_TIME, 0),
        (MSR_KVM_PV_EOI_EN, 0),
    ] {
        if let Err(e) = write_msrs(vcpu, &[(index, data)]) {
            log::debug!("reset: MSR {index:#x} not reset: {e}");
        }
    }
}

fn write_msrs(vcpu: &VcpuFd, wanted: &[(u32, u64)]) -> Result<()> {
    let entries: Vec<kvm_msr_entry> = wanted
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| Error::Table("the boot MSR list"))?;
    let written = vcpu
        .set_msrs(&msrs)
        .map_err(|e| Error::Kvm("KVM_SET_MSRS", e))?;
    match wanted.get(written) {
        // KVM stops at the first MSR it refuses.
        Some(&(refused, _)) => Err(Error::MsrRefused(refused)),
        None => Ok(()),
    }
}

/// Drops whatever exception, interrupt or NMI the previous boot left pending or being
/// injected, and the interrupt shadow.
pub fn clear_events(vcpu: &VcpuFd) -> Result<()> {
    let mut events = vcpu
        .get_vcpu_events()
        .map_err(|e| Error::Kvm("KVM_GET_VCPU_EVENTS", e))?;
    events.exception = Default::default();
    events.interrupt = Default::default();
    events.nmi = Default::default();
    events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
    vcpu.set_vcpu_events(&events)
        .map_err(|e| Error::Kvm("KVM_SET_VCPU_EVENTS", e))
}

fn lapic_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    for (dst, src) in bytes.iter_mut().zip(state.regs.iter().skip(offset)) {
        *dst = *src as u8;
    }
    u32::from_le_bytes(bytes)
}

fn set_lapic_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in state.regs.iter_mut().skip(offset).zip(value.to_le_bytes()) {
        *dst = src as _;
    }
}

fn with_delivery_mode(lvt: u32, mode: u32) -> u32 {
    (lvt & !APIC_DELIVERY_MODE_MASK) | (mode << 8)
}

/// LINT0 as ExtINT and LINT1 as NMI, as a PC's BIOS leaves them (and as the MP table says).
pub fn set_lint(vcpu: &VcpuFd) -> Result<()> {
    let mut state = vcpu
        .get_lapic()
        .map_err(|e| Error::Kvm("KVM_GET_LAPIC", e))?;
    for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
        let lvt = lapic_reg(&state, offset);
        set_lapic_reg(&mut state, offset, with_delivery_mode(lvt, mode));
    }
    vcpu.set_lapic(&state)
        .map_err(|e| Error::Kvm("KVM_SET_LAPIC", e))
}

#[cfg(test)]
mod tests;
