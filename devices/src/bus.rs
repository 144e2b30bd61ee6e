//! An address-range map from guest port or MMIO addresses to devices (crosvm's design, kept by
//! Firecracker and Cloud Hypervisor). Built once, then shared read-only by the vCPU threads:
//! every lookup is a B-tree search with no allocation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A device reached through the bus. `offset` is relative to `base`, the start of the range
/// the device was inserted at; `data.len()` is the access width (1, 2, 4 or 8).
pub trait BusDevice: Send {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
    /// Back to the power-on state, as a machine reset leaves it (QEMU's device reset). The
    /// vCPUs are paused while this runs.
    fn reset(&mut self) {}
}

#[derive(Debug, PartialEq, Eq)]
pub enum BusError {
    EmptyRange(u64),
    Overlap { base: u64, len: u64 },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::EmptyRange(base) => write!(f, "empty device range at {base:#x}"),
            BusError::Overlap { base, len } => {
                write!(f, "device range {base:#x}+{len:#x} overlaps another device")
            }
        }
    }
}

impl std::error::Error for BusError {}

struct Range {
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Range>,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Maps `[base, base + len)` to `device`.
    pub fn insert(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::EmptyRange(base));
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        let overlaps_previous = self
            .ranges
            .range(..end)
            .next_back()
            .is_some_and(|(start, r)| start + r.len > base);
        if overlaps_previous {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, Range { len, device });
        Ok(())
    }

    /// The device covering the whole access `[addr, addr + size)`, with its base.
    fn find(&self, addr: u64, size: usize) -> Option<(u64, &Range)> {
        let (&base, range) = self.ranges.range(..=addr).next_back()?;
        let end = addr.checked_add(size as u64)?;
        (end <= base + range.len).then_some((base, range))
    }

    /// Reads from the device at `addr`; false if no device covers the access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((base, range)) = self.find(addr, data.len()) else {
            return false;
        };
        // A device that panicked must not take the vCPU with it: use its state as is.
        let mut device = range.device.lock().unwrap_or_else(|p| p.into_inner());
        device.read(base, addr - base, data);
        true
    }

    /// Writes to the device at `addr`; false if no device covers the access.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((base, range)) = self.find(addr, data.len()) else {
            return false;
        };
        let mut device = range.device.lock().unwrap_or_else(|p| p.into_inner());
        device.write(base, addr - base, data);
        true
    }

    /// Resets every device on the bus (a device mapped at several ranges is reset once per
    /// range, so resets must be idempotent).
    pub fn reset_devices(&self) {
        for range in self.ranges.values() {
            range
                .device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last access.
    #[derive(Default)]
    struct Probe {
        last: Option<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
            self.last = Some((base, offset, data.to_vec()));
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.last = Some((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn lookup_at_range_edges() {
        let mut bus = Bus::new();
        let probe = Arc::new(Mutex::new(Probe::default()));
        bus.insert(probe.clone(), 0x3f8, 8).unwrap();
        let mut byte = [0u8; 1];
        assert!(bus.read(0x3f8, &mut byte));
        assert_eq!(byte, [0]);
        assert!(bus.read(0x3ff, &mut byte));
        assert_eq!(byte, [7]);
        assert!(!bus.read(0x3f7, &mut byte));
        assert!(!bus.read(0x400, &mut byte));
        assert!(bus.write(0x3fa, &[0x55]));
        assert_eq!(probe.lock().unwrap().last, Some((0x3f8, 2, vec![0x55])));
    }

    #[test]
    fn straddling_access_is_refused() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Probe::default())), 0x10, 4)
            .unwrap();
        let mut wide = [0u8; 4];
        assert!(!bus.read(0x12, &mut wide));
        assert!(bus.read(0x10, &mut wide));
        assert!(!bus.write(u64::MAX, &[1, 2]));
    }

    #[test]
    fn overlaps_and_empty_ranges_are_rejected() {
        let mut bus = Bus::new();
        let dev = || Arc::new(Mutex::new(Probe::default()));
        bus.insert(dev(), 0x100, 0x10).unwrap();
        assert_eq!(
            bus.insert(dev(), 0x10f, 1),
            Err(BusError::Overlap {
                base: 0x10f,
                len: 1
            })
        );
        assert_eq!(
            bus.insert(dev(), 0xf8, 0x9),
            Err(BusError::Overlap { base: 0xf8, len: 9 })
        );
        assert_eq!(bus.insert(dev(), 0x50, 0), Err(BusError::EmptyRange(0x50)));
        assert_eq!(
            bus.insert(dev(), u64::MAX, 2),
            Err(BusError::Overlap {
                base: u64::MAX,
                len: 2
            })
        );
        bus.insert(dev(), 0x110, 1).unwrap();
        bus.insert(dev(), 0xf8, 8).unwrap();
    }

    #[test]
    fn poisoned_device_still_answers() {
        let mut bus = Bus::new();
        let probe = Arc::new(Mutex::new(Probe::default()));
        bus.insert(probe.clone(), 0, 1).unwrap();
        let p = probe.clone();
        let _ = std::thread::spawn(move || {
            let _guard = p.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(bus.write(0, &[1]));
    }
}
