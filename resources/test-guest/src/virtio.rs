//! A minimal virtio-mmio driver at CPL3, polling: enough to bring a device up, give it one
//! queue of 8 descriptors and wait for buffers to come back. Devices are found as an OS finds
//! them: in the DSDT (`LNRO0005` devices) when there are ACPI tables, otherwise from the
//! `virtio_mmio.device=SIZE@ADDR:IRQ` words on the command line.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

use crate::boot::BootInfo;

const MAGIC: u32 = 0x7472_6976;
const REG_MAGIC: usize = 0x000;
const REG_VERSION: usize = 0x004;
const REG_DEVICE_ID: usize = 0x008;
const REG_DEVICE_FEATURES: usize = 0x010;
const REG_DEVICE_FEATURES_SEL: usize = 0x014;
const REG_DRIVER_FEATURES: usize = 0x020;
const REG_DRIVER_FEATURES_SEL: usize = 0x024;
const REG_QUEUE_SEL: usize = 0x030;
const REG_QUEUE_NUM_MAX: usize = 0x034;
const REG_QUEUE_NUM: usize = 0x038;
const REG_QUEUE_READY: usize = 0x044;
const REG_QUEUE_NOTIFY: usize = 0x050;
const REG_INTERRUPT_STATUS: usize = 0x060;
const REG_INTERRUPT_ACK: usize = 0x064;
const REG_STATUS: usize = 0x070;
const REG_QUEUE_DESC: usize = 0x080;
const REG_QUEUE_AVAIL: usize = 0x090;
const REG_QUEUE_USED: usize = 0x0a0;

const STATUS_ACKNOWLEDGE: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
pub const QUEUE_SIZE: u16 = 8;

pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;
/// virtio-blk: the disk is read-only.
pub const BLK_F_RO: u64 = 1 << 5;

/// Per queue: descriptor table, available ring, used ring and a data page, one page each, in
/// .bss (identity mapped, so virtual addresses are guest-physical).
pub const MAX_QUEUES: usize = 2;
#[repr(C, align(4096))]
struct Area([u8; MAX_QUEUES * 4 * 4096]);
static mut AREA: Area = Area([0; MAX_QUEUES * 4 * 4096]);

fn area_of(queue: u16) -> usize {
    core::ptr::addr_of!(AREA) as usize + usize::from(queue) * 4 * 4096
}

/// The data page of queue 0.
pub fn buffer() -> usize {
    buffer_of(0)
}

/// The data page of `queue`.
pub fn buffer_of(queue: u16) -> usize {
    area_of(queue) + 3 * 4096
}

#[derive(Clone, Copy)]
pub struct Device {
    pub base: usize,
    pub irq: u32,
    pub device_id: u32,
}

fn rd(base: usize, off: usize) -> u32 {
    // SAFETY: the device window is mapped (uncached, user accessible) by entry.rs's tables.
    unsafe { read_volatile((base + off) as *const u32) }
}

fn wr(base: usize, off: usize, v: u32) {
    // SAFETY: as in rd.
    unsafe { write_volatile((base + off) as *mut u32, v) }
}

fn parse_hex(s: &str) -> Option<usize> {
    usize::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// The _HID of a virtio-mmio device in a DSDT.
pub const ACPI_HID: &str = "LNRO0005";

/// A modern virtio-mmio device at `base`, if one answers there.
fn probe(base: usize, irq: u32) -> Option<Device> {
    if !(0xc000_0000..0x1_0000_0000).contains(&base)
        || rd(base, REG_MAGIC) != MAGIC
        || rd(base, REG_VERSION) != 2
    {
        return None;
    }
    // Device id 0 is an empty transport (QEMU's microvm lists every one of its windows).
    let device_id = rd(base, REG_DEVICE_ID);
    (device_id != 0).then_some(Device {
        base,
        irq,
        device_id,
    })
}

/// Every virtio-mmio device that answers with the magic value: the DSDT's if it lists any,
/// else the command line's.
pub fn devices(boot: &BootInfo) -> impl Iterator<Item = Device> + '_ {
    let acpi = boot.tables().map(|t| t.dsdt.find(ACPI_HID));
    let use_cmdline = boot
        .tables()
        .is_none_or(|t| t.dsdt.find(ACPI_HID).next().is_none());
    let from_acpi = acpi
        .into_iter()
        .flatten()
        .filter_map(|d| probe(d.memory?.0 as usize, d.irq?));
    let from_cmdline = boot
        .cmdline()
        .split_ascii_whitespace()
        .filter(move |_| use_cmdline)
        .filter_map(|w| {
            let spec = w.strip_prefix("virtio_mmio.device=")?;
            let (_, rest) = spec.split_once('@')?;
            let (addr, irq) = rest.split_once(':')?;
            probe(parse_hex(addr)?, irq.parse().ok()?)
        });
    from_acpi.chain(from_cmdline)
}

/// The features the device offers.
pub fn device_features(dev: &Device) -> u64 {
    wr(dev.base, REG_DEVICE_FEATURES_SEL, 0);
    let low = u64::from(rd(dev.base, REG_DEVICE_FEATURES));
    wr(dev.base, REG_DEVICE_FEATURES_SEL, 1);
    low | (u64::from(rd(dev.base, REG_DEVICE_FEATURES)) << 32)
}

/// Resets the device and negotiates VERSION_1 only; sets up queue 0. Err says why not.
pub fn bring_up(dev: &Device) -> Result<(), &'static str> {
    bring_up_queues(dev, 1)
}

