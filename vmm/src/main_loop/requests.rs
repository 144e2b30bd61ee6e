//! Run-state requests (QEMU's qemu_system_*_request): any thread sets a flag and wakes the
//! loop; `main_loop_should_exit` consumes them in QEMU's order. Threads that need to know the
//! outcome wait on the published run state.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::notify::LoopNotifier;
use super::runstate::RunState;

/// Why the VM is shutting down or resetting (QEMU's ShutdownCause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownCause {
    HostError,
    HostQmpQuit,
    HostQmpSystemReset,
    /// SIGINT, SIGTERM or SIGHUP.
    HostSignal(i32),
    /// The user asked through the console (Ctrl-A x).
    HostUi,
    GuestShutdown,
    GuestReset,
    GuestPanic,
}

thread_local! {
    /// This thread filed a shutdown or reset since it last looked (see `take_stop_filed`).
    static STOP_FILED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread filed a shutdown or reset request since the last call. A vCPU
/// whose device access (debug-exit, S5, a reset register) asked to end or reset the machine
/// stops there, as QEMU's cpu_stop_current does, instead of running on into what the guest
/// does after such a write (its fallbacks) until the loop gets to it.
pub fn take_stop_filed() -> bool {
    STOP_FILED.with(|filed| filed.replace(false))
}

fn note_stop_filed() {
    STOP_FILED.with(|filed| filed.set(true));
}

/// What has been asked and not yet handled.
#[derive(Default)]
pub(crate) struct Pending {
    pub shutdown: Option<(ShutdownCause, Option<i32>)>,
    pub reset: Option<ShutdownCause>,
    pub powerdown: bool,
    /// libvirt's "fake reboot": the next guest poweroff restarts the guest instead.
    pub reboot_on_guest_shutdown: bool,
    pub vmstop: Option<RunState>,
    pub wakeup: bool,
    pub suspend: bool,
    pub debug: bool,
    pub vm_start: bool,
    /// Sequence number of the last request filed.
    pub filed: u64,
}

/// Identifies a filed request; `Requests::wait_handled` waits until the loop has acted on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// What the loop publishes for other threads.
struct Published {
    state: RunState,
    /// Every request filed up to this sequence number has been handled.
    handled: u64,
}

pub struct Requests {
    pending: Mutex<Pending>,
    notifier: LoopNotifier,
    no_reboot: AtomicBool,
    sigterm_powerdown: AtomicBool,
    /// The run state and progress as last published by the loop, for waiters.
    published: Mutex<Published>,
    state_changed: Condvar,
}

impl Requests {
    pub(crate) fn new(notifier: LoopNotifier) -> Requests {
        Requests {
            pending: Mutex::new(Pending::default()),
            notifier,
            no_reboot: AtomicBool::new(false),
            sigterm_powerdown: AtomicBool::new(false),
            published: Mutex::new(Published {
                state: RunState::Prelaunch,
                handled: 0,
            }),
            state_changed: Condvar::new(),
        }
    }

    fn file(&self, set: impl FnOnce(&mut Pending)) -> Ticket {
        let ticket = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            set(&mut pending);
            pending.filed += 1;
            Ticket(pending.filed)
        };
        self.notifier.notify();
        ticket
    }

    /// The newest sequence number filed (read by the loop before a pass).
    pub(crate) fn filed(&self) -> u64 {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).filed
    }

    /// Everything filed up to `seq` has been handled (the loop, after a pass).
    pub(crate) fn mark_handled(&self, seq: u64) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if seq > published.handled {
            published.handled = seq;
            self.state_changed.notify_all();
        }
    }

    /// Waits until the loop has acted on `ticket`; returns the run state then, or None on
    /// timeout.
    pub fn wait_handled(&self, ticket: Ticket, timeout: Duration) -> Option<RunState> {
        self.wait_published(|p| p.handled >= ticket.0, timeout)
    }

    /// Waits until what the loop published satisfies `done`; returns the run state then.
    fn wait_published(
        &self,
        done: impl Fn(&Published) -> bool,
        timeout: Duration,
    ) -> Option<RunState> {
        let deadline = Instant::now() + timeout;
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if done(&published) {
                return Some(published.state);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            published = self
                .state_changed
                .wait_timeout(published, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Takes one request out (on the loop thread).
    pub(crate) fn take<T>(&self, get: impl FnOnce(&mut Pending) -> T) -> T {
        get(&mut self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Ends the VM. The first cause filed wins until it is handled.
    pub fn shutdown_request(&self, cause: ShutdownCause) -> Ticket {
        note_stop_filed();
        self.file(|p| {
            p.shutdown.get_or_insert((cause, None));
        })
    }

    /// Ends the VM with an exit status (the guest's debug-exit port).
    pub fn shutdown_request_with_status(&self, cause: ShutdownCause, status: i32) -> Ticket {
        note_stop_filed();
        self.file(|p| {
            p.shutdown.get_or_insert((cause, Some(status)));
        })
    }

    pub fn reset_request(&self, cause: ShutdownCause) -> Ticket {
        note_stop_filed();
        self.file(|p| p.reset = Some(cause))
    }

    /// Presses the power button; the guest decides what to do. A plain powerdown cancels
    /// an earlier reboot's restart (as libvirt's shutdown clears its fake-reboot flag).
    pub fn powerdown_request(&self) -> Ticket {
        self.file(|p| {
            p.powerdown = true;
            p.reboot_on_guest_shutdown = false;
        })
    }

    /// Presses the power button and, when the guest has powered off, starts it again (how
    /// libvirt's QEMU driver reboots through ACPI).
    pub fn reboot_request(&self) -> Ticket {
        self.file(|p| {
            p.powerdown = true;
            p.reboot_on_guest_shutdown = true;
        })
    }

    /// Stops the vCPUs and moves to `state` (Paused for a plain stop).
    pub fn vmstop_request(&self, state: RunState) -> Ticket {
        self.file(|p| {
            p.vmstop = Some(state);
            p.vm_start = false;
        })
    }

    /// Resumes a stopped VM ("cont").
    pub fn vm_start_request(&self) -> Ticket {
        self.file(|p| {
            p.vm_start = true;
            p.vmstop = None;
        })
    }

    pub fn wakeup_request(&self) -> Ticket {
        self.file(|p| p.wakeup = true)
    }

    pub fn suspend_request(&self) -> Ticket {
        self.file(|p| p.suspend = true)
    }

    pub fn debug_request(&self) -> Ticket {
        self.file(|p| p.debug = true)
    }

    /// With no-reboot set, a reset request becomes a shutdown (QEMU's -no-reboot).
    /// Wakes the loop without filing a run-state request: for work the loop's owner takes
    /// between passes (a managed process's next machine).
    pub fn wake_loop(&self) {
        self.notifier.notify();
    }

    pub fn set_no_reboot(&self, no_reboot: bool) {
        self.no_reboot.store(no_reboot, Ordering::Relaxed);
    }

    pub fn no_reboot(&self) -> bool {
        self.no_reboot.load(Ordering::Relaxed)
    }

    /// With this set, SIGTERM presses the power button of a running guest instead of ending
    /// the VMM (`--on-sigterm=powerdown`).
    pub fn set_sigterm_powerdown(&self, powerdown: bool) {
        self.sigterm_powerdown.store(powerdown, Ordering::Relaxed);
    }

    pub fn sigterm_powerdown(&self) -> bool {
        self.sigterm_powerdown.load(Ordering::Relaxed)
    }

    /// The current run state.
    pub fn state(&self) -> RunState {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state
    }

    pub(crate) fn publish_state(&self, state: RunState) {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state = state;
        self.state_changed.notify_all();
    }

    /// Waits until the run state satisfies `done`; returns the state, or None on timeout.
    pub fn wait_for_state(
        &self,
        done: impl Fn(RunState) -> bool,
        timeout: Duration,
    ) -> Option<RunState> {
        self.wait_published(|p| done(p.state), timeout)
    }
}
