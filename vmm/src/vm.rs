//! The KVM virtual machine: the VM fd, guest RAM and the interrupt controller.
//!
//! Interrupt controller choice: KVM's *split* irqchip. The local APICs live in the kernel (fast
//! IPIs, INIT/SIPI, timers); the IOAPIC is ours (devices::legacy::Ioapic) and each pin reaches
//! the guest as an MSI route behind a KVM irqfd. On this host closing a VM with the full
//! in-kernel PIC/IOAPIC plus PIT costs 21-25 ms, with the split irqchip 0.4-0.6 ms: that cost
//! lands on every shutdown, so the split irqchip is the one that keeps exits fast.

use std::fmt;
use std::sync::{Arc, Mutex};

use devices::legacy::{MsiMessage, MsiRouter, IOAPIC_PINS};
use kvm_bindings::{
    kvm_enable_cap, kvm_irq_routing_entry, kvm_userspace_memory_region, KvmIrqRouting,
    KVM_CAP_SPLIT_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::{layout, memory::arch_memory_regions};
use crate::guest_ram::GuestRam;

#[derive(Debug)]
pub enum Error {
    OpenKvm(std::io::Error),
    KvmApi(i32),
    MissingCap(&'static str),
    CreateVm(kvm_ioctls::Error),
    Setup(&'static str, kvm_ioctls::Error),
    Memory(String),
    TooManyVcpus { wanted: u8, max: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OpenKvm(e) => {
                let hint = match e.raw_os_error() {
                    Some(libc::ENOENT) => " (is the kvm module loaded?)",
                    Some(libc::EACCES) | Some(libc::EPERM) => {
                        " (run as root or join the group that owns /dev/kvm)"
                    }
                    _ => "",
                };
                write!(
                    f,
                    "cannot open /dev/kvm: {}{hint}",
                    crate::cli::describe_io_error(e)
                )
            }
            Error::KvmApi(v) => write!(f, "/dev/kvm speaks API version {v}, this VMM needs 12"),
            Error::MissingCap(c) => write!(f, "KVM lacks a capability this VMM needs: {c}"),
            Error::CreateVm(e) => write!(f, "KVM_CREATE_VM failed: {e}"),
            Error::Setup(what, e) => write!(f, "{what} failed: {e}"),
            Error::Memory(e) => write!(f, "cannot allocate guest RAM: {e}"),
            Error::TooManyVcpus { wanted, max } => {
                write!(
                    f,
                    "--cpus {wanted}: this host's KVM allows at most {max} vCPUs"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

pub struct Vm {
    kvm: Kvm,
    fd: Arc<VmFd>,
    ram: GuestRam,
}

impl Vm {
    /// Opens /dev/kvm, creates the VM with its RAM and the split irqchip.
    pub fn new(memory_size: u64, vcpus: u8) -> Result<Vm, Error> {
        let kvm =
            Kvm::new().map_err(|e| Error::OpenKvm(std::io::Error::from_raw_os_error(e.errno())))?;
        let api = kvm.get_api_version();
        if api != 12 {
            return Err(Error::KvmApi(api));
        }
        for (cap, name) in [
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
            (Cap::SplitIrqchip, "KVM_CAP_SPLIT_IRQCHIP"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(Error::MissingCap(name));
            }
        }
        let max = kvm.get_max_vcpus();
        if usize::from(vcpus) > max {
            return Err(Error::TooManyVcpus { wanted: vcpus, max });
        }
        let fd = kvm.create_vm().map_err(Error::CreateVm)?;
        fd.set_tss_address(layout::KVM_TSS_ADDRESS as usize)
            .map_err(|e| Error::Setup("KVM_SET_TSS_ADDR", e))?;
        fd.set_identity_map_address(layout::KVM_IDENTITY_MAP)
            .map_err(|e| Error::Setup("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        let split = kvm_enable_cap {
            cap: KVM_CAP_SPLIT_IRQCHIP,
            args: [IOAPIC_PINS as u64, 0, 0, 0],
            ..Default::default()
        };
        fd.enable_cap(&split)
            .map_err(|e| Error::Setup("KVM_ENABLE_CAP(SPLIT_IRQCHIP)", e))?;

        let ram = GuestRam::new(&arch_memory_regions(memory_size))
            .map_err(|e| Error::Memory(e.to_string()))?;
        for (slot, region) in ram.memory().iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|e| Error::Memory(e.to_string()))?;
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the host range belongs to `memory`, which the Vm owns and keeps mapped
            // for as long as the VM fd (and so the slot) exists.
            unsafe { fd.set_user_memory_region(region) }
                .map_err(|e| Error::Setup("KVM_SET_USER_MEMORY_REGION", e))?;
            advise_huge_pages(host, region.memory_size);
        }
        Ok(Vm {
            kvm,
            fd: Arc::new(fd),
            ram,
        })
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    pub fn fd(&self) -> &Arc<VmFd> {
        &self.fd
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        self.ram.memory()
    }

    /// Connects `event` to interrupt line `gsi`: a write to the eventfd injects the interrupt
    /// in the kernel, no userspace hop.
    pub fn register_irqfd(&self, event: &EventFd, gsi: u32) -> Result<(), Error> {
        self.fd
            .register_irqfd(event, gsi)
            .map_err(|e| Error::Setup("KVM_IRQFD", e))
    }

    /// True if RAM covers `[addr, addr + len)`.
    pub fn ram_covers(&self, addr: GuestAddress, len: u64) -> bool {
        len == 0 || self.memory().check_range(addr, len as usize)
    }
}

/// Turns IOAPIC pin programming into KVM MSI routes (the IOAPIC is in userspace, see above).
pub struct GsiRouter {
    vm: Arc<VmFd>,
    routes: Mutex<[Option<MsiMessage>; IOAPIC_PINS]>,
}

impl GsiRouter {
    pub fn new(vm: Arc<VmFd>) -> GsiRouter {
        GsiRouter {
            vm,
            routes: Mutex::new([None; IOAPIC_PINS]),
        }
    }

    fn commit(&self, routes: &[Option<MsiMessage>; IOAPIC_PINS]) -> Result<(), String> {
        let entries: Vec<kvm_irq_routing_entry> = routes
            .iter()
            .enumerate()
            .filter_map(|(gsi, route)| route.map(|msi| msi_entry(gsi as u32, msi)))
            .collect();
        let table = KvmIrqRouting::from_entries(&entries).map_err(|e| format!("{e:?}"))?;
        self.vm.set_gsi_routing(&table).map_err(|e| e.to_string())
    }
}

fn msi_entry(gsi: u32, msi: MsiMessage) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        ..Default::default()
    };
    entry.u.msi.address_lo = msi.address_lo;
    entry.u.msi.address_hi = msi.address_hi;
    entry.u.msi.data = msi.data;
    entry
}

impl MsiRouter for GsiRouter {
    fn set_route(&self, gsi: u32, msi: Option<MsiMessage>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = routes.get_mut(gsi as usize) else {
            log::warn!("IOAPIC route for GSI {gsi} out of range");
            return;
        };
        if *slot == msi {
            return;
        }
        *slot = msi;
        if let Err(e) = self.commit(&routes) {
            log::error!("KVM_SET_GSI_ROUTING failed: {e}");
        }
    }
}

/// Asks for transparent huge pages on guest RAM, as QEMU does for every RAM block: with
/// nested paging each 4 KiB host fault is a VM exit, and a Linux boot takes tens of thousands
/// of them. KVM maps 2 MiB only where the host address is as aligned as the guest address
/// (guest_ram); with both, a Debian boot in the nested lane took 0.6 K nested page faults
/// instead of 31 K (QEMU 1.5 K). Best effort: a host with THP off refuses, and the guest
/// runs on small pages.
fn advise_huge_pages(host: *mut u8, len: u64) {
    let Ok(len) = usize::try_from(len) else {
        return;
    };
    // SAFETY: [host, host + len) is one region of the guest memory mapping; MADV_HUGEPAGE
    // only changes how the kernel backs it, never its contents.
    let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        log::debug!(
            "guest RAM: no transparent huge pages: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm_present() -> bool {
        let ok = std::path::Path::new("/dev/kvm").exists();
        if !ok {
            eprintln!("skipped: /dev/kvm is absent");
        }
        ok
    }

    #[test]
    fn kvm_open_errors_say_what_to_do() {
        let denied = Error::OpenKvm(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(
            denied.to_string(),
            "cannot open /dev/kvm: Permission denied (run as root or join the group that owns /dev/kvm)"
        );
        let missing = Error::OpenKvm(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(missing.to_string().ends_with("(is the kvm module loaded?)"));
    }

    #[test]
    fn creates_vm_with_ram_and_split_irqchip() {
        if !kvm_present() {
            return;
        }
        let vm = Vm::new(64 << 20, 1).unwrap();
        assert_eq!(vm.memory().num_regions(), 1);
        // What KVM was given is as 2 MiB aligned as the guest address, so it can map large pages.
        let host = vm.memory().get_host_address(GuestAddress(0)).unwrap() as usize;
        assert_eq!(host % crate::guest_ram::HUGE_PAGE_SIZE, 0, "{host:#x}");
        assert!(vm.ram_covers(GuestAddress(0), 64 << 20));
        assert!(!vm.ram_covers(GuestAddress(0), (64 << 20) + 1));
    }

    #[test]
    fn large_ram_leaves_the_mmio_hole() {
        if !kvm_present() {
            return;
        }
        let vm = Vm::new(4 << 30, 1).unwrap();
        assert_eq!(vm.memory().num_regions(), 2);
        assert!(!vm.ram_covers(GuestAddress(layout::MMIO_GAP_START), 1));
        assert!(vm.ram_covers(GuestAddress(4 << 30), 1 << 30));
    }

    #[test]
    fn routes_msi_for_a_pin() {
        if !kvm_present() {
            return;
        }
        let vm = Vm::new(16 << 20, 1).unwrap();
        let router = GsiRouter::new(vm.fd().clone());
        let msi = MsiMessage {
            address_lo: 0xfee0_0000,
            address_hi: 0,
            data: 0x24,
        };
        router.set_route(4, Some(msi));
        assert_eq!(router.routes.lock().unwrap()[4], Some(msi));
        router.set_route(4, None);
        router.set_route(99, Some(msi)); // out of range: ignored, no panic
        assert_eq!(router.routes.lock().unwrap()[4], None);
    }
}
