//! vCPU threads: one per vCPU, each running KVM_RUN and dispatching exits to the buses.
//!
//! Control is a tiny state machine shared by all vCPUs (Run, Pause, Exit) behind one mutex and
//! condition variable. To stop a running vCPU the controller sets the request and *kicks* the
//! thread with a real-time signal whose handler sets `immediate_exit` in that vCPU's kvm_run
//! page: KVM_RUN then returns EINTR whether the signal landed inside or just before it, so no
//! kick is lost. A vCPU that hits something it cannot continue from (triple fault, internal
//! error) files a request with the main loop and parks until it is paused or stopped.
//!
//! Each thread places itself on its host CPUs before its first KVM_RUN, and moves itself when
//! asked (`VcpuThreads::pin`): the request is posted under the same mutex and the thread is
//! kicked, so it changes its affinity between two KVM_RUNs, never while inside one.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::bus::Bus;
use devices::legacy::Ioapic;
use kvm_bindings::{
    kvm_lapic_state, kvm_mp_state, kvm_run, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::{VcpuExit, VcpuFd};
use mgmt::cpuset::CpuSet;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::affinity::{self, Tid};
use crate::arch::x86_64::regs::{self, BootEntry};
use crate::main_loop::{requests, Requests, ShutdownCause};

/// Exit status the VMM reports when a vCPU failed in a way the guest cannot recover from.
pub const EXIT_STATUS_VCPU_FAILURE: i32 = 3;

/// Offset from SIGRTMIN of the signal that kicks vCPUs out of KVM_RUN.
const KICK_SIGNAL_OFFSET: i32 = 0;

/// How long a move waits for its vCPU to come out of the guest and take it.
const PIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Run,
    Pause,
    Exit,
}

/// What every vCPU thread reads and the controller writes.
struct Control {
    request: Request,
    /// Bumped with every new request, so a parked thread sees a Pause that was followed by a
    /// Run before it woke (a quick pause, reset, resume).
    request_epoch: u64,
    /// Threads currently waiting on the condition variable (stopped).
    parked: usize,
    /// Bumped by a machine reset: each vCPU reloads its boot state when it sees a new value.
    boot_generation: u64,
    boot_entry: BootEntry,
    /// One per vCPU.
    threads: Vec<ThreadSlot>,
    /// Where the VMM's other threads belong (`--emulator-pin`, `virsh emulatorpin`).
    emulator_cpus: Option<CpuSet>,
}

impl Control {
    fn set_request(&mut self, request: Request) {
        self.request = request;
        self.request_epoch += 1;
    }
}

/// A vCPU thread's id and the placement request in flight for it.
#[derive(Default)]
struct ThreadSlot {
    /// Set once the thread has placed itself.
    tid: Option<Tid>,
    /// Posted by `VcpuThreads::pin`, taken by the vCPU thread.
    pin_request: Option<CpuSet>,
    /// The thread's answer: to a pin request, or at start to its first placement.
    pin_outcome: Option<Result<(), String>>,
}

struct Shared {
    control: Mutex<Control>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Control> {
        // A vCPU thread never panics while holding the lock; recover rather than cascade.
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks vCPU `index`'s thread while `keep_waiting` holds; it still moves when asked.
    fn park_while<'a>(
        &self,
        index: usize,
        mut guard: MutexGuard<'a, Control>,
        keep_waiting: impl Fn(&Control) -> bool,
    ) -> MutexGuard<'a, Control> {
        guard.parked += 1;
        self.changed.notify_all();
        loop {
            self.serve_pin(index, &mut guard);
            if !keep_waiting(&guard) {
                break;
            }
            guard = self.changed.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
        guard.parked -= 1;
        guard
    }

    /// The first KVM_RUN starts KVM's helper thread (kvm-nx-lpage-recovery) from the vCPU
    /// thread, so it inherits that vCPU's placement: put it with the other threads.
    fn place_kvm_helpers(&self) {
        let guard = self.lock();
        let Some(cpus) = guard.emulator_cpus.clone() else {
            return;
        };
        let vcpus: Vec<Tid> = guard.threads.iter().filter_map(|slot| slot.tid).collect();
        drop(guard);
        if let Err(e) = affinity::set_affinity_except(&vcpus, &cpus) {
            log::warn!("cannot place KVM's helper threads on host CPUs {cpus}: {e}");
        }
    }

