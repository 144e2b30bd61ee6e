//! x86_64 boot-time machine state: where things live in guest memory, what the vCPUs see in
//! CPUID, the registers the kernel starts with, and the tables it reads (boot_params/e820,
//! PVH start info, MP table).

pub mod boot_params;
pub mod cpuid;
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
    /// A KVM vCPU ioctl failed.
    Kvm(&'static str, kvm_ioctls::Error),
    /// Too many vCPUs for a table.
    TooManyCpus(u8),
    /// The initrd does not fit below the top of low RAM.
    InitrdTooLarge(usize),
    /// A CPUID or MSR table could not be built.
    Table(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::GuestMemory(what, e) => write!(f, "writing {what} to guest memory: {e}"),
            Error::Kvm(what, e) => write!(f, "{what}: {e}"),
            Error::TooManyCpus(n) => write!(f, "{n} vCPUs do not fit the MP table"),
            Error::InitrdTooLarge(n) => write!(f, "an initrd of {n} bytes does not fit in low RAM"),
            Error::Table(what) => write!(f, "cannot build {what}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
