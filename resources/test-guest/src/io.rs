//! Port I/O at CPL3 (allowed by the TSS I/O bitmap), the serial console, and leaving the VM.

use core::arch::asm;

pub const COM1: u16 = 0x3f8;
pub const DEBUG_EXIT: u16 = 0x501;
pub const I8042_COMMAND: u16 = 0x64;
pub const NOOP_PORT: u16 = 0x80;
/// QEMU microvm's ACPI GED sleep-control register.
const GED_SLEEP_CONTROL: usize = 0xfea0_0200;

#[inline(always)]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects; the TSS bitmap allows it at CPL3.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for outb.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags)) };
    value
}

/// The serial console (COM1). Writes go straight to the THR: every VMM's UART takes them.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            outb(COM1, b);
        }
        Ok(())
    }
}

/// Ends the VM with `status` by every means a VMM may offer, in order: the debug-exit port
/// (this VMM, QEMU's isa-debug-exit), QEMU microvm's GED S5, the i8042 reset line, and as a
/// last resort a triple fault.
pub fn exit(status: u8) -> ! {
    outb(DEBUG_EXIT, status);
    // SAFETY: the page tables map 0xfea00000 uncached and user-accessible; on machines
    // without a GED the write goes nowhere.
    unsafe { core::ptr::write_volatile(GED_SLEEP_CONTROL as *mut u8, 0x34) };
    reset()
}

/// Pulses the i8042 reset line; if nothing happens, triple-faults.
pub fn reset() -> ! {
    outb(I8042_COMMAND, 0xfe);
    spin(100_000_000);
    triple_fault()
}

/// `hlt` at CPL3 is a #GP; with no #GP handler that becomes a triple fault.
pub fn triple_fault() -> ! {
    loop {
        // SAFETY: deliberately faults; nothing after it runs.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
}

/// Halts at CPL0 for good through the DPL-3 gate at vector 0x80. On PVM hosts a non-PVM
/// guest cannot enter CPL0 from CPL3 at all (`int`, `syscall` both end in a triple fault,
/// measured), so there this ends as a triple fault, which the VMM reports.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: the gate's handler never returns.
        unsafe { asm!("int 0x80", options(nomem, nostack)) };
    }
}

/// Native busy-wait of about `n` loop iterations (~0.5-1 ns each).
#[inline(never)]
pub fn spin(n: u64) {
    for i in 0..n {
        core::hint::black_box(i);
    }
}