    /// Called on vCPU `index`'s own thread, outside KVM_RUN: carries out a pending move.
    fn serve_pin(&self, index: usize, guard: &mut MutexGuard<'_, Control>) {
        let slot = &mut guard.threads[index];
        if let Some(cpus) = slot.pin_request.take() {
            slot.pin_outcome = Some(affinity::set_thread_affinity(0, &cpus));
            self.changed.notify_all();
        }
    }
}

/// Sends the kick signal to one thread of this process.
fn kick_thread(tid: Tid) -> Result<(), String> {
    // SAFETY: tgkill only sends a signal; the target is a thread of this very process, and
    // the kick handler is installed before any vCPU thread exists.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            std::process::id() as libc::pid_t,
            tid,
            SIGRTMIN() + KICK_SIGNAL_OFFSET,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot kick thread {tid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The vCPU threads seen from outside: their ids, and moving one to other host CPUs.
#[derive(Clone)]
pub struct VcpuThreads {
    shared: Arc<Shared>,
    /// One move at a time: a slot holds a single request.
    pin_lock: Arc<Mutex<()>>,
}

impl VcpuThreads {
    /// Thread ids in vCPU order.
    pub fn tids(&self) -> Vec<Tid> {
        self.shared
            .lock()
            .threads
            .iter()
            .filter_map(|slot| slot.tid)
            .collect()
    }

    /// Records where the other threads belong, for the helper thread KVM starts later.
    pub fn set_emulator_cpus(&self, cpus: &CpuSet) {
        self.shared.lock().emulator_cpus = Some(cpus.clone());
    }

    /// Has vCPU `index` move itself onto `cpus`, between two KVM_RUNs; waits until it has.
    pub fn pin(&self, index: usize, cpus: &CpuSet) -> Result<(), String> {
        let _one_at_a_time = self.pin_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut guard = self.shared.lock();
        let stopped = || Err("the vCPU threads have stopped".to_string());
        if guard.request == Request::Exit {
            return stopped();
        }
        let slot = guard
            .threads
            .get_mut(index)
            .ok_or_else(|| format!("there is no vCPU {index}"))?;
        let tid = slot
            .tid
            .ok_or_else(|| format!("vCPU {index} has not started"))?;
        slot.pin_request = Some(cpus.clone());
        slot.pin_outcome = None;
        self.shared.changed.notify_all();
        drop(guard);
        kick_thread(tid)?;

        let deadline = Instant::now() + PIN_TIMEOUT;
        let mut guard = self.shared.lock();
        loop {
            if let Some(outcome) = guard.threads[index].pin_outcome.take() {
                return outcome;
            }
            let now = Instant::now();
            if guard.request == Request::Exit || now >= deadline {
                guard.threads[index].pin_request = None;
                if guard.request == Request::Exit {
                    return stopped();
                }
                return Err(format!(
                    "vCPU {index} did not come out of the guest to move"
                ));
            }
            guard = self
                .shared
                .changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// What a vCPU thread needs besides its own fd.
#[derive(Clone)]
pub struct VcpuContext {
    pub pio_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    pub requests: Arc<Requests>,
    pub memory: GuestMemoryMmap,
    /// The userspace IOAPIC (split irqchip): told when the guest ends a level-triggered interrupt.
    pub ioapic: Arc<Mutex<Ioapic>>,
}

/// The set of vCPU threads of one VM and the means to pause, resume and stop them.
pub struct VcpuGroup {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

thread_local! {
    /// This thread's kvm_run page, for the kick signal handler.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(|cell| cell.get());
    if !run.is_null() {
        // SAFETY: the pointer was set by this thread to its own vCPU's kvm_run mapping, which
        // stays mapped until the thread clears the pointer before dropping the VcpuFd. Writing
        // one byte is async-signal-safe.
        unsafe { std::ptr::write_volatile(&mut (*run).immediate_exit, 1) };
    }
}

/// Installs the kick signal handler (once per process).
pub fn install_kick_handler() -> Result<(), String> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            register_signal_handler(SIGRTMIN() + KICK_SIGNAL_OFFSET, kick_handler)
                .map_err(|e| format!("cannot install the vCPU kick signal handler: {e}"))
        })
        .clone()
}

impl VcpuGroup {
    /// Starts one thread per vCPU, each placed on `affinities[index]` before it ever enters
    /// the guest. The threads start parked: `resume` lets them run.
    pub fn start(
        vcpus: Vec<VcpuFd>,
        boot_entry: BootEntry,
        ctx: VcpuContext,
        affinities: &[CpuSet],
    ) -> Result<VcpuGroup, String> {
        install_kick_handler()?;
        if affinities.len() != vcpus.len() {
            return Err(format!(
                "{} vCPU placements for {} vCPUs",
                affinities.len(),
                vcpus.len()
            ));
        }
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                request: Request::Pause,
                request_epoch: 0,
                parked: 0,
                boot_generation: 1,
                boot_entry,
                threads: (0..vcpus.len()).map(|_| ThreadSlot::default()).collect(),
                emulator_cpus: None,
            }),
            changed: Condvar::new(),
        });
        let mut group = VcpuGroup {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for ((index, fd), cpus) in vcpus.into_iter().enumerate().zip(affinities) {
            let vcpu = VcpuThread {
                index,
                fd,
                shared: shared.clone(),
                ctx: ctx.clone(),
                boot_generation: 0,
                affinity: cpus.clone(),
                ran: false,
                power_on_lapic: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || vcpu.run())
                .map_err(|e| format!("cannot start the vCPU {index} thread: {e}"))?;
            group.threads.push(thread);
        }
        group.wait_until_placed()?;
        Ok(group)
    }

    /// Waits for every thread to report its first placement; the first failure is the error.
    fn wait_until_placed(&self) -> Result<(), String> {
        let mut guard = self.shared.lock();
        while guard.threads.iter().any(|slot| slot.tid.is_none()) {
            guard = self
                .shared
                .changed
                .wait(guard)
                .unwrap_or_else(|p| p.into_inner());
        }
        for (index, slot) in guard.threads.iter_mut().enumerate() {
            if let Some(Err(e)) = slot.pin_outcome.take() {
                return Err(format!("vCPU {index}: {e}"));
            }
        }
        Ok(())
    }

    /// A handle on the threads for placement (ids, moves) that outlives borrows of the group.
    pub fn threads(&self) -> VcpuThreads {
        VcpuThreads {
            shared: self.shared.clone(),
            pin_lock: Arc::new(Mutex::new(())),
        }
    }

    fn kick_all(&self) {
        for thread in &self.threads {
            if let Err(e) = thread.kill(SIGRTMIN() + KICK_SIGNAL_OFFSET) {
                log::error!("cannot kick {:?}: {e}", thread.thread().name());
            }
        }
    }

    /// Stops every vCPU and returns once all of them are out of KVM_RUN and parked.
    pub fn pause(&self) {
        let mut guard = self.shared.lock();
        if guard.request == Request::Exit {
            return;
        }
        guard.set_request(Request::Pause);
        self.shared.changed.notify_all();
        drop(guard);
        self.kick_all();
        let mut guard = self.shared.lock();
        while guard.parked < self.threads.len() {
            guard = self
                .shared
                .changed
                .wait(guard)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Lets every vCPU run again.
    pub fn resume(&self) {
        let mut guard = self.shared.lock();
        if guard.request == Request::Exit {
            return;
        }
        guard.set_request(Request::Run);
        self.shared.changed.notify_all();
    }

    /// Makes every vCPU reload its boot state (registers, MSRs, LAPIC, MP state) before it
    /// next runs. Call while paused.
    pub fn reset(&self, boot_entry: BootEntry) {
        let mut guard = self.shared.lock();
        guard.boot_entry = boot_entry;
        guard.boot_generation += 1;
    }

    /// Number of vCPU threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Stops and joins every vCPU thread.
    pub fn stop(&mut self) {
        self.shared.lock().set_request(Request::Exit);
        self.shared.changed.notify_all();
        self.kick_all();
        for thread in self.threads.drain(..) {
            let name = thread.thread().name().unwrap_or("vcpu").to_string();
            if thread.join().is_err() {
                log::error!("{name} thread panicked");
            }
        }
    }
}

impl Drop for VcpuGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the vCPU does after handling one exit.
#[derive(PartialEq, Eq)]
enum Next {
    /// Enter the guest again.
    Run,
    /// A request was filed with the main loop: wait until it pauses or stops this vCPU.
    Park,
}

struct VcpuThread {
    index: usize,
    fd: VcpuFd,
    shared: Arc<Shared>,
    ctx: VcpuContext,
    boot_generation: u64,
    /// Where this thread places itself before its first KVM_RUN.
    affinity: CpuSet,
    /// It has been through KVM_RUN once.
    ran: bool,
    /// KVM's LAPIC state of the new vCPU, put back on every reset.
    power_on_lapic: Option<kvm_lapic_state>,
}

impl VcpuThread {
    fn run(mut self) {
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
            drop(guard);
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
