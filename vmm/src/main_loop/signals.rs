//! Host signals as main-loop events (QEMU's qemu_signal_init): SIGINT, SIGTERM and SIGHUP are
//! blocked in every thread and read from a signalfd the loop watches, so their handling runs in
//! loop context rather than in a signal handler. Each becomes a shutdown request with cause
//! "host signal", except that SIGTERM can be set to press a running guest's power button
//! instead (`--on-sigterm=powerdown`). (The vCPU kick signal is a real-time signal and never
//! in this set.)

use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::aio::AioContext;
use super::requests::{Requests, ShutdownCause};
use super::runstate::RunState;

fn host_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Blocks the host signals in the calling thread. Call on the main thread before any other
/// thread starts, so every thread inherits the mask and only the signalfd sees them.
pub fn block_host_signals() -> nix::Result<()> {
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&host_signals()), None)
}

/// Watches the host signals through a signalfd on `aio`.
pub fn watch_host_signals(aio: &AioContext, requests: Arc<Requests>) -> nix::Result<()> {
    let signal_fd = SignalFd::with_flags(
        &host_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?;
    let fd = signal_fd.as_raw_fd();
    aio.set_fd_handler(
        fd,
        Some(Box::new(move || {
            while let Ok(Some(info)) = signal_fd.read_signal() {
                let signo = info.ssi_signo as i32;
                log::info!("received signal {signo}");
                let running = requests.state() == RunState::Running;
                if signo == libc::SIGTERM && requests.sigterm_powerdown() && running {
                    requests.powerdown_request();
                } else {
                    requests.shutdown_request(ShutdownCause::HostSignal(signo));
                }
            }
        })),
        None,
    );
    Ok(())
}
