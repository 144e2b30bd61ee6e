//! Guest RAM mapped where KVM can back it with 2 MiB pages.
//!
//! KVM maps a memory slot with large pages only if its host address and guest address agree
//! modulo the page size; otherwise every 4 KiB of RAM the guest first touches is a nested page
//! fault. Kernels since 6.7 align large anonymous mappings on 2 MiB themselves; older ones
//! (Debian 12's 6.1) put them anywhere, and vm-memory maps with no address hint. So each region
//! is mapped here inside a reservation 2 MiB larger and trimmed to an aligned window, as QEMU's
//! qemu_ram_mmap does, and handed to vm-memory as a raw mapping that this module unmaps.

use std::io;
use std::ptr::null_mut;
use std::sync::{Arc, Mutex};

use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

/// The alignment that lets KVM use 2 MiB pages (x86-64's large page).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Guest RAM and the host mappings behind it.
pub struct GuestRam {
    memory: GuestMemoryMmap,
    mappings: Vec<Mapping>,
}

/// Mappings whose RAM something (a thread not yet joined) still referred to when their
/// GuestRam went away: vm-memory would unmap an owned mapping with its last reference; these
/// are unmapped by the first GuestRam drop after it, as a managed process tears down one VM
/// after another.
static ORPHANS: Mutex<Vec<Mapping>> = Mutex::new(Vec::new());

impl Drop for GuestRam {
    fn drop(&mut self) {
        // Our own references go first, so that a mapping only we used counts as unused.
        self.memory = GuestMemoryMmap::new();
        let mut orphans = ORPHANS.lock().unwrap_or_else(|e| e.into_inner());
        orphans.append(&mut self.mappings);
        // Dropping a Mapping unmaps it.
        orphans.retain(Mapping::in_use);
        for mapping in orphans.iter() {
            log::warn!(
                "guest RAM at {:#x} ({} MiB) still in use after its VM: unmapped later",
                mapping.addr,
                mapping.len >> 20
            );
        }
    }
}

impl GuestRam {
    /// Maps anonymous RAM for `(guest address, size)` regions, each host address 2 MiB aligned.
    pub fn new(regions: &[(GuestAddress, usize)]) -> io::Result<GuestRam> {
        let mut mappings = Vec::with_capacity(regions.len());
        for &(start, len) in regions {
            let addr = map_aligned(len)?;
            // Owned from here: dropped (unmapped) on any error below.
            let mut mapping = Mapping {
                addr: addr as usize,
                len,
                region: None,
            };
            // SAFETY: [addr, addr + len) is the read-write anonymous mapping just made, which
            // `mapping` keeps until no region refers to it.
            let builder = unsafe {
                MmapRegionBuilder::new(len)
                    .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                    .with_mmap_flags(MAP_FLAGS)
                    .with_raw_mmap_pointer(addr)
            };
            let region = builder.build().map_err(io::Error::other)?;
            let region = GuestRegionMmap::new(region, start)
                .ok_or_else(|| io::Error::other("guest region wraps the address space"))?;
            mapping.region = Some(Arc::new(region));
            mappings.push(mapping);
        }
        let arcs = mappings.iter().filter_map(|m| m.region.clone()).collect();
        let memory = GuestMemoryMmap::from_arc_regions(arcs).map_err(io::Error::other)?;
        Ok(GuestRam { memory, mappings })
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }
}

/// Private, anonymous, not counted against the commit limit until touched: what vm-memory
/// maps guest RAM with.
const MAP_FLAGS: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// One region's host mapping; unmapped when dropped, which only happens once nothing else
/// refers to it (GuestRam parks it in ORPHANS otherwise).
struct Mapping {
    addr: usize,
    len: usize,
    region: Option<Arc<GuestRegionMmap>>,
}

impl Mapping {
    /// True while a region refers to the mapping from anywhere but here.
    fn in_use(&self) -> bool {
        self.region
            .as_ref()
            .is_some_and(|region| Arc::strong_count(region) > 1)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.in_use() {
            // Not reached (GuestRam parks mappings in use): leaking beats a use after unmap.
            log::error!(
                "guest RAM at {:#x} dropped while in use: left mapped",
                self.addr
            );
            return;
        }
        // SAFETY: [addr, addr + len) is the mapping made by map_aligned, and no region refers
        // to it any more (the last reference is ours, or none was made).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
        #[cfg(test)]
        tests::UNMAPPED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.addr);
    }
}

