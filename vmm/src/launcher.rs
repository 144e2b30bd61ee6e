//! A managed process's machines: the main thread builds one when the host asks (a start, a
//! create), runs the loop until the guest is gone, tears the machine down and waits on the
//! loop for the next, as a libvirt virt-launcher pod hosts one VM over its life. What a
//! machine attaches to the loop (queue notifiers, the console's input) goes with it.

use std::io::Write;
use std::os::fd::RawFd;
use std::sync::Arc;

use devices::legacy::SerialOutput;

use crate::cli;
use crate::config::{SerialConfig, SigtermAction, VmConfig};
use crate::console::{self, StdinForwarder};
use crate::console_stream::ConsoleHub;
use crate::host::{BootRequest, Host};
use crate::machine::Machine;
use crate::main_loop::{self, LoopExit, MainLoop, RunState, ShutdownAction, ShutdownCause};
use crate::management::ManagedDomain;

/// The console's output: each guest byte is one write(2), unbuffered, like the peers.
pub fn open_serial_output(config: &VmConfig) -> Result<Box<dyn Write + Send>, String> {
    open_serial(config, false)
}

/// `append`: a later run of the same process adds to the file its first run created, so
/// the console's log keeps every boot.
fn open_serial(config: &VmConfig, append: bool) -> Result<Box<dyn Write + Send>, String> {
    if let (SerialConfig::File(path), true) = (&config.serial, append) {
        return std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map(|f| Box::new(f) as Box<dyn Write + Send>)
            .map_err(|e| {
                format!(
                    "--serial file={}: {}",
                    path.display(),
                    cli::describe_io_error(&e)
                )
            });
    }
    let output = match &config.serial {
        SerialConfig::Stdio => SerialOutput::Stdout,
        SerialConfig::File(path) => SerialOutput::File(path.clone()),
        SerialConfig::None => SerialOutput::Sink,
    };
    output.open().map_err(|e| match &config.serial {
        SerialConfig::File(path) => format!(
            "--serial file={}: {}",
            path.display(),
            cli::describe_io_error(&e.source)
        ),
        _ => format!(
            "cannot use stdout for the console: {}",
            cli::describe_io_error(&e.source)
        ),
    })
}

/// The host's own requests to quit end the process; anything else ends only the run.
fn host_quits(cause: ShutdownCause) -> bool {
    matches!(cause, ShutdownCause::HostSignal(_) | ShutdownCause::HostUi)
}

/// What the loop drives while there is no machine: nothing.
struct NoMachine;

impl main_loop::Machine for NoMachine {
    fn pause_vcpus(&mut self) {}
    fn resume_vcpus(&mut self) {}
    fn reset(&mut self, _: ShutdownCause) -> Result<(), String> {
        Ok(())
    }
    fn powerdown(&mut self) {}
}

/// One machine and what it attached to the loop.
pub struct Run {
    machine: Machine,
    /// Loop watches that end with the machine (stdin, the UART's drained signal).
    watched_fds: Vec<RawFd>,
    /// The SIGTERM action its configuration asked for.
    sigterm_powerdown: bool,
}

pub struct Launcher {
    main_loop: MainLoop,
    host: Arc<Host>,
    console: Arc<ConsoleHub>,
    /// Whether a `--serial stdio` guest reads the process's stdin (`vmm run`; `vmm serve`
    /// leaves stdin alone: its console is `virsh console`).
    stdin_console: bool,
    /// Whether stdin is a terminal in raw mode; known once a run has attached it.
    stdin_is_terminal: Option<bool>,
    /// Console files a run has written: the next runs append.
    console_files: std::collections::HashSet<std::path::PathBuf>,
}

impl Launcher {
    pub fn new(
        mut main_loop: MainLoop,
        host: Arc<Host>,
        console: Arc<ConsoleHub>,
        stdin_console: bool,
    ) -> Launcher {
        main_loop.set_shutdown_action(ShutdownAction::EndRun);
        let events = host.clone();
        main_loop.add_event_listener(Box::new(move |event| events.on_event(event)));
        Launcher {
            main_loop,
            host,
            console,
            stdin_console,
            stdin_is_terminal: None,
            console_files: Default::default(),
        }
    }

