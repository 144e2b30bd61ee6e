//! What the VMM told us at entry: command line, memory map, initrd, from hvm_start_info (PVH)
//! or boot_params (Linux 64-bit). Any piece may be missing (barevmm passes neither a command
//! line nor a map); absent means empty, never a fault. The command line is copied out so that
//! later tests may reuse low memory.

use core::fmt;

use crate::acpi::{self, Tables};
use crate::cmdline;
use crate::memmap::{MemoryMap, E820, MAX_ENTRIES};
use crate::physmem::PhysMem;
use crate::smp::Started;

const CMDLINE_MAX: usize = 4096;

/// hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h): the memory map fields
/// follow `rsdp_paddr`, and only exist from version 1 on.
const PVH_MAGIC: u32 = 0x336e_c578;
const PVH_VERSION: u64 = 4;
const PVH_NR_MODULES: u64 = 12;
const PVH_MODLIST: u64 = 16;
const PVH_CMDLINE: u64 = 24;
const PVH_RSDP: u64 = 32;
const PVH_MEMMAP: u64 = 40;
const PVH_MEMMAP_ENTRIES: u64 = 48;
const PVH_MEMMAP_ENTRY_SIZE: u64 = 24;

/// boot_params ("zero page"), Documentation/arch/x86/zero-page.rst.
const BP_ACPI_RSDP_ADDR: u64 = 0x70;
const BP_EXT_RAMDISK_IMAGE: u64 = 0xc0;
const BP_EXT_RAMDISK_SIZE: u64 = 0xc4;
const BP_EXT_CMD_LINE_PTR: u64 = 0xc8;
const BP_E820_ENTRIES: u64 = 0x1e8;
const BP_RAMDISK_IMAGE: u64 = 0x218;
const BP_RAMDISK_SIZE: u64 = 0x21c;
const BP_CMD_LINE_PTR: u64 = 0x228;
const BP_E820_TABLE: u64 = 0x2d0;
const BP_E820_ENTRY_SIZE: u64 = 20;

pub const KIND_PVH: u64 = 1;
pub const KIND_LINUX64: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Linux64,
    Unknown,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Protocol::Pvh => "pvh",
            Protocol::Linux64 => "linux64",
            Protocol::Unknown => "unknown",
        })
    }
}

pub struct BootInfo {
    pub protocol: Protocol,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    pub memmap: MemoryMap,
    pub initrd: Option<(u64, u64)>,
    /// Where the boot protocol says the ACPI RSDP is (0 or absent: scan for it).
    pub rsdp_hint: Option<u64>,
    /// The ACPI tables: Ok(None) without an RSDP, Err naming what is broken.
    pub acpi: Result<Option<Tables>, &'static str>,
    /// The CPUs that came up (set by `smp::start_aps` once the tables are known).
    pub started: Option<Started>,
    /// Why the boot information is incomplete, if it is in a way worth saying.
    pub problem: Option<&'static str>,
}

impl BootInfo {
    pub fn parse(kind: u64, info: u64, mem: &impl PhysMem) -> BootInfo {
        let mut boot = BootInfo {
            protocol: Protocol::Unknown,
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            memmap: MemoryMap::new(),
            initrd: None,
            rsdp_hint: None,
            acpi: Ok(None),
            started: None,
            problem: None,
        };
        match kind {
            KIND_PVH => {
                boot.protocol = Protocol::Pvh;
                boot.parse_pvh(info, mem);
            }
            KIND_LINUX64 => {
                boot.protocol = Protocol::Linux64;
                boot.parse_linux64(info, mem);
            }
            _ => boot.problem = Some("unknown entry"),
        }
        boot.memmap.sort();
        boot.acpi = acpi::load(boot.rsdp_hint, mem);
        boot
    }

    /// The ACPI tables, if they are there and sound.
    pub fn tables(&self) -> Option<&Tables> {
        self.acpi.as_ref().ok().and_then(|t| t.as_ref())
    }

    fn parse_pvh(&mut self, info: u64, mem: &impl PhysMem) {
        if mem.u32(info) != Some(PVH_MAGIC) {
            self.problem = Some("no hvm_start_info (bad magic)");
            return;
        }
        self.copy_cmdline(mem.u64(info + PVH_CMDLINE).unwrap_or(0), mem);
        self.rsdp_hint = mem.u64(info + PVH_RSDP).filter(|&a| a != 0);
        let version = mem.u32(info + PVH_VERSION).unwrap_or(0);
        if version >= 1 {
            let map = mem.u64(info + PVH_MEMMAP).unwrap_or(0);
            let count = mem.u32(info + PVH_MEMMAP_ENTRIES).unwrap_or(0);
            for i in 0..u64::from(count) {
                let at = map + i * PVH_MEMMAP_ENTRY_SIZE;
                match (mem.u64(at), mem.u64(at + 8), mem.u32(at + 16)) {
                    (Some(addr), Some(size), Some(kind)) => {
                        self.memmap.push(E820 { addr, size, kind })
                    }
                    _ => break,
                }
            }
        }
        let modules = mem.u32(info + PVH_NR_MODULES).unwrap_or(0);
        let list = mem.u64(info + PVH_MODLIST).unwrap_or(0);
        if modules > 0 {
            if let (Some(addr), Some(size)) = (mem.u64(list), mem.u64(list + 8)) {
                self.initrd = Some((addr, size));
            }
        }
    }

