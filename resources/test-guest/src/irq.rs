//! Interrupts from an IOAPIC pin: route the pin to a vector on this CPU's local APIC, then
//! either take the interrupt (where CPL3 can enter CPL0: `sti` at CPL3, IOPL=3 allows it,
//! and entry.rs's gate for `entry::IRQ_VECTOR` counts it, EOIs and IRETQs back), or, where
//! any interrupt at CPL3 would end the VM (PVM), watch the vector become pending in the
//! LAPIC's IRR with IF=0. Either proves device -> irqfd -> MSI route -> LAPIC; the first also
//! the delivery into the guest.

use core::arch::asm;

use crate::{cpu, entry};

const IOAPIC: usize = 0xfec0_0000;
const IOAPIC_DATA: usize = 0x10;
const IOAPIC_REDIRECTION: u32 = 0x10;
const LAPIC: usize = 0xfee0_0000;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_SVR_ENABLE: u32 = 0x100;
const LAPIC_IRR: usize = 0x200;

fn mmio_write(addr: usize, value: u32) {
    // SAFETY: the IOAPIC and LAPIC pages are mapped uncached and user accessible.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
}

fn mmio_read(addr: usize) -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Software-enables the local APIC and routes `pin` to `vector` on it: fixed delivery,
/// physical destination, edge triggered, unmasked.
pub fn route(pin: u32, vector: u32) {
    mmio_write(LAPIC + LAPIC_SVR, mmio_read(LAPIC + LAPIC_SVR) | LAPIC_SVR_ENABLE);
    mmio_write(IOAPIC, IOAPIC_REDIRECTION + 2 * pin + 1);
    mmio_write(IOAPIC + IOAPIC_DATA, cpu::apic_id() << 24);
    mmio_write(IOAPIC, IOAPIC_REDIRECTION + 2 * pin);
    mmio_write(IOAPIC + IOAPIC_DATA, vector);
}

/// Whether `vector` is pending in this CPU's IRR.
pub fn pending(vector: u32) -> bool {
    let irr = LAPIC + LAPIC_IRR + 0x10 * (vector as usize / 32);
    mmio_read(irr) & (1 << (vector % 32)) != 0
}

/// Runs `f` at CPL3 with interrupts enabled (`sti`; `cli` after). Only where CPL3 can enter
/// CPL0 (`entry::probe_cpl0`), and only with `entry::IRQ_VECTOR` routed: any other vector
/// has no gate and would triple-fault.
pub fn with_interrupts<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: IOPL=3 lets CPL3 change IF. Not `nomem`: the asm is a compiler barrier, so the
    // gate's counter is read inside the window.
    unsafe { asm!("sti", options(nostack)) };
    let result = f();
    // SAFETY: as above.
    unsafe { asm!("cli", options(nostack)) };
    result
}

/// Interrupts taken so far through the gate at `entry::IRQ_VECTOR`.
pub fn delivered() -> u32 {
    entry::interrupts_taken()
}

/// Waits (natively, up to `ms` milliseconds) until more than `before` interrupts were taken.
pub fn wait_delivered(before: u32, ms: u64) -> bool {
    let ticks = ms.saturating_mul(cpu::tsc_per_ms());
    let start = cpu::rdtsc();
    loop {
        if delivered() != before {
            return true;
        }
        if cpu::rdtsc().wrapping_sub(start) >= ticks {
            return false;
        }
        core::hint::spin_loop();
    }
}

/// Polls `pending(vector)` up to `spins` times.
pub fn wait_pending(vector: u32, spins: u32) -> bool {
    (0..spins).any(|_| {
        core::hint::spin_loop();
        pending(vector)
    })
}
