//! Interrupt delivery observed without taking interrupts (the guest runs at CPL3 with IF=0):
//! route an IOAPIC pin to a vector on this CPU's local APIC, then watch the vector become
//! pending in the LAPIC's IRR. Proves device -> irqfd -> MSI route -> LAPIC.

use crate::cpu;

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

/// Polls `pending(vector)` up to `spins` times.
pub fn wait_pending(vector: u32, spins: u32) -> bool {
    (0..spins).any(|_| {
        core::hint::spin_loop();
        pending(vector)
    })
}
