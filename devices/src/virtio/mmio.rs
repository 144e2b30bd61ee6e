//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2): the register file a driver
//! programs, the status state machine and feature handshake, queue setup checked against guest
//! memory, the interrupt status the driver acknowledges, and reset.
//!
//! Queue notifications arrive either as writes to QueueNotify (an MMIO exit) or through an
//! ioeventfd the VMM registers on that register; both end in `notify(queue)`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::bus::BusDevice;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x554d_4551; // what QEMU reports; drivers ignore it

// Register offsets.
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
/// QueueNotify: the register an ioeventfd is registered on.
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_AVAIL_LOW: u64 = 0x090;
const REG_QUEUE_AVAIL_HIGH: u64 = 0x094;
const REG_QUEUE_USED_LOW: u64 = 0x0a0;
const REG_QUEUE_USED_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const CONFIG_SPACE: u64 = 0x100;

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    acked_features: u64,
    status: u32,
    interrupt_status: Arc<AtomicU32>,
    irq: EventFd,
    config_generation: u32,
    /// A guest error is logged once per device, not per request.
    error_logged: bool,
}

impl MmioTransport {
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemoryMmap, irq: EventFd) -> MmioTransport {
        let queues = device
            .queue_max_sizes()
            .iter()
            .filter_map(|&max| Queue::new(max).ok())
            .collect();
        MmioTransport {
            device,
            mem,
            queues,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            acked_features: 0,
            status: 0,
            interrupt_status: Arc::new(AtomicU32::new(0)),
            irq,
            config_generation: 0,
            error_logged: false,
        }
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    fn is_driver_ok(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_DEVICE_NEEDS_RESET == 0
    }

    fn raise(&self, bits: u32) {
        self.interrupt_status.fetch_or(bits, Ordering::SeqCst);
        if let Err(e) = self.irq.write(1) {
            log::warn!("virtio: cannot raise the interrupt: {e}");
        }
    }

    /// The guest broke the protocol: the device stops until reset and tells the driver so.
    fn needs_reset(&mut self, why: &str) {
        if !self.error_logged {
            self.error_logged = true;
            log::warn!(
                "virtio device type {}: {why}; device needs reset",
                self.device.device_type()
            );
        }
        self.status |= STATUS_DEVICE_NEEDS_RESET;
        self.raise(INTERRUPT_CONFIG_CHANGE);
    }

    /// The driver made buffers available on `index`.
    pub fn notify(&mut self, index: u32) {
        if !self.is_driver_ok() {
            return;
        }
        let Some(queue) = self.queues.get_mut(index as usize) else {
            self.needs_reset(&format!("notify for queue {index}, which does not exist"));
            return;
        };
        if !queue.ready() {
            return;
        }
        match self.device.process_queue(index as usize, queue, &self.mem) {
            Ok(true) => self.raise(INTERRUPT_USED_RING),
            Ok(false) => {}
            Err(e) => self.needs_reset(&e.0),
        }
    }

    /// The device's host-side fd, if it has one (a tap).
    pub fn device_event_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.event_fd()
    }

    /// The device's event fd is readable. Returns whether to keep watching it.
    pub fn device_event(&mut self) -> bool {
        let ready = self.is_driver_ok();
        match self
            .device
            .process_event(&mut self.queues, &self.mem, ready)
        {
            Ok(true) => self.raise(INTERRUPT_USED_RING),
            Ok(false) => {}
            Err(e) => self.needs_reset(&e.0),
        }
        self.device.wants_events()
    }

    /// True when the device can take host input again (after the driver posted buffers).
    pub fn device_wants_events(&self) -> bool {
        self.device.wants_events()
    }

    /// Puts requests the device finished asynchronously on their used rings and interrupts the
    /// driver (called on the main loop from the device's completion bottom half).
    pub fn complete_pending(&mut self) {
        let mut used_any = false;
        for (index, head, len) in self.device.take_completions() {
            // Completions from before a reset belong to queues that no longer exist.
            let Some(queue) = self.queues.get_mut(index).filter(|q| q.ready()) else {
                continue;
            };
            match queue.add_used(&self.mem, head, len) {
                Ok(()) => used_any = true,
                Err(e) => self.needs_reset(&format!("used ring: {e:?}")),
            }
        }
        if used_any && self.is_driver_ok() {
            self.raise(INTERRUPT_USED_RING);
        }
    }

    /// Device reset: what writing 0 to Status does, and what a machine reset does.
    pub fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_select = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.acked_features = 0;
        self.status = 0;
        self.interrupt_status.store(0, Ordering::SeqCst);
        self.error_logged = false;
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let added = value & !self.status;
        if added & STATUS_FEATURES_OK != 0 && self.acked_features & !self.device.features() != 0 {
            // The driver acked something we never offered: refuse FEATURES_OK.
            self.status = value & !STATUS_FEATURES_OK;
            return;
        }
        if added & STATUS_DRIVER_OK != 0 {
            if self.status & STATUS_FEATURES_OK == 0 {
                self.needs_reset("DRIVER_OK before FEATURES_OK");
                return;
            }
            self.device.activate(self.acked_features);
        }
        self.status = value | (self.status & STATUS_DEVICE_NEEDS_RESET);
    }

    fn set_queue_ready(&mut self, ready: bool) {
        let mem = self.mem.clone();
        let Some(queue) = self.selected_queue() else {
            return;
        };
        if !ready {
            queue.set_ready(false);
            return;
        }
        queue.set_ready(true);
        // Rings must lie in RAM, aligned, with a power-of-two size: check before any use.
        if !queue.is_valid(&mem) {
            queue.set_ready(false);
            let select = self.queue_select;
            self.needs_reset(&format!(
                "queue {select} set up outside guest RAM or misaligned"
            ));
        }
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC => MAGIC,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_select {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            REG_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            REG_INTERRUPT_STATUS => self.interrupt_status.load(Ordering::SeqCst),
            REG_STATUS => self.status,
            REG_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        // Queue layout may only change before the driver is done setting up.
        let setup = self.status & STATUS_DRIVER_OK == 0;
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_select = value,
            REG_DRIVER_FEATURES_SEL => self.driver_features_select = value,
            REG_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => match self
                .driver_features_select
            {
                0 => self.acked_features = (self.acked_features & !0xffff_ffff) | u64::from(value),
                1 => {
                    self.acked_features =
                        (self.acked_features & 0xffff_ffff) | (u64::from(value) << 32)
                }
                _ => {}
            },
            REG_QUEUE_SEL => self.queue_select = value,
            REG_QUEUE_NUM if setup => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(value as u16);
                }
            }
            REG_QUEUE_READY => self.set_queue_ready(value == 1),
            REG_QUEUE_NOTIFY => self.notify(value),
            REG_INTERRUPT_ACK => {
                self.interrupt_status.fetch_and(!value, Ordering::SeqCst);
            }
            REG_STATUS => self.set_status(value),
            REG_QUEUE_DESC_LOW | REG_QUEUE_DESC_HIGH | REG_QUEUE_AVAIL_LOW
            | REG_QUEUE_AVAIL_HIGH | REG_QUEUE_USED_LOW | REG_QUEUE_USED_HIGH
                if setup =>
            {
                let low = offset & 4 == 0;
                let (lo, hi) = if low {
                    (Some(value), None)
                } else {
                    (None, Some(value))
                };
                if let Some(q) = self.selected_queue() {
                    match offset & !4 {
                        REG_QUEUE_DESC_LOW => q.set_desc_table_address(lo, hi),
                        REG_QUEUE_AVAIL_LOW => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => {} // read-only registers, or layout changes after DRIVER_OK: ignored
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE {
            self.device.read_config(offset - CONFIG_SPACE, data);
            return;
        }
        let value = if data.len() == 4 {
            self.read_register(offset)
        } else {
            0
        };
        for (dst, src) in data
            .iter_mut()
            .zip(value.to_le_bytes().into_iter().chain(std::iter::repeat(0)))
        {
            *dst = src;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE {
            self.device.write_config(offset - CONFIG_SPACE, data);
            return;
        }
        // Registers are 32 bits wide; other widths are a driver bug and ignored.
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }

    fn reset(&mut self) {
        MmioTransport::reset(self);
    }
}

#[cfg(test)]
pub(crate) mod test_utils;
#[cfg(test)]
mod tests;
