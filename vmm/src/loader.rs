//! Puts the guest's boot images into RAM: kernel (ELF with or without a PVH note, or bzImage),
//! initrd, command line, boot parameters and the MP table. Run at boot and again on reset.

use std::fmt;
use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::PathBuf;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, Error as ElfError, PvhBootCapability};
use linux_loader::loader::{self, KernelLoader, KernelLoaderResult};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, ReadVolatile};

use crate::arch::x86_64::acpi::{self, MmioDevice};
use crate::arch::x86_64::{boot_params, layout, memory, mptable, regs::BootEntry};
use crate::config::{BootMode, KernelSource, VmConfig};

/// The built-in test guest (resources/test-guest), built by build.rs.
pub static EMBEDDED_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test-guest.elf"));

/// Offset of the 64-bit entry point in a bzImage's protected-mode part.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

#[derive(Debug)]
pub enum Error {
    Open(PathBuf, std::io::Error),
    Kernel(String),
    NoPvhNote,
    Initrd(String),
    Cmdline(String),
    BootTables(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open(p, e) => {
                write!(f, "{}: {}", p.display(), crate::cli::describe_io_error(e))
            }
            Error::Kernel(e) => write!(f, "cannot load the kernel: {e}"),
            Error::NoPvhNote => write!(f, "--boot pvh: the kernel has no PVH entry note"),
            Error::Initrd(e) => write!(f, "cannot load the initrd: {e}"),
            Error::Cmdline(e) => write!(f, "--cmdline: {e}"),
            Error::BootTables(e) => write!(f, "cannot write the boot tables: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Loads everything the guest needs to start and returns where the boot vCPU enters.
/// `virtio` lists the virtio-mmio windows the ACPI tables describe.
pub fn load_boot_images(
    mem: &GuestMemoryMmap,
    config: &VmConfig,
    virtio: &[MmioDevice],
) -> Result<BootEntry, Error> {
    let (kernel, entry) = match &config.kernel {
        KernelSource::Embedded => load_kernel(mem, &mut Cursor::new(EMBEDDED_GUEST), config.boot)?,
        KernelSource::File(path) => {
            let mut file = File::open(path).map_err(|e| Error::Open(path.clone(), e))?;
            load_kernel(mem, &mut file, config.boot)?
        }
    };
    let initrd = match &config.initrd {
        Some(path) => Some(load_initrd(mem, path)?),
        None => None,
    };
    let cmdline = load_cmdline(mem, &config.cmdline)?;
    let rsdp = if config.acpi {
        let rsdp = acpi::setup_acpi(mem, config.cpus, virtio)
            .map_err(|e| Error::BootTables(e.to_string()))?;
        Some(rsdp)
    } else {
        None
    };
    let tables = match entry {
        BootEntry::Linux64 { .. } => boot_params::configure_linux64(
            mem,
            GuestAddress(layout::CMDLINE_START),
            cmdline,
            initrd,
            kernel.setup_header,
            rsdp,
        ),
        BootEntry::Pvh { .. } => {
            boot_params::configure_pvh(mem, GuestAddress(layout::CMDLINE_START), initrd, rsdp)
        }
    };
    tables.map_err(|e| Error::BootTables(e.to_string()))?;
    mptable::setup_mptable(mem, config.cpus).map_err(|e| Error::BootTables(e.to_string()))?;
    Ok(entry)
}

/// ELF first (PVH note or 64-bit entry), then bzImage.
fn load_kernel<F: Read + ReadVolatile + Seek>(
    mem: &GuestMemoryMmap,
    image: &mut F,
    mode: BootMode,
) -> Result<(KernelLoaderResult, BootEntry), Error> {
    let high = Some(GuestAddress(layout::HIGH_RAM_START));
    match Elf::load(mem, None, image, high) {
        Ok(result) => {
            let entry = elf_entry(&result, image, mode)?;
            Ok((result, entry))
        }
        // Not an ELF (or too short to be one): try bzImage.
        Err(loader::Error::Elf(ElfError::InvalidElfMagicNumber | ElfError::ReadElfHeader)) => {
            if mode == BootMode::Pvh {
                return Err(Error::NoPvhNote);
            }
            let result = BzImage::load(mem, None, image, high)
                .map_err(|e| Error::Kernel(format!("neither ELF nor bzImage ({e})")))?;
            let entry = GuestAddress(result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET);
            Ok((result, BootEntry::Linux64 { entry }))
        }
        Err(e) => Err(Error::Kernel(e.to_string())),
    }
}

fn elf_entry<F: Read + Seek>(
    result: &KernelLoaderResult,
    image: &mut F,
    mode: BootMode,
) -> Result<BootEntry, Error> {
    let pvh = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => Some(addr),
        _ => None,
    };
    match (mode, pvh) {
        (BootMode::Auto | BootMode::Pvh, Some(entry)) => Ok(BootEntry::Pvh { entry }),
        (BootMode::Pvh, None) => Err(Error::NoPvhNote),
        (BootMode::Auto | BootMode::Linux64, _) => Ok(BootEntry::Linux64 {
            entry: GuestAddress(elf_e_entry(image)?),
        }),
    }
}

/// linux-loader reports where the image landed, not e_entry: read it from the header.
fn elf_e_entry<F: Read + Seek>(image: &mut F) -> Result<u64, Error> {
    let mut header = [0u8; 32];
    image
        .rewind()
        .and_then(|_| image.read_exact(&mut header))
        .map_err(|e| Error::Kernel(format!("cannot read the ELF header: {e}")))?;
    let mut entry = [0u8; 8];
    entry.copy_from_slice(&header[24..32]);
    Ok(u64::from_le_bytes(entry))
}

fn load_initrd(mem: &GuestMemoryMmap, path: &PathBuf) -> Result<(GuestAddress, usize), Error> {
    let mut file = File::open(path).map_err(|e| Error::Open(path.clone(), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::Open(path.clone(), e))?
        .len() as usize;
    let addr = memory::initrd_load_addr(mem, size).map_err(|e| Error::Initrd(e.to_string()))?;
    mem.read_exact_volatile_from(addr, &mut file, size)
        .map_err(|e| Error::Initrd(e.to_string()))?;
    Ok((addr, size))
}

/// Writes the command line; returns its length including the terminating NUL.
fn load_cmdline(mem: &GuestMemoryMmap, text: &str) -> Result<usize, Error> {
    let mut cmdline =
        Cmdline::new(layout::CMDLINE_MAX_SIZE).map_err(|e| Error::Cmdline(e.to_string()))?;
    if text.len() >= layout::CMDLINE_MAX_SIZE {
        return Err(Error::Cmdline(format!(
            "{} bytes is longer than the {} this machine allows",
            text.len(),
            layout::CMDLINE_MAX_SIZE - 1
        )));
    }
    if !text.is_empty() {
        cmdline
            .insert_str(text)
            .map_err(|e| Error::Cmdline(e.to_string()))?;
    }
    loader::load_cmdline(mem, GuestAddress(layout::CMDLINE_START), &cmdline)
        .map_err(|e| Error::Cmdline(e.to_string()))?;
    Ok(text.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::memory::arch_memory_regions;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&arch_memory_regions(64 << 20)).unwrap()
    }

    #[test]
    fn embedded_guest_boots_pvh_by_default_and_linux64_on_request() {
        let mem = memory();
        let config = VmConfig {
            cmdline: "end=exit".into(),
            ..VmConfig::default()
        };
        let entry = load_boot_images(&mem, &config, &[]).unwrap();
        assert!(matches!(entry, BootEntry::Pvh { .. }), "{entry:?}");
        let config = VmConfig {
            boot: BootMode::Linux64,
            ..config
        };
        match load_boot_images(&mem, &config, &[]).unwrap() {
            BootEntry::Linux64 { entry } => assert!(entry.0 >= layout::HIGH_RAM_START),
            other => panic!("{other:?}"),
        }
        let mut text = [0u8; 9];
        mem.read_slice(&mut text, GuestAddress(layout::CMDLINE_START))
            .unwrap();
        assert_eq!(&text, b"end=exit\0");
    }

    #[test]
    fn garbage_kernel_is_an_error() {
        let mem = memory();
        let mut junk = Cursor::new(vec![0x55u8; 4096]);
        let e = load_kernel(&mem, &mut junk, BootMode::Auto).unwrap_err();
        assert!(e.to_string().contains("neither ELF nor bzImage"), "{e}");
        let e = load_kernel(&mem, &mut Cursor::new(Vec::new()), BootMode::Auto).unwrap_err();
        assert!(e.to_string().contains("neither ELF nor bzImage"), "{e}");
    }

    #[test]
    fn overlong_cmdline_is_an_error() {
        let mem = memory();
        let long = "x".repeat(layout::CMDLINE_MAX_SIZE);
        let e = load_cmdline(&mem, &long).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--cmdline: 4096 bytes is longer than the 4095 this machine allows"
        );
        assert!(load_cmdline(&mem, &long[1..]).is_ok());
    }
}
