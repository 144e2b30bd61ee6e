//! The machine's devices: where each one is reached (a port range or an MMIO window), its
//! interrupt line, and what a machine reset must reset.
//!
//! Built with the main loop's AioContext, so a virtio device is attached in one step: its
//! window and GSI are allocated from the layout, its irqfd and one ioeventfd per queue (on
//! QueueNotify, so a guest's notification wakes the main loop without an exit to the vCPU
//! thread) are registered with KVM, the loop starts watching those and the device's host fd,
//! and the transport goes on the MMIO bus.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use devices::bus::{Bus, BusDevice};
use devices::legacy;
use devices::virtio::{
    Block, BlockConfig, BlockStats, MmioTransport, NetStats, VirtioDevice, REG_QUEUE_NOTIFY,
};
use kvm_ioctls::IoEventAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::x86_64::acpi::MmioDevice;
use crate::arch::x86_64::layout::{
    VIRTIO_FIRST_GSI, VIRTIO_MMIO_COUNT, VIRTIO_MMIO_START, VIRTIO_MMIO_WINDOW_SIZE,
};
use crate::main_loop::{AioContext, Bh};
use crate::vm::Vm;

type Transport = Arc<Mutex<MmioTransport>>;

/// The counters of the disks and interfaces, in configuration order: what management
/// statistics read while the devices count.
#[derive(Clone, Default)]
pub struct DeviceStats {
    pub disks: Vec<Arc<BlockStats>>,
    pub nets: Vec<Arc<NetStats>>,
}

pub struct DeviceManager {
    aio: AioContext,
    /// Shared with the vCPU threads once they start; devices are attached before that.
    pio_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    /// Every device attached, once each, in attach order: what a machine reset resets.
    resettable: Vec<Arc<Mutex<dyn BusDevice>>>,
    /// The virtio windows and their interrupts, in attach order.
    virtio: Vec<MmioDevice>,
    /// Transports whose devices finish requests off the loop (disks), and the bottom half
    /// their I/O threads schedule to put those requests on the used rings.
    completing: Arc<Mutex<Vec<Transport>>>,
    completion_bh: Arc<Bh>,
    /// Every fd the loop watches for these devices (queue notifiers, taps): unwatched when
    /// the machine goes, so that a managed process that boots the next machine keeps no
    /// handler of the last one (nor the devices and memory it holds).
    watched_fds: Vec<RawFd>,
}

impl DeviceManager {
    pub fn new(aio: &AioContext) -> DeviceManager {
        let completing: Arc<Mutex<Vec<Transport>>> = Arc::default();
        let transports = completing.clone();
        // QEMU's thread-pool completion, in small: the loop finishes what the threads did.
        let completion_bh = aio.bh_new(move || {
            for transport in lock(&transports).iter() {
                lock(transport).complete_pending();
            }
        });
        DeviceManager {
            aio: aio.clone(),
            pio_bus: Arc::new(Bus::new()),
            mmio_bus: Arc::new(Bus::new()),
            resettable: Vec::new(),
            virtio: Vec::new(),
            completing,
            completion_bh,
            watched_fds: Vec::new(),
        }
    }

    /// Puts `device` at ports `[base, base + len)`.
    pub fn insert_pio(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), String> {
        insert(&mut self.pio_bus, &mut self.resettable, device, base, len)
    }

    /// Puts `device` at guest addresses `[base, base + len)`.
    pub fn insert_mmio(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), String> {
        insert(&mut self.mmio_bus, &mut self.resettable, device, base, len)
    }

    /// The ports a kernel probes that this machine does not have (stateless: nothing to reset).
    pub fn insert_noop_ports(&mut self) -> Result<(), String> {
        legacy::register_noops(bus_mut(&mut self.pio_bus)?).map_err(|e| e.to_string())
    }

    /// Attaches `device` as the next virtio-mmio device.
    pub fn attach_virtio(&mut self, vm: &Vm, device: Box<dyn VirtioDevice>) -> Result<(), String> {
        self.attach_transport(vm, device).map(|_| ())
    }

    /// Attaches a virtio-blk disk; its I/O thread completes requests through the loop's
    /// completion bottom half. Returns the disk's counters.
    pub fn attach_block(
        &mut self,
        vm: &Vm,
        config: &BlockConfig,
    ) -> Result<Arc<BlockStats>, String> {
        let bh = self.completion_bh.clone();
        let block = Block::new(config, vm.memory().clone(), Box::new(move || bh.schedule()))
            .map_err(|e| format!("--disk {e}"))?;
        let stats = block.stats();
        let transport = self.attach_transport(vm, Box::new(block))?;
        lock(&self.completing).push(transport);
        Ok(stats)
    }