/// Like `bring_up`, with queues 0..count.
pub fn bring_up_queues(dev: &Device, count: u16) -> Result<(), &'static str> {
    let b = dev.base;
    wr(b, REG_STATUS, 0);
    wr(b, REG_STATUS, STATUS_ACKNOWLEDGE);
    wr(b, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    wr(b, REG_DEVICE_FEATURES_SEL, 1);
    if rd(b, REG_DEVICE_FEATURES) & 1 == 0 {
        return Err("device does not offer VERSION_1");
    }
    wr(b, REG_DRIVER_FEATURES_SEL, 1);
    wr(b, REG_DRIVER_FEATURES, 1);
    wr(b, REG_DRIVER_FEATURES_SEL, 0);
    wr(b, REG_DRIVER_FEATURES, 0);
    wr(
        b,
        REG_STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
    );
    if rd(b, REG_STATUS) & STATUS_FEATURES_OK == 0 {
        return Err("FEATURES_OK refused");
    }
    for queue in 0..count.min(MAX_QUEUES as u16) {
        wr(b, REG_QUEUE_SEL, u32::from(queue));
        if rd(b, REG_QUEUE_NUM_MAX) < u32::from(QUEUE_SIZE) {
            return Err("queue too small");
        }
        let area = area_of(queue);
        // SAFETY: the area belongs to this driver; one device at a time uses it.
        unsafe { core::ptr::write_bytes(area as *mut u8, 0, 3 * 4096) };
        wr(b, REG_QUEUE_NUM, u32::from(QUEUE_SIZE));
        for (reg, addr) in [
            (REG_QUEUE_DESC, area),
            (REG_QUEUE_AVAIL, area + 4096),
            (REG_QUEUE_USED, area + 2 * 4096),
        ] {
            wr(b, reg, addr as u32);
            wr(b, reg + 4, (addr as u64 >> 32) as u32);
        }
        wr(b, REG_QUEUE_READY, 1);
    }
    wr(b, REG_QUEUE_SEL, 0);
    wr(
        b,
        REG_STATUS,
        STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
    );
    if rd(b, REG_QUEUE_READY) != 1 {
        return Err("queue refused");
    }
    Ok(())
}

/// One buffer of a request: guest address, length, device-writable.
#[derive(Clone, Copy)]
pub struct Segment {
    pub addr: usize,
    pub len: u32,
    pub device_writes: bool,
}

/// Submits one chain at queue position `slot` of queue 0 and waits for the device to return
/// it. Returns the length the device reports written.
pub fn request(dev: &Device, segments: &[Segment], slot: u16) -> Result<u32, &'static str> {
    post(dev, 0, segments, slot);
    wait_used(dev, 0, slot, 2_000_000)
}

/// Makes one chain available at position `slot` of `queue` and notifies; does not wait.
/// Descriptors are used from index 3 * (slot % 2), so two chains may be outstanding.
pub fn post(dev: &Device, queue: u16, segments: &[Segment], slot: u16) {
    let area = area_of(queue);
    let (desc, avail) = (area, area + 4096);
    let first = 3 * usize::from(slot % 2);
    for (i, s) in segments.iter().enumerate().take(3) {
        let d = desc + 16 * (first + i);
        let mut flags = if s.device_writes { DESC_F_WRITE } else { 0 };
        if i + 1 < segments.len() {
            flags |= DESC_F_NEXT;
        }
        // SAFETY: writing our own descriptor table.
        unsafe {
            write_volatile(d as *mut u64, s.addr as u64);
            write_volatile((d + 8) as *mut u32, s.len);
            write_volatile((d + 12) as *mut u16, flags);
            write_volatile((d + 14) as *mut u16, (first + i + 1) as u16);
        }
    }
    // SAFETY: our own available ring.
    unsafe {
        write_volatile(
            (avail + 4 + 2 * usize::from(slot % QUEUE_SIZE)) as *mut u16,
            first as u16,
        );
        fence(Ordering::SeqCst);
        write_volatile((avail + 2) as *mut u16, slot.wrapping_add(1));
    }
    fence(Ordering::SeqCst);
    wr(dev.base, REG_QUEUE_NOTIFY, u32::from(queue));
}

/// Waits (up to `spins` polls) until `queue` returned the chain posted at `slot`.
pub fn wait_used(dev: &Device, queue: u16, slot: u16, spins: u32) -> Result<u32, &'static str> {
    let used = area_of(queue) + 2 * 4096;
    for _ in 0..spins {
        // SAFETY: the device writes the used ring; volatile reads see it.
        let idx = unsafe { read_volatile((used + 2) as *const u16) };
        if idx.wrapping_sub(slot) as i16 > 0 {
            fence(Ordering::SeqCst);
            let elem = used + 4 + 8 * usize::from(slot % QUEUE_SIZE);
            // SAFETY: as above.
            return Ok(unsafe { read_volatile((elem + 4) as *const u32) });
        }
        if rd(dev.base, REG_STATUS) & 64 != 0 {
            return Err("device needs reset");
        }
        core::hint::spin_loop();
    }
    Err("no answer from the device")
}

/// Reads device configuration space.
pub fn config_byte(dev: &Device, offset: usize) -> u8 {
    // SAFETY: as in rd; config space starts at 0x100.
    unsafe { read_volatile((dev.base + 0x100 + offset) as *const u8) }
}

/// The interrupt status register, acknowledged after reading.
pub fn take_interrupt_status(dev: &Device) -> u32 {
    let status = rd(dev.base, REG_INTERRUPT_STATUS);
    wr(dev.base, REG_INTERRUPT_ACK, status);
    status
}
