//! The guest's only CPL0 code. Under PVM every CPL0 instruction is emulated (~2 µs each), so
//! this is about 50 instructions: load our GDT, a 64-bit TSS whose I/O permission bitmap allows
//! every port (PVM checks it for CPL3 port I/O and ignores IOPL), an IDT and identity page
//! tables, time a tiny probe loop, then SYSEXIT to Rust at CPL3 with IOPL=3 and IF=0. KVM's
//! instruction emulator implements SYSEXIT but not IRET or far RET to an outer ring.
//!
//! Entries: `pvh_entry` (PVH note: 32-bit protected mode, paging off, %ebx = hvm_start_info)
//! and `linux64_entry` (ELF e_entry, Linux 64-bit boot protocol: long mode, %rsi =
//! boot_params). Rust starts at `rust_start(kind, info)`: kind 1 = PVH, 2 = Linux 64-bit.
//!
//! CPUID is read here, at CPL0, for the leaves `cpuid_leaves` lists (into `cpuid_regs`): at
//! CPL3, an AMD host without CPUID faulting runs CPUID natively under PVM, so Rust would see
//! the host's leaves (its APIC id, its hypervisor) instead of the VMM's.
//!
//! `cpl0_total_ticks` holds the TSC ticks from entry to the SYSEXIT, `cpl0_probe_ticks` those
//! of five register-only instructions: thousands of ticks when CPL0 is emulated (PVM), tens
//! when it runs natively (VMX/SVM, TCG). Rust uses the probe to know whether CPL3 can come
//! back to CPL0 (see `io::halt_forever`).
//!
//! IDT: vector 6 (#UD) catches SYSEXIT on AMD CPUs, where it is invalid in long mode; there
//! CPL0 runs natively and IRETQ does the same job. Vector 0x80 is a DPL-3 gate that halts at
//! CPL0 for good (end=halt). Every other vector is absent, so any other exception ends in a
//! triple fault that the VMM reports.

#[cfg(not(test))]
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18              /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_entry

    .section .text.entry, "ax"
    .code32
    .globl pvh_entry
pvh_entry:
    rdtsc
    movl %eax, %ebp             /* CPL0 start time (low half is enough) */
    movl %ebx, %esi             /* info: hvm_start_info */
    movl $1, %edi               /* kind: PVH */
    lgdt gdt_desc
    movl $0x620, %eax           /* CR4: PAE | OSFXSR | OSXMMEXCPT */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx      /* EFER.LME */
    movl $0x100, %eax
    xorl %edx, %edx
    wrmsr
    movl $0x80010033, %eax      /* CR0: PG | WP | NE | ET | MP | PE (EM clear) */
    movl %eax, %cr0
    ljmp $0x08, $long64

    .code64
    .globl linux64_entry
linux64_entry:
    rdtsc
    movl %eax, %ebp
    movl $2, %edi               /* kind: Linux 64-bit; %rsi = boot_params */
    lgdt gdt_desc
    movl $0x620, %eax
    movq %rax, %cr4
    movl $pml4, %eax
    movq %rax, %cr3
    movl $0x80010033, %eax
    movq %rax, %cr0
    pushq $0x08
    pushq $long64
    lretq

long64:
    movl $kernel_stack_top, %esp /* PVH enters with no stack */
    movl $0x10, %eax
    movl %eax, %ss
    lidt idt_desc
    movl $0x38, %eax
    ltr %ax
    movl $0x174, %ecx           /* SYSENTER_CS: SYSEXIT64 uses CS = +32, SS = +40 */
    movl $0x08, %eax
    xorl %edx, %edx
    wrmsr
    leaq cpuid_leaves(%rip), %r9 /* the VMM's CPUID, while it is still ours to ask */
    leaq cpuid_regs(%rip), %r10
