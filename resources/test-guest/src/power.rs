//! ACPI power management as an OS does it on a hardware-reduced platform: S5 through the
//! FADT's sleep control register with the DSDT's `_S5` sleep type, and the power button seen
//! through the Generic Event Device's event register (polled: this guest takes no interrupts,
//! but it routes the GED's pin to a vector so a press also shows as pending in the LAPIC).

use crate::boot::BootInfo;
use crate::{io, irq};

const SLP_EN: u8 = 1 << 5;
const WAK_STS: u8 = 1 << 7;
const GED_HID: &str = "ACPI0013";
const GED_EVENT_POWER_BUTTON: u32 = 1;
const GED_VECTOR: u32 = 0x42;

/// Powers off through ACPI S5 if the tables allow it; otherwise (or if the VMM ignores the
/// write) through io::exit's fallbacks.
pub fn poweroff(boot: &BootInfo) -> ! {
    if let Some(t) = boot.tables() {
        if let (Some(control), Some(typ)) = (t.fadt.sleep_control, t.dsdt.s5) {
            if let Some(status) = t.fadt.sleep_status {
                status.write(WAK_STS);
            }
            control.write((typ & 7) << 2 | SLP_EN);
            io::wait_ms(100);
        }
    }
    io::exit(0)
}

/// The GED's event register and interrupt, if the DSDT has a GED: the register is its
/// OperationRegion (as in QEMU's microvm), or else the memory window of its `_CRS`.
fn ged(boot: &BootInfo) -> Option<(usize, Option<u32>)> {
    let t = boot.tables()?;
    let ged = t.dsdt.find(GED_HID).next()?;
    let base = ged
        .region
        .map(|(offset, _)| offset as usize)
        .or(ged.memory.map(|(base, _)| base as usize))?;
    Some((base, ged.irq))
}

/// Routes the GED's interrupt to this CPU (see `interrupt_pending`).
pub fn watch_power_button(boot: &BootInfo) {
    if let Some((_, Some(pin))) = ged(boot) {
        irq::route(pin, GED_VECTOR);
    }
}

/// Whether the GED's interrupt reached the LAPIC (after `watch_power_button`).
pub fn interrupt_pending() -> bool {
    irq::pending(GED_VECTOR)
}

/// True once per press: reading the register clears it.
pub fn power_button_pressed(boot: &BootInfo) -> bool {
    let Some((register, _)) = ged(boot) else {
        return false;
    };
    // SAFETY: the DSDT's GED window lies in the MMIO gap, mapped uncached and user accessible.
    let events = unsafe { core::ptr::read_volatile(register as *const u32) };
    events & GED_EVENT_POWER_BUTTON != 0
}

/// Whether there is a power button to poll.
pub fn has_power_button(boot: &BootInfo) -> bool {
    ged(boot).is_some()
}
