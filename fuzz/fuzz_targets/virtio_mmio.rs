//! virtio-mmio register access in any order: each 7-byte record is an access kind, a register
//! offset and a value; the device behind is virtio-rng, over guest memory the fuzzer does not
//! shape (queues may point anywhere).
#![no_main]

use std::sync::Mutex;

use devices::bus::BusDevice;
use devices::virtio::Rng;
use libfuzzer_sys::fuzz_target;
use vmm_fuzz::virtio::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut slot = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let harness = slot.get_or_insert_with(|| Harness::new(1, |_| (Box::new(Rng::new()), None)));
    harness.reset();
    for record in data.chunks_exact(7) {
        let offset = u64::from(u16::from_le_bytes([record[1], record[2]]) & 0x1ff);
        let value = [record[3], record[4], record[5], record[6]];
        // Access widths 1, 2 and 4 (a driver uses 4; a hostile one any).
        let width = [1, 2, 4][usize::from(record[0] >> 2) % 3];
        let t = harness.transport();
        match record[0] & 3 {
            0 => t.write(0, offset, &value[..width]),
            1 => {
                let mut out = [0u8; 4];
                t.read(0, offset, &mut out[..width]);
            }
            2 => t.notify(u32::from(record[3])),
            _ => t.complete_pending(),
        }
    }
});