4:  movl (%r9), %eax
    cmpl $0xffffffff, %eax
    je 5f
    xorl %ecx, %ecx
    cpuid
    movl %eax, (%r10)
    movl %ebx, 4(%r10)
    movl %ecx, 8(%r10)
    movl %edx, 12(%r10)
    addq $4, %r9
    addq $16, %r10
    jmp 4b
5:
    rdtsc                       /* probe: is CPL0 emulated? */
    movl %eax, %r8d
    movl $2, %ecx
1:  decl %ecx
    jnz 1b
    rdtsc
    movl %eax, %ecx
    subl %r8d, %ecx
    movl %ecx, cpl0_probe_ticks(%rip)
    subl %ebp, %eax
    movl %eax, cpl0_total_ticks(%rip)
    pushq $0x3002               /* RFLAGS: IOPL=3, IF=0 */
    popfq
    movl $rust_start, %edx      /* SYSEXIT: RIP = RDX, RSP = RCX */
    movl $user_stack_top - 8, %ecx
sysexit_insn:
    .byte 0x48, 0x0f, 0x35      /* sysexitq */

    /* CPL0, #UD. At sysexit_insn (AMD): make the same switch with IRETQ. Anywhere else: a
       bug, so triple-fault like every other exception. */
    .globl ud_handler
ud_handler:
    cmpq $sysexit_insn, (%rsp)
    jne 2f
    movq %rdx, (%rsp)           /* RIP */
    movq $0x2b, 8(%rsp)         /* CS: user code 64, RPL 3 */
    movq $0x3002, 16(%rsp)      /* RFLAGS */
    movq %rcx, 24(%rsp)         /* RSP */
    movq $0x33, 32(%rsp)        /* SS: user data, RPL 3 */
    iretq
2:  lidt null_idt_desc
    ud2

    /* CPL0: int $0x80 from CPL3 lands here and halts for good. */
    .globl halt_gate
halt_gate:
    cli
3:  hlt
    jmp 3b

    .section .data
    .balign 16
gdt:
    .quad 0                     /* 0x00 */
    .quad 0x00af9a000000ffff    /* 0x08 kernel code 64 */
    .quad 0x00cf92000000ffff    /* 0x10 kernel data */
    .quad 0x00cf9a000000ffff    /* 0x18 kernel code 32 (unused) */
    .quad 0x00cffa000000ffff    /* 0x20 user code 32 (unused) */
    .quad 0x00affa000000ffff    /* 0x28 user code 64 (SYSEXIT64 CS) */
    .quad 0x00cff2000000ffff    /* 0x30 user data (SYSEXIT64 SS) */
    .word 0x2068                /* 0x38 TSS: limit = 0x68 + 8 KiB bitmap */
    .word tss_base_15_0
    .byte tss_base_23_16
    .byte 0x89                  /* present, 64-bit TSS available */
    .byte 0
    .byte tss_base_31_24
    .long 0, 0
gdt_end:
    .balign 8
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt

    .balign 16
idt:
    .fill 6 * 2, 8, 0           /* vectors 0-5: absent */
    .word ud_handler_15_0       /* vector 6 (#UD): interrupt gate, DPL 0 */
    .word 0x08
    .word 0x8e00
    .word ud_handler_31_16
    .long 0, 0
    .fill (0x80 - 7) * 2, 8, 0  /* vectors 7-0x7f: absent */
    .word halt_gate_15_0        /* vector 0x80: interrupt gate, DPL 3 */
    .word 0x08
    .word 0xee00
    .word halt_gate_31_16
    .long 0, 0
idt_end:
    .balign 8
idt_desc:
    .word idt_end - idt - 1
    .quad idt
null_idt_desc:
    .word 0
    .quad 0

    .balign 4
    .globl cpuid_leaves, cpuid_regs
cpuid_leaves:                   /* ends with 0xffffffff; CPUID_SLOTS in Rust counts them */
    .long 0, 1, 0x15, 0x16, 0x40000000, 0x40000010, 0xffffffff
    .balign 16
