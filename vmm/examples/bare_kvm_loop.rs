//! The floor for benchmarks: the smallest KVM_RUN loop that boots the test guest by its PVH
//! entry. One memory slot, one vCPU, no irqchip, no devices: COM1 writes go to stdout, a write
//! to the debug-exit port ends the run, every other port is ignored. Comparing the VMM's
//! per-exit cost with this loop's shows what the VMM adds on top of KVM.
//!
//!   cargo run --release --example bare_kvm_loop -- GUEST.elf "end=exit test=pio-bench"

use std::io::Write;

use kvm_bindings::{kvm_segment, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit};
use linux_loader::loader::elf::start_info::hvm_start_info;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};

const MEM_SIZE: usize = 128 << 20;
const START_INFO: u64 = 0x6000;
const CMDLINE: u64 = 0x20000;
const COM1: u16 = 0x3f8;
const DEBUG_EXIT: u16 = 0x501;

fn flat_segment(selector: u16, type_: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        db: 1,
        s: 1,
        g: 1,
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kernel), Some(cmdline)) = (args.get(1), args.get(2)) else {
        return Err("usage: bare_kvm_loop GUEST.elf CMDLINE".into());
    };
    let kvm = Kvm::new()?;
    let vm = kvm.create_vm()?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])?;
    let region = mem.iter().next().ok_or("no memory region")?;
    let host = region.get_host_address(MemoryRegionAddress(0))?;
    // SAFETY: `mem` outlives the VM and stays mapped for the whole run.
    unsafe {
        vm.set_user_memory_region(kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: host as u64,
            flags: 0,
        })?
    };
    let mut image = std::fs::File::open(kernel)?;
    let loaded = Elf::load(&mem, None, &mut image, Some(GuestAddress(0x100000)))?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err("the guest has no PVH note".into());
    };
    mem.write_slice(cmdline.as_bytes(), GuestAddress(CMDLINE))?;
    mem.write_obj(0u8, GuestAddress(CMDLINE + cmdline.len() as u64))?;
    let info = hvm_start_info {
        magic: 0x336e_c578,
        version: 1,
        cmdline_paddr: CMDLINE,
        ..Default::default()
    };
    mem.write_obj(info, GuestAddress(START_INFO))?;

    let mut vcpu = vm.create_vcpu(0)?;
    vcpu.set_cpuid2(&kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)?)?;
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs = flat_segment(0x08, 0xb);
    let data = flat_segment(0x10, 0x3);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs)?;
    let mut regs = vcpu.get_regs()?;
    regs.rip = entry.0;
    regs.rbx = START_INFO;
    regs.rflags = 2;
    vcpu.set_regs(&regs)?;

    let mut stdout = std::io::stdout().lock();
    loop {
        match vcpu.run()? {
            VcpuExit::IoOut(COM1, data) => stdout.write_all(data)?,
            VcpuExit::IoOut(DEBUG_EXIT, data) => {
                stdout.flush()?;
                std::process::exit(i32::from(data.first().copied().unwrap_or(0)));
            }
            VcpuExit::IoOut(..) | VcpuExit::MmioWrite(..) => {}
            VcpuExit::IoIn(_, data) | VcpuExit::MmioRead(_, data) => data.fill(0xff),
            VcpuExit::Hlt => {}
            other => return Err(format!("unexpected exit: {other:?}").into()),
        }
    }
}
