//! `vmm`: the standalone launcher. `vmm run` boots one guest and exits when it ends (or,
//! managed, serves until a signal); `vmm serve` serves the libvirt protocol and boots what
//! clients create or define.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vmm::cli::{Cli, Command, RunArgs, ServeArgs};
use vmm::config::{RunConfig, SerialConfig, SigtermAction, VmConfig};
use vmm::console::{self, StdinForwarder};
use vmm::console_stream::ConsoleHub;
use vmm::host::Host;
use vmm::launcher::{open_serial_output, Launcher};
use vmm::machine::Machine;
use vmm::main_loop::{signals, LoopExit, MainLoop, ShutdownCause};
use vmm::placement::VcpuPlacement;
use vmm::seccomp::ThreadKind;
use vmm::state_dir::StateDir;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => ExitCode::from(run(&args)),
        Command::Serve(args) => ExitCode::from(serve(&args)),
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
    if let Err(e) = vmm::seccomp::init(args.seccomp) {
        return fail(&e);
    }
    let main_loop = match start_main_loop() {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    match management {
        Some(server_config) => run_managed(main_loop, config, server_config, args.vcpu_placement),
        None => run_standalone(main_loop, &config),
    }
}

/// The main loop, with the host signals blocked first: every thread inherits the blocked
/// set, so the signals reach only the loop's signalfd.
fn start_main_loop() -> Result<MainLoop, String> {
    signals::block_host_signals().map_err(|e| e.to_string())?;
    MainLoop::new().map_err(|e| format!("main loop: {e}"))
}

/// No management: the guest's end is the process's end.
fn run_standalone(mut main_loop: MainLoop, config: &VmConfig) -> u8 {
    let serial_out = match open_serial_output(config) {
        Ok(out) => out,
        Err(e) => return fail(&e),
    };
    let requests = main_loop.requests();
    requests.set_no_reboot(config.no_reboot);
    requests.set_sigterm_powerdown(config.on_sigterm == SigtermAction::Powerdown);
    let mut machine = match Machine::new(config, main_loop.aio(), requests.clone(), serial_out) {
        Ok(m) => m,
        Err(e) => return fail(&e.to_string()),
    };
    let mut drain_listeners: Vec<Box<dyn FnMut()>> = Vec::new();
    if config.serial == SerialConfig::Stdio {
        let is_terminal = match console::enter_raw_mode() {
            Ok(t) => t,
            Err(e) => return fail(&e),
        };
        let forwarder = StdinForwarder::new(machine.serial().clone(), requests, is_terminal);
        drain_listeners.push(console::attach_stdin(main_loop.aio(), forwarder));
    }
    match machine.serial_input_drained().try_clone() {
        Ok(drained) => {
            console::on_input_drained(main_loop.aio(), drained, drain_listeners);
        }
        Err(e) => return fail(&format!("console: {e}")),
    }
    main_loop.vm_start(&mut machine);
    vmm::seccomp::install(ThreadKind::Main);
    let exit = main_loop.run(&mut machine);
    machine.stop();
    console::restore_terminal();
    exit_status(&exit)
}

/// Managed: the CLI's VM is the host's defined domain (kept in memory), booted at once. A
/// guest poweroff or a destroy leaves it shut off and the process serving until a start or
/// a host signal.
fn run_managed(
    main_loop: MainLoop,
    config: VmConfig,
    server_config: mgmt::ServerConfig,
    placement: VcpuPlacement,
) -> u8 {
    let host = Host::new(main_loop.requests(), None, Some(config.clone()), placement);
    let mut launcher = Launcher::new(main_loop, host.clone(), ConsoleHub::new(), true);
    let mut first = match launcher.build(&config) {
        Ok(run) => run,
        Err(e) => return fail(&e),
    };
    let uri = virsh_uri(&server_config);
    // Kept alive until the VMM exits; dropping it removes the sockets.
    let _server = match start_server(&host, server_config) {
        Ok(server) => server,
        Err(e) => return fail(&e),
    };
    eprintln!("vmm: managing domain '{}': {uri}", config.name);
    launcher.start(&mut first, false);
    vmm::seccomp::install(ThreadKind::Main);
    let exit = launcher.serve(Some(first));
    console::restore_terminal();
    exit_status(&exit)
}

/// `vmm serve`: no domain until a client creates or defines one (or the state directory
/// holds one).
fn serve(args: &ServeArgs) -> u8 {
    vmm::logger::init(args.log_level);
    let Some(server_config) = args.mgmt.server_config() else {
        return fail("vmm serve needs --mgmt-socket PATH");
    };
    if let Err(e) = vmm::seccomp::init(args.seccomp) {
        return fail(&e);
    }
    let store = match args.state_dir.as_deref().map(StateDir::open).transpose() {
        Ok(store) => store,
        Err(e) => return fail(&e),
    };
    let defined = match &store {
        Some(store) => match Host::load_definition(store, args.vcpu_placement) {
            Ok(defined) => defined,
            Err(e) => return fail(&e),
        },
        None => None,
    };
    let main_loop = match start_main_loop() {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    if let Some(config) = &defined {
        eprintln!("vmm: domain '{}' is defined", config.name);
    }
    let host = Host::new(main_loop.requests(), store, defined, args.vcpu_placement);
    let mut launcher = Launcher::new(main_loop, host.clone(), ConsoleHub::new(), false);
    let uri = virsh_uri(&server_config);
    let _server = match start_server(&host, server_config) {
        Ok(server) => server,
        Err(e) => return fail(&e),
    };
    eprintln!("vmm: serving libvirt: {uri}");
    vmm::seccomp::install(ThreadKind::Main);
    let exit = launcher.serve(None);
    exit_status(&exit)
}

/// Serves the libvirt protocol for `host`.
fn start_server(
    host: &Arc<Host>,
    server_config: mgmt::ServerConfig,
) -> Result<Arc<mgmt::RemoteServer>, String> {
    let server = Arc::new(
        mgmt::RemoteServer::start(server_config, host.clone())
            .map_err(|e| format!("--mgmt-socket: {e}"))?,
    );
    host.set_server(server.clone());
    Ok(server)
}

/// How to reach the server with virsh.
fn virsh_uri(server_config: &mgmt::ServerConfig) -> String {
    format!(
        "virsh -c 'qemu+unix:///system?socket={}'",
        server_config.socket.display()
    )
}

fn fail(message: &str) -> u8 {
    console::restore_terminal();
    eprintln!("vmm: {message}");
    1
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
