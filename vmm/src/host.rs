//! The one-domain host the management server talks to, as libvirt's QEMU driver is for
//! libvirtd: it keeps the domain's definition (persistent, in the state directory, or only
//! in memory) and its running instance, and decides create, define, start and undefine.
//! Booting is the main thread's work (the machine lives on the loop): a call hands its
//! configuration over and waits until the machine runs or failed to build. Everything else
//! a call asks goes to the running domain (`ManagedDomain`).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mgmt::cpuset::CpuSet;
use mgmt::remote::protocol::{DomainState, Lifecycle};
use mgmt::remote::{
    CpuTimes, DiskStats, DomainRef, DomainStatus, Hypervisor, InterfaceStats, RemoteServer,
    VcpuInfo,
};
use mgmt::rpc::error::{code as error_code, domain as error_domain};
use mgmt::rpc::{RemoteError, StreamEndpoint, StreamWaker};

use crate::config::{VmConfig, MAX_VCPUS};
use crate::domain_xml::domain_xml;
use crate::main_loop::{Event, Requests};
use crate::management::{cpu_time_ns, emulator_path, invalid, operation_failed, ManagedDomain};
use crate::placement::VcpuPlacement;
use crate::state_dir::StateDir;
use crate::xml_config::{read_domain, DomainDocument};

/// How long a start waits for the main thread to build and boot the machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// virDomainShutoffReason of a defined domain that has not run: unknown.
const SHUTOFF_UNKNOWN: i32 = 0;

/// A start for the main thread: the machine to build and whether it waits paused.
pub struct BootRequest {
    pub config: VmConfig,
    pub paused: bool,
}

/// The boot handed over and, once the main thread is done, how it went.
#[derive(Default)]
struct Handover {
    pending: Option<BootRequest>,
    outcome: Option<Result<(), String>>,
}

/// What the host holds. Lock order: `job`, then `slot`, then a domain's own locks.
struct Slot {
    /// The persistent definition: what the next start runs. None: nothing is defined (a
    /// running domain without one is transient).
    defined: Option<VmConfig>,
    /// The machine's domain, from boot until the main thread has torn the machine down.
    run: Option<Arc<ManagedDomain>>,
    /// How the last run ended, reported while a defined domain is shut off.
    last_shutoff_reason: i32,
    /// Runs so far: domain ids count them.
    runs: i32,
}

pub struct Host {
    requests: Arc<Requests>,
    store: Option<StateDir>,
    placement: VcpuPlacement,
    slot: Mutex<Slot>,
    handover: Mutex<Handover>,
    boot_done: Condvar,
    /// One create, define, start or undefine at a time (libvirt's domain job).
    job: Mutex<()>,
    /// For the events define and undefine send; set once the server runs.
    server: OnceLock<Arc<RemoteServer>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(code: i32, message: String) -> RemoteError {
    RemoteError::new(code, error_domain::QEMU, message)
}

/// The refusal of a second domain.
fn one_domain(existing: &str, asked: &str) -> RemoteError {
    error(
        error_code::OPERATION_UNSUPPORTED,
        format!(
            "Operation not supported: this host runs one domain; '{existing}' exists, so '{asked}' cannot be added"
        ),
    )
}

/// libvirt's words for XML it cannot use: malformed (XML error) or asking for what this
/// VMM does not have (unsupported configuration).
fn xml_refused(message: String) -> RemoteError {
    if message.starts_with("malformed XML") || message.starts_with("the document is") {
        error(error_code::XML_ERROR, format!("XML error: {message}"))
    } else {
        error(
            error_code::CONFIG_UNSUPPORTED,
            format!("unsupported configuration: {message}"),
        )
    }
}

fn not_running() -> RemoteError {
    invalid("domain is not running")
}

impl Host {
    /// `defined`: the persistent domain to serve from the start (from the state directory,
    /// or the CLI's for `vmm run`); `store`: where definitions are kept, if anywhere.
    pub fn new(
        requests: Arc<Requests>,
        store: Option<StateDir>,
        defined: Option<VmConfig>,
        placement: VcpuPlacement,
    ) -> Arc<Host> {
        Arc::new(Host {
            requests,
            store,
            placement,
            slot: Mutex::new(Slot {
                defined,
                run: None,
                last_shutoff_reason: SHUTOFF_UNKNOWN,
                runs: 0,
            }),
            handover: Mutex::default(),
            boot_done: Condvar::new(),
            job: Mutex::new(()),
            server: OnceLock::new(),
        })
    }

