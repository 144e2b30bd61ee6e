//! What the management thread needs from the VMM. The VMM implements it by filing run-state
//! requests with its main loop and waiting for the loop to confirm; handlers never touch
//! vCPUs or devices.

use crate::domain::DomainStatus;
use crate::wire::RemoteError;

pub trait Hypervisor: Send + Sync {
    /// A snapshot of the domain (cheap: every domain call looks the domain up through it).
    fn status(&self) -> DomainStatus;
    /// CPU time the domain has used, for virDomainGetInfo only (it costs a system call).
    fn cpu_time_ns(&self) -> u64;
    /// libvirt domain XML describing the real configuration.
    fn xml(&self) -> String;
    fn suspend(&self) -> Result<(), RemoteError>;
    fn resume(&self) -> Result<(), RemoteError>;
    /// Asks the guest to power off (power button); returns once the request is delivered.
    fn shutdown(&self) -> Result<(), RemoteError>;
    fn reboot(&self) -> Result<(), RemoteError>;
    /// Hard reset.
    fn reset(&self) -> Result<(), RemoteError>;
    /// Hard stop; the process keeps serving with the domain shut off.
    fn destroy(&self) -> Result<(), RemoteError>;
    /// Boots the domain again from its configuration (optionally paused).
    fn create(&self, paused: bool) -> Result<(), RemoteError>;
}