    fn attach_transport(
        &mut self,
        vm: &Vm,
        device: Box<dyn VirtioDevice>,
    ) -> Result<Transport, String> {
        let index = self.virtio.len();
        if index >= VIRTIO_MMIO_COUNT {
            return Err(format!("at most {VIRTIO_MMIO_COUNT} virtio devices"));
        }
        let window = MmioDevice {
            base: VIRTIO_MMIO_START + index as u64 * VIRTIO_MMIO_WINDOW_SIZE,
            size: VIRTIO_MMIO_WINDOW_SIZE,
            gsi: VIRTIO_FIRST_GSI + index as u32,
        };
        let irq = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        vm.register_irqfd(&irq, window.gsi)
            .map_err(|e| e.to_string())?;
        let transport = MmioTransport::new(device, vm.memory().clone(), irq);
        let mut notifiers = Vec::new();
        for queue in 0..transport.queue_count() as u32 {
            let event = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
            let notify = IoEventAddress::Mmio(window.base + REG_QUEUE_NOTIFY);
            vm.fd()
                .register_ioevent(&event, &notify, queue)
                .map_err(|e| format!("KVM_IOEVENTFD: {e}"))?;
            notifiers.push((queue, event));
        }
        let transport = Arc::new(Mutex::new(transport));
        self.insert_mmio(transport.clone(), window.base, window.size)?;
        self.watched_fds
            .extend(notifiers.iter().map(|(_, event)| event.as_raw_fd()));
        self.watched_fds.extend(lock(&transport).device_event_fd());
        watch_notifications(&self.aio, &transport, notifiers);
        self.virtio.push(window);
        Ok(transport)
    }

    /// The vCPUs' view of the devices: the port and MMIO buses.
    pub fn buses(&self) -> (Arc<Bus>, Arc<Bus>) {
        (self.pio_bus.clone(), self.mmio_bus.clone())
    }

    /// The virtio windows and interrupts, as the ACPI tables describe them.
    pub fn virtio_windows(&self) -> &[MmioDevice] {
        &self.virtio
    }

    /// The kernel command-line words announcing the virtio devices
    /// (virtio_mmio.device=SIZE@ADDR:IRQ).
    pub fn cmdline_words(&self) -> String {
        self.virtio
            .iter()
            .map(|w| {
                format!(
                    "virtio_mmio.device={}K@{:#x}:{}",
                    w.size >> 10,
                    w.base,
                    w.gsi
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Returns every device to its power-on state (QEMU's device reset, with the vCPUs
    /// paused): virtio transports drop their queues and wait for in-flight disk I/O.
    pub fn reset(&self) {
        for device in &self.resettable {
            lock(device).reset();
        }
    }
}

impl Drop for DeviceManager {
    fn drop(&mut self) {
        for fd in &self.watched_fds {
            self.aio.set_fd_handler(*fd, None, None);
        }
    }
}

/// Puts `device` on `bus` and on the list a reset goes through.
fn insert(
    bus: &mut Arc<Bus>,
    resettable: &mut Vec<Arc<Mutex<dyn BusDevice>>>,
    device: Arc<Mutex<dyn BusDevice>>,
    base: u64,
    len: u64,
) -> Result<(), String> {
    bus_mut(bus)?
        .insert(device.clone(), base, len)
        .map_err(|e| e.to_string())?;
    resettable.push(device);
    Ok(())
}

/// The bus, while no vCPU holds it yet: there is no hotplug.
fn bus_mut(bus: &mut Arc<Bus>) -> Result<&mut Bus, String> {
    Arc::get_mut(bus).ok_or_else(|| "devices are attached before the vCPUs start".to_string())
}

/// A device that panicked must not take the loop with it: use its state as is.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Processes queue notifications on the main loop, as QEMU's ioeventfd handlers do, and
/// watches the device's host fd (a tap) while it can take input.
fn watch_notifications(aio: &AioContext, transport: &Transport, notifiers: Vec<(u32, EventFd)>) {
    let device_fd = lock(transport).device_event_fd();
    let watching = Rc::new(Cell::new(false));
    if let Some(fd) = device_fd {
        watch_device_fd(aio, transport, fd, &watching);
    }
    for (queue, event) in notifiers {
        let fd = event.as_raw_fd();
        let transport = transport.clone();
        let (aio_for_rearm, watching) = (aio.clone(), watching.clone());
        aio.set_fd_handler(
            fd,
            Some(Box::new(move || {
                let _ = event.read();
                let wants = {
                    let mut t = lock(&transport);
                    t.notify(queue);
                    t.device_wants_events()
                };
                // The driver posted buffers: resume reading the host side.
                if let (Some(fd), false, true) = (device_fd, watching.get(), wants) {
                    watch_device_fd(&aio_for_rearm, &transport, fd, &watching);
                }
            })),
            None,
        );
    }
}

/// Watches a device's host fd until the device cannot take more (no receive buffers).
fn watch_device_fd(aio: &AioContext, transport: &Transport, fd: RawFd, watching: &Rc<Cell<bool>>) {
    let (aio_in_handler, transport, flag) = (aio.clone(), transport.clone(), watching.clone());
    watching.set(true);
    aio.set_fd_handler(
        fd,
        Some(Box::new(move || {
            if !lock(&transport).device_event() {
                flag.set(false);
                aio_in_handler.set_fd_handler(fd, None, None);
            }
        })),
        None,
    );
}
