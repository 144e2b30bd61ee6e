use super::*;
use crate::arch::x86_64::memory::arch_memory_regions;
use kvm_bindings::{kvm_enable_cap, KVM_CAP_SPLIT_IRQCHIP};

/// A VM with the split irqchip (as the VMM makes) and one vCPU; None without /dev/kvm.
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

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&arch_memory_regions(64 << 20)).unwrap()
}

#[test]
fn page_tables_identity_map_4g() {
    let mem = mem();
    setup_page_tables(&mem).unwrap();
    let read = |addr: u64| mem.read_obj::<u64>(GuestAddress(addr)).unwrap();
    assert_eq!(read(PML4_START), 0xa003);
    assert_eq!(read(PML4_START + 8), 0, "one PML4 entry only");
    let pdpt: Vec<u64> = (0..5).map(|i| read(PDPTE_START + 8 * i)).collect();
    assert_eq!(pdpt, [0xb003, 0xc003, 0xd003, 0xe003, 0]);
    assert_eq!(read(PDE_START), 0x83);
    assert_eq!(read(PDE_START + 8), 0x20_0083);
    // The page mapping 3 GiB (MMIO gap) and the last one, just below 4 GiB.
    assert_eq!(read(PDE_START + 8 * 1536), 0xc000_0083);
    assert_eq!(read(PDE_START + 8 * 2047), 0xffe0_0083);
}

#[test]
fn linux64_state() {
    let Some((_vm, vcpu)) = vcpu() else { return };
    let mem = mem();
    let entry = BootEntry::Linux64 {
        entry: GuestAddress(0x100_0000),
    };
    setup_regs(&vcpu, &entry).unwrap();
    setup_sregs(&mem, &vcpu, &entry).unwrap();
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(
        (regs.rip, regs.rsi, regs.rsp, regs.rbp, regs.rflags),
        (
            0x100_0000,
            ZERO_PAGE_START,
            BOOT_STACK_POINTER,
            BOOT_STACK_POINTER,
            2
        )
    );
    let sregs = vcpu.get_sregs().unwrap();
    assert_eq!(sregs.cr3, PML4_START);
    assert_eq!(
        sregs.cr0 & (X86_CR0_PE | X86_CR0_PG),
        X86_CR0_PE | X86_CR0_PG
    );
    assert_ne!(sregs.cr4 & X86_CR4_PAE, 0);
    assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
    assert_eq!((sregs.cs.selector, sregs.cs.l, sregs.cs.db), (0x08, 1, 0));
    assert_eq!((sregs.ds.selector, sregs.ss.selector), (0x10, 0x10));
    assert_eq!((sregs.tr.selector, sregs.tr.type_), (0x18, 0xb));
    assert_eq!((sregs.gdt.base, sregs.gdt.limit), (BOOT_GDT, 31));
    assert_eq!((sregs.idt.base, sregs.idt.limit), (BOOT_IDT, 0));
    let gdt: Vec<u64> = (0..4)
        .map(|i| mem.read_obj(GuestAddress(BOOT_GDT + 8 * i)).unwrap())
        .collect();
    assert_eq!(gdt, GDT_LINUX64);
    assert_eq!(GDT_LINUX64[1], 0x00af_9b00_0000_ffff);
    assert_eq!(
        mem.read_obj::<u64>(GuestAddress(PDE_START + 8)).unwrap(),
        0x20_0083
    );
}

#[test]
fn pvh_state() {
    let Some((_vm, vcpu)) = vcpu() else { return };
    let mem = mem();
    let entry = BootEntry::Pvh {
        entry: GuestAddress(0x10_0000),
    };
    setup_regs(&vcpu, &entry).unwrap();
    setup_sregs(&mem, &vcpu, &entry).unwrap();
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(
        (regs.rip, regs.rbx, regs.rflags),
        (0x10_0000, PVH_INFO_START, 2)
    );
    let sregs = vcpu.get_sregs().unwrap();
    assert_eq!(sregs.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE);
    assert_eq!(sregs.cr4 & X86_CR4_PAE, 0);
    assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), 0);
    assert_eq!(
        (sregs.cs.selector, sregs.cs.l, sregs.cs.db, sregs.cs.limit),
        (0x08, 0, 1, 0xffff_ffff)
    );
    assert_eq!(
        (sregs.ds.selector, sregs.ds.db, sregs.ds.base),
        (0x10, 1, 0)
    );
    assert_eq!(sregs.tr.selector, 0x18);
    assert_eq!(
        mem.read_obj::<u64>(GuestAddress(BOOT_GDT + 8)).unwrap(),
        0x00cf_9b00_0000_ffff
    );
}

