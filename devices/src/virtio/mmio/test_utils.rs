//! The transport bring-up the virtio unit tests share (Firecracker's virtio test_utils
//! pattern): guest memory, register access, and a driver's steps up to DRIVER_OK.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::bus::BusDevice;

pub(crate) fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
}

pub(crate) fn w(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(0, offset, &value.to_le_bytes());
}

pub(crate) fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut v = [0u8; 4];
    t.read(0, offset, &mut v);
    u32::from_le_bytes(v)
}

/// Drives the transport the way a Linux driver does, up to DRIVER_OK with queue 0 at `desc`/`avail`/`used`.
pub(crate) fn bring_up(t: &mut MmioTransport, desc: u64, avail: u64, used: u64, size: u32) {
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
