//! The registers, MSRs, FPU and LAPIC state a vCPU starts with, for each boot protocol.
//! Everything here can run again on reset.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{gdt_entry, kvm_segment_from_gdt};
use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_COUNT, PDE_START, PDPTE_START,
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

/// Boot GDT: null, 64-bit code, data, 32-bit code (PVH), TSS.
const GDT: [u64; 5] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0xc09b, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
const GDT_CODE64: u8 = 1;
const GDT_DATA: u8 = 2;
const GDT_CODE32: u8 = 3;
const GDT_TSS: u8 = 4;

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
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE: u64 = 1 << 11;
const MTRR_TYPE_WRBACK: u64 = 6;

// LAPIC local vector table entries and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

pub fn setup_regs(vcpu: &VcpuFd, entry: &BootEntry) -> Result<()> {
    let regs = match *entry {
        BootEntry::Linux64 { entry } => kvm_regs {
            rflags: 0x2,
            rip: entry.raw_value(),
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
        BootEntry::Pvh { entry } => kvm_regs {
            rflags: 0x2,
            rip: entry.raw_value(),
            rbx: PVH_INFO_START,
            ..Default::default()
        },
    };
    vcpu.set_regs(&regs)
        .map_err(|e| Error::Kvm("KVM_SET_REGS", e))
}

fn write_u64s(
    mem: &GuestMemoryMmap,
    what: &'static str,
    start: u64,
    values: impl Iterator<Item = u64>,
) -> Result<()> {
    for (i, value) in values.enumerate() {
        mem.write_obj(value, GuestAddress(start + 8 * i as u64))
            .map_err(|e| Error::GuestMemory(what, e))?;
    }
    Ok(())
}

/// Identity map of 0..4 GiB with 2 MiB pages (present, writable).
fn setup_page_tables(mem: &GuestMemoryMmap) -> Result<()> {
    write_u64s(
        mem,
        "the PML4",
        PML4_START,
        std::iter::once(PDPTE_START | 0x3),
    )?;
    write_u64s(
        mem,
        "the PDPT",
        PDPTE_START,
        (0..PDE_COUNT).map(|i| (PDE_START + i * 0x1000) | 0x3),
    )?;
    write_u64s(
        mem,
        "the page directories",
        PDE_START,
        (0..512 * PDE_COUNT).map(|i| (i << 21) | 0x83),
    )
}

/// Segments, control registers and (Linux 64-bit) page tables for the boot vCPU.
pub fn setup_sregs(mem: &GuestMemoryMmap, vcpu: &VcpuFd, entry: &BootEntry) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu
        .get_sregs()
        .map_err(|e| Error::Kvm("KVM_GET_SREGS", e))?;
    write_u64s(mem, "the boot GDT", BOOT_GDT_START, GDT.iter().copied())?;
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|e| Error::GuestMemory("the boot IDT", e))?;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&GDT) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 0;
    let code_index = match entry {
        BootEntry::Linux64 { .. } => GDT_CODE64,
        BootEntry::Pvh { .. } => GDT_CODE32,
    };
    let data = kvm_segment_from_gdt(GDT[GDT_DATA as usize], GDT_DATA);
    sregs.cs = kvm_segment_from_gdt(GDT[code_index as usize], code_index);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment_from_gdt(GDT[GDT_TSS as usize], GDT_TSS);
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
    vcpu.set_sregs(&sregs)
        .map_err(|e| Error::Kvm("KVM_SET_SREGS", e))
}

pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|e| Error::Kvm("KVM_SET_FPU", e))
}

fn boot_msr_entries() -> Vec<kvm_msr_entry> {
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
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

pub fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    let entries = boot_msr_entries();
    let msrs = Msrs::from_entries(&entries).map_err(|_| Error::Table("the boot MSR list"))?;
    let written = vcpu
        .set_msrs(&msrs)
        .map_err(|e| Error::Kvm("KVM_SET_MSRS", e))?;
    if written != entries.len() {
        // KVM stops at the first MSR it refuses; name it.
        let refused = entries.get(written).map(|e| e.index).unwrap_or(0);
        return Err(Error::Kvm(
            "KVM_SET_MSRS",
            kvm_ioctls::Error::new(libc::EINVAL),
        ))
        .inspect_err(|_| log::error!("KVM refused boot MSR {refused:#x}"));
    }
    Ok(())
}

