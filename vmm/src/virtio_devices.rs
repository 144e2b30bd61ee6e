//! Puts virtio-mmio devices on the machine: an MMIO window each, an interrupt line (an
//! IOAPIC pin behind a KVM irqfd), one KVM ioeventfd per queue on QueueNotify (so a guest's
//! notification wakes the main loop without an exit to the vCPU thread), and the
//! `virtio_mmio.device=` command-line words kernels built with that option read.

use std::cell::Cell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use devices::bus::Bus;
use devices::virtio::{Block, BlockConfig, MmioTransport, VirtioDevice, REG_QUEUE_NOTIFY};
use kvm_ioctls::IoEventAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::x86_64::acpi::MmioDevice;
use crate::arch::x86_64::layout::{
    VIRTIO_FIRST_GSI, VIRTIO_MMIO_COUNT as VIRTIO_MAX_DEVICES, VIRTIO_MMIO_START,
    VIRTIO_MMIO_WINDOW_SIZE as MMIO_WINDOW_SIZE,
};
use crate::main_loop::{AioContext, Bh};
use crate::vm::Vm;

/// One device on the machine.
pub struct VirtioSlot {
    pub transport: Arc<Mutex<MmioTransport>>,
    pub base: u64,
    pub gsi: u32,
    /// (queue index, eventfd KVM signals when the guest notifies that queue)
    notifiers: Vec<(u32, EventFd)>,
    /// For devices that complete off the loop: the bottom half that finishes their requests,
    /// set once the main loop is known.
    completion: Option<Arc<OnceLock<Arc<Bh>>>>,
}

/// Attaches `device` as the `index`-th virtio device.
pub fn attach(
    vm: &Vm,
    mmio: &mut Bus,
    index: usize,
    device: Box<dyn VirtioDevice>,
) -> Result<VirtioSlot, String> {
    if index >= VIRTIO_MAX_DEVICES {
        return Err(format!("at most {VIRTIO_MAX_DEVICES} virtio devices"));
    }
    let base = VIRTIO_MMIO_START + index as u64 * MMIO_WINDOW_SIZE;
    let gsi = VIRTIO_FIRST_GSI + index as u32;
    let irq = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
    vm.register_irqfd(&irq, gsi).map_err(|e| e.to_string())?;
    let transport = MmioTransport::new(device, vm.memory().clone(), irq);
    let mut notifiers = Vec::new();
    for queue in 0..transport.queue_count() as u32 {
        let event = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        vm.fd()
            .register_ioevent(
                &event,
                &IoEventAddress::Mmio(base + REG_QUEUE_NOTIFY),
                queue,
            )
            .map_err(|e| format!("KVM_IOEVENTFD: {e}"))?;
        notifiers.push((queue, event));
    }
    let transport = Arc::new(Mutex::new(transport));
    mmio.insert(transport.clone(), base, MMIO_WINDOW_SIZE)
        .map_err(|e| e.to_string())?;
    Ok(VirtioSlot {
        transport,
        base,
        gsi,
        notifiers,
        completion: None,
    })
}

/// Attaches a virtio-blk disk whose I/O thread completes requests through a main-loop bottom
/// half (QEMU's thread pool completion, in small).
pub fn attach_block(
    vm: &Vm,
    mmio: &mut Bus,
    index: usize,
    config: &BlockConfig,
) -> Result<VirtioSlot, String> {
    let completion: Arc<OnceLock<Arc<Bh>>> = Arc::new(OnceLock::new());
    let bh = completion.clone();
    let on_complete = Box::new(move || {
        if let Some(bh) = bh.get() {
            bh.schedule();
        }
    });
    let block =
        Block::new(config, vm.memory().clone(), on_complete).map_err(|e| format!("--disk {e}"))?;
    let mut slot = attach(vm, mmio, index, Box::new(block))?;
    slot.completion = Some(completion);
    Ok(slot)
}

/// The windows and interrupts of `slots`, as the ACPI tables describe them.
pub fn mmio_devices(slots: &[VirtioSlot]) -> Vec<MmioDevice> {
    slots
        .iter()
        .map(|s| MmioDevice {
            base: s.base,
            size: MMIO_WINDOW_SIZE,
            gsi: s.gsi,
        })
        .collect()
}

/// The kernel command-line words announcing `slots` (virtio_mmio.device=SIZE@ADDR:IRQ).
pub fn cmdline_words(slots: &[VirtioSlot]) -> String {
    slots
        .iter()
        .map(|s| {
            format!(
                "virtio_mmio.device={}K@{:#x}:{}",
                MMIO_WINDOW_SIZE >> 10,
                s.base,
                s.gsi
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Processes queue notifications on the main loop, as QEMU's ioeventfd handlers do, finishes
/// asynchronously completed requests there, and watches devices' host fds (taps).
pub fn watch_notifications(aio: &AioContext, slots: &[VirtioSlot]) -> Result<(), String> {
    for slot in slots {
        if let Some(completion) = &slot.completion {
            let transport = slot.transport.clone();
            let bh = aio.bh_new(move || {
                transport
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .complete_pending()
            });
            let _ = completion.set(bh);
        }
        let device_fd = slot
            .transport
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .device_event_fd();
        let watching = Rc::new(Cell::new(false));
        if let Some(fd) = device_fd {
            watch_device_fd(aio, &slot.transport, fd, &watching);
        }
        for (queue, event) in &slot.notifiers {
            let event = event.try_clone().map_err(|e| format!("eventfd: {e}"))?;
            let fd = event.as_raw_fd();
            let transport = slot.transport.clone();
            let queue = *queue;
            let (aio_for_rearm, watching) = (aio.clone(), watching.clone());
            aio.set_fd_handler(
                fd,
                Some(Box::new(move || {
                    let _ = event.read();
                    let wants = {
                        let mut t = transport.lock().unwrap_or_else(|p| p.into_inner());
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
    Ok(())
}

/// Watches a device's host fd until the device cannot take more (no receive buffers).
fn watch_device_fd(
    aio: &AioContext,
    transport: &Arc<Mutex<MmioTransport>>,
    fd: RawFd,
    watching: &Rc<Cell<bool>>,
) {
    let (aio_in_handler, transport, flag) = (aio.clone(), transport.clone(), watching.clone());
    watching.set(true);
    aio.set_fd_handler(
        fd,
        Some(Box::new(move || {
            let keep = transport
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .device_event();
            if !keep {
                flag.set(false);
                aio_in_handler.set_fd_handler(fd, None, None);
            }
        })),
        None,
    );
}
