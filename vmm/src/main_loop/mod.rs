//! The main loop, in the shape of QEMU's vl.c/main-loop.c (see ../shared/design/MAINLOOP.md):
//! a GLib main context with one AioContext source (fd handlers, timers on three clocks, bottom
//! halves), a signalfd for host signals, and run-state requests that `main_loop_should_exit`
//! acts on in QEMU's order, pausing, resetting or stopping the machine.

pub mod aio;
pub mod bh;
pub mod clock;
pub mod notify;
pub mod requests;
pub mod runstate;
pub mod signals;
pub mod timer;

use std::sync::Arc;

pub use aio::AioContext;
pub use bh::Bh;
pub use clock::{ClockType, Clocks};
pub use notify::LoopNotifier;
pub use requests::{Requests, ShutdownCause, Ticket};
pub use runstate::{RunState, RunStateMachine};
pub use timer::Timer;

/// What the main loop does to the machine. Implemented by the VMM's machine; tests use fakes.
pub trait Machine {
    /// Returns when every vCPU is stopped.
    fn pause_vcpus(&mut self);
    fn resume_vcpus(&mut self);
    /// Called with the vCPUs paused.
    fn reset(&mut self, cause: ShutdownCause) -> Result<(), String>;
    /// Presses the power button.
    fn powerdown(&mut self);
    fn wakeup(&mut self) {}
}

/// Run-state events, delivered to listeners on the loop thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Shutdown { cause: ShutdownCause },
    Reset { cause: ShutdownCause },
    Stop,
    Resume,
    Suspend,
    Wakeup,
    Powerdown,
    StateChanged { from: RunState, to: RunState },
}

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopExit {
    pub cause: ShutdownCause,
    /// The guest's exit status (debug-exit port), if it gave one.
    pub status: Option<i32>,
}

/// What a guest shutdown does: end the loop (standalone), or stop the VM in state Shutdown
/// and then end the loop, so that its caller can tear the machine down and serve on
/// (managed: the process outlives its guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownAction {
    Exit,
    EndRun,
}

type Listener = Box<dyn Fn(&Event) + Send>;

pub struct MainLoop {
    context: glib::MainContext,
    aio: AioContext,
    clocks: Arc<Clocks>,
    requests: Arc<Requests>,
    state: RunStateMachine,
    listeners: Vec<Listener>,
    shutdown_action: ShutdownAction,
}

impl MainLoop {
    /// Creates the loop with its own GLib context and starts watching the host signals.
    pub fn new() -> Result<MainLoop, String> {
        let context = glib::MainContext::new();
        let clocks = Arc::new(Clocks::new());
        let aio = AioContext::new(clocks.clone())
            .map_err(|e| format!("cannot create the loop's eventfd: {e}"))?;
        aio.attach(&context);
        let requests = Arc::new(Requests::new(aio.notifier()));
        signals::watch_host_signals(&aio, requests.clone())
            .map_err(|e| format!("cannot create the signalfd: {e}"))?;
        Ok(MainLoop {
            context,
            aio,
            clocks,
            requests,
            state: RunStateMachine::default(),
            listeners: Vec::new(),
            shutdown_action: ShutdownAction::Exit,
        })
    }

    pub fn requests(&self) -> Arc<Requests> {
        self.requests.clone()
    }

    pub fn aio(&self) -> &AioContext {
        &self.aio
    }

    pub fn clocks(&self) -> Arc<Clocks> {
        self.clocks.clone()
    }

    pub fn state(&self) -> RunState {
        self.state.current()
    }

    pub fn set_shutdown_action(&mut self, action: ShutdownAction) {
        self.shutdown_action = action;
    }

    pub fn add_event_listener(&mut self, listener: Listener) {
        self.listeners.push(listener);
    }

    fn emit(&self, event: Event) {
        for listener in &self.listeners {
            listener(&event);
        }
    }

