//! A Generic Event Device (ACPI 6.5, 5.6.9): one event register and one interrupt. The DSDT's
//! `_EVT` method reads the register (which clears it) and notifies the power button device for
//! bit 0. A guest that polls instead of taking the interrupt reads the same register.

use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;

/// Event register bit: the power button was pressed.
pub const GED_EVENT_POWER_BUTTON: u32 = 1 << 0;
/// Bytes of register window the DSDT describes.
pub const GED_SIZE: u64 = 0x10;

pub struct Ged {
    pending: u32,
    irq: EventFd,
}

impl Ged {
    pub fn new(irq: EventFd) -> Ged {
        Ged { pending: 0, irq }
    }

    /// Latches `event` and raises the interrupt.
    pub fn notify(&mut self, event: u32) {
        self.pending |= event;
        if let Err(e) = self.irq.write(1) {
            log::error!("GED: cannot raise the interrupt: {e}");
        }
    }

    pub fn press_power_button(&mut self) {
        self.notify(GED_EVENT_POWER_BUTTON);
    }
}

impl BusDevice for Ged {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset != 0 {
            return;
        }
        // Read-to-clear, like the GED of Cloud Hypervisor and QEMU's microvm.
        let bytes = std::mem::take(&mut self.pending).to_le_bytes();
        let n = data.len().min(bytes.len());
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}

    /// Power-on state: nothing pending.
    fn reset(&mut self) {
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn power_button_latches_raises_and_clears_on_read() {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut ged = Ged::new(irq.try_clone().unwrap());
        let mut reg = [0u8; 4];
        ged.read(0, 0, &mut reg);
        assert_eq!(reg, [0; 4]);
        assert!(irq.read().is_err(), "no interrupt before an event");

        ged.press_power_button();
        assert_eq!(irq.read().unwrap(), 1);
        ged.read(0, 0, &mut reg);
        assert_eq!(u32::from_le_bytes(reg), GED_EVENT_POWER_BUTTON);
        ged.read(0, 0, &mut reg);
        assert_eq!(reg, [0; 4], "cleared by the first read");
    }

    #[test]
    fn byte_reads_and_other_offsets() {
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let mut ged = Ged::new(irq);
        ged.press_power_button();
        let mut other = [0xffu8; 4];
        ged.read(0, 4, &mut other);
        assert_eq!(other, [0; 4]);
        let mut byte = [0u8];
        ged.read(0, 0, &mut byte);
        assert_eq!(byte, [1]);
        ged.press_power_button();
        ged.reset();
        ged.read(0, 0, &mut byte);
        assert_eq!(byte, [0]);
    }
}
