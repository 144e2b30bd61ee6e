//! Sleep control, sleep status and reset registers of a hardware-reduced ACPI platform (ACPI
//! 6.5, 4.8.3.7 and 4.8.3.6), one byte each at consecutive ports.
//!
//! The guest enters S5 by writing `SLP_TYP << 2 | SLP_EN` to the sleep control register, with
//! SLP_TYP taken from the DSDT's `_S5` object; it resets by writing the FADT's reset value to
//! the reset register.

use crate::bus::BusDevice;

pub const PM_SLEEP_CONTROL_OFFSET: u64 = 0;
pub const PM_SLEEP_STATUS_OFFSET: u64 = 1;
pub const PM_RESET_OFFSET: u64 = 2;
pub const PM_SIZE: u64 = 3;
/// What the FADT tells the guest to write to the reset register.
pub const PM_RESET_VALUE: u8 = 1;
/// The SLP_TYP the DSDT's `_S5` package names.
pub const SLEEP_TYPE_S5: u8 = 5;

const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;
/// Sleep status: WAK_STS, written by the guest as 1 to clear before it sleeps.
const WAK_STS: u8 = 1 << 7;

/// What a register write asks of the machine.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum PmEvent {
    /// S5 (soft off).
    PowerOff,
    Reset,
}

pub struct PmControl {
    on_event: Box<dyn Fn(PmEvent) + Send>,
    /// Logged once: a guest asking for S1-S4 repeatedly should not flood the log.
    warned_sleep: bool,
}

impl PmControl {
    pub fn new(on_event: Box<dyn Fn(PmEvent) + Send>) -> PmControl {
        PmControl {
            on_event,
            warned_sleep: false,
        }
    }

    fn sleep_control(&mut self, value: u8) {
        if value & SLP_EN == 0 {
            return;
        }
        match (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK {
            SLEEP_TYPE_S5 => (self.on_event)(PmEvent::PowerOff),
            other if !self.warned_sleep => {
                self.warned_sleep = true;
                log::warn!("guest asked for sleep type {other}: only S5 (type 5) is supported");
            }
            _ => {}
        }
    }
}

impl BusDevice for PmControl {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        // Nothing ever wakes from a sleep state here, so WAK_STS and everything else read 0.
        data.fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            PM_SLEEP_CONTROL_OFFSET => self.sleep_control(value),
            // Clearing WAK_STS before a sleep: nothing to clear.
            PM_SLEEP_STATUS_OFFSET if value & WAK_STS != 0 => {}
            PM_RESET_OFFSET if value == PM_RESET_VALUE => (self.on_event)(PmEvent::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn device() -> (PmControl, Arc<Mutex<Vec<PmEvent>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let dev = PmControl::new(Box::new(move |e| log.lock().unwrap().push(e)));
        (dev, seen)
    }

    #[test]
    fn s5_with_slp_en_powers_off() {
        let (mut dev, seen) = device();
        dev.write(0x3c0, PM_SLEEP_STATUS_OFFSET, &[WAK_STS]);
        dev.write(0x3c0, 0, &[SLEEP_TYPE_S5 << 2]);
        assert!(
            seen.lock().unwrap().is_empty(),
            "SLP_EN clear: no transition"
        );
        dev.write(0x3c0, 0, &[SLEEP_TYPE_S5 << 2 | SLP_EN]);
        assert_eq!(*seen.lock().unwrap(), vec![PmEvent::PowerOff]);
    }

    #[test]
    fn other_sleep_types_are_ignored() {
        let (mut dev, seen) = device();
        for typ in [0u8, 1, 3, 4, 7] {
            dev.write(0x3c0, 0, &[typ << 2 | SLP_EN]);
        }
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn reset_needs_the_reset_value() {
        let (mut dev, seen) = device();
        dev.write(0x3c0, PM_RESET_OFFSET, &[0]);
        dev.write(0x3c0, PM_RESET_OFFSET, &[]);
        dev.write(0x3c0, PM_RESET_OFFSET, &[PM_RESET_VALUE]);
        assert_eq!(*seen.lock().unwrap(), vec![PmEvent::Reset]);
        let mut status = [0xffu8];
        dev.read(0x3c0, PM_SLEEP_STATUS_OFFSET, &mut status);
        assert_eq!(status, [0]);
    }
}