    fn parse_linux64(&mut self, params: u64, mem: &impl PhysMem) {
        let Some(count) = mem.u8(params + BP_E820_ENTRIES) else {
            self.problem = Some("no boot_params");
            return;
        };
        let split = |low: u64, high: u64| {
            u64::from(mem.u32(params + low).unwrap_or(0))
                | u64::from(mem.u32(params + high).unwrap_or(0)) << 32
        };
        self.copy_cmdline(split(BP_CMD_LINE_PTR, BP_EXT_CMD_LINE_PTR), mem);
        self.rsdp_hint = mem.u64(params + BP_ACPI_RSDP_ADDR).filter(|&a| a != 0);
        for i in 0..u64::from(count).min(MAX_ENTRIES as u64) {
            let at = params + BP_E820_TABLE + i * BP_E820_ENTRY_SIZE;
            match (mem.u64(at), mem.u64(at + 8), mem.u32(at + 16)) {
                (Some(addr), Some(size), Some(kind)) => self.memmap.push(E820 { addr, size, kind }),
                _ => break,
            }
        }
        let size = split(BP_RAMDISK_SIZE, BP_EXT_RAMDISK_SIZE);
        if size > 0 {
            self.initrd = Some((split(BP_RAMDISK_IMAGE, BP_EXT_RAMDISK_IMAGE), size));
        }
    }

    /// Copies the NUL-terminated command line at `addr` (0: none), stopping at the end of
    /// what is reachable.
    fn copy_cmdline(&mut self, addr: u64, mem: &impl PhysMem) {
        if addr == 0 {
            return;
        }
        let mut len = 0;
        while let Some(slot) = self.cmdline.get_mut(len) {
            match mem.u8(addr + len as u64) {
                Some(0) | None => break,
                Some(b) => *slot = b,
            }
            len += 1;
        }
        if len == 0 && mem.u8(addr).is_none() {
            self.problem = Some("command line out of reach");
        }
        self.cmdline_len = cmdline::from_bytes(&self.cmdline[..len]).len();
    }

    pub fn cmdline(&self) -> &str {
        cmdline::from_bytes(&self.cmdline[..self.cmdline_len])
    }

    pub fn e820(&self) -> &[E820] {
        self.memmap.entries()
    }

    pub fn ram_mib(&self) -> u64 {
        self.memmap.ram_mib()
    }

    /// The value of `key=` on the command line.
    pub fn arg(&self, key: &str) -> Option<&str> {
        cmdline::value(self.cmdline(), key)
    }

    /// A numeric `key=N` on the command line.
    pub fn number(&self, key: &str) -> Option<u64> {
        cmdline::number(self.cmdline(), key)
    }

