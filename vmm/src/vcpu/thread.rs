//! One vCPU thread's life: place itself, then KVM_RUN and dispatch each exit until it is
//! told to stop, parking whenever it waits for the main loop.

use std::sync::Arc;

use kvm_bindings::{
    kvm_lapic_state, kvm_mp_state, kvm_run, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use mgmt::cpuset::CpuSet;

use super::{Request, Shared, VcpuContext, EXIT_STATUS_VCPU_FAILURE, KVM_RUN};
use crate::affinity;
use crate::arch::x86_64::regs::{self, BootEntry};
use crate::main_loop::{requests, ShutdownCause};

/// What the vCPU does after handling one exit.
#[derive(PartialEq, Eq)]
enum Next {
    /// Enter the guest again.
    Run,
    /// A request was filed with the main loop: wait until it pauses or stops this vCPU.
    Park,
}

pub(super) struct VcpuThread {
    pub(super) index: usize,
    pub(super) fd: VcpuFd,
    pub(super) shared: Arc<Shared>,
    pub(super) ctx: VcpuContext,
    pub(super) boot_generation: u64,
    /// Where this thread places itself before its first KVM_RUN.
    pub(super) affinity: CpuSet,
    /// It has been through KVM_RUN once.
    pub(super) ran: bool,
    /// KVM's LAPIC state of the new vCPU, put back on every reset.
    pub(super) power_on_lapic: Option<kvm_lapic_state>,
}

impl VcpuThread {
    pub(super) fn run(mut self) {
        let placed = affinity::set_thread_affinity(0, &self.affinity);
        {
            let mut guard = self.shared.lock();
            let slot = &mut guard.threads[self.index];
            slot.tid = Some(affinity::current_tid());
            slot.pin_outcome = Some(placed);
            self.shared.changed.notify_all();
        }
        let run_page: *mut kvm_run = self.fd.get_kvm_run();
        KVM_RUN.with(|cell| cell.set(run_page));
        // Before the first KVM_RUN: from here on the guest drives this thread.
        crate::seccomp::install(crate::seccomp::ThreadKind::Vcpu);
        loop {
            let mut guard = self.shared.lock();
            self.shared.serve_pin(self.index, &mut guard);
            if guard.request != Request::Run {
                guard = self
                    .shared
                    .park_while(self.index, guard, |c| c.request == Request::Pause);
            }
            if guard.request == Request::Exit {
                break;
            }
            if guard.boot_generation != self.boot_generation {
                self.boot_generation = guard.boot_generation;
                let entry = guard.boot_entry;
                drop(guard);
                if let Err(e) = self.load_boot_state(&entry) {
                    self.fail(&format!("cannot set the boot state: {e}"));
                    self.park_until_stopped();
                }
                continue;
            }
            let nmi = std::mem::take(&mut guard.threads[self.index].nmi_pending);
            drop(guard);
            if nmi {
                if let Err(e) = self.fd.nmi() {
                    log::warn!("vCPU {}: KVM_NMI: {e}", self.index);
                }
            }
            let next = self.run_once();
            if !self.ran {
                self.ran = true;
                self.shared.place_kvm_helpers();
            }
            if next == Next::Park {
                self.park_until_stopped();
            }
        }
        KVM_RUN.with(|cell| cell.set(std::ptr::null_mut()));
    }

    /// Parks after filing a request, until the loop acts: it pauses or stops the vCPUs, or
    /// has already paused, reset and resumed them (a new epoch) by the time this thread looks.
    fn park_until_stopped(&self) {
        let guard = self.shared.lock();
        let epoch = guard.request_epoch;
        drop(self.shared.park_while(self.index, guard, |c| {
            c.request == Request::Run && c.request_epoch == epoch
        }));
    }

    /// The boot CPU starts at the kernel entry; the others wait for INIT/SIPI in the LAPIC.
    /// After a reset the vCPU first goes back to its power-on state: KVM has no ioctl for that,
    /// so the LAPIC is restored from the copy taken before the first boot, and the MSRs and
    /// pending events a guest changes are put back (QEMU's kvm_arch_reset_vcpu, in small).
    fn load_boot_state(&mut self, entry: &BootEntry) -> Result<(), String> {
        let bootstrap = self.index == 0;
        match &self.power_on_lapic {
            Some(lapic) => {
                regs::reset_msrs(&self.fd, bootstrap);
                self.fd
                    .set_lapic(lapic)
                    .map_err(|e| format!("KVM_SET_LAPIC: {e}"))?;
                regs::clear_events(&self.fd).map_err(|e| e.to_string())?;
            }
            None => {
                let lapic = self
                    .fd
                    .get_lapic()
                    .map_err(|e| format!("KVM_GET_LAPIC: {e}"))?;
                self.power_on_lapic = Some(lapic);
            }
        }
        let mem = &self.ctx.memory;
        regs::setup_msrs(&self.fd).map_err(|e| e.to_string())?;
        regs::setup_fpu(&self.fd).map_err(|e| e.to_string())?;
        regs::set_lint(&self.fd).map_err(|e| e.to_string())?;
        let mp_state = if bootstrap {
            regs::setup_regs(&self.fd, entry).map_err(|e| e.to_string())?;
            regs::setup_sregs(mem, &self.fd, entry).map_err(|e| e.to_string())?;
            KVM_MP_STATE_RUNNABLE
        } else {
            KVM_MP_STATE_UNINITIALIZED
        };
        self.fd
            .set_mp_state(kvm_mp_state { mp_state })
            .map_err(|e| format!("KVM_SET_MP_STATE: {e}"))
    }

    /// A write that asked to end or reset the machine parks this vCPU until the loop acts.
    fn after_device_write() -> Next {
        if requests::take_stop_filed() {
            Next::Park
        } else {
            Next::Run
        }
    }

    /// Runs the guest until one exit and handles it.
    fn run_once(&mut self) -> Next {
        // Only a request filed while handling this exit counts (a triple fault's reset, say,
        // is handled by its own arm).
        requests::take_stop_filed();
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                return Next::Run;
            }
            Err(e) => {
                let msg = format!("KVM_RUN failed: {e}");
                self.fail(&msg);
                return Next::Park;
            }
        };
        match exit {
            VcpuExit::IoOut(port, data) => {
                if !self.ctx.pio_bus.write(u64::from(port), data) {
                    log::debug!("vcpu{}: write to unassigned port {port:#x}", self.index);
                }
                Self::after_device_write()
            }
            VcpuExit::IoIn(port, data) => {
                if !self.ctx.pio_bus.read(u64::from(port), data) {
                    data.fill(0xff);
                }
                Next::Run
            }
            VcpuExit::MmioWrite(addr, data) => {
                if !self.ctx.mmio_bus.write(addr, data) {
                    log::debug!("vcpu{}: write to unassigned MMIO {addr:#x}", self.index);
                }
                Self::after_device_write()
            }
            VcpuExit::MmioRead(addr, data) => {
                if !self.ctx.mmio_bus.read(addr, data) {
                    data.fill(0xff);
                }
                Next::Run
            }
            // Split irqchip: the guest's LAPIC EOI for a vector routed from a level-triggered pin.
            VcpuExit::IoapicEoi(vector) => {
                self.ctx
                    .ioapic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .end_of_interrupt(vector);
                Next::Run
            }
            // With the in-kernel LAPIC KVM handles HLT itself; one that reaches us is harmless.
            VcpuExit::Hlt => Next::Run,
            VcpuExit::Shutdown => {
                eprintln!(
                    "vmm: vcpu{}: triple fault (KVM_EXIT_SHUTDOWN): guest reset; {}",
                    self.index,
                    self.describe_registers()
                );
                self.ctx.requests.reset_request(ShutdownCause::GuestReset);
                Next::Park
            }
            VcpuExit::SystemEvent(kind, _) => {
                self.system_event(kind);
                Next::Park
            }
            VcpuExit::InternalError => {
                let detail = self.internal_error_detail();
                self.fail(&format!("KVM internal error ({detail})"));
                Next::Park
            }
            VcpuExit::FailEntry(reason, cpu) => {
                self.fail(&format!(
                    "VM entry failed (reason {reason:#x}, host cpu {cpu})"
                ));
                Next::Park
            }
            other => {
                let what = format!("unexpected exit {other:?}");
                self.fail(&what);
                Next::Park
            }
        }
    }

    fn system_event(&self, kind: u32) {
        use kvm_bindings::{
            KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
        };
        let requests = &self.ctx.requests;
        match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => {
                requests.shutdown_request(ShutdownCause::GuestShutdown);
            }
            KVM_SYSTEM_EVENT_RESET => {
                requests.reset_request(ShutdownCause::GuestReset);
            }
            KVM_SYSTEM_EVENT_CRASH => {
                requests.shutdown_request(ShutdownCause::GuestPanic);
            }
            other => self.fail(&format!("unknown system event {other}")),
        }
    }

    fn internal_error_detail(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the live union member.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let ndata = (internal.ndata as usize).min(internal.data.len());
        let data: Vec<String> = internal.data[..ndata]
            .iter()
            .map(|d| format!("{d:#x}"))
            .collect();
        format!("suberror {}, data [{}]", internal.suberror, data.join(", "))
    }

    /// The registers that tell where a guest went wrong, on one line.
    fn describe_registers(&self) -> String {
        match (self.fd.get_regs(), self.fd.get_sregs()) {
            (Ok(r), Ok(s)) => format!(
                "rip={:#x} rsp={:#x} cs={:#x} cpl={} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
                r.rip, r.rsp, s.cs.selector, s.cs.dpl, s.cr0, s.cr3, s.cr4, s.efer
            ),
            _ => "registers unavailable".to_string(),
        }
    }

    /// Reports an unrecoverable vCPU failure with the guest's registers and asks the main
    /// loop to end the VM. The caller parks afterwards.
    fn fail(&self, what: &str) {
        eprintln!(
            "vmm: vcpu{}: {what}; {}",
            self.index,
            self.describe_registers()
        );
        self.ctx
            .requests
            .shutdown_request_with_status(ShutdownCause::HostError, EXIT_STATUS_VCPU_FAILURE);
    }
}