    /// Builds the machine `config` describes and makes it the host's running domain; its
    /// vCPUs wait in prelaunch until `start`.
    pub fn build(&mut self, config: &VmConfig) -> Result<Run, String> {
        let requests = self.main_loop.requests();
        let with_console = config.serial != SerialConfig::None;
        let append = match &config.serial {
            SerialConfig::File(path) => !self.console_files.insert(path.clone()),
            _ => false,
        };
        let serial_out = open_serial(config, append)?;
        let serial_out = if with_console {
            self.console.tee(serial_out)
        } else {
            serial_out
        };
        let machine = Machine::new(config, self.main_loop.aio(), requests.clone(), serial_out)
            .map_err(|e| e.to_string())?;
        let console = with_console.then(|| {
            self.console.attach_serial(machine.serial().clone());
            self.console.clone()
        });
        let domain = ManagedDomain::new(
            config,
            requests.clone(),
            machine.pinning().clone(),
            machine.vcpu_threads(),
            machine.device_stats().clone(),
            console.clone(),
            self.host.runs(),
        );
        let mut run = Run {
            machine,
            watched_fds: Vec::new(),
            sigterm_powerdown: config.on_sigterm == SigtermAction::Powerdown,
        };
        if let Err(e) = self.attach_console_input(&mut run, config, console) {
            self.unwatch(&run);
            return Err(e);
        }
        requests.set_no_reboot(config.no_reboot);
        self.host.run_started(domain);
        Ok(run)
    }

    /// Feeds the UART from stdin (if asked) and from `virsh console`, resuming each when the
    /// guest drains its receive FIFO.
    fn attach_console_input(
        &mut self,
        run: &mut Run,
        config: &VmConfig,
        console: Option<Arc<ConsoleHub>>,
    ) -> Result<(), String> {
        let aio = self.main_loop.aio();
        let mut listeners: Vec<Box<dyn FnMut()>> = Vec::new();
        if self.stdin_console && config.serial == SerialConfig::Stdio {
            let is_terminal = match self.stdin_is_terminal {
                Some(known) => known,
                None => *self.stdin_is_terminal.insert(console::enter_raw_mode()?),
            };
            let forwarder = StdinForwarder::new(
                run.machine.serial().clone(),
                self.main_loop.requests(),
                is_terminal,
            );
            listeners.push(console::attach_stdin(aio, forwarder));
            run.watched_fds.push(libc::STDIN_FILENO);
        }
        if let Some(hub) = console {
            listeners.push(Box::new(move || hub.input_drained()));
        }
        let drained = run
            .machine
            .serial_input_drained()
            .try_clone()
            .map_err(|e| format!("console: {e}"))?;
        run.watched_fds
            .extend(console::on_input_drained(aio, drained, listeners));
        Ok(())
    }

    /// Lets the built machine run, or leaves it paused.
    pub fn start(&mut self, run: &mut Run, paused: bool) {
        let requests = self.main_loop.requests();
        requests.set_sigterm_powerdown(run.sigterm_powerdown);
        self.main_loop.prepare_boot();
        if paused {
            self.main_loop.vm_stop(&mut run.machine, RunState::Paused);
        } else {
            self.main_loop.vm_start(&mut run.machine);
        }
    }

    /// Serves until the host quits (a signal): runs `first`, then each machine the host
    /// asks for. Returns how the loop ended.
    pub fn serve(&mut self, mut current: Option<Run>) -> LoopExit {
        loop {
            if let Some(mut run) = current.take() {
                let exit = self.main_loop.run(&mut run.machine);
                if !host_quits(exit.cause)
                    && !matches!(
                        self.main_loop.state(),
                        RunState::Shutdown | RunState::InternalError
                    )
                {
                    // The loop gave up on the machine (a reset failed): it is stopped.
                    self.main_loop
                        .vm_stop(&mut run.machine, RunState::InternalError);
                }
                self.tear_down(run);
                if host_quits(exit.cause) {
                    return exit;
                }
            }
            match self.wait_for_boot() {
                Ok(boot) => current = self.boot(boot),
                Err(exit) => return exit,
            }
        }
    }

    /// Runs the loop with no machine until the host asks for one or quits.
    fn wait_for_boot(&mut self) -> Result<BootRequest, LoopExit> {
        loop {
            if let Some(exit) = self.main_loop.main_loop_should_exit(&mut NoMachine) {
                if host_quits(exit.cause) {
                    return Err(exit);
                }
            }
            if let Some(boot) = self.host.take_boot() {
                return Ok(boot);
            }
            self.main_loop.main_loop_wait(true);
        }
    }

    /// Builds and starts the machine a call asked for, and tells the call how it went.
    fn boot(&mut self, boot: BootRequest) -> Option<Run> {
        match self.build(&boot.config) {
            Ok(mut run) => {
                self.start(&mut run, boot.paused);
                self.host.boot_finished(Ok(()));
                Some(run)
            }
            Err(e) => {
                log::warn!("domain '{}' did not start: {e}", boot.config.name);
                self.host.boot_finished(Err(e));
                None
            }
        }
    }

    fn unwatch(&self, run: &Run) {
        for fd in &run.watched_fds {
            self.main_loop.aio().set_fd_handler(*fd, None, None);
        }
    }

    /// Stops the vCPUs, unwatches what the machine attached, and frees it.
    fn tear_down(&mut self, mut run: Run) {
        run.machine.stop();
        self.unwatch(&run);
        self.console.detach_serial();
        drop(run);
        self.host.run_ended();
        // No guest to press the power button of: SIGTERM ends the process again.
        self.main_loop.requests().set_sigterm_powerdown(false);
    }
}
