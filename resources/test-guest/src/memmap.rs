//! The e820 memory map the VMM handed over. Firmware maps need not be sorted (QEMU's PVH map
//! is not, and carries an empty entry), so like Linux we drop empty entries and sort by
//! address, remembering whether the VMM's order was already sorted.

use core::fmt;

pub const MAX_ENTRIES: usize = 128;
pub const E820_RAM: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820 {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl E820 {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

pub struct MemoryMap {
    entries: [E820; MAX_ENTRIES],
    len: usize,
    /// Entries the VMM gave in address order (before dropping empty ones and sorting).
    pub given_sorted: bool,
    /// Zero-sized entries dropped.
    pub empty: u32,
    /// Entries beyond MAX_ENTRIES dropped.
    pub dropped: u32,
}

impl MemoryMap {
    pub const fn new() -> MemoryMap {
        MemoryMap {
            entries: [E820 {
                addr: 0,
                size: 0,
                kind: 0,
            }; MAX_ENTRIES],
            len: 0,
            given_sorted: true,
            empty: 0,
            dropped: 0,
        }
    }

    /// Adds the next entry in the VMM's order.
    pub fn push(&mut self, e: E820) {
        if e.size == 0 {
            self.empty += 1;
            return;
        }
        if let Some(last) = self.entries().last() {
            if e.addr < last.addr {
                self.given_sorted = false;
            }
        }
        match self.entries.get_mut(self.len) {
            Some(slot) => {
                *slot = e;
                self.len += 1;
            }
            None => self.dropped += 1,
        }
    }

    /// Sorts by address (insertion sort: a few dozen entries at most).
    pub fn sort(&mut self) {
        let entries = &mut self.entries[..self.len];
        for i in 1..entries.len() {
            let mut j = i;
            while j > 0 && entries[j - 1].addr > entries[j].addr {
                entries.swap(j - 1, j);
                j -= 1;
            }
        }
    }

    pub fn entries(&self) -> &[E820] {
        &self.entries[..self.len]
    }

    /// True if, once sorted, no entry reaches into the next one.
    pub fn non_overlapping(&self) -> bool {
        self.entries().windows(2).all(|w| w[0].end() <= w[1].addr)
    }

    /// True if one RAM entry covers all of start..end.
    pub fn ram_covers(&self, start: u64, end: u64) -> bool {
        self.entries()
            .iter()
            .any(|e| e.kind == E820_RAM && e.addr <= start && e.end() >= end)
    }

    pub fn ram_bytes(&self) -> u64 {
        self.entries()
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .fold(0u64, |sum, e| sum.saturating_add(e.size))
    }

    /// RAM rounded to the nearest MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_bytes().saturating_add(1 << 19) >> 20
    }
}

/// An e820 type as the report names it.
pub struct Kind(pub u32);

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0 {
            1 => f.write_str("ram"),
            2 => f.write_str("reserved"),
            3 => f.write_str("acpi"),
            4 => f.write_str("nvs"),
            5 => f.write_str("unusable"),
            n => write!(f, "type {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(addr: u64, size: u64, kind: u32) -> E820 {
        E820 { addr, size, kind }
    }

    #[test]
    fn qemu_style_map_is_sorted_and_empty_entries_dropped() {
        let mut map = MemoryMap::new();
        for entry in [
            e(0, 0x9fc00, 1),
            e(0x9fc00, 0x400, 2),
            e(0xfeffc000, 0x4000, 2),
            e(0x100000, 0xff00000, 1),
            e(0, 0, 0),
        ] {
            map.push(entry);
        }
        assert!(!map.given_sorted);
        assert_eq!(map.empty, 1);
        map.sort();
        let addrs: Vec<u64> = map.entries().iter().map(|e| e.addr).collect();
        assert_eq!(addrs, [0, 0x9fc00, 0x100000, 0xfeffc000]);
        assert!(map.non_overlapping());
        assert!(map.ram_covers(0x100000, 0x200000));
        assert!(!map.ram_covers(0x9f000, 0x200000));
        assert_eq!(map.ram_mib(), 256);
    }

    #[test]
    fn overlap_is_detected() {
        let mut map = MemoryMap::new();
        map.push(e(0, 0x200000, 1));
        map.push(e(0x100000, 0x1000, 2));
        map.sort();
        assert!(map.given_sorted);
        assert!(!map.non_overlapping());
    }

    #[test]
    fn overflow_and_capacity_are_harmless() {
        let mut map = MemoryMap::new();
        map.push(e(u64::MAX - 1, u64::MAX, 1));
        assert_eq!(map.entries()[0].end(), u64::MAX);
        for i in 0..MAX_ENTRIES as u64 + 3 {
            map.push(e(i << 20, 1 << 20, 1));
        }
        assert_eq!(map.entries().len(), MAX_ENTRIES);
        assert_eq!(map.dropped, 4);
    }

    #[test]
    fn kind_names() {
        assert_eq!(Kind(1).to_string(), "ram");
        assert_eq!(Kind(4).to_string(), "nvs");
        assert_eq!(Kind(0).to_string(), "type 0");
        assert_eq!(Kind(12).to_string(), "type 12");
    }
}
