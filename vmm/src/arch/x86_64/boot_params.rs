//! The memory map and the boot information the kernel reads: Linux's boot_params ("zero
//! page") for the 64-bit boot protocol, hvm_start_info for PVH.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    BIOS_START, EBDA_START, HIGH_RAM_START, MMIO_GAP_END, MMIO_GAP_START, PVH_INFO_START,
    PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START,
};
use super::memory::low_ram_end;
use super::{Error, Result};

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// One e820 entry: start, size, type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The guest's memory map: low RAM, the reserved EBDA and BIOS areas, RAM from 1 MiB to the
/// MMIO gap, and RAM above 4 GiB.
pub fn e820_map(mem: &GuestMemoryMmap) -> Vec<E820Entry> {
    let low_end = low_ram_end(mem);
    let total: u64 = vm_memory::GuestMemoryBackend::iter(mem)
        .map(vm_memory::GuestMemoryRegion::len)
        .sum();
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: 0xa0000 - EBDA_START,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: BIOS_START,
            size: HIGH_RAM_START - BIOS_START,
            kind: E820_RESERVED,
        },
    ];
    if low_end > HIGH_RAM_START {
        map.push(E820Entry {
            addr: HIGH_RAM_START,
            size: low_end - HIGH_RAM_START,
            kind: E820_RAM,
        });
    }
    if total > MMIO_GAP_START {
        map.push(E820Entry {
            addr: MMIO_GAP_END,
            size: total - MMIO_GAP_START,
            kind: E820_RAM,
        });
    }
    map
}

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    what: &'static str,
    value: T,
    addr: u64,
) -> Result<()> {
    mem.write_obj(value, GuestAddress(addr))
        .map_err(|e| Error::GuestMemory(what, e))
}

/// Writes boot_params for the Linux 64-bit boot protocol. `setup_header` comes from a bzImage;
/// an ELF kernel gets a fresh one.
pub fn configure_linux64(
    mem: &GuestMemoryMmap,
    cmdline_addr: GuestAddress,
    cmdline_size: usize,
    initrd: Option<(GuestAddress, usize)>,
    setup_header: Option<setup_header>,
) -> Result<()> {
    let mut params = boot_params {
        hdr: setup_header.unwrap_or(setup_header {
            boot_flag: KERNEL_BOOT_FLAG_MAGIC,
            header: KERNEL_HDR_MAGIC,
            kernel_alignment: KERNEL_MIN_ALIGNMENT_BYTES,
            ..Default::default()
        }),
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = cmdline_addr.raw_value() as u32;
    params.hdr.cmdline_size = cmdline_size as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr.raw_value() as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(mem);
    if map.len() > params.e820_table.len() {
        return Err(Error::Table("the e820 map"));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = map.len() as u8;
    write(mem, "boot_params", params, ZERO_PAGE_START)
}

/// Writes hvm_start_info, its memory map and (for an initrd) its module list for a PVH entry.
pub fn configure_pvh(
    mem: &GuestMemoryMmap,
    cmdline_addr: GuestAddress,
    initrd: Option<(GuestAddress, usize)>,
) -> Result<()> {
    let map = e820_map(mem);
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: cmdline_addr.raw_value(),
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr.raw_value(),
            size: size as u64,
            ..Default::default()
        };
        write(mem, "the PVH module list", module, PVH_MODLIST_START)?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST_START;
    }
    let entry_size = std::mem::size_of::<hvm_memmap_table_entry>() as u64;
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        write(
            mem,
            "the PVH memory map",
            entry,
            PVH_MEMMAP_START + i as u64 * entry_size,
        )?;
    }
    write(mem, "hvm_start_info", info, PVH_INFO_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::CMDLINE_START;
    use crate::arch::x86_64::memory::arch_memory_regions;

    fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&arch_memory_regions(size)).unwrap()
    }

    fn ram_total(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn e820_small_guest() {
        let map = e820_map(&mem(8 << 20));
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[1],
            E820Entry {
                addr: 0x9fc00,
                size: 0x400,
                kind: E820_RESERVED
            }
        );
        assert_eq!(
            map[2],
            E820Entry {
                addr: 0xf0000,
                size: 0x10000,
                kind: E820_RESERVED
            }
        );
        assert_eq!(
            map[3],
            E820Entry {
                addr: 0x100000,
                size: (8 << 20) - 0x100000,
                kind: E820_RAM
            }
        );
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn e820_large_guest_skips_the_gap() {
        let map = e820_map(&mem(6 << 30));
        assert_eq!(
            map[3],
            E820Entry {
                addr: 0x100000,
                size: (3 << 30) - 0x100000,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[4],
            E820Entry {
                addr: 4 << 30,
                size: 3 << 30,
                kind: E820_RAM
            }
        );
        assert_eq!(ram_total(&map), (6 << 30) - 0x100000 + 0x9fc00);
        assert_eq!(e820_map(&mem(3 << 30)).len(), 4);
        assert_eq!(
            e820_map(&mem(4 << 30))[4],
            E820Entry {
                addr: 4 << 30,
                size: 1 << 30,
                kind: E820_RAM
            }
        );
    }

    #[test]
    fn linux64_boot_params() {
        let m = mem(64 << 20);
        configure_linux64(
            &m,
            GuestAddress(CMDLINE_START),
            9,
            Some((GuestAddress(0x300_0000), 0x1000)),
            None,
        )
        .unwrap();
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
        assert_eq!({ p.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ p.hdr.cmdline_size }, 9);
        assert_eq!({ p.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!({ p.hdr.ramdisk_size }, 0x1000);
        assert_eq!(p.e820_entries, 4);
        assert_eq!({ p.e820_table[3].addr }, 0x100000);
        assert_eq!({ p.e820_table[3].r#type }, E820_RAM);
    }

    #[test]
    fn pvh_start_info() {
        let m = mem(64 << 20);
        configure_pvh(
            &m,
            GuestAddress(CMDLINE_START),
            Some((GuestAddress(0x300_0000), 0x2000)),
        )
        .unwrap();
        let info: hvm_start_info = m.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!({ info.magic }, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!({ info.version }, 1);
        assert_eq!({ info.cmdline_paddr }, CMDLINE_START);
        assert_eq!({ info.memmap_entries }, 4);
        assert_eq!({ info.nr_modules }, 1);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        assert_eq!(({ module.paddr }, { module.size }), (0x300_0000, 0x2000));
        let last: hvm_memmap_table_entry =
            m.read_obj(GuestAddress(PVH_MEMMAP_START + 3 * 24)).unwrap();
        assert_eq!(
            ({ last.addr }, { last.size }, { last.type_ }),
            (0x100000, (64 << 20) - 0x100000, E820_RAM)
        );
        const { assert!(PVH_MEMMAP_START + 8 * 24 <= ZERO_PAGE_START, "memmap room") };
    }
}
