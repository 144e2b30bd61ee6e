//! The guest's only CPL0 code. Under PVM every CPL0 instruction is emulated (~2 µs each), so
//! this is about 65 instructions: load our GDT, a 64-bit TSS whose I/O permission bitmap allows
//! every port (PVM checks it for CPL3 port I/O and ignores IOPL), an IDT and identity page
//! tables, enable SYSCALL (for the CPL0 probe below), time a tiny loop, then SYSEXIT to Rust at
//! CPL3 with IOPL=3 and IF=0. KVM's instruction emulator implements SYSEXIT but not IRET or
//! far RET to an outer ring.
//!
//! Entries: `pvh_entry` (PVH note: 32-bit protected mode, paging off, %ebx = hvm_start_info)
//! and `linux64_entry` (ELF e_entry, Linux 64-bit boot protocol: long mode, %rsi =
//! boot_params). Rust starts at `rust_start(kind, info)`: kind 1 = PVH, 2 = Linux 64-bit.
//!
//! CPUID is read here, at CPL0, for the leaves `cpuid_leaves` lists (into `cpuid_regs`): at
//! CPL3, an AMD host without CPUID faulting runs CPUID natively under PVM, so Rust would see
//! the host's leaves (its APIC id, its hypervisor) instead of the VMM's.
//!
//! Whether CPL3 can enter CPL0 again is found out by trying, safely (`probe_cpl0`): SYSCALL
//! from CPL3 jumps to `syscall_entry`, which reads %cs. Where CPL0 works (VMX, SVM, TCG) it
//! is at CPL0 there and returns with SYSRETQ; under PVM SYSCALL reaches LSTAR still at CPL3
//! (%cs = 0x33, measured) and the handler, running natively, jumps back through %rcx. Nothing
//! there is privileged, so the probe cannot fault either way. The timing of the CPL0 code
//! (`cpl0_total_ticks`, and `cpl0_timing_ticks` for five register-only instructions) is only
//! reported: it is no test of anything, since under TCG and nested SVM the first run of new
//! code is slow too.
//!
//! IDT: vector 6 (#UD) catches SYSEXIT on AMD CPUs, where it is invalid in long mode; there
//! CPL0 runs natively and IRETQ does the same job. Vector 0x41 (`IRQ_VECTOR`) counts an
//! interrupt, sends the LAPIC an EOI and returns to CPL3 (the virtio-irq check, where CPL0
//! works). Vector 0x80 is a DPL-3 gate that halts at CPL0 for good (end=halt). Every other
//! vector is absent, so any other exception ends in a triple fault that the VMM reports.

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
    movl $0xc0000082, %ecx      /* LSTAR: where CPL3's SYSCALL lands (the CPL0 probe) */
    movl $syscall_entry, %eax
    wrmsr
    movl $0xc0000084, %ecx      /* SFMASK: SYSCALL clears TF, IF, DF, AC */
    movl $0x40700, %eax
    wrmsr
    movl $0xc0000081, %ecx      /* STAR: SYSCALL CS 0x08, SS 0x10; SYSRETQ CS 0x2b, SS 0x23 */
    xorl %eax, %eax
    movl $0x00180008, %edx
    wrmsr
    movl $0xc0000080, %ecx      /* EFER.SCE */
    rdmsr
    orl $1, %eax
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
    rdtsc                       /* time five instructions (reported, not used) */
    movl %eax, %r8d
    movl $2, %ecx
1:  decl %ecx
    jnz 1b
    rdtsc
    movl %eax, %ecx
    subl %r8d, %ecx
    movl %ecx, cpl0_timing_ticks(%rip)
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

    /* CPL3's SYSCALL (probe_cpl0) lands here: at CPL0 where CPL3 can enter CPL0, at CPL3
       under PVM. %eax = %cs tells the caller which; %rcx holds the return address either way
       (SYSCALL sets it, and the caller put the same address there). */
    .globl syscall_entry
syscall_entry:
    movl %cs, %eax
    testb $3, %al
    jnz 6f
    .byte 0x48, 0x0f, 0x07      /* sysretq: RIP = RCX, RFLAGS = R11, CPL3 */
6:  jmp *%rcx

    /* CPL0, vector 0x41 taken at CPL3 (virtio-irq): count it, EOI, back to CPL3. */
    .globl irq_gate