    /// Reads the definition a state directory holds, checked as a define would check it.
    pub fn load_definition(
        store: &StateDir,
        placement: VcpuPlacement,
    ) -> Result<Option<VmConfig>, String> {
        let Some(stored) = store.load()? else {
            return Ok(None);
        };
        let document = read_domain(&stored.xml, placement)
            .map_err(|e| format!("the stored domain '{}': {e}", stored.name))?;
        Ok(Some(document.config))
    }

    pub fn set_server(&self, server: Arc<RemoteServer>) {
        let _ = self.server.set(server);
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        lock(&self.slot)
    }

    fn emit(&self, domain: &DomainRef, event: Lifecycle) {
        if let Some(server) = self.server.get() {
            server.emit_lifecycle(domain, event);
        }
    }

    // --- The main thread's side ---

    /// A boot a call handed over, if any.
    pub fn take_boot(&self) -> Option<BootRequest> {
        lock(&self.handover).pending.take()
    }

    /// Tells the waiting call how its boot went.
    pub fn boot_finished(&self, outcome: Result<(), String>) {
        lock(&self.handover).outcome = Some(outcome);
        self.boot_done.notify_all();
    }

    /// The number of runs so far (the next run's id is one more).
    pub fn runs(&self) -> i32 {
        self.slot().runs
    }

    /// A machine was built: calls now reach its domain.
    pub fn run_started(&self, domain: Arc<ManagedDomain>) {
        self.slot().run = Some(domain);
    }

    /// The machine is gone: a transient domain with it, a defined one is shut off.
    pub fn run_ended(&self) {
        let mut slot = self.slot();
        if let Some(run) = slot.run.take() {
            slot.last_shutoff_reason = run.shutoff_reason();
            slot.runs = slot.runs.max(run.runs());
        }
    }

    /// Main-loop events go to the running domain, which turns them into lifecycle events.
    pub fn on_event(&self, event: &Event) {
        let run = self.slot().run.clone();
        if let (Some(run), Some(server)) = (run, self.server.get()) {
            run.on_event(server, event);
        }
    }

    // --- The calls' side ---

    /// The running domain, if it runs (its machine may linger a moment after it stopped).
    fn active_run(&self) -> Option<Arc<ManagedDomain>> {
        self.slot()
            .run
            .clone()
            .filter(|run| run.status().is_active())
    }

    fn running(&self) -> Result<Arc<ManagedDomain>, RemoteError> {
        self.active_run().ok_or_else(not_running)
    }

