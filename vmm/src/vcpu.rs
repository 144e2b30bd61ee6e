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
//! kicked, so it changes its affinity between two KVM_RUNs, never while inside one. An NMI
//! (`VcpuThreads::inject_nmi`) is posted and delivered the same way.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::bus::Bus;
use devices::legacy::Ioapic;
use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuFd;
use mgmt::cpuset::CpuSet;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::affinity::{self, Tid};
use crate::arch::x86_64::regs::BootEntry;
use crate::main_loop::Requests;

mod thread;
use thread::VcpuThread;

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
    /// An NMI to inject (`virsh inject-nmi`): KVM_NMI must come from the vCPU's own thread,
    /// so it is posted here and the thread is kicked. A paused vCPU takes it when it resumes.
    nmi_pending: bool,
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

#[cfg(test)]
impl VcpuThreads {
    /// No vCPU threads at all: for tests of what manages them, without KVM.
    pub(crate) fn none() -> VcpuThreads {
        VcpuThreads {
            shared: Arc::new(Shared {
                control: Mutex::new(Control {
                    request: Request::Run,
                    request_epoch: 0,
                    parked: 0,
                    boot_generation: 0,
                    boot_entry: BootEntry::Pvh {
                        entry: vm_memory::GuestAddress(0),
                    },
                    threads: Vec::new(),
                    emulator_cpus: None,
                }),
                changed: Condvar::new(),
            }),
            pin_lock: Arc::new(Mutex::new(())),
        }
    }
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

    /// Queues an NMI on every vCPU, as a machine's NMI button (QEMU's inject-nmi) does; each
    /// thread injects its own between two KVM_RUNs. Running vCPUs are kicked out of the guest
    /// for it; paused ones take it when they resume.
    pub fn inject_nmi(&self) -> Result<(), String> {
        let mut guard = self.shared.lock();
        if guard.request == Request::Exit || guard.threads.is_empty() {
            return Err("the vCPU threads have stopped".to_string());
        }
        let mut tids = Vec::new();
        for slot in &mut guard.threads {
            slot.nmi_pending = true;
            tids.extend(slot.tid);
        }
        drop(guard);
        for tid in tids {
            kick_thread(tid)?;
        }
        Ok(())
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
        // An NMI for the old boot is not the new one's.
        for slot in &mut guard.threads {
            slot.nmi_pending = false;
        }
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
