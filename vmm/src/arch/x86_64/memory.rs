//! Guest RAM regions and placement of the initrd.

use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::layout::{HIGH_RAM_START, MMIO_GAP_END, MMIO_GAP_START};
use super::{Error, Result};

const PAGE_MASK: u64 = !0xfff;

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

/// The end of low RAM (the region at address 0, never past the MMIO gap); 0 without one.
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    mem.find_region(GuestAddress(0))
        .map(|r| r.last_addr().raw_value() + 1)
        .unwrap_or(0)
}

/// Where an initrd of `size` bytes goes: page aligned, as high as possible in low RAM (below
/// 4 GiB, so the 32-bit ramdisk_image field reaches it), and above the first MiB, like
/// Firecracker and QEMU.
pub fn initrd_load_addr(mem: &GuestMemoryMmap, size: usize) -> Result<GuestAddress> {
    let top = low_ram_end(mem)
        .checked_sub(size as u64)
        .ok_or(Error::InitrdTooLarge(size))?;
    let addr = top & PAGE_MASK;
    if addr < HIGH_RAM_START {
        return Err(Error::InitrdTooLarge(size));
    }
    Ok(GuestAddress(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&arch_memory_regions(size)).unwrap()
    }

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
            arch_memory_regions((3 << 30) + 4096),
            vec![(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 4096)]
        );
        assert_eq!(
            arch_memory_regions(6 << 30),
            vec![(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 3 << 30)]
        );
    }

    #[test]
    fn initrd_goes_high_and_aligned() {
        let m = mem(64 << 20);
        assert_eq!(low_ram_end(&m), 64 << 20);
        assert_eq!(
            initrd_load_addr(&m, 0x1234).unwrap(),
            GuestAddress((64 << 20) - 0x2000)
        );
        assert_eq!(
            initrd_load_addr(&m, 0x2000).unwrap(),
            GuestAddress((64 << 20) - 0x2000)
        );
        assert!(matches!(
            initrd_load_addr(&m, 64 << 20),
            Err(Error::InitrdTooLarge(_))
        ));
        assert!(matches!(
            initrd_load_addr(&m, (63 << 20) + 1),
            Err(Error::InitrdTooLarge(_))
        ));
    }

    #[test]
    fn initrd_stays_below_the_gap_with_high_ram() {
        let m = mem(6 << 30);
        assert_eq!(low_ram_end(&m), 3 << 30);
        assert_eq!(
            initrd_load_addr(&m, 1 << 20).unwrap(),
            GuestAddress((3 << 30) - (1 << 20))
        );
    }
}
