//! virtio devices over the virtio-mmio transport (virtio 1.x, "modern" register layout).
//!
//! A device implements `VirtioDevice` (what it is, what it offers, how it processes a queue);
//! `MmioTransport` gives it the registers, the feature handshake, the queues and the
//! interrupt. Like Firecracker's layout, each device is one file.

mod block;
mod mmio;
mod net;
mod rng;
mod stats;
mod tap;

pub use block::{Block, BlockConfig, BlockDrain};
pub use mmio::{MmioTransport, REG_QUEUE_NOTIFY};
pub use net::{Net, NetConfig};
pub use rng::Rng;
pub use stats::{BlockCounters, BlockStats, NetCounters, NetStats};

use std::os::fd::RawFd;
use virtio_queue::Queue;

use vm_memory::GuestMemoryMmap;

/// Device types (virtio 1.2, 5).
pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;

/// Feature bits common to all devices.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2, 2.1).
pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 64;
pub const STATUS_FAILED: u32 = 128;

/// Interrupt status bits (virtio-mmio InterruptStatus).
pub const INTERRUPT_USED_RING: u32 = 1;
pub const INTERRUPT_CONFIG_CHANGE: u32 = 2;

/// Something the guest did that the device cannot go on with: the transport marks the device
/// as needing a reset (DEVICE_NEEDS_RESET) and logs it once.
#[derive(Debug, PartialEq, Eq)]
pub struct GuestError(pub String);

impl std::fmt::Display for GuestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Copies the part of a device's configuration space `config` that `data` reads at `offset`;
/// bytes beyond it read as zero (a driver may probe any offset).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|at| config.get(at))
            .copied()
            .unwrap_or(0);
    }
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// Features offered (VIRTIO_F_VERSION_1 included).
    fn features(&self) -> u64;
    /// One entry per queue: its maximum size.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let _ = offset;
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver finished the handshake with these features.
    fn activate(&mut self, _acked_features: u64) {}
    /// Handles what the driver made available on queue `index`. Returns true if buffers were
    /// returned to the used ring (the driver should be interrupted).
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, GuestError>;
    /// A host fd (a tap, say) whose readability should be reported to `process_event`.
    fn event_fd(&self) -> Option<RawFd> {
        None
    }
    /// The event fd is readable. Returns true if buffers were returned to a used ring.
    fn process_event(
        &mut self,
        _queues: &mut [Queue],
        _mem: &GuestMemoryMmap,
        _driver_ready: bool,
    ) -> Result<bool, GuestError> {
        Ok(false)
    }
    /// False while the device cannot take host input (no receive buffers): stop watching the
    /// event fd until the driver notifies again.
    fn wants_events(&self) -> bool {
        true
    }
    /// Requests finished off the main loop since the last call: (queue, head, bytes written).
    /// Devices that complete asynchronously return them here; the transport puts them on the
    /// used ring when told to (`MmioTransport::complete_pending`).
    fn take_completions(&mut self) -> Vec<(usize, u16, u32)> {
        Vec::new()
    }
    /// Back to the power-on state (the transport resets the queues).
    fn reset(&mut self) {}
}
