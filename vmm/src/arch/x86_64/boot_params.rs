//! The boot information the kernel reads: Linux's boot_params ("zero page") for the 64-bit
//! boot protocol, hvm_start_info for PVH. Both carry the same e820 map.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Address, GuestAddress, GuestMemoryMmap};

use super::e820::{e820_map, E820Entry};
use super::layout::{PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START};
use super::{Error, Result};

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// "Undefined" boot loader: no registered id.
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
const HVM_START_INFO_VERSION: u32 = 1;

/// `value` as a 32-bit boot field, or an error naming it.
fn field32(what: &'static str, value: u64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::AddressTooHigh(what, value))
}

/// The setup header of a kernel without one (an ELF vmlinux): what a bzImage would carry.
fn fresh_setup_header() -> setup_header {
    setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: KERNEL_MIN_ALIGNMENT_BYTES,
        ..Default::default()
    }
}

/// boot_params for the Linux 64-bit boot protocol, without writing it.
pub fn linux64_boot_params(
    map: &[E820Entry],
    cmdline_addr: GuestAddress,
    cmdline_len: usize,
    initrd: Option<(GuestAddress, usize)>,
    setup_header: Option<setup_header>,
) -> Result<boot_params> {
    let mut params = boot_params {
        hdr: setup_header.unwrap_or_else(fresh_setup_header),
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = field32("the command line address", cmdline_addr.raw_value())?;
    params.hdr.cmdline_size = field32("the command line size", cmdline_len as u64)?;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = field32("the initrd address", addr.raw_value())?;
        params.hdr.ramdisk_size = field32("the initrd size", size as u64)?;
    }
    if map.len() > params.e820_table.len() {
        return Err(Error::Table("the e820 map (too many entries)"));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// Writes boot_params at ZERO_PAGE_START for the Linux 64-bit boot protocol. `setup_header`
/// comes from a bzImage; an ELF kernel gets a fresh one.
pub fn configure_linux64(
    mem: &GuestMemoryMmap,
    cmdline_addr: GuestAddress,
    cmdline_len: usize,
    initrd: Option<(GuestAddress, usize)>,
    setup_header: Option<setup_header>,
    rsdp: Option<GuestAddress>,
) -> Result<()> {
    let mut params = linux64_boot_params(
        &e820_map(mem),
        cmdline_addr,
        cmdline_len,
        initrd,
        setup_header,
    )?;
    // Boot protocol 2.14: the kernel takes the RSDP from here before scanning the BIOS area.
    params.acpi_rsdp_addr = rsdp.map_or(0, |a| a.raw_value());
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| Error::Configurator("boot_params", e))
}

/// hvm_start_info plus its memory map and module list, ready to write, for a PVH entry.
pub fn pvh_boot_params(
    map: &[E820Entry],
    cmdline_addr: GuestAddress,
    initrd: Option<(GuestAddress, usize)>,
    rsdp: Option<GuestAddress>,
) -> Result<BootParams> {
    let start_info = hvm_start_info {
        rsdp_paddr: rsdp.map_or(0, |a| a.raw_value()),
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: HVM_START_INFO_VERSION,
        cmdline_paddr: cmdline_addr.raw_value(),
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: u32::try_from(map.len()).map_err(|_| Error::Table("the PVH memmap"))?,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() {
            PVH_MODLIST_START
        } else {
            0
        },
        ..Default::default()
    };
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(PVH_MEMMAP_START));
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr.raw_value(),
            size: size as u64,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(PVH_MODLIST_START));
    }
    Ok(params)
}

