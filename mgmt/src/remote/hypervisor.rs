//! What the management thread needs from the VMM. The VMM implements it by filing run-state
//! requests with its main loop and waiting for the loop to confirm; handlers never touch
//! vCPUs or devices.

use std::sync::Arc;

use super::domain::{DomainRef, DomainStatus};
use crate::cpuset::CpuSet;
use crate::rpc::{RemoteError, StreamEndpoint, StreamWaker};

/// One vCPU thread as virDomainGetVcpus reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuInfo {
    pub number: u32,
    /// The host CPU the thread last ran on.
    pub cpu: i32,
    pub cpu_time_ns: u64,
    /// The host CPUs the thread may run on (its real affinity).
    pub affinity: CpuSet,
}

/// One disk as the statistics calls report it: counted by its I/O thread, sized from its file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// The guest's name for it (vda, vdb, ...), as `<target dev>` says.
    pub target: String,
    /// The host file.
    pub path: String,
    pub rd_reqs: u64,
    pub rd_bytes: u64,
    pub rd_total_ns: u64,
    pub wr_reqs: u64,
    pub wr_bytes: u64,
    pub wr_total_ns: u64,
    pub flush_reqs: u64,
    pub flush_total_ns: u64,
    /// Requests that failed.
    pub errors: u64,
    /// virDomainBlockInfo: what the guest sees, what the file occupies on the host, its size.
    pub capacity: u64,
    pub allocation: u64,
    pub physical: u64,
}

/// One interface as the statistics calls report it, from the guest's side (rx: received
/// by the guest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// The host tap, as `<target dev>` says.
    pub target: String,
    /// The guest's MAC address, `52:54:00:...`.
    pub mac: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

/// CPU time the VMM process has used, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub total_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
}

pub trait Hypervisor: Send + Sync {
    /// The most vCPUs a domain can have here (CONNECT_GET_MAX_VCPUS).
    fn max_vcpus(&self) -> u32;
    /// A snapshot of the domain (cheap: every domain call looks the domain up through it);
    /// None while the host has none (nothing defined, nothing running).
    fn status(&self) -> Option<DomainStatus>;
    /// CPU time the domain has used, for virDomainGetInfo only (it costs a system call).
    fn cpu_time_ns(&self) -> u64;
    /// libvirt domain XML describing the real configuration; `inactive`: as the next start
    /// will run it (no run-time id).
    fn xml(&self, inactive: bool) -> String;
    fn suspend(&self) -> Result<(), RemoteError>;
    fn resume(&self) -> Result<(), RemoteError>;
    /// Asks the guest to power off (power button); returns once the request is delivered.
    fn shutdown(&self) -> Result<(), RemoteError>;
    fn reboot(&self) -> Result<(), RemoteError>;
    /// Hard reset.
    fn reset(&self) -> Result<(), RemoteError>;
    /// An NMI to every vCPU.
    fn inject_nmi(&self) -> Result<(), RemoteError>;
    /// Hard stop; the process keeps serving with the domain shut off.
    fn destroy(&self) -> Result<(), RemoteError>;
    /// Boots the defined domain from its configuration (optionally paused).
    fn create(&self, paused: bool) -> Result<(), RemoteError>;
    /// Boots a domain from domain XML (virDomainCreateXML): transient, unless it is the
    /// defined one, which then runs this configuration once.
    fn create_xml(&self, xml: &str, paused: bool) -> Result<DomainRef, RemoteError>;
    /// Stores domain XML as the persistent domain (virDomainDefineXML). A running domain
    /// keeps its configuration until its next start.
    fn define_xml(&self, xml: &str) -> Result<DomainRef, RemoteError>;
    /// Forgets the persistent domain (virDomainUndefine).
    fn undefine(&self) -> Result<(), RemoteError>;
    /// The vCPU threads: where each runs and may run, and its CPU time.
    fn vcpu_info(&self) -> Result<Vec<VcpuInfo>, RemoteError>;
    /// The real affinity of each vCPU thread, in vCPU order.
    fn vcpu_affinities(&self) -> Result<Vec<CpuSet>, RemoteError>;
    /// Moves one vCPU thread onto `cpus` (host CPUs).
    fn pin_vcpu(&self, vcpu: u32, cpus: &CpuSet) -> Result<(), RemoteError>;
    /// The real affinity of the VMM's other threads (main loop, I/O, management).
    fn emulator_affinity(&self) -> Result<CpuSet, RemoteError>;
    /// Moves every thread that is not a vCPU onto `cpus`.
    fn pin_emulator(&self, cpus: &CpuSet) -> Result<(), RemoteError>;
    /// The disks, in `<target>` order, with their counters.
    fn disks(&self) -> Vec<DiskStats>;
    /// The interfaces, in order, with their counters.
    fn interfaces(&self) -> Vec<InterfaceStats>;
    /// The process's CPU time split into user and system.
    fn cpu_times(&self) -> CpuTimes;
    /// Resident memory of the process, in KiB.
    fn rss_kib(&self) -> u64;
    /// Connects a stream to the serial console (`device`: its alias, None for the default),
    /// taking it over from another session if `force`. `waker` wakes the stream's client.
    fn open_console(
        &self,
        device: Option<&str>,
        force: bool,
        waker: StreamWaker,
    ) -> Result<Arc<dyn StreamEndpoint>, RemoteError>;
}