    /// Moves to `to` if the transition table allows it; an illegal transition is a bug in the
    /// caller, logged and refused.
    fn set_state(&mut self, to: RunState) -> bool {
        match self.state.set(to) {
            Ok(from) => {
                self.clocks.enable_virtual(to == RunState::Running);
                if from != to {
                    self.emit(Event::StateChanged { from, to });
                }
                // Last: threads waiting for this state see what the listeners recorded.
                self.requests.publish_state(to);
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    /// Starts (or continues) the guest: vCPUs run, the virtual clock runs.
    pub fn vm_start(&mut self, machine: &mut dyn Machine) {
        if self.state() == RunState::Running {
            return;
        }
        if self.set_state(RunState::Running) {
            machine.resume_vcpus();
            self.emit(Event::Resume);
        }
    }

    /// Stops the guest in `state` (QEMU's vm_stop).
    pub fn vm_stop(&mut self, machine: &mut dyn Machine, state: RunState) {
        if self.state() == RunState::Running {
            machine.pause_vcpus();
            if self.set_state(state) {
                self.emit(Event::Stop);
            }
        } else {
            self.set_state(state);
        }
    }

    /// Before a new machine boots: a loop whose last machine stopped waits in prelaunch.
    pub fn prepare_boot(&mut self) {
        if matches!(self.state(), RunState::Shutdown | RunState::InternalError) {
            self.set_state(RunState::Prelaunch);
        }
    }

    /// Runs until a shutdown ends the loop.
    pub fn run(&mut self, machine: &mut dyn Machine) -> LoopExit {
        loop {
            if let Some(exit) = self.main_loop_should_exit(machine) {
                return exit;
            }
            self.main_loop_wait(true);
        }
    }

    /// One iteration: poll the sources (blocking if asked), dispatch what is ready.
    pub fn main_loop_wait(&self, blocking: bool) {
        self.context.iteration(blocking);
    }

    /// Handles pending run-state requests in QEMU's order; Some when the loop must end.
    /// Afterwards every request filed before the pass began counts as handled (one filed
    /// during the pass is marked after the next pass, which its filing triggers).
    pub fn main_loop_should_exit(&mut self, machine: &mut dyn Machine) -> Option<LoopExit> {
        let filed = self.requests.filed();
        let exit = self.handle_requests(machine);
        self.requests.mark_handled(filed);
        exit
    }

    fn handle_requests(&mut self, machine: &mut dyn Machine) -> Option<LoopExit> {
        let requests = self.requests.clone();
        // As QEMU's vm_stop(RUN_STATE_DEBUG): only a running VM stops for the debugger.
        if requests.take(|p| std::mem::take(&mut p.debug)) && self.state() == RunState::Running {
            self.vm_stop(machine, RunState::Debug);
        }
        if requests.take(|p| std::mem::take(&mut p.suspend)) && self.state() == RunState::Running {
            machine.pause_vcpus();
            self.set_state(RunState::Suspended);
            self.emit(Event::Suspend);
        }
        if let Some((cause, status)) = requests.take(|p| p.shutdown.take()) {
            let reboot = requests.take(|p| std::mem::take(&mut p.reboot_on_guest_shutdown));
            if reboot && cause == ShutdownCause::GuestShutdown && self.state() == RunState::Running
            {
                // The guest powered off after a reboot's power button: start it again.
                return self.reset(machine, cause);
            }
            self.emit(Event::Shutdown { cause });
            if let Some(exit) = self.shutdown(machine, cause, status) {
                return Some(exit);
            }
        }
        if let Some(cause) = requests.take(|p| p.reset.take()) {
            if requests.no_reboot() {
                self.emit(Event::Shutdown { cause });
                if let Some(exit) = self.shutdown(machine, cause, None) {
                    return Some(exit);
                }
            } else if let Some(exit) = self.reset(machine, cause) {
                return Some(exit);
            }
        }
        if requests.take(|p| std::mem::take(&mut p.wakeup)) && self.state() == RunState::Suspended {
            machine.wakeup();
            self.set_state(RunState::Running);
            machine.resume_vcpus();
            self.emit(Event::Wakeup);
        }
        if requests.take(|p| std::mem::take(&mut p.powerdown)) {
            self.emit(Event::Powerdown);
            machine.powerdown();
        }
        if let Some(state) = requests.take(|p| p.vmstop.take()) {
            self.vm_stop(machine, state);
        }
        if requests.take(|p| std::mem::take(&mut p.vm_start)) {
            self.vm_start(machine);
        }
        None
    }

    /// With ShutdownAction::EndRun the VM stops in state Shutdown before the loop ends, except
    /// for the host's own requests to quit (signals, the console's Ctrl-A x).
    fn shutdown(
        &mut self,
        machine: &mut dyn Machine,
        cause: ShutdownCause,
        status: Option<i32>,
    ) -> Option<LoopExit> {
        let host_quits = matches!(cause, ShutdownCause::HostSignal(_) | ShutdownCause::HostUi);
        match self.shutdown_action {
            ShutdownAction::EndRun if !host_quits => {
                self.vm_stop(machine, RunState::Shutdown);
                Some(LoopExit { cause, status })
            }
            _ => Some(LoopExit { cause, status }),
        }
    }

    /// QEMU's qemu_system_reset: pause, reset the machine, resume if it was running. A
    /// paused VM stays paused (reset, waiting for a resume); a stopped one waits in
    /// prelaunch for a start.
    fn reset(&mut self, machine: &mut dyn Machine, cause: ShutdownCause) -> Option<LoopExit> {
        let before = self.state();
        machine.pause_vcpus();
        if let Err(e) = machine.reset(cause) {
            log::error!("reset failed: {e}");
            return Some(LoopExit {
                cause: ShutdownCause::HostError,
                status: None,
            });
        }
        self.emit(Event::Reset { cause });
        match before {
            RunState::Running => machine.resume_vcpus(),
            RunState::Paused | RunState::Debug | RunState::Prelaunch => {}
            _ => {
                self.set_state(RunState::Prelaunch);
            }
        }
        None
    }
}

impl Drop for MainLoop {
    fn drop(&mut self) {
        self.aio.destroy();
    }
}

#[cfg(test)]
mod tests;