fn lapic_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes: Vec<u8> = state.regs[offset..offset + 4]
        .iter()
        .map(|b| *b as u8)
        .collect();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn set_lapic_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in state.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *dst = src as _;
    }
}

fn with_delivery_mode(lvt: u32, mode: u32) -> u32 {
    (lvt & !0x700) | (mode << 8)
}

/// LINT0 as ExtINT and LINT1 as NMI, as a PC's BIOS leaves them.
pub fn set_lint(vcpu: &VcpuFd) -> Result<()> {
    let mut state = vcpu
        .get_lapic()
        .map_err(|e| Error::Kvm("KVM_GET_LAPIC", e))?;
    let lvt0 = lapic_reg(&state, APIC_LVT0);
    set_lapic_reg(
        &mut state,
        APIC_LVT0,
        with_delivery_mode(lvt0, APIC_MODE_EXTINT),
    );
    let lvt1 = lapic_reg(&state, APIC_LVT1);
    set_lapic_reg(
        &mut state,
        APIC_LVT1,
        with_delivery_mode(lvt1, APIC_MODE_NMI),
    );
    vcpu.set_lapic(&state)
        .map_err(|e| Error::Kvm("KVM_SET_LAPIC", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::memory::arch_memory_regions;
    use kvm_bindings::{kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP};

    fn vcpu() -> Option<(kvm_ioctls::VmFd, VcpuFd)> {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("skipped: /dev/kvm is not usable");
            return None;
        };
        let vm = kvm.create_vm().unwrap();
        let cap = kvm_enable_cap {
            cap: KVM_CAP_SPLIT_IRQCHIP,
            args: [24, 0, 0, 0],
            ..Default::default()
        };
        vm.enable_cap(&cap).unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        Some((vm, vcpu))
    }

    #[test]
    fn linux64_state() {
        let Some((_vm, vcpu)) = vcpu() else { return };
        let mem = GuestMemoryMmap::from_ranges(&arch_memory_regions(64 << 20)).unwrap();
        let entry = BootEntry::Linux64 {
            entry: GuestAddress(0x100_0000),
        };
        setup_regs(&vcpu, &entry).unwrap();
        setup_sregs(&mem, &vcpu, &entry).unwrap();
        let regs = vcpu.get_regs().unwrap();
        assert_eq!(
            (regs.rip, regs.rsi, regs.rsp),
            (0x100_0000, ZERO_PAGE_START, BOOT_STACK_POINTER)
        );
        let sregs = vcpu.get_sregs().unwrap();
        assert_eq!(sregs.cr3, PML4_START);
        assert_ne!(sregs.cr0 & X86_CR0_PG, 0);
        assert_ne!(sregs.efer & EFER_LMA, 0);
        assert_eq!((sregs.cs.selector, sregs.cs.l), (8, 1));
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(PML4_START)).unwrap(),
            PDPTE_START | 3
        );
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(PDPTE_START + 24)).unwrap(),
            (PDE_START + 0x3000) | 3
        );
        let last_pde = PDE_START + 8 * (512 * PDE_COUNT - 1);
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(last_pde)).unwrap(),
            (2047 << 21) | 0x83
        );
    }

    #[test]
    fn pvh_state() {
        let Some((_vm, vcpu)) = vcpu() else { return };
        let mem = GuestMemoryMmap::from_ranges(&arch_memory_regions(64 << 20)).unwrap();
        let entry = BootEntry::Pvh {
            entry: GuestAddress(0x10_0000),
        };
        setup_regs(&vcpu, &entry).unwrap();
        setup_sregs(&mem, &vcpu, &entry).unwrap();
        assert_eq!(vcpu.get_regs().unwrap().rbx, PVH_INFO_START);
        let sregs = vcpu.get_sregs().unwrap();
        assert_eq!(sregs.cr0 & X86_CR0_PG, 0);
        assert_eq!((sregs.cs.selector, sregs.cs.l, sregs.cs.db), (0x18, 0, 1));
        assert_eq!(sregs.efer, 0);
    }

    #[test]
    fn msrs_fpu_lint() {
        let Some((_vm, vcpu)) = vcpu() else { return };
        setup_msrs(&vcpu).unwrap();
        setup_fpu(&vcpu).unwrap();
        set_lint(&vcpu).unwrap();
        assert_eq!(vcpu.get_fpu().unwrap().fcw, 0x37f);
        let lapic = vcpu.get_lapic().unwrap();
        assert_eq!((lapic_reg(&lapic, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!((lapic_reg(&lapic, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }
}