    pub fn has_word(&self, word: &str) -> bool {
        cmdline::has_word(self.cmdline(), word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physmem::FakeMem;

    fn le32(v: u32) -> [u8; 4] {
        v.to_le_bytes()
    }
    fn le64(v: u64) -> [u8; 8] {
        v.to_le_bytes()
    }

    #[test]
    fn pvh_start_info_with_map_cmdline_and_module() {
        let mut mem = FakeMem::new(0x6000, 0x2000);
        mem.put(0x6000, &le32(PVH_MAGIC));
        mem.put(0x6004, &le32(1));
        mem.put(0x600c, &le32(1));
        mem.put(0x6010, &le64(0x6200));
        mem.put(0x6018, &le64(0x6400));
        mem.put(0x6028, &le64(0x6100));
        mem.put(0x6030, &le32(3));
        // Unsorted, as QEMU gives it.
        mem.put(0x6100, &[le64(0x100000), le64(0xff00000)].concat());
        mem.put(0x6110, &le32(1));
        mem.put(0x6118, &[le64(0), le64(0x9fc00)].concat());
        mem.put(0x6128, &le32(1));
        mem.put(0x6130, &[le64(0x9fc00), le64(0x400)].concat());
        mem.put(0x6140, &le32(2));
        mem.put(0x6200, &[le64(0x800000), le64(12345)].concat());
        mem.put(0x6400, b"end=exit test=e820\0");
        let boot = BootInfo::parse(KIND_PVH, 0x6000, &mem);
        assert_eq!(boot.protocol, Protocol::Pvh);
        assert_eq!(boot.cmdline(), "end=exit test=e820");
        assert_eq!(boot.arg("end"), Some("exit"));
        assert_eq!(boot.e820().len(), 3);
        assert_eq!(boot.e820()[0].addr, 0);
        assert_eq!(boot.e820()[2].addr, 0x100000);
        assert!(!boot.memmap.given_sorted);
        assert_eq!(boot.ram_mib(), 256);
        assert_eq!(boot.initrd, Some((0x800000, 12345)));
        assert_eq!(boot.problem, None);
    }

    #[test]
    fn pvh_like_barevmm_has_nothing() {
        let mut mem = FakeMem::new(0x6000, 0x100);
        mem.put(0x6000, &le32(PVH_MAGIC));
        mem.put(0x6004, &le32(1));
        let boot = BootInfo::parse(KIND_PVH, 0x6000, &mem);
        assert_eq!(boot.cmdline(), "");
        assert!(boot.e820().is_empty());
        assert_eq!(boot.initrd, None);
        assert_eq!(boot.arg("end"), None);
    }

    #[test]
    fn pvh_version_0_has_no_memmap() {
        let mut mem = FakeMem::new(0x6000, 0x200);
        mem.put(0x6000, &le32(PVH_MAGIC));
        mem.put(0x6028, &le64(0x6100));
        mem.put(0x6030, &le32(1));
        mem.put(0x6100, &[le64(0), le64(0x9fc00)].concat());
        mem.put(0x6110, &le32(1));
        assert!(BootInfo::parse(KIND_PVH, 0x6000, &mem).e820().is_empty());
    }

    #[test]
    fn pvh_bad_magic_is_reported() {
        let mem = FakeMem::new(0x6000, 0x100);
        let boot = BootInfo::parse(KIND_PVH, 0x6000, &mem);
        assert_eq!(boot.protocol, Protocol::Pvh);
        assert!(boot.problem.is_some());
    }

    #[test]
    fn linux64_boot_params() {
        let mut mem = FakeMem::new(0x7000, 0x2000);
        mem.put(0x7000 + BP_E820_ENTRIES, &[2]);
        mem.put(0x7000 + BP_E820_TABLE, &[le64(0), le64(0x9fc00)].concat());
        mem.put(0x7000 + BP_E820_TABLE + 16, &le32(1));
        mem.put(
            0x7000 + BP_E820_TABLE + 20,
            &[le64(0x100000), le64(0x7f00000)].concat(),
        );
        mem.put(0x7000 + BP_E820_TABLE + 36, &le32(1));
        mem.put(0x7000 + BP_CMD_LINE_PTR, &le32(0x8000));
        mem.put(0x7000 + BP_RAMDISK_IMAGE, &le32(0x100_0000));
        mem.put(0x7000 + BP_RAMDISK_SIZE, &le32(4096));
        mem.put(0x8000, b"cpus=2 quiet\0");
        let boot = BootInfo::parse(KIND_LINUX64, 0x7000, &mem);
        assert_eq!(boot.protocol, Protocol::Linux64);
        assert_eq!(boot.cmdline(), "cpus=2 quiet");
        assert_eq!(boot.number("cpus"), Some(2));
        assert!(boot.has_word("quiet"));
        assert_eq!(boot.e820().len(), 2);
        assert!(boot.memmap.given_sorted);
        assert_eq!(boot.ram_mib(), 128);
        assert_eq!(boot.initrd, Some((0x100_0000, 4096)));
    }

    #[test]
    fn linux64_zeroed_page_and_cmdline_at_the_edge() {
        // The command line runs into the end of reachable memory without a NUL.
        let mut mem = FakeMem::new(0x7000, 0x100d);
        mem.put(0x8000, b"end=exit_tail");
        mem.put(0x7000 + BP_CMD_LINE_PTR, &le32(0x8000));
        let boot = BootInfo::parse(KIND_LINUX64, 0x7000, &mem);
        assert_eq!(boot.cmdline(), "end=exit_tail");
        assert!(boot.e820().is_empty());
        assert_eq!(boot.initrd, None);
    }

    #[test]
    fn cmdline_out_of_reach_is_reported() {
        let mut mem = FakeMem::new(0x7000, 0x1000);
        mem.put(0x7000 + BP_CMD_LINE_PTR, &le32(0x20000));
        mem.put(0x7000 + BP_EXT_CMD_LINE_PTR, &le32(1));
        let boot = BootInfo::parse(KIND_LINUX64, 0x7000, &mem);
        assert_eq!(boot.cmdline(), "");
        assert_eq!(boot.problem, Some("command line out of reach"));
    }

    #[test]
    fn unknown_kind() {
        let mem = FakeMem::new(0, 16);
        let boot = BootInfo::parse(7, 0, &mem);
        assert_eq!(boot.protocol, Protocol::Unknown);
        assert_eq!(boot.cmdline(), "");
    }
}
