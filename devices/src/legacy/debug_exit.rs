//! A debug-exit port in the manner of QEMU's isa-debug-exit: a test guest writes a status byte
//! and the VM ends with that status. (QEMU exits with (status << 1) | 1; we keep the status.)

use crate::bus::BusDevice;

pub struct DebugExit {
    on_exit: Box<dyn Fn(u8) + Send>,
}

impl DebugExit {
    pub fn new(on_exit: Box<dyn Fn(u8) + Send>) -> DebugExit {
        DebugExit { on_exit }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        if let Some(&status) = data.first() {
            (self.on_exit)(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn status_is_the_low_byte() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut dev = DebugExit::new(Box::new(move |s| log.lock().unwrap().push(s)));
        dev.write(0x501, 0, &[0]);
        dev.write(0x501, 0, &[0x2a, 0x01]);
        dev.write(0x501, 0, &[]);
        assert_eq!(*seen.lock().unwrap(), vec![0, 0x2a]);
        let mut v = [0u8; 2];
        dev.read(0x501, 0, &mut v);
        assert_eq!(v, [0xff, 0xff]);
    }
}
