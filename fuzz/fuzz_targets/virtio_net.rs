//! virtio-net transmit and receive queues over hostile descriptor tables (layout:
//! vmm_fuzz::virtio), on a real tap (needs root: CAP_NET_ADMIN and a network namespace of
//! its own). An input is a frame for the receive side, then the harness's input:
//! two bytes, the frame's length (little-endian; 0 for none), the frame, then the rest. The
//! frame is sent into the tap from the host's side once the driver is up, so it reaches the
//! device the way a frame from the network does; frames the guest sends go out of the tap
//! into the fuzzer's own namespace, where nothing answers.
#![no_main]

use std::sync::Mutex;

use devices::virtio::{Net, NetConfig};
use libfuzzer_sys::fuzz_target;
use vmm_fuzz::tap_peer::{self, TapPeer};
use vmm_fuzz::virtio::Harness;

static HARNESS: Mutex<Option<(Harness, TapPeer)>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let [low, high, rest @ ..] = data else {
        return;
    };
    let length = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
    let (frame, input) = rest.split_at(length);
    let mut slot = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    let (harness, peer) = slot.get_or_insert_with(|| {
        tap_peer::enter_own_network_namespace().expect("a network namespace (needs root)");
        let config = NetConfig {
            tap: format!("vfuzz{}", std::process::id() % 100_000),
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        };
        let harness = Harness::new(2, |_| (Box::new(Net::new(&config).expect("tap")), None));
        let peer = TapPeer::open(&config.tap).expect("the tap brought up");
        (harness, peer)
    });
    harness.run_after(input, || {
        if !frame.is_empty() {
            // Too short or too long for the interface: refused, so nothing arrives.
            let _ = peer.send(frame);
        }
    });
});
