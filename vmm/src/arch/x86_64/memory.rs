//! Guest RAM regions and placement of the initrd.

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::layout::{HIGH_RAM_START, MMIO_GAP_END, MMIO_GAP_START};
use super::{Error, Result};

/// RAM as (start, size) regions: below the MMIO gap, and the rest above 4 GiB.
pub fn arch_memory_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    if size <= MMIO_GAP_START {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (GuestAddress(MMIO_GAP_END), (size - MMIO_GAP_START) as usize),
        ]
    }
}

/// Where an initrd of `size` bytes goes: page aligned, as high as possible in low RAM (the
/// 32-bit boot fields must reach it), like Firecracker and QEMU.
pub fn initrd_load_addr(mem: &GuestMemoryMmap, size: usize) -> Result<GuestAddress> {
    let low_end = mem
        .find_region(GuestAddress(0))
        .map(|r| r.len())
        .ok_or(Error::Table("a RAM map without low memory"))?;
    let top = low_end
        .checked_sub(size as u64)
        .ok_or(Error::InitrdTooLarge(size))?;
    let addr = top & !0xfff;
    if addr < HIGH_RAM_START {
        return Err(Error::InitrdTooLarge(size));
    }
    Ok(GuestAddress(addr))
}

/// The low RAM end (bytes of RAM below the MMIO gap).
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    mem.find_region(GuestAddress(0))
        .map(|r| r.last_addr().raw_value() + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_split_at_the_gap() {
        assert_eq!(
            arch_memory_regions(512 << 20),
            vec![(GuestAddress(0), 512 << 20)]
        );
        assert_eq!(
            arch_memory_regions(3 << 30),
            vec![(GuestAddress(0), 3 << 30)]
        );
        assert_eq!(
            arch_memory_regions(6 << 30),
            vec![(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 3 << 30)]
        );
    }

    #[test]
    fn initrd_goes_high_and_aligned() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
        assert_eq!(
            initrd_load_addr(&mem, 0x1234).unwrap(),
            GuestAddress((64 << 20) - 0x2000)
        );
        assert!(initrd_load_addr(&mem, 64 << 20).is_err());
        assert_eq!(low_ram_end(&mem), 64 << 20);
    }
}
