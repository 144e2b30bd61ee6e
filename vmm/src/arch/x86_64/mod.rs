//! x86_64 boot-time machine state: where things live in guest memory, what the vCPUs see in
//! CPUID, the registers the kernel starts with, and the tables it reads (boot_params/e820,
//! PVH start info, MP table).

pub mod acpi;
pub mod boot_params;
pub mod cpuid;
pub mod e820;
pub mod gdt;
pub mod layout;
pub mod memory;
pub mod mptable;
pub mod regs;

use std::fmt;

/// Errors from setting up boot state.
#[derive(Debug)]
pub enum Error {
    /// Writing a table into guest memory failed.
    GuestMemory(&'static str, vm_memory::GuestMemoryError),
    /// linux-loader could not write a boot structure.
    Configurator(&'static str, linux_loader::configurator::Error),
    /// A KVM vCPU ioctl failed.
    Kvm(&'static str, kvm_ioctls::Error),
    /// A vCPU count the MP table cannot describe (0, or more than layout::MAX_VCPUS).
    TooManyCpus(u8),
    /// A vCPU index outside the VM's vCPU count.
    InvalidVcpu { index: u8, count: u8 },
    /// An address or size that a 32-bit boot field cannot hold.
    AddressTooHigh(&'static str, u64),
    /// KVM refused this MSR (KVM_SET_MSRS stops at the first one it refuses).
    MsrRefused(u32),
    /// The initrd does not fit below the top of low RAM.
    InitrdTooLarge(usize),
    /// A CPUID or MSR table could not be built.
    Table(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::GuestMemory(what, e) => write!(f, "writing {what} to guest memory: {e}"),
            Error::Configurator(what, e) => write!(f, "writing {what}: {e}"),
            Error::Kvm(what, e) => write!(f, "{what}: {e}"),
            Error::TooManyCpus(n) => write!(f, "{n} vCPUs do not fit the MP table"),
            Error::InvalidVcpu { index, count } => {
                write!(f, "vCPU {index} is not one of {count} vCPUs")
            }
            Error::AddressTooHigh(what, v) => {
                write!(f, "{what} {v:#x} does not fit a 32-bit boot field")
            }
            Error::MsrRefused(index) => write!(f, "KVM refused boot MSR {index:#x}"),
            Error::InitrdTooLarge(n) => write!(f, "an initrd of {n} bytes does not fit in low RAM"),
            Error::Table(what) => write!(f, "cannot build {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::GuestMemory(_, e) => Some(e),
            Error::Configurator(_, e) => Some(e),
            Error::Kvm(_, e) => Some(e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
