//! The ACPI hardware of a hardware-reduced platform: the FADT's sleep control/status and reset
//! registers (pm.rs), and a Generic Event Device that signals the power button (ged.rs).
//! The tables that describe them are written by the VMM (vmm/src/arch/x86_64/acpi.rs), which
//! also chooses where they live (vmm/src/arch/x86_64/layout.rs).

mod ged;
mod pm;

pub use ged::{Ged, GED_EVENT_POWER_BUTTON, GED_SIZE};
pub use pm::{
    PmControl, PmEvent, PM_RESET_OFFSET, PM_RESET_VALUE, PM_SIZE, PM_SLEEP_CONTROL_OFFSET,
    PM_SLEEP_STATUS_OFFSET, SLEEP_TYPE_S5,
};
