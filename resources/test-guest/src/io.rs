//! Port I/O at CPL3 (allowed by the TSS I/O bitmap), the serial console, native busy-waits,
//! and the ways of leaving the VM.

use core::arch::asm;

use crate::cpu;

pub const COM1: u16 = 0x3f8;
pub const UART_LSR: u16 = 5;
pub const UART_SCRATCH: u16 = 7;
pub const LSR_DATA_READY: u8 = 1;
pub const LSR_THR_EMPTY: u8 = 0x20;
pub const DEBUG_EXIT: u16 = 0x501;
pub const I8042_COMMAND: u16 = 0x64;
pub const I8042_RESET: u8 = 0xfe;
pub const NOOP_PORT: u16 = 0x80;
/// QEMU microvm's ACPI GED sleep-control register, and the value asking for S5.
const GED_SLEEP_CONTROL: usize = 0xfea0_0200;
const GED_SLEEP_S5: u8 = 0x34;

#[inline(always)]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects; the TSS bitmap allows it at CPL3.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for outb.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}

/// The serial console (COM1). Bytes go straight to the THR without waiting for LSR: every
/// VMM's UART takes them at once, and each LSR read would be one more exit.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            outb(COM1, b);
        }
        Ok(())
    }
}

/// Native busy-wait at CPL3 (no exits: RDTSC and PAUSE run natively) of about `ms`
/// milliseconds, as exact as the TSC frequency CPUID gave (see `cpu::tsc_khz`).
pub fn wait_ms(ms: u64) {
    let ticks = ms.saturating_mul(cpu::tsc_per_ms());
    let start = cpu::rdtsc();
    while cpu::rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Ends the VM with `status` by every means a VMM may offer, in order: the debug-exit port
/// (this VMM; QEMU's isa-debug-exit exits with `status << 1 | 1`), QEMU microvm's GED S5,
/// the i8042 reset line, a bounded spin, and last a triple fault.
pub fn exit(status: u8) -> ! {
    outb(DEBUG_EXIT, status);
    // SAFETY: the page tables map 0xfea00000 uncached and user accessible; on machines
    // without a GED the write goes to an unassigned address.
    unsafe { core::ptr::write_volatile(GED_SLEEP_CONTROL as *mut u8, GED_SLEEP_S5) };
    reset()
}

/// Pulses the i8042 reset line; if nothing happens within ~100 ms, triple-faults.
pub fn reset() -> ! {
    outb(I8042_COMMAND, I8042_RESET);
    wait_ms(100);
    triple_fault()
}

/// `hlt` at CPL3 is a #GP; the IDT has no #GP handler, so that becomes a triple fault.
pub fn triple_fault() -> ! {
    loop {
        // SAFETY: deliberately faults; nothing after it runs.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// Halts for good. Where CPL3 can enter CPL0 (`entry::probe_cpl0`: VMX, SVM, TCG), through
/// the DPL-3 gate at vector 0x80 whose CPL0 handler is `cli; hlt`. Where it cannot (PVM),
/// measured with barevmm and QEMU: `int $0x80` through a DPL-3 gate ends in
/// KVM_EXIT_SHUTDOWN, `syscall` jumps to LSTAR but stays at CPL3 (the first privileged
/// instruction there triple-faults), PVM's own event MSRs are refused. So there "halt" is a
/// native CPL3 spin, paced with `pause`.
pub fn halt_forever(cpl0_works: bool) -> ! {
    if cpl0_works {
        // SAFETY: the gate's handler never returns.
        unsafe { asm!("int 0x80", options(nomem, nostack)) };
    }
    loop {
        core::hint::spin_loop();
    }
}