cpuid_regs:                     /* eax, ebx, ecx, edx per leaf */
    .fill 6 * 4, 4, 0

    .balign 4
    .globl cpl0_total_ticks, cpl0_probe_ticks
cpl0_total_ticks:
    .long 0
cpl0_probe_ticks:
    .long 0

    /* identity map of 0..4 GiB in 2 MiB pages, user accessible; 3..4 GiB uncached (MMIO) */
    .balign 4096
pml4:
    .quad pdpt + 0x7
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x7
    .quad pd + 0x1000 + 0x7
    .quad pd + 0x2000 + 0x7
    .quad pd + 0x3000 + 0x7
    .fill 508, 8, 0
pd:
    .set i, 0
    .rept 1536
    .quad (i << 21) | 0x87      /* P | RW | US | PS */
    .set i, i + 1
    .endr
    .rept 512
    .quad (i << 21) | 0x9f      /* P | RW | US | PWT | PCD | PS */
    .set i, i + 1
    .endr

    .balign 16
    .globl tss
tss:
    .long 0
    .quad kernel_stack_top      /* RSP0: stack for CPL3 -> CPL0 transitions */
    .fill 0x66 - 12, 1, 0
    .word 0x68                  /* I/O map base */
    .fill 8192, 1, 0            /* every port allowed */
    .byte 0xff

    .section .bss
    .balign 4096
    .skip 4096
kernel_stack_top:
    .skip 65536
user_stack_top:
"#,
    options(att_syntax)
);

/// Leaves in `cpuid_leaves` (without the terminator).
const CPUID_SLOTS: usize = 6;

#[cfg(not(test))]
extern "C" {
    static cpl0_total_ticks: u32;
    static cpl0_probe_ticks: u32;
    static cpuid_leaves: [u32; CPUID_SLOTS + 1];
    static cpuid_regs: [[u32; 4]; CPUID_SLOTS];
}

/// CPUID `leaf` (subleaf 0) as the boot CPU read it at CPL0, if entry.rs read that leaf.
#[cfg(not(test))]
pub fn cpl0_cpuid(leaf: u32) -> Option<[u32; 4]> {
    // SAFETY: both tables are written once at CPL0 before Rust runs; only read afterwards.
    let (leaves, regs) = unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!(cpuid_leaves)),
            core::ptr::read_volatile(core::ptr::addr_of!(cpuid_regs)),
        )
    };
    let slot = leaves[..CPUID_SLOTS].iter().position(|&l| l == leaf)?;
    Some(regs[slot])
}

/// Host unit tests have no entry code.
#[cfg(test)]
pub fn cpl0_cpuid(_: u32) -> Option<[u32; 4]> {
    None
}

/// TSC ticks spent at CPL0 from entry to the switch to CPL3, and those of the probe.
#[cfg(not(test))]
pub fn cpl0_ticks() -> (u32, u32) {
    // SAFETY: written once at CPL0 before Rust runs; only read afterwards.
    unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!(cpl0_total_ticks)),
            core::ptr::read_volatile(core::ptr::addr_of!(cpl0_probe_ticks)),
        )
    }
}

/// Host unit tests have no entry code.
#[cfg(test)]
pub fn cpl0_ticks() -> (u32, u32) {
    (0, 0)
}

/// Five register-only instructions take tens of ticks natively and several thousand when
/// each one is emulated (PVM: ~2 µs apiece).
pub const EMULATED_PROBE_TICKS: u32 = 1000;

/// Whether CPL0 code is emulated instruction by instruction (PVM), judged from the probe.
pub fn cpl0_is_emulated(probe_ticks: u32) -> bool {
    probe_ticks >= EMULATED_PROBE_TICKS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_threshold_separates_native_from_emulated() {
        assert!(!cpl0_is_emulated(40));
        assert!(!cpl0_is_emulated(999));
        assert!(cpl0_is_emulated(1000));
        assert!(cpl0_is_emulated(30_000));
    }
}
