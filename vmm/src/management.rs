//! The bridge between the management server (mgmt) and the main loop. Management calls never
//! touch vCPUs or devices: they file run-state requests and wait for the loop to publish the
//! resulting state. Main-loop events come back here and go out as libvirt lifecycle events.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mgmt::cpuset::CpuSet;
use mgmt::remote::protocol::{DomainState, Lifecycle};
use mgmt::remote::{
    CpuTimes, DiskStats, DomainRef, DomainStatus, InterfaceStats, RemoteServer, VcpuInfo,
};
use mgmt::rpc::error::{code as error_code, domain as error_domain};
use mgmt::rpc::{RemoteError, StreamEndpoint, StreamWaker};

use crate::config::VmConfig;
use crate::console_stream::{ConsoleHub, OpenError};
use crate::device_manager::DeviceStats;
use crate::domain_xml::{disk_target, domain_xml, format_mac, LiveFacts};
use crate::main_loop::{Event, Requests, RunState, ShutdownCause, Ticket};
use crate::placement::CpuPinning;
use crate::vcpu::VcpuThreads;

/// How long a call waits for the main loop to carry out a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// virDomain*Reason values reported with the state.
const RUNNING_BOOTED: i32 = 1;
const RUNNING_UNPAUSED: i32 = 5;
const PAUSED_USER: i32 = 1;
const PAUSED_STARTING_UP: i32 = 11;
const SHUTOFF_SHUTDOWN: i32 = 1;
const SHUTOFF_DESTROYED: i32 = 2;
const SHUTOFF_CRASHED: i32 = 3;
const SHUTOFF_FAILED: i32 = 6;
const CRASHED_PANICKED: i32 = 1;

/// What the run state alone does not say.
struct Bookkeeping {
    /// The id of the current run (libvirt counts runs from 1); -1 while shut off.
    id: i32,
    runs: i32,
    running_reason: i32,
    shutoff_reason: i32,
    /// The cause of the shutdown being carried out (from Event::Shutdown).
    pending_cause: Option<ShutdownCause>,
}

pub struct ManagedDomain {
    config: VmConfig,
    requests: Arc<Requests>,
    pinning: Arc<CpuPinning>,
    /// For the NMI button.
    vcpus: VcpuThreads,
    stats: DeviceStats,
    /// The serial console's RPC side; None when the VM has no console (`--serial none`).
    console: Option<Arc<ConsoleHub>>,
    book: Mutex<Bookkeeping>,
    job: Mutex<()>,
}

pub(crate) fn invalid(message: &str) -> RemoteError {
    RemoteError::new(
        error_code::OPERATION_INVALID,
        error_domain::QEMU,
        format!("Requested operation is not valid: {message}"),
    )
}

/// Total CPU time of this process (all threads; vCPU threads dominate while the guest runs).
/// The process CPU clock is one system call with nanosecond resolution, cheaper than
/// getrusage, which also gathers what nobody reads here.
pub(crate) fn cpu_time_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, owned `now`.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// This binary, as `<emulator>` names it.
pub(crate) fn emulator_path() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "vmm".into())
}

/// Resident pages from /proc/self/statm's second field.
fn rss_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// utime and stime (clock ticks) from /proc/self/stat; the fields after the command name,
/// which may itself hold spaces and parentheses.
fn user_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // state is field 3; utime is 14
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(100)
}

/// A disk file's sizes for virDomainBlockInfo: what the guest sees (whole sectors), what the
/// file occupies, and its length.
fn disk_sizes(path: &std::path::Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => (m.len() / 512 * 512, m.blocks() * 512, m.len()),
        Err(_) => (0, 0, 0),
    }
}

pub(crate) fn operation_failed(message: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(
        error_code::OPERATION_FAILED,
        error_domain::QEMU,
        format!("operation failed: {message}"),
    )
}

fn invalid_arg(message: impl std::fmt::Display) -> RemoteError {
    RemoteError::new(
        error_code::INVALID_ARG,
        error_domain::QEMU,
        format!("invalid argument: {message}"),
    )
}