/// Maps `len` bytes of anonymous read-write memory at a 2 MiB-aligned address: a reservation
/// of `len + 2 MiB`, with the unaligned head and the tail beyond `len` unmapped again.
fn map_aligned(len: usize) -> io::Result<*mut u8> {
    let reserve = len
        .checked_add(HUGE_PAGE_SIZE)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a new anonymous mapping at an address the kernel chooses; nothing else is touched.
    let base = unsafe {
        libc::mmap(
            null_mut(),
            reserve,
            libc::PROT_READ | libc::PROT_WRITE,
            MAP_FLAGS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = base as usize;
    let aligned = base.next_multiple_of(HUGE_PAGE_SIZE);
    let head = aligned - base;
    let tail = reserve - head - len;
    // SAFETY: both ranges lie inside the reservation just mapped, outside [aligned,
    // aligned + len), and nothing refers to them.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    Ok(aligned as *mut u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

    fn host_addresses(ram: &GuestRam) -> Vec<usize> {
        ram.memory()
            .iter()
            .map(|r| r.get_host_address(MemoryRegionAddress(0)).unwrap() as usize)
            .collect()
    }

    #[test]
    fn regions_are_2mib_aligned_and_usable() {
        // Odd sizes, and several mappings in a row, so that one aligned by luck proves nothing.
        for _ in 0..4 {
            let ram = GuestRam::new(&[
                (GuestAddress(0), (6 << 20) + 4096),
                (GuestAddress(1 << 32), 3 << 20),
            ])
            .unwrap();
            for addr in host_addresses(&ram) {
                assert_eq!(addr % HUGE_PAGE_SIZE, 0, "{addr:#x}");
            }
            let mem = ram.memory();
            assert_eq!(mem.num_regions(), 2);
            mem.write_obj(0x1234_5678u32, GuestAddress(6 << 20))
                .unwrap();
            assert_eq!(
                mem.read_obj::<u32>(GuestAddress(6 << 20)).unwrap(),
                0x1234_5678
            );
            mem.write_obj(7u8, GuestAddress((1 << 32) + (3 << 20) - 1))
                .unwrap();
            assert!(mem.read_obj::<u8>(GuestAddress(6 << 20 | 4096)).is_err());
        }
    }

    #[test]
    fn dropping_unmaps_the_ram() {
        let ram = GuestRam::new(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let addr = host_addresses(&ram)[0];
        assert!(is_mapped(addr));
        let before = unmaps_at(addr);
        drop(ram);
        assert!(unmaps_at(addr) > before, "{addr:#x} not unmapped");
    }

    #[test]
    fn ram_still_in_use_at_drop_is_unmapped_by_a_later_drop() {
        let ram = GuestRam::new(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let addr = host_addresses(&ram)[0];
        let clone = ram.memory().clone();
        let before = unmaps_at(addr);
        drop(ram);
        clone.write_obj(5u64, GuestAddress(8)).unwrap();
        assert_eq!(clone.read_obj::<u64>(GuestAddress(8)).unwrap(), 5);
        drop(clone);
        // (Any GuestRam's drop sweeps: in this process other tests' VMs may have done it.)
        drop(GuestRam::new(&[(GuestAddress(0), 2 << 20)]).unwrap());
        assert!(unmaps_at(addr) > before, "{addr:#x} not unmapped");
    }

    /// Host addresses Mapping::drop has unmapped, in this test process. (Asking the kernel
    /// whether an address is still mapped races with other tests' mappings reusing it.)
    pub(super) static UNMAPPED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

    /// How often `addr` has been unmapped: it rises once our mapping there goes (an earlier
    /// mapping at the same address may have gone before, none can while ours is there).
    fn unmaps_at(addr: usize) -> usize {
        UNMAPPED
            .lock()
            .unwrap()
            .iter()
            .filter(|&&a| a == addr)
            .count()
    }

    /// Whether the page at `addr` is mapped (mincore fails with ENOMEM on unmapped memory).
    fn is_mapped(addr: usize) -> bool {
        let mut vec = [0u8; 1];
        // SAFETY: mincore only reports on the page; it reads and writes nothing of it.
        unsafe { libc::mincore(addr as *mut libc::c_void, 4096, vec.as_mut_ptr()) == 0 }
    }
}
