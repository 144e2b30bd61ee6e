use super::test_utils::{bring_up, memory, r, w};
use super::*;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

const VRING_DESC_F_WRITE: u16 = 2;
const VRING_DESC_F_NEXT: u16 = 1;

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
