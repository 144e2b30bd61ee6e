//! `vmm`: the standalone launcher. `vmm run` boots one guest and exits when it ends.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use devices::legacy::SerialOutput;
use vmm::cli::{self, Cli, Command, RunArgs};
use vmm::config::{RunConfig, SerialConfig, SigtermAction, VmConfig};
use vmm::console::{self, StdinForwarder};
use vmm::console_stream::ConsoleHub;
use vmm::machine::Machine;
use vmm::main_loop::{signals, LoopExit, MainLoop, Requests, ShutdownAction, ShutdownCause};
use vmm::management::ManagedDomain;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => ExitCode::from(run(&args)),
    }
}

/// Runs one VM; returns the process exit status.
fn run(args: &RunArgs) -> u8 {
    let RunConfig {
        vm: config,
        management,
        log_level,
    } = match args.to_run_config() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    vmm::logger::init(log_level);
    // Before any thread exists, so that every thread inherits the blocked set and the
    // signals reach only the main loop's signalfd.
    if let Err(e) = signals::block_host_signals() {
        return fail(&e.to_string());
    }
    let serial_out = match open_serial_output(&config) {
        Ok(out) => out,
        Err(e) => return fail(&e),
    };
    // A managed VM's console is also served over RPC (virsh console), unless it has none.
    let console_hub =
        (management.is_some() && config.serial != SerialConfig::None).then(ConsoleHub::new);
    let serial_out = match &console_hub {
        Some(hub) => hub.tee(serial_out),
        None => serial_out,
    };
    let mut main_loop = match MainLoop::new() {
        Ok(l) => l,
        Err(e) => return fail(&format!("main loop: {e}")),
    };
    let requests = main_loop.requests();
    requests.set_no_reboot(config.no_reboot);
    requests.set_sigterm_powerdown(config.on_sigterm == SigtermAction::Powerdown);
    let mut machine = match Machine::new(&config, main_loop.aio(), requests.clone(), serial_out) {
        Ok(m) => m,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(hub) = &console_hub {
        hub.attach_serial(machine.serial().clone());
    }
    // Kept alive until the VMM exits; dropping it removes the sockets.
    let _management = match management {
        Some(server_config) => {
            let console = console_hub.clone();
            match start_management(&mut main_loop, &config, &machine, server_config, console) {
                Ok(server) => Some(server),
                Err(e) => return fail(&e),
            }
        }
        None => None,
    };
    let mut drain_listeners: Vec<Box<dyn FnMut()>> = Vec::new();
    if config.serial == SerialConfig::Stdio {
        match attach_stdin(&main_loop, &machine, requests) {
            Ok(listener) => drain_listeners.push(listener),
            Err(e) => return fail(&e),
        }
    }
    if let Some(hub) = console_hub {
        drain_listeners.push(Box::new(move || hub.input_drained()));
    }
    match machine.serial_input_drained().try_clone() {
        Ok(drained) => console::on_input_drained(main_loop.aio(), drained, drain_listeners),
        Err(e) => return fail(&format!("console: {e}")),
    }
    main_loop.vm_start(&mut machine);
    let exit = main_loop.run(&mut machine);
    machine.stop();
    console::restore_terminal();
    exit_status(&exit)
}

fn fail(message: &str) -> u8 {
    console::restore_terminal();
    eprintln!("vmm: {message}");
    1
}

/// The console's output: each guest byte is one write(2), unbuffered, like the peers.
fn open_serial_output(config: &VmConfig) -> Result<Box<dyn Write + Send>, String> {
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

/// Feeds stdin to the UART from the main loop; the terminal goes raw if it is one. Returns
/// what to run when the guest drains the UART's input.
fn attach_stdin(
    main_loop: &MainLoop,
    machine: &Machine,
    requests: Arc<Requests>,
) -> Result<Box<dyn FnMut()>, String> {
    let is_terminal = console::enter_raw_mode()?;
    let forwarder = StdinForwarder::new(machine.serial().clone(), requests, is_terminal);
    Ok(console::attach_stdin(main_loop.aio(), forwarder))
}

/// Serves the libvirt protocol. A managed VM outlives its guest: a guest poweroff or a
/// destroy leaves it shut off and the process serving until a start or a host signal.
fn start_management(
    main_loop: &mut MainLoop,
    config: &VmConfig,
    machine: &Machine,
    server_config: mgmt::ServerConfig,
    console: Option<Arc<ConsoleHub>>,
) -> Result<Arc<mgmt::RemoteServer>, String> {
    let socket = server_config.socket.clone();
    let domain = ManagedDomain::new(
        config,
        main_loop.requests(),
        machine.pinning().clone(),
        machine.vcpu_threads(),
        machine.device_stats().clone(),
        console,
    );
    let server = Arc::new(
        mgmt::RemoteServer::start(server_config, domain.clone())
            .map_err(|e| format!("--mgmt-socket: {e}"))?,
    );
    main_loop.set_shutdown_action(ShutdownAction::Pause);
    main_loop.add_event_listener(domain.event_listener(server.clone()));
    eprintln!(
        "vmm: managing domain '{}': virsh -c 'qemu+unix:///system?socket={}'",
        config.name,
        socket.display()
    );
    Ok(server)
}

/// How the guest ended, as a process exit status.
fn exit_status(exit: &LoopExit) -> u8 {
    match exit.cause {
        ShutdownCause::HostSignal(signo) => {
            eprintln!("vmm: terminating on signal {signo}");
            0
        }
        ShutdownCause::HostError => exit.status.unwrap_or(1).clamp(0, 255) as u8,
        ShutdownCause::GuestPanic => 1,
        _ => exit.status.unwrap_or(0).clamp(0, 255) as u8,
    }
}