impl ManagedDomain {
    /// `runs_before`: how many runs the host has had (ids count runs from 1, across the
    /// process's machines, as libvirt's count across a domain's starts).
    pub fn new(
        config: &VmConfig,
        requests: Arc<Requests>,
        pinning: Arc<CpuPinning>,
        vcpus: VcpuThreads,
        stats: DeviceStats,
        console: Option<Arc<ConsoleHub>>,
        runs_before: i32,
    ) -> Arc<ManagedDomain> {
        Arc::new(ManagedDomain {
            config: config.clone(),
            requests,
            pinning,
            vcpus,
            stats,
            console,
            book: Mutex::new(Bookkeeping {
                id: -1,
                runs: runs_before,
                running_reason: RUNNING_BOOTED,
                shutoff_reason: SHUTOFF_SHUTDOWN,
                pending_cause: None,
            }),
            job: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// How the last run ended (virDomainShutoffReason).
    pub fn shutoff_reason(&self) -> i32 {
        self.book().shutoff_reason
    }

    /// The runs so far, this one included once it has booted.
    pub fn runs(&self) -> i32 {
        self.book().runs
    }

    fn book(&self) -> MutexGuard<'_, Bookkeeping> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn domain_ref(&self) -> DomainRef {
        DomainRef {
            name: self.config.name.clone(),
            uuid: self.config.uuid,
            id: self.book().id,
        }
    }

    fn state_and_reason(&self, state: RunState) -> (DomainState, i32) {
        let book = self.book();
        match state {
            RunState::Running => (DomainState::Running, book.running_reason),
            RunState::Paused | RunState::Debug => (DomainState::Paused, PAUSED_USER),
            RunState::Prelaunch => (DomainState::Paused, PAUSED_STARTING_UP),
            RunState::Suspended => (DomainState::PmSuspended, 0),
            RunState::Shutdown | RunState::InternalError => {
                (DomainState::Shutoff, book.shutoff_reason)
            }
            RunState::GuestPanicked => (DomainState::Crashed, CRASHED_PANICKED),
        }
    }

    /// One lifecycle operation at a time, like libvirt's domain job: a request filed by one
    /// call is handled before another call files the next.
    fn job(&self) -> MutexGuard<'_, ()> {
        self.job.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files a request, waits until the main loop has handled it and checks the state it left.
    fn carry_out(
        &self,
        file: impl FnOnce(&Requests) -> Ticket,
        expected: RunState,
        what: &str,
    ) -> Result<(), RemoteError> {
        let ticket = file(&self.requests);
        self.await_handled(ticket, expected, what)
    }

    /// Waits until the main loop has handled `ticket` and checks the state it left.
    fn await_handled(
        &self,
        ticket: Ticket,
        expected: RunState,
        what: &str,
    ) -> Result<(), RemoteError> {
        match self.requests.wait_handled(ticket, REQUEST_TIMEOUT) {
            Some(state) if state == expected => Ok(()),
            Some(state) => Err(RemoteError::new(
                error_code::OPERATION_FAILED,
                error_domain::QEMU,
                format!("operation failed: the VM did not {what} (it is {state})"),
            )),
            None => Err(RemoteError::new(
                error_code::OPERATION_TIMEOUT,
                error_domain::QEMU,
                format!("operation timed out: the VM did not {what}"),
            )),
        }
    }

    fn require_active(&self) -> Result<RunState, RemoteError> {
        let state = self.requests.state();
        if matches!(state, RunState::Shutdown | RunState::InternalError) {
            return Err(invalid("domain is not running"));
        }
        Ok(state)
    }

    /// Files a power-button request and waits until the loop has pressed it. Any state is
    /// fine then: a quick guest may already have powered off (or, for a reboot, restarted).
    fn press_power_button(
        &self,
        file: impl FnOnce(&Requests) -> Ticket,
    ) -> Result<(), RemoteError> {
        let ticket = file(&self.requests);
        match self.requests.wait_handled(ticket, REQUEST_TIMEOUT) {
            Some(_) => Ok(()),
            None => Err(RemoteError::new(
                error_code::OPERATION_TIMEOUT,
                error_domain::QEMU,
                "operation timed out: the power button was not pressed",
            )),
        }
    }

    /// libvirt refuses shutdown and reboot for a domain that is not running.
    fn require_running(&self) -> Result<(), RemoteError> {
        match self.require_active()? {
            RunState::Running => Ok(()),
            _ => Err(invalid("domain is not running")),
        }
    }

    /// The running VM's facts for its XML: the id and where its threads really run.
    fn live_facts(&self) -> LiveFacts {
        let everywhere = &self.pinning.policy().allowed;
        let vcpu_pins = (0..self.pinning.vcpu_count())
            .filter_map(|index| match self.pinning.vcpu_affinity(index) {
                Ok(cpus) if cpus != *everywhere => Some((index, cpus)),
                _ => None,
            })
            .collect();
        let emulator_pin = self
            .pinning
            .emulator_affinity()
            .ok()
            .filter(|cpus| cpus != everywhere);
        LiveFacts {
            id: Some(self.book().id).filter(|id| *id > 0),
            vcpu_pins,
            emulator_pin,
        }
    }

    /// Turns a main-loop event into libvirt lifecycle events. Runs on the main-loop thread.
    pub fn on_event(&self, server: &RemoteServer, event: &Event) {
        let lifecycle: Vec<Lifecycle> = match *event {
            Event::Shutdown { cause } => {
                self.book().pending_cause = Some(cause);
                Vec::new()
            }
            // A reset of a running guest is a reboot; one that prepares a start is not.
            Event::Reset { .. } if self.book().id != -1 => {
                // The guest boots again: libvirt reports a rebooted domain as "booted".
                self.book().running_reason = RUNNING_BOOTED;
                server.emit_reboot(&self.domain_ref());
                Vec::new()
            }
            Event::StateChanged { to, .. } => self.transition(to),
            _ => Vec::new(),
        };
        let domain = self.domain_ref();
        for event in lifecycle {
            server.emit_lifecycle(&domain, event);
        }
    }

    /// Bookkeeping and the lifecycle events of one run-state change.
    fn transition(&self, to: RunState) -> Vec<Lifecycle> {
        let mut book = self.book();
        let was_off = book.id == -1;
        match to {
            RunState::Running | RunState::Paused if was_off => {
                book.runs += 1;
                book.id = book.runs;
                book.running_reason = RUNNING_BOOTED;
                if to == RunState::Paused {
                    vec![Lifecycle::StartedBooted, Lifecycle::SuspendedPaused]
                } else {
                    vec![Lifecycle::StartedBooted]
                }
            }
            RunState::Running => {
                book.running_reason = RUNNING_UNPAUSED;
                vec![Lifecycle::ResumedUnpaused]
            }
            RunState::Paused | RunState::Debug => vec![Lifecycle::SuspendedPaused],
            RunState::Shutdown | RunState::InternalError => {
                book.id = -1;
                // As the pty of a QEMU that exits: the console's stream ends.
                if let Some(console) = &self.console {
                    console.end_session();
                }
                let (reason, events) = match book.pending_cause.take() {
                    Some(ShutdownCause::HostQmpQuit) => {
                        (SHUTOFF_DESTROYED, vec![Lifecycle::StoppedDestroyed])
                    }
                    Some(ShutdownCause::HostError) => {
                        (SHUTOFF_FAILED, vec![Lifecycle::StoppedFailed])
                    }
                    Some(ShutdownCause::GuestPanic) => (
                        SHUTOFF_CRASHED,
                        vec![Lifecycle::CrashedPanicked, Lifecycle::StoppedFailed],
                    ),
                    _ => (
                        SHUTOFF_SHUTDOWN,
                        vec![Lifecycle::ShutdownFinished, Lifecycle::StoppedShutdown],
                    ),
                };
                book.shutoff_reason = reason;
                events
            }
            _ => Vec::new(),
        }
    }
}

/// What the host (`host::Host`) asks of the running domain.
impl ManagedDomain {
    pub fn status(&self) -> DomainStatus {
        let (state, reason) = self.state_and_reason(self.requests.state());
        let memory_kib = self.config.memory / 1024;
        DomainStatus {
            domain: self.domain_ref(),
            state,
            reason,
            max_memory_kib: memory_kib,
            memory_kib,
            vcpus: u32::from(self.config.cpus),
            persistent: false,
        }
    }

    pub fn cpu_time_ns(&self) -> u64 {
        cpu_time_ns()
    }

    pub fn xml(&self, inactive: bool) -> String {
        let mut config = self.config.clone();
        config.no_reboot = self.requests.no_reboot();
        let live = (!inactive && self.status().is_active()).then(|| self.live_facts());
        domain_xml(&config, live.as_ref(), &emulator_path())
    }

    pub fn suspend(&self) -> Result<(), RemoteError> {
        let _job = self.job();
        match self.require_active()? {
            RunState::Running => {}
            RunState::Paused => return Ok(()),
            other => return Err(invalid(&format!("domain is {other}"))),
        }
        self.carry_out(
            |r| r.vmstop_request(RunState::Paused),
            RunState::Paused,
            "pause",
        )
    }

    pub fn resume(&self) -> Result<(), RemoteError> {
        let _job = self.job();
        match self.require_active()? {
            RunState::Paused | RunState::Debug | RunState::Prelaunch => {}
            RunState::Running => return Err(invalid("domain is already running")),
            other => return Err(invalid(&format!("domain is {other}"))),
        }
        self.carry_out(|r| r.vm_start_request(), RunState::Running, "resume")
    }

    /// Presses the power button and returns, as libvirt does: the guest may take its time,
    /// or ignore it (destroy still works).
    pub fn shutdown(&self) -> Result<(), RemoteError> {
        let _job = self.job();
        self.require_running()?;
        self.press_power_button(|r| r.powerdown_request())
    }

    /// libvirt's QEMU driver through ACPI: press the power button, and when the guest has
    /// powered off, reset and run it again (same domain id; a reboot event, not a stop).
    pub fn reboot(&self) -> Result<(), RemoteError> {
        let _job = self.job();
        self.require_running()?;
        self.press_power_button(|r| r.reboot_request())
    }

    pub fn reset(&self) -> Result<(), RemoteError> {
        let _job = self.job();
        let state = self.require_active()?;
        self.carry_out(
            |r| r.reset_request(ShutdownCause::HostQmpSystemReset),
            state,
            "reset",
        )
    }

    /// Stops the VM first and takes the job after, as libvirt kills before it begins the job:
    /// destroy never waits behind another call that is stuck.
    pub fn inject_nmi(&self) -> Result<(), RemoteError> {
        self.require_active()?;
        self.vcpus.inject_nmi().map_err(operation_failed)
    }

    pub fn destroy(&self) -> Result<(), RemoteError> {
        self.require_active()?;
        let ticket = self.requests.shutdown_request(ShutdownCause::HostQmpQuit);
        let _job = self.job();
        self.await_handled(ticket, RunState::Shutdown, "stop")
    }

    pub fn vcpu_info(&self) -> Result<Vec<VcpuInfo>, RemoteError> {
        (0..self.pinning.vcpu_count())
            .map(|index| {
                let stats = self.pinning.vcpu_stats(index).map_err(operation_failed)?;
                Ok(VcpuInfo {
                    number: index as u32,
                    cpu: stats.last_cpu,
                    cpu_time_ns: stats.cpu_time_ns,
                    affinity: self
                        .pinning
                        .vcpu_affinity(index)
                        .map_err(operation_failed)?,
                })
            })
            .collect()
    }

    pub fn vcpu_affinities(&self) -> Result<Vec<CpuSet>, RemoteError> {
        (0..self.pinning.vcpu_count())
            .map(|index| self.pinning.vcpu_affinity(index).map_err(operation_failed))
            .collect()
    }

    pub fn pin_vcpu(&self, vcpu: u32, cpus: &CpuSet) -> Result<(), RemoteError> {
        let _job = self.job();
        self.pinning.policy().check(cpus).map_err(invalid_arg)?;
        self.pinning
            .pin_vcpu(vcpu as usize, cpus)
            .map(drop)
            .map_err(operation_failed)
    }

    pub fn disks(&self) -> Vec<DiskStats> {
        self.config
            .disks
            .iter()
            .zip(&self.stats.disks)
            .enumerate()
            .map(|(index, (disk, stats))| {
                let c = stats.snapshot();
                let (capacity, allocation, physical) = disk_sizes(&disk.path);
                DiskStats {
                    target: disk_target(index),
                    path: disk.path.display().to_string(),
                    rd_reqs: c.rd_reqs,
                    rd_bytes: c.rd_bytes,
                    rd_total_ns: c.rd_total_ns,
                    wr_reqs: c.wr_reqs,
                    wr_bytes: c.wr_bytes,
                    wr_total_ns: c.wr_total_ns,
                    flush_reqs: c.flush_reqs,
                    flush_total_ns: c.flush_total_ns,
                    errors: c.errors,
                    capacity,
                    allocation,
                    physical,
                }
            })
            .collect()
    }

    pub fn interfaces(&self) -> Vec<InterfaceStats> {
        self.config
            .nets
            .iter()
            .zip(&self.stats.nets)
            .map(|(net, stats)| {
                let c = stats.snapshot();
                InterfaceStats {
                    target: net.tap.clone(),
                    mac: format_mac(&net.mac),
                    rx_bytes: c.rx_bytes,
                    rx_packets: c.rx_packets,
                    rx_errors: c.rx_errors,
                    rx_drops: c.rx_drops,
                    tx_bytes: c.tx_bytes,
                    tx_packets: c.tx_packets,
                    tx_errors: c.tx_errors,
                    tx_drops: c.tx_drops,
                }
            })
            .collect()
    }

    pub fn cpu_times(&self) -> CpuTimes {
        let (user, system) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| user_system_ticks(&s))
            .unwrap_or((0, 0));
        let ns_per_tick = 1_000_000_000 / ticks_per_second();
        CpuTimes {
            total_ns: cpu_time_ns(),
            user_ns: user * ns_per_tick,
            system_ns: system * ns_per_tick,
        }
    }

    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| rss_pages(&s))
            .map_or(0, |pages| pages * page_size() / 1024)
    }

    pub fn open_console(
        &self,
        device: Option<&str>,
        force: bool,
        waker: StreamWaker,
    ) -> Result<Arc<dyn StreamEndpoint>, RemoteError> {
        self.require_active()?;
        let console = self.console.as_ref().ok_or_else(|| {
            RemoteError::new(
                error_code::INTERNAL_ERROR,
                error_domain::QEMU,
                "internal error: cannot find default console device",
            )
        })?;
        // The one console is the first serial port, as the XML names it.
        if let Some(name) = device.filter(|d| !matches!(*d, "serial0" | "console0")) {
            return Err(RemoteError::new(
                error_code::INTERNAL_ERROR,
                error_domain::QEMU,
                format!("internal error: cannot find character device {name}"),
            ));
        }
        match console.open(force, waker) {
            Ok(session) => Ok(session),
            Err(OpenError::Busy) => Err(operation_failed(
                "Active console session exists for this domain",
            )),
            Err(OpenError::NoDevice) => Err(invalid("the console is not ready yet")),
        }
    }

    pub fn emulator_affinity(&self) -> Result<CpuSet, RemoteError> {
        self.pinning.emulator_affinity().map_err(operation_failed)
    }

    pub fn pin_emulator(&self, cpus: &CpuSet) -> Result<(), RemoteError> {
        let _job = self.job();
        self.pinning.policy().check(cpus).map_err(invalid_arg)?;
        self.pinning.pin_emulator(cpus).map_err(operation_failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libvirt's kill-then-job: destroy files its request while another call still holds the
    /// domain job, so the main loop stops the VM at once; only then does it wait for the job.
    #[test]
    fn destroy_files_its_request_before_waiting_for_the_job() {
        let notifier = crate::main_loop::notify::LoopNotifier::new().unwrap();
        let requests = Arc::new(Requests::new(notifier));
        requests.publish_state(RunState::Running);
        let policy = crate::placement::CpuTune::default()
            .resolve(1, &CpuSet::single(0), false)
            .unwrap();
        let pinning = CpuPinning::new(policy, crate::vcpu::VcpuThreads::none());
        let domain = ManagedDomain::new(
            &VmConfig::default(),
            requests.clone(),
            pinning,
            crate::vcpu::VcpuThreads::none(),
            DeviceStats::default(),
            None,
            0,
        );
        let stuck_call = domain.job();
        let destroyer = {
            let domain = domain.clone();
            std::thread::spawn(move || domain.destroy())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while requests.filed() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "destroy waited behind the job"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The main loop acts on the request; the stuck call finishes.
        requests.publish_state(RunState::Shutdown);
        requests.mark_handled(requests.filed());
        drop(stuck_call);
        assert!(destroyer.join().unwrap().is_ok());
    }

    #[test]
    fn statm_and_stat_are_parsed() {
        assert_eq!(rss_pages("2000 150 80 1 0 300 0\n"), Some(150));
        let stat = "42 (vmm (x) y) S 1 42 42 0 -1 4194560 1 0 0 0 250 125 0 0 20 0 5";
        assert_eq!(user_system_ticks(stat), Some((250, 125)));
        assert_eq!(user_system_ticks("garbage"), None);
    }
}
