//! The i8042 keyboard controller, kept for its CPU reset line (command 0xfe on port 0x64),
//! which guests use to reboot.

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;

/// Calls the VMM's reset callback.
pub struct ResetLine(Box<dyn Fn() + Send>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        (self.0)();
        Ok(())
    }
}

pub struct I8042 {
    device: I8042Device<ResetLine>,
}

impl I8042 {
    pub fn new(on_reset: Box<dyn Fn() + Send>) -> I8042 {
        I8042 {
            device: I8042Device::new(ResetLine(on_reset)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(offset)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.device.read(offset);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(offset)) = (data.first(), u8::try_from(offset)) {
            let _ = self.device.write(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn reset_only_on_command_0xfe() {
        let resets = Arc::new(AtomicUsize::new(0));
        let counter = resets.clone();
        let mut dev = I8042::new(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        dev.write(0x60, 0, &[0xfe]); // data port: no reset
        dev.write(0x60, 4, &[0xaa]); // another command
        assert_eq!(resets.load(Ordering::SeqCst), 0);
        dev.write(0x60, 4, &[0xfe]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        let mut status = [0xffu8];
        dev.read(0x60, 4, &mut status);
        assert_eq!(status, [0]);
    }
}