#[test]
fn reset_undoes_a_previous_run() {
    let Some((_vm, vcpu)) = vcpu() else { return };
    let mem = mem();
    let entry = BootEntry::Linux64 {
        entry: GuestAddress(0x100_0000),
    };
    setup_sregs(&mem, &vcpu, &entry).unwrap();
    let first = vcpu.get_sregs().unwrap();
    // What a guest might leave behind.
    let mut dirty = first;
    dirty.cr2 = 0xdead_b000;
    dirty.cr4 |= 1 << 7; // PGE
    dirty.cr3 = 0x30_0000;
    vcpu.set_sregs(&dirty).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rax = 42;
    vcpu.set_regs(&regs).unwrap();

    setup_regs(&vcpu, &entry).unwrap();
    setup_sregs(&mem, &vcpu, &entry).unwrap();
    let again = vcpu.get_sregs().unwrap();
    assert_eq!(
        (again.cr2, again.cr3, again.cr4),
        (first.cr2, first.cr3, first.cr4)
    );
    assert_eq!(again.apic_base, first.apic_base);
    assert_eq!(again.apic_base & !0xfff, APIC_START);
    assert_eq!(vcpu.get_regs().unwrap().rax, 0);
}

#[test]
fn msrs_fpu_lint() {
    let Some((_vm, vcpu)) = vcpu() else { return };
    // A previous run's FPU state, then the boot state twice (a reset).
    let dirty = kvm_fpu {
        fcw: 0x27f,
        mxcsr: 0x1f81,
        ..Default::default()
    };
    vcpu.set_fpu(&dirty).unwrap();
    for _ in 0..2 {
        setup_msrs(&vcpu).unwrap();
        setup_fpu(&vcpu).unwrap();
        set_lint(&vcpu).unwrap();
    }
    assert_eq!(vcpu.get_fpu().unwrap().fcw, 0x37f);
    // KVM_GET_FPU does not report MXCSR (Linux leaves it 0); the XSAVE area does, at
    // byte 24 of the legacy region.
    let xsave = vcpu.get_xsave().unwrap();
    assert_eq!(xsave.region[6], 0x1f80);
    let lapic = vcpu.get_lapic().unwrap();
    assert_eq!((lapic_reg(&lapic, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
    assert_eq!((lapic_reg(&lapic, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);

    let query: Vec<kvm_msr_entry> = boot_msrs()
        .iter()
        .map(|&(index, _)| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let mut msrs = Msrs::from_entries(&query).unwrap();
    assert_eq!(vcpu.get_msrs(&mut msrs).unwrap(), query.len());
    for (got, (index, want)) in msrs.as_slice().iter().zip(boot_msrs()) {
        assert_eq!(got.index, index);
        match index {
            // The TSC has moved on since it was written (PVM guests read the host's TSC,
            // which userspace cannot offset); fast strings may come with other
            // MISC_ENABLE bits KVM sets itself.
            MSR_IA32_TSC if pvm => {}
            MSR_IA32_TSC => assert!(got.data < 1 << 40, "TSC was reset: {:#x}", got.data),
            MSR_IA32_MISC_ENABLE => assert_eq!(got.data & want, want),
            _ => assert_eq!(got.data, want, "MSR {index:#x}"),
        }
    }
}

#[test]
fn lapic_register_helpers() {
    let mut state = kvm_lapic_state::default();
    set_lapic_reg(&mut state, APIC_LVT1, 0x0001_0400);
    assert_eq!(lapic_reg(&state, APIC_LVT1), 0x0001_0400);
    assert_eq!(state.regs[APIC_LVT1 + 1], 0x04);
    assert_eq!(
        with_delivery_mode(0x0001_0000, APIC_MODE_EXTINT),
        0x0001_0700
    );
    assert_eq!(with_delivery_mode(0x0001_0700, APIC_MODE_NMI), 0x0001_0400);
}
