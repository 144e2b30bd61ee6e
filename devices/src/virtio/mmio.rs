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
mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const VRING_DESC_F_WRITE: u16 = 2;
    const VRING_DESC_F_NEXT: u16 = 1;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
    }

    fn w(t: &mut MmioTransport, offset: u64, value: u32) {
        t.write(0, offset, &value.to_le_bytes());
    }

    fn r(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut v = [0u8; 4];
        t.read(0, offset, &mut v);
        u32::from_le_bytes(v)
    }

    /// Drives the transport the way a Linux driver does, up to DRIVER_OK with queue 0 at `q`.
    fn bring_up(t: &mut MmioTransport, desc: u64, avail: u64, used: u64, size: u32) {
        w(t, REG_STATUS, STATUS_ACKNOWLEDGE);
        w(t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(t, REG_DEVICE_FEATURES_SEL, 1);
        let high = r(t, REG_DEVICE_FEATURES);
        w(t, REG_DRIVER_FEATURES_SEL, 1);
        w(t, REG_DRIVER_FEATURES, high);
        w(
            t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_ne!(r(t, REG_STATUS) & STATUS_FEATURES_OK, 0);
        w(t, REG_QUEUE_SEL, 0);
        w(t, REG_QUEUE_NUM, size);
        w(t, REG_QUEUE_DESC_LOW, desc as u32);
        w(t, REG_QUEUE_DESC_HIGH, (desc >> 32) as u32);
        w(t, REG_QUEUE_AVAIL_LOW, avail as u32);
        w(t, REG_QUEUE_AVAIL_HIGH, (avail >> 32) as u32);
        w(t, REG_QUEUE_USED_LOW, used as u32);
        w(t, REG_QUEUE_USED_HIGH, (used >> 32) as u32);
        w(t, REG_QUEUE_READY, 1);
        w(
            t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
    }

    fn rng_transport(mem: &GuestMemoryMmap) -> (MmioTransport, EventFd) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (
            MmioTransport::new(Box::new(Rng::new()), mem.clone(), irq.try_clone().unwrap()),
            irq,
        )
    }

    #[test]
    fn identification_registers() {
        let mem = memory();
        let (mut t, _) = rng_transport(&mem);
        assert_eq!(r(&mut t, REG_MAGIC), MAGIC);
        assert_eq!(r(&mut t, REG_VERSION), 2);
        assert_eq!(r(&mut t, REG_DEVICE_ID), TYPE_RNG);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 256);
        w(&mut t, REG_QUEUE_SEL, 5);
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 0, "no such queue");
        let mut odd = [0u8; 2];
        t.read(0, REG_MAGIC, &mut odd);
        assert_eq!(odd, [0, 0], "only 32-bit register reads");
    }

    #[test]
    fn rng_fills_a_buffer_and_interrupts() {
        let mem = memory();
        let vq = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        let buf = GuestAddress(0x20000);
        let chain = [RawDescriptor::from(SplitDescriptor::new(
            buf.0,
            64,
            VRING_DESC_F_WRITE,
            0,
        ))];
        vq.add_desc_chains(&chain, 0).unwrap();
        let (mut t, irq) = rng_transport(&mem);
        bring_up(
            &mut t,
            vq.desc_table_addr().0,
            vq.avail_addr().0,
            vq.used_addr().0,
            16,
        );
        w(&mut t, REG_QUEUE_NOTIFY, 0);
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), INTERRUPT_USED_RING);
        w(&mut t, REG_INTERRUPT_ACK, INTERRUPT_USED_RING);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), 0);
        assert_eq!(vq.used().idx().load(), 1);
        let used = vq.used().ring().ref_at(0).unwrap().load();
        assert_eq!(used.len(), 64);
        let mut bytes = [0u8; 64];
        mem.read_slice(&mut bytes, buf).unwrap();
        assert!(
            bytes.iter().any(|b| *b != bytes[0]),
            "64 random bytes are not all equal"
        );
    }

    #[test]
    fn unoffered_features_are_refused() {
        let mem = memory();
        let (mut t, _) = rng_transport(&mem);
        w(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 0);
        w(&mut t, REG_DRIVER_FEATURES, 1 << 5);
        w(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(r(&mut t, REG_STATUS) & STATUS_FEATURES_OK, 0);
    }

    #[test]
    fn queue_past_the_end_of_ram_needs_reset() {
        let mem = memory();
        let (mut t, irq) = rng_transport(&mem);
        bring_up(&mut t, 0xfff_f000, 0x20000, 0x30000, 16); // descriptor table runs off RAM
        assert_eq!(r(&mut t, REG_QUEUE_READY), 0);
        assert_ne!(r(&mut t, REG_STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
        assert_eq!(irq.read().unwrap(), 1, "config-change interrupt");
        w(&mut t, REG_STATUS, 0);
        assert_eq!(r(&mut t, REG_STATUS), 0, "reset clears it");
    }

    #[test]
    fn hostile_descriptors_mark_the_device_not_the_vmm() {
        let mem = memory();
        for chain in [
            // A buffer outside guest RAM.
            vec![RawDescriptor::from(SplitDescriptor::new(
                0xffff_0000_0000,
                64,
                VRING_DESC_F_WRITE,
                0,
            ))],
            // A length that overflows past the end of RAM.
            vec![RawDescriptor::from(SplitDescriptor::new(
                0xff_ff00,
                u32::MAX,
                VRING_DESC_F_WRITE,
                0,
            ))],
            // The wrong direction: a device-readable buffer for an entropy device.
            vec![RawDescriptor::from(SplitDescriptor::new(0x20000, 16, 0, 0))],
        ] {
            let vq = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
            vq.add_desc_chains(&chain, 0).unwrap();
            let (mut t, _) = rng_transport(&mem);
            bring_up(
                &mut t,
                vq.desc_table_addr().0,
                vq.avail_addr().0,
                vq.used_addr().0,
                16,
            );
            w(&mut t, REG_QUEUE_NOTIFY, 0);
            w(&mut t, REG_QUEUE_NOTIFY, 0); // again: logged once, no panic
            let status = r(&mut t, REG_STATUS);
            assert_ne!(
                status & STATUS_DEVICE_NEEDS_RESET,
                0,
                "{chain:?}: status {status:#x}"
            );
            assert_eq!(
                vq.used().idx().load(),
                0,
                "nothing returned for a refused request"
            );
        }
    }

    #[test]
    fn descriptor_loops_end() {
        let mem = memory();
        let vq = MockSplitQueue::create(&mem, GuestAddress(0x10000), 16);
        // Two descriptors pointing at each other.
        let looped = [
            RawDescriptor::from(SplitDescriptor::new(
                0x20000,
                8,
                VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                1,
            )),
            RawDescriptor::from(SplitDescriptor::new(
                0x21000,
                8,
                VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                0,
            )),
        ];
        vq.add_desc_chains(&looped, 0).unwrap();
        let (mut t, _) = rng_transport(&mem);
        bring_up(
            &mut t,
            vq.desc_table_addr().0,
            vq.avail_addr().0,
            vq.used_addr().0,
            16,
        );
        w(&mut t, REG_QUEUE_NOTIFY, 0); // must return
        w(&mut t, REG_QUEUE_NOTIFY, 99); // a queue that does not exist
        assert_ne!(r(&mut t, REG_STATUS) & STATUS_DEVICE_NEEDS_RESET, 0);
    }
}
