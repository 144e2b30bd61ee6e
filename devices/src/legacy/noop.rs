//! Ports a standard kernel probes that this machine does not have (PIC, PIT, CMOS, PCI config,
//! POST/io-delay): reads answer all-ones ("nothing here"), writes vanish, nothing is logged.
//! Port 0x80 is also the benchmarks' no-op port, so the handler is as cheap as it gets.

use std::sync::{Arc, Mutex};

use crate::bus::{Bus, BusDevice, BusError};

pub struct Noop;

impl BusDevice for Noop {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// (base, length) of the silent ports. 0x61 (speaker/NMI status) sits inside the i8042 range.
const NOOP_PORTS: [(u64, u64); 7] = [
    (0x20, 2),  // PIC 1
    (0x40, 4),  // PIT
    (0x70, 2),  // CMOS/RTC
    (0x80, 1),  // POST code / io delay
    (0xa0, 2),  // PIC 2
    (0xed, 1),  // io delay
    (0xcf8, 8), // PCI configuration mechanism #1
];

pub fn register_noops(bus: &mut Bus) -> Result<(), BusError> {
    let noop: Arc<Mutex<dyn BusDevice>> = Arc::new(Mutex::new(Noop));
    for (base, len) in NOOP_PORTS {
        bus.insert(noop.clone(), base, len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_ones_everywhere_registered() {
        let mut bus = Bus::new();
        register_noops(&mut bus).unwrap();
        for port in [0x20, 0x21, 0x43, 0x70, 0x80, 0xa1, 0xed, 0xcf8] {
            let mut b = [0u8];
            assert!(bus.read(port, &mut b), "{port:#x}");
            assert_eq!(b, [0xff]);
        }
        let mut dword = [0u8; 4];
        assert!(bus.read(0xcfc, &mut dword));
        assert_eq!(u32::from_le_bytes(dword), 0xffff_ffff, "no PCI");
        assert!(bus.write(0x80, &[0x12]));
        assert!(!bus.read(0x3f8, &mut [0u8]));
    }
}
