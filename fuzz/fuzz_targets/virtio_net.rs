//! virtio-net transmit and receive queues over hostile descriptor tables (layout:
//! vmm_fuzz::virtio), on a real tap (needs CAP_NET_ADMIN). The tap is down, so frames the
//! guest sends are dropped by the host, and none arrive for the receive queue.
#![no_main]

use std::sync::Mutex;

use devices::virtio::{Net, NetConfig};
use libfuzzer_sys::fuzz_target;
use vmm_fuzz::virtio::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut slot = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| {
        let config = NetConfig {
            tap: format!("vfuzz{}", std::process::id() % 100_000),
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        };
        Harness::new(2, |_| (Box::new(Net::new(&config).expect("tap")), None))
    })
    .run(data);
});
