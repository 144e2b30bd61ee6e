//! One virtio device behind its transport, reused across inputs (a transport reset between
//! them, as a driver's Status=0 write would do).
//!
//! An input is: byte 0, the queue size the driver asks for; byte 1, which queues it notifies
//! and how many rounds; the rest, guest memory from address 0. Each queue `i` has its
//! descriptor table at `i * QUEUE_STRIDE`, its available ring 4 KiB above and its used ring
//! 8 KiB above, so descriptor tables, rings and buffers are all the fuzzer's to shape: loops,
//! addresses outside memory, zero lengths, wrong directions, chains longer than the queue.

use std::time::Duration;

use devices::bus::BusDevice;
use devices::virtio::{BlockDrain, MmioTransport, VirtioDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Guest memory: small, so that random addresses often land in it.
pub const MEM_SIZE: usize = 0x10000;
pub const QUEUE_STRIDE: u64 = 0x3000;

// virtio-mmio registers and status bits (virtio 1.2, 4.2.2 and 2.1).
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_AVAIL_LOW: u64 = 0x090;
const QUEUE_USED_LOW: u64 = 0x0a0;
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;

/// How long a block request may take before the harness calls it a hang.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Harness {
    transport: MmioTransport,
    mem: GuestMemoryMmap,
    queues: u32,
    drain: Option<BlockDrain>,
}

impl Harness {
    /// `make` builds the device over the harness's guest memory; a block device also gives
    /// the handle that says when its I/O thread is done.
    pub fn new(
        queues: u32,
        make: impl FnOnce(&GuestMemoryMmap) -> (Box<dyn VirtioDevice>, Option<BlockDrain>),
    ) -> Harness {
        let mem =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory");
        let (device, drain) = make(&mem);
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        Harness {
            transport: MmioTransport::new(device, mem.clone(), irq),
            mem,
            queues,
            drain,
        }
    }

    pub fn write(&mut self, offset: u64, value: u32) {
        self.transport.write(0, offset, &value.to_le_bytes());
    }

    pub fn read(&mut self, offset: u64) -> u32 {
        let mut v = [0u8; 4];
        self.transport.read(0, offset, &mut v);
        u32::from_le_bytes(v)
    }

    pub fn transport(&mut self) -> &mut MmioTransport {
        &mut self.transport
    }

    /// Back to power-on: device and queues reset, memory zeroed. A device with an event fd
    /// (a tap) is run once with no driver, which drops what waits there, so no input sees
    /// the frames of the one before.
    pub fn reset(&mut self) {
        self.transport.reset();
        if self.transport.device_event_fd().is_some() {
            self.transport.device_event();
        }
        self.fill_memory(&[]);
    }

    fn fill_memory(&self, image: &[u8]) {
        let mut bytes = vec![0u8; MEM_SIZE];
        let n = image.len().min(MEM_SIZE);
        bytes[..n].copy_from_slice(&image[..n]);
        self.mem
            .write_slice(&bytes, GuestAddress(0))
            .expect("guest memory is MEM_SIZE long");
    }

    /// A driver's handshake, accepting every feature offered, with each queue at its place.
    fn bring_up(&mut self, size: u32) {
        self.write(STATUS, ACKNOWLEDGE);
        self.write(STATUS, ACKNOWLEDGE | DRIVER);
        for half in 0..2 {
            self.write(DEVICE_FEATURES_SEL, half);
            let offered = self.read(DEVICE_FEATURES);
            self.write(DRIVER_FEATURES_SEL, half);
            self.write(DRIVER_FEATURES, offered);
        }
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        for q in 0..self.queues {
            let base = u64::from(q) * QUEUE_STRIDE;
            self.write(QUEUE_SEL, q);
            self.write(QUEUE_NUM, size);
            self.write(QUEUE_DESC_LOW, base as u32);
            self.write(QUEUE_AVAIL_LOW, (base + 0x1000) as u32);
            self.write(QUEUE_USED_LOW, (base + 0x2000) as u32);
            self.write(QUEUE_READY, 1);
        }
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// Runs one input (see the module's comment).
    pub fn run(&mut self, data: &[u8]) {
        self.run_after(data, || {});
    }

    /// Runs one input, with `arrive` called once the driver is up and before any queue is
    /// notified (a frame arriving on the tap, say).
    pub fn run_after(&mut self, data: &[u8], arrive: impl FnOnce()) {
        let [size, plan, image @ ..] = data else {
            return;
        };
        self.reset();
        self.fill_memory(image);
        let size = if *size == 0xff { 256 } else { u32::from(*size) };
        self.bring_up(size);
        arrive();
        let rounds = (plan & 3) + 1;
        let notified = plan >> 2;
        for _ in 0..rounds {
            for q in 0..self.queues {
                if notified & (1 << q) != 0 {
                    self.transport.notify(q);
                }
            }
            if let Some(drain) = &self.drain {
                assert!(drain.wait_idle(DRAIN_TIMEOUT), "block requests hang");
            }
            self.transport.complete_pending();
            if self.transport.device_event_fd().is_some() {
                self.transport.device_event();
            }
        }
    }
}
