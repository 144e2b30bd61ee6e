//! virtio-blk requests over hostile descriptor tables (layout: vmm_fuzz::virtio), on a real
//! 64 KiB disk file served by the device's I/O thread.
#![no_main]

use std::sync::Mutex;

use devices::virtio::{Block, BlockConfig};
use libfuzzer_sys::fuzz_target;
use vmm_fuzz::virtio::Harness;

static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fn disk() -> BlockConfig {
    let path = std::env::temp_dir().join(format!("vmm-fuzz-disk-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; 64 * 1024]).expect("disk file");
    BlockConfig {
        path,
        readonly: false,
        id: "fuzz0".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut slot = HARNESS.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| {
        Harness::new(1, |mem| {
            let block = Block::new(&disk(), mem.clone(), Box::new(|| {})).expect("block device");
            let drain = block.drain();
            (Box::new(block), Some(drain))
        })
    })
    .run(data);
});