    /// Hands a boot to the main thread and waits for its outcome.
    fn boot(&self, config: VmConfig, paused: bool) -> Result<Arc<ManagedDomain>, RemoteError> {
        {
            let mut handover = lock(&self.handover);
            handover.pending = Some(BootRequest { config, paused });
            handover.outcome = None;
        }
        self.requests.wake_loop();
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut handover = lock(&self.handover);
        let outcome = loop {
            if let Some(outcome) = handover.outcome.take() {
                break outcome;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                handover.pending = None;
                return Err(error(
                    error_code::OPERATION_TIMEOUT,
                    "operation timed out: the machine did not start".into(),
                ));
            }
            handover = self
                .boot_done
                .wait_timeout(handover, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        drop(handover);
        outcome.map_err(operation_failed)?;
        self.active_run()
            .ok_or_else(|| operation_failed("the domain stopped as soon as it started"))
    }

    /// Reads domain XML as create and define take it.
    fn read(&self, xml: &str) -> Result<DomainDocument, RemoteError> {
        read_domain(xml, self.placement).map_err(xml_refused)
    }

    /// The domain this host already has (running or defined): its name and UUID.
    fn identity(slot: &Slot) -> Option<(String, [u8; 16])> {
        let run = slot.run.as_ref().filter(|run| run.status().is_active());
        match (run, &slot.defined) {
            (Some(run), _) => Some((run.config().name.clone(), run.config().uuid)),
            (None, Some(defined)) => Some((defined.name.clone(), defined.uuid)),
            (None, None) => None,
        }
    }

    /// Refuses a document that describes another domain than the one here; one without a
    /// UUID takes the existing domain's.
    fn same_domain(slot: &Slot, document: &mut DomainDocument) -> Result<(), RemoteError> {
        let config = &mut document.config;
        if let Some((name, uuid)) = Self::identity(slot) {
            if name != config.name || (document.has_uuid && uuid != config.uuid) {
                return Err(one_domain(&name, &config.name));
            }
            config.uuid = uuid;
        }
        Ok(())
    }

    fn shutoff_status(config: &VmConfig, reason: i32) -> DomainStatus {
        let memory_kib = config.memory / 1024;
        DomainStatus {
            domain: DomainRef {
                name: config.name.clone(),
                uuid: config.uuid,
                id: -1,
            },
            state: DomainState::Shutoff,
            reason,
            max_memory_kib: memory_kib,
            memory_kib,
            vcpus: u32::from(config.cpus),
            persistent: true,
        }
    }
}

impl Hypervisor for Host {
    fn max_vcpus(&self) -> u32 {
        u32::from(MAX_VCPUS)
    }

    fn status(&self) -> Option<DomainStatus> {
        let slot = self.slot();
        let mut reason = slot.last_shutoff_reason;
        if let Some(run) = &slot.run {
            let mut status = run.status();
            if status.is_active() {
                status.persistent = slot.defined.is_some();
                return Some(status);
            }
            reason = run.shutoff_reason();
        }
        // Stopped: a transient domain is gone, a defined one is shut off.
        slot.defined
            .as_ref()
            .map(|config| Self::shutoff_status(config, reason))
    }

    fn cpu_time_ns(&self) -> u64 {
        self.active_run().map_or(0, |_| cpu_time_ns())
    }

    fn xml(&self, inactive: bool) -> String {
        let (run, defined) = {
            let slot = self.slot();
            (slot.run.clone(), slot.defined.clone())
        };
        let run = run.filter(|run| run.status().is_active());
        match (run, defined) {
            (Some(run), None) => run.xml(inactive),
            (Some(run), Some(_)) if !inactive => run.xml(false),
            (_, Some(defined)) => domain_xml(&defined, None, &emulator_path()),
            (None, None) => String::new(),
        }
    }

    fn suspend(&self) -> Result<(), RemoteError> {
        self.running()?.suspend()
    }

    fn resume(&self) -> Result<(), RemoteError> {
        self.running()?.resume()
    }

    fn shutdown(&self) -> Result<(), RemoteError> {
        self.running()?.shutdown()
    }

    fn reboot(&self) -> Result<(), RemoteError> {
        self.running()?.reboot()
    }

    fn reset(&self) -> Result<(), RemoteError> {
        self.running()?.reset()
    }

    fn inject_nmi(&self) -> Result<(), RemoteError> {
        self.running()?.inject_nmi()
    }

    fn destroy(&self) -> Result<(), RemoteError> {
        self.running()?.destroy()
    }

    /// Starts the defined domain.
    fn create(&self, paused: bool) -> Result<(), RemoteError> {
        let _job = lock(&self.job);
        if self.active_run().is_some() {
            return Err(invalid("domain is already running"));
        }
        let defined = self.slot().defined.clone();
        let config = defined.ok_or_else(|| invalid("the domain is not defined"))?;
        self.boot(config, paused).map(drop)
    }

    fn create_xml(&self, xml: &str, paused: bool) -> Result<DomainRef, RemoteError> {
        let _job = lock(&self.job);
        let mut document = self.read(xml)?;
        {
            let slot = self.slot();
            Self::same_domain(&slot, &mut document)?;
        }
        if let Some(run) = self.active_run() {
            return Err(invalid(&format!(
                "domain '{}' is already active",
                run.config().name
            )));
        }
        Ok(self.boot(document.config, paused)?.domain_ref())
    }

    fn define_xml(&self, xml: &str) -> Result<DomainRef, RemoteError> {
        let _job = lock(&self.job);
        let mut document = self.read(xml)?;
        let mut slot = self.slot();
        Self::same_domain(&slot, &mut document)?;
        let config = document.config;
        if let Some(store) = &self.store {
            store
                .store(&config.name, &domain_xml(&config, None, &emulator_path()))
                .map_err(operation_failed)?;
        }
        let event = match slot.defined {
            Some(_) => Lifecycle::DefinedUpdated,
            None => Lifecycle::DefinedAdded,
        };
        let id = slot
            .run
            .as_ref()
            .filter(|run| run.status().is_active())
            .map_or(-1, |run| run.domain_ref().id);
        let domain = DomainRef {
            name: config.name.clone(),
            uuid: config.uuid,
            id,
        };
        slot.defined = Some(config);
        drop(slot);
        self.emit(&domain, event);
        Ok(domain)
    }

    fn undefine(&self) -> Result<(), RemoteError> {
        let _job = lock(&self.job);
        let mut slot = self.slot();
        let Some(defined) = &slot.defined else {
            return Err(invalid("cannot undefine transient domain"));
        };
        if slot
            .run
            .as_ref()
            .is_some_and(|run| run.status().is_active())
        {
            return Err(invalid(
                "cannot undefine a running domain: destroy it first",
            ));
        }
        if let Some(store) = &self.store {
            store.remove(&defined.name).map_err(operation_failed)?;
        }
        let domain = DomainRef {
            name: defined.name.clone(),
            uuid: defined.uuid,
            id: -1,
        };
        slot.defined = None;
        drop(slot);
        self.emit(&domain, Lifecycle::UndefinedRemoved);
        Ok(())
    }

    fn vcpu_info(&self) -> Result<Vec<VcpuInfo>, RemoteError> {
        self.running()?.vcpu_info()
    }

    fn vcpu_affinities(&self) -> Result<Vec<CpuSet>, RemoteError> {
        self.running()?.vcpu_affinities()
    }

    fn pin_vcpu(&self, vcpu: u32, cpus: &CpuSet) -> Result<(), RemoteError> {
        self.running()?.pin_vcpu(vcpu, cpus)
    }

    fn emulator_affinity(&self) -> Result<CpuSet, RemoteError> {
        self.running()?.emulator_affinity()
    }

    fn pin_emulator(&self, cpus: &CpuSet) -> Result<(), RemoteError> {
        self.running()?.pin_emulator(cpus)
    }

    fn disks(&self) -> Vec<DiskStats> {
        self.active_run().map_or_else(Vec::new, |run| run.disks())
    }

    fn interfaces(&self) -> Vec<InterfaceStats> {
        self.active_run()
            .map_or_else(Vec::new, |run| run.interfaces())
    }

    fn cpu_times(&self) -> CpuTimes {
        self.active_run()
            .map_or_else(CpuTimes::default, |run| run.cpu_times())
    }

    fn rss_kib(&self) -> u64 {
        self.active_run().map_or(0, |run| run.rss_kib())
    }

    fn open_console(
        &self,
        device: Option<&str>,
        force: bool,
        waker: StreamWaker,
    ) -> Result<Arc<dyn StreamEndpoint>, RemoteError> {
        self.running()?.open_console(device, force, waker)
    }
}