irq_gate:
    incl irq_count(%rip)
    pushq %rax
    movl $0xfee000b0, %eax      /* LAPIC EOI register */
    movl %eax, (%rax)
    popq %rax
    iretq

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
    .quad 0x00cff2000000ffff    /* 0x20 user data (SYSRETQ SS) */
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
    .fill (0x41 - 7) * 2, 8, 0  /* vectors 7-0x40: absent */
    .word irq_gate_15_0         /* vector 0x41: interrupt gate, DPL 0 */
    .word 0x08
    .word 0x8e00
    .word irq_gate_31_16
    .long 0, 0
    .fill (0x80 - 0x42) * 2, 8, 0 /* vectors 0x42-0x7f: absent */
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
    .globl cpl0_total_ticks, cpl0_timing_ticks, irq_count
cpl0_total_ticks:
    .long 0
cpl0_timing_ticks:
    .long 0
irq_count:                      /* interrupts taken through vector 0x41 */
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

/// The vector whose gate (`irq_gate`) counts interrupts, EOIs and returns to CPL3.
pub const IRQ_VECTOR: u32 = 0x41;

#[cfg(not(test))]
extern "C" {
    static cpl0_total_ticks: u32;
    static cpl0_timing_ticks: u32;
    static irq_count: u32;
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

/// TSC ticks spent at CPL0 from entry to the switch to CPL3, and those of five register-only
/// instructions there. Information only: see the module comment.
#[cfg(not(test))]
pub fn cpl0_ticks() -> (u32, u32) {
    // SAFETY: written once at CPL0 before Rust runs; only read afterwards.
    unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!(cpl0_total_ticks)),
            core::ptr::read_volatile(core::ptr::addr_of!(cpl0_timing_ticks)),
        )
    }
}

/// Host unit tests have no entry code.
#[cfg(test)]
pub fn cpl0_ticks() -> (u32, u32) {
    (0, 0)
}

/// Interrupts taken so far through the gate at `IRQ_VECTOR`.
#[cfg(not(test))]
pub fn interrupts_taken() -> u32 {
    // SAFETY: a u32 only the CPL0 gate writes; a volatile read sees its updates.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(irq_count)) }
}

#[cfg(test)]
pub fn interrupts_taken() -> u32 {
    0
}

/// SYSCALL from here (CPL3) and back: the %cs that `syscall_entry` saw. Safe everywhere: where
/// SYSCALL does not reach CPL0 (PVM) the handler runs at CPL3 and only jumps back.
#[cfg(not(test))]
fn syscall_cs() -> u16 {
    let cs: u64;
    // SAFETY: entry.rs set EFER.SCE, STAR and LSTAR; the handler returns to label 2 with
    // every register but rax (its %cs), rcx and r11 (SYSCALL's) as they were. SYSRETQ restores
    // RFLAGS from r11; on the CPL3 path it is unchanged. No stack is used.
    unsafe {
        core::arch::asm!(
            "lea rcx, [rip + 2f]",
            "syscall",
            "2:",
            out("rax") cs,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        )
    };
    cs as u16
}

#[cfg(test)]
fn syscall_cs() -> u16 {
    0x33
}

/// What `probe_cpl0` found: 0 = not probed yet, else 0x1_0000 | the %cs seen.
static CPL0_PROBE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Whether CPL3 can enter CPL0 here (through SYSCALL, and so through interrupt and trap
/// gates), and the %cs that the probe's SYSCALL handler saw. Probed once, then remembered.
pub fn probe_cpl0() -> (bool, u16) {
    use core::sync::atomic::Ordering;
    let mut seen = CPL0_PROBE.load(Ordering::Relaxed);
    if seen == 0 {
        seen = 0x1_0000 | u32::from(syscall_cs());
        CPL0_PROBE.store(seen, Ordering::Relaxed);
    }
    let cs = seen as u16;
    (cs_is_cpl0(cs), cs)
}

/// Whether a %cs value is a CPL0 code selector (RPL 0 in a code segment register is the CPL).
pub fn cs_is_cpl0(cs: u16) -> bool {
    cs & 3 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_the_privilege_level_from_cs() {
        assert!(cs_is_cpl0(0x08)); // our kernel code selector
        assert!(!cs_is_cpl0(0x2b)); // our user code selector
        assert!(!cs_is_cpl0(0x33)); // what PVM's SYSCALL leaves in %cs
    }

    #[test]
    fn the_probe_is_remembered() {
        assert_eq!(probe_cpl0(), (false, 0x33));
        assert_eq!(probe_cpl0(), (false, 0x33));
    }
}
