//! virtio-rng requests over hostile descriptor tables (layout: vmm_fuzz::virtio).
#![no_main]

use std::sync::Mutex;

use devices::virtio::Rng;
use libfuzzer_sys::fuzz_target;
use vmm_fuzz::virtio::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut slot = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| Harness::new(1, |_| (Box::new(Rng::new()), None)))
        .run(data);
});
