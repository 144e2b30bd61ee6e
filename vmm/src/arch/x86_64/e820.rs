//! The guest's e820 memory map, shared by the Linux (boot_params) and PVH (hvm_start_info)
//! boot protocols.

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::layout::{EBDA_START, HIGH_RAM_START};

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// One e820 entry: start, size, type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

impl E820Entry {
    const fn new(addr: u64, size: u64, kind: u32) -> Self {
        E820Entry { addr, size, kind }
    }
}

/// The map for RAM `regions` (start, length): the region at 0 becomes low RAM below the EBDA,
/// the reserved EBDA + BIOS area (where the MP table lives) and RAM from 1 MiB; any other
/// region (RAM above the MMIO gap) is RAM as it is.
pub fn e820_from_regions(regions: impl IntoIterator<Item = (GuestAddress, u64)>) -> Vec<E820Entry> {
    let mut map = Vec::new();
    for (start, len) in regions {
        let start = start.raw_value();
        if len == 0 {
            continue;
        }
        if start != 0 {
            map.push(E820Entry::new(start, len, E820_RAM));
            continue;
        }
        map.push(E820Entry::new(0, EBDA_START.min(len), E820_RAM));
        map.push(E820Entry::new(
            EBDA_START,
            HIGH_RAM_START - EBDA_START,
            E820_RESERVED,
        ));
        if len > HIGH_RAM_START {
            map.push(E820Entry::new(
                HIGH_RAM_START,
                len - HIGH_RAM_START,
                E820_RAM,
            ));
        }
    }
    map.sort_by_key(|e| e.addr);
    map
}

/// The map for the guest's RAM.
pub fn e820_map(mem: &GuestMemoryMmap) -> Vec<E820Entry> {
    e820_from_regions(mem.iter().map(|r| (r.start_addr(), r.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::memory::arch_memory_regions;

    fn map_for(size: u64) -> Vec<E820Entry> {
        e820_from_regions(
            arch_memory_regions(size)
                .into_iter()
                .map(|(a, l)| (a, l as u64)),
        )
    }

    const LOW: E820Entry = E820Entry::new(0, 0x9fc00, E820_RAM);
    const BIOS: E820Entry = E820Entry::new(0x9fc00, 0x60400, E820_RESERVED);

    #[test]
    fn eight_mib() {
        assert_eq!(
            map_for(8 << 20),
            [
                LOW,
                BIOS,
                E820Entry::new(0x10_0000, (8 << 20) - 0x10_0000, E820_RAM)
            ]
        );
    }

    #[test]
    fn half_a_gib() {
        assert_eq!(
            map_for(512 << 20),
            [LOW, BIOS, E820Entry::new(0x10_0000, 0x1ff0_0000, E820_RAM)]
        );
    }

    #[test]
    fn three_gib_fills_low_ram_exactly() {
        assert_eq!(
            map_for(3 << 30),
            [LOW, BIOS, E820Entry::new(0x10_0000, 0xbff0_0000, E820_RAM)]
        );
    }

    #[test]
    fn four_gib_puts_one_gib_above_the_gap() {
        assert_eq!(
            map_for(4 << 30),
            [
                LOW,
                BIOS,
                E820Entry::new(0x10_0000, 0xbff0_0000, E820_RAM),
                E820Entry::new(0x1_0000_0000, 0x4000_0000, E820_RAM),
            ]
        );
    }

    #[test]
    fn six_gib() {
        let map = map_for(6 << 30);
        assert_eq!(
            map,
            [
                LOW,
                BIOS,
                E820Entry::new(0x10_0000, 0xbff0_0000, E820_RAM),
                E820Entry::new(0x1_0000_0000, 0xc000_0000, E820_RAM),
            ]
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (6 << 30) - 0x60400, "all RAM but the EBDA/BIOS hole");
    }

    #[test]
    fn from_guest_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&arch_memory_regions(16 << 20)).unwrap();
        assert_eq!(e820_map(&mem), map_for(16 << 20));
    }
}