/// Writes hvm_start_info at PVH_INFO_START, the memory map after it and (for an initrd) the
/// module list.
pub fn configure_pvh(
    mem: &GuestMemoryMmap,
    cmdline_addr: GuestAddress,
    initrd: Option<(GuestAddress, usize)>,
    rsdp: Option<GuestAddress>,
) -> Result<()> {
    let params = pvh_boot_params(&e820_map(mem), cmdline_addr, initrd, rsdp)?;
    PvhBootConfigurator::write_bootparams(&params, mem)
        .map_err(|e| Error::Configurator("hvm_start_info", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::e820::{E820_RAM, E820_RESERVED};
    use crate::arch::x86_64::layout::CMDLINE_START;
    use crate::arch::x86_64::memory::arch_memory_regions;
    use vm_memory::Bytes;

    fn mem(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&arch_memory_regions(size)).unwrap()
    }

    #[test]
    fn linux64_fields_read_back() {
        let m = mem(64 << 20);
        configure_linux64(
            &m,
            GuestAddress(CMDLINE_START),
            9,
            Some((GuestAddress(0x300_0000), 0x1000)),
            None,
            Some(GuestAddress(0xe_0000)),
        )
        .unwrap();
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ p.acpi_rsdp_addr }, 0xe_0000);
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
        assert_eq!({ p.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
        assert_eq!({ p.hdr.kernel_alignment }, 0x0100_0000);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ p.hdr.cmdline_size }, 9);
        assert_eq!({ p.hdr.ramdisk_image }, 0x300_0000);
        assert_eq!({ p.hdr.ramdisk_size }, 0x1000);
        assert_eq!(p.e820_entries, 3);
        let entries: Vec<(u64, u64, u32)> = p.e820_table[..3]
            .iter()
            .map(|e| ({ e.addr }, { e.size }, { e.r#type }))
            .collect();
        assert_eq!(
            entries,
            [
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x60400, E820_RESERVED),
                (0x10_0000, (64 << 20) - 0x10_0000, E820_RAM)
            ]
        );
    }

    #[test]
    fn linux64_keeps_the_bzimage_header() {
        let m = mem(16 << 20);
        let hdr = setup_header {
            boot_flag: 0xaa55,
            header: KERNEL_HDR_MAGIC,
            version: 0x020f,
            loadflags: 0x1,
            kernel_alignment: 0x20_0000,
            type_of_loader: 0,
            ..Default::default()
        };
        configure_linux64(&m, GuestAddress(CMDLINE_START), 1, None, Some(hdr), None).unwrap();
        let p: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ p.hdr.version }, 0x020f);
        assert_eq!({ p.hdr.loadflags }, 0x1);
        assert_eq!({ p.hdr.kernel_alignment }, 0x20_0000);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
        assert_eq!(({ p.hdr.ramdisk_image }, { p.hdr.ramdisk_size }), (0, 0));
    }

    #[test]
    fn linux64_rejects_fields_past_4g() {
        let map = e820_map(&mem(16 << 20));
        assert!(matches!(
            linux64_boot_params(&map, GuestAddress(1 << 32), 1, None, None),
            Err(Error::AddressTooHigh(..))
        ));
        assert!(matches!(
            linux64_boot_params(
                &map,
                GuestAddress(CMDLINE_START),
                1,
                Some((GuestAddress(5 << 30), 4096)),
                None
            ),
            Err(Error::AddressTooHigh(..))
        ));
    }

    #[test]
    fn linux64_high_ram_in_the_map() {
        let map = e820_map(&mem(6 << 30));
        let p = linux64_boot_params(&map, GuestAddress(CMDLINE_START), 1, None, None).unwrap();
        assert_eq!(p.e820_entries, 4);
        assert_eq!(
            ({ p.e820_table[3].addr }, { p.e820_table[3].size }),
            (4 << 30, 3 << 30)
        );
    }

    #[test]
    fn pvh_start_info_and_memmap() {
        let m = mem(64 << 20);
        configure_pvh(
            &m,
            GuestAddress(CMDLINE_START),
            Some((GuestAddress(0x300_0000), 0x2000)),
            Some(GuestAddress(0xe_0000)),
        )
        .unwrap();
        let info: hvm_start_info = m.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!({ info.rsdp_paddr }, 0xe_0000);
        assert_eq!({ info.magic }, 0x336e_c578);
        assert_eq!({ info.version }, 1);
        assert_eq!({ info.cmdline_paddr }, CMDLINE_START);
        assert_eq!({ info.memmap_paddr }, PVH_MEMMAP_START);
        assert_eq!({ info.memmap_entries }, 3);
        assert_eq!({ info.nr_modules }, 1);
        assert_eq!({ info.modlist_paddr }, PVH_MODLIST_START);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        assert_eq!(({ module.paddr }, { module.size }), (0x300_0000, 0x2000));
        let entry_size = std::mem::size_of::<hvm_memmap_table_entry>() as u64;
        let read = |i: u64| -> (u64, u64, u32) {
            let e: hvm_memmap_table_entry = m
                .read_obj(GuestAddress(PVH_MEMMAP_START + i * entry_size))
                .unwrap();
            ({ e.addr }, { e.size }, { e.type_ })
        };
        assert_eq!(read(0), (0, 0x9fc00, E820_RAM));
        assert_eq!(read(1), (0x9fc00, 0x60400, E820_RESERVED));
        assert_eq!(read(2), (0x10_0000, (64 << 20) - 0x10_0000, E820_RAM));
        const {
            assert!(
                PVH_INFO_START + std::mem::size_of::<hvm_start_info>() as u64 <= PVH_MODLIST_START
            );
            assert!(
                PVH_MODLIST_START + std::mem::size_of::<hvm_modlist_entry>() as u64
                    <= PVH_MEMMAP_START
            );
        };
    }

    #[test]
    fn pvh_without_initrd_has_no_modules() {
        let m = mem(16 << 20);
        configure_pvh(&m, GuestAddress(CMDLINE_START), None, None).unwrap();
        let info: hvm_start_info = m.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!(({ info.nr_modules }, { info.modlist_paddr }), (0, 0));
        assert_eq!({ info.rsdp_paddr }, 0, "no ACPI");
    }
}
