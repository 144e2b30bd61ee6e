use super::*;
use crate::virtio::mmio::test_utils::{bring_up, memory};
use crate::virtio::MmioTransport;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vmm_sys_util::eventfd::EventFd;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

struct Disk {
    path: PathBuf,
}

impl Disk {
    fn new(tag: &str, sectors: u64) -> Disk {
        let path = std::env::temp_dir().join(format!("blk-test-{tag}-{}", std::process::id()));
        let mut bytes = vec![0u8; (sectors * SECTOR_SIZE) as usize];
        bytes[..8].copy_from_slice(b"VMM-DISK");
        std::fs::write(&path, bytes).unwrap();
        Disk { path }
    }
}

impl Disk {
    /// The disk as `--disk path=...,id=disk0[,readonly=on]` gives it.
    fn config(&self, readonly: bool) -> BlockConfig {
        BlockConfig {
            path: self.path.clone(),
            readonly,
            id: "disk0".into(),
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A transport around a block device, brought up with queue 0 at the mock queue.
fn transport(
    m: &GuestMemoryMmap,
    vq: &MockSplitQueue<GuestMemoryMmap>,
    config: BlockConfig,
) -> Arc<Mutex<MmioTransport>> {
    let block = Block::new(&config, m.clone(), Box::new(|| {})).unwrap();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let t = Arc::new(Mutex::new(MmioTransport::new(
        Box::new(block),
        m.clone(),
        irq,
    )));
    bring_up(
        &mut t.lock().unwrap(),
        vq.desc_table_addr().0,
        vq.avail_addr().0,
        vq.used_addr().0,
        16,
    );
    t
}

/// Submits the chains and waits until the I/O thread has completed `n` requests.
fn run(t: &Arc<Mutex<MmioTransport>>, vq: &MockSplitQueue<GuestMemoryMmap>, n: u16) {
    t.lock().unwrap().notify(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while vq.used().idx().load() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never completed"
        );
        t.lock().unwrap().complete_pending();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn header(m: &GuestMemoryMmap, at: u64, kind: u32, sector: u64) {
    m.write_obj(kind, GuestAddress(at)).unwrap();
    m.write_obj(0u32, GuestAddress(at + 4)).unwrap();
    m.write_obj(sector, GuestAddress(at + 8)).unwrap();
}

/// Points every F_NEXT descriptor at the one after it (the mock takes `next` literally).
fn link(descs: &[RawDescriptor]) -> Vec<RawDescriptor> {
    descs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut s = SplitDescriptor::from(*d);
            if s.flags() & F_NEXT != 0 {
                s.set_next(i as u16 + 1);
            }
            RawDescriptor::from(s)
        })
        .collect()
}

fn chain(hdr: u64, data: Option<(u64, u32, bool)>, status: u64) -> Vec<RawDescriptor> {
    let mut v = vec![RawDescriptor::from(SplitDescriptor::new(
        hdr, 16, F_NEXT, 0,
    ))];
    if let Some((addr, len, w)) = data {
        v.push(RawDescriptor::from(SplitDescriptor::new(
            addr,
            len,
            F_NEXT | if w { F_WRITE } else { 0 },
            0,
        )));
    }
    v.push(RawDescriptor::from(SplitDescriptor::new(
        status, 1, F_WRITE, 0,
    )));
    v
}

#[test]
fn write_flush_read_back_and_get_id() {
    let disk = Disk::new("rw", 16);
    let m = memory();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x10000), 16);
    let t = transport(&m, &vq, disk.config(false));
    m.write_slice(&[0xab; 512], GuestAddress(0x40000)).unwrap();
    header(&m, 0x30000, T_OUT, 1);
    header(&m, 0x30100, T_FLUSH, 0);
    header(&m, 0x30200, T_IN, 1);
    header(&m, 0x30300, T_GET_ID, 0);
    header(&m, 0x30400, T_IN, 0);
    let mut descs = chain(0x30000, Some((0x40000, 512, false)), 0x50000);
    descs.extend(chain(0x30100, None, 0x50001));
    descs.extend(chain(0x30200, Some((0x41000, 512, true)), 0x50002));
    descs.extend(chain(0x30300, Some((0x42000, 20, true)), 0x50003));
    descs.extend(chain(0x30400, Some((0x43000, 512, true)), 0x50004));
    vq.add_desc_chains(&link(&descs), 0).unwrap();
    run(&t, &vq, 5);
    for i in 0..5 {
        assert_eq!(
            m.read_obj::<u8>(GuestAddress(0x50000 + i)).unwrap(),
            S_OK,
            "request {i}"
        );
    }
    let mut back = [0u8; 512];
    m.read_slice(&mut back, GuestAddress(0x41000)).unwrap();
    assert_eq!(back, [0xab; 512]);
    let on_disk = std::fs::read(&disk.path).unwrap();
    assert_eq!(&on_disk[512..1024], &[0xab; 512][..]);
    let mut id = [0u8; 5];
    m.read_slice(&mut id, GuestAddress(0x42000)).unwrap();
    assert_eq!(&id, b"disk0");
    let mut sector0 = [0u8; 8];
    m.read_slice(&mut sector0, GuestAddress(0x43000)).unwrap();
    assert_eq!(&sector0, b"VMM-DISK");
}

/// A machine reset while reads are queued: once reset returns, nothing more lands in
/// guest memory and nothing reaches the used ring.
#[test]
fn reset_drains_the_io_thread() {
    const READS: u64 = 5;
    const LEN: u32 = 2 << 20;
    let disk = Disk::new("drain", READS * u64::from(LEN) / SECTOR_SIZE);
    let m = memory();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x10000), 16);
    let t = transport(&m, &vq, disk.config(false));
    let buffers = 0x20_0000u64;
    let span = (READS * u64::from(LEN)) as usize;
    m.write_slice(&vec![0xff; span], GuestAddress(buffers))
        .unwrap();
    let mut descs = Vec::new();
    for i in 0..READS {
        let sector = i * u64::from(LEN) / SECTOR_SIZE;
        header(&m, 0x30000 + i * 0x100, T_IN, sector);
        let data = (buffers + i * u64::from(LEN), LEN, true);
        descs.extend(chain(0x30000 + i * 0x100, Some(data), 0x50000 + i));
    }
    vq.add_desc_chains(&link(&descs), 0).unwrap();
    t.lock().unwrap().notify(0);
    t.lock().unwrap().reset();
    let mut after_reset = vec![0u8; span];
    m.read_slice(&mut after_reset, GuestAddress(buffers))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut later = vec![0u8; span];
    m.read_slice(&mut later, GuestAddress(buffers)).unwrap();
    assert!(
        after_reset == later,
        "the I/O thread wrote guest memory after the reset"
    );
    t.lock().unwrap().complete_pending();
    assert_eq!(
        vq.used().idx().load(),
        0,
        "a stale completion reached the used ring"
    );
}

#[test]
fn read_only_and_out_of_range_requests_fail_cleanly() {
    let disk = Disk::new("ro", 4);
    let m = memory();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x10000), 16);
    let t = transport(
        &m,
        &vq,
        BlockConfig {
            path: disk.path.clone(),
            readonly: true,
            id: String::new(),
        },
    );
    header(&m, 0x30000, T_OUT, 0); // write to a read-only disk
    header(&m, 0x30100, T_IN, 4); // read past the end
    header(&m, 0x30200, T_IN, u64::MAX / 256); // sector * 512 overflows
    header(&m, 0x30300, 99, 0); // unknown type
    let chains = [
        chain(0x30000, Some((0x40000, 512, false)), 0x50000),
        chain(0x30100, Some((0x41000, 512, true)), 0x50001),
        chain(0x30200, Some((0x41000, 512, true)), 0x50002),
        chain(0x30300, None, 0x50003),
    ];
    vq.add_desc_chains(&link(&chains.concat()), 0).unwrap();
    run(&t, &vq, 4);
    let statuses: Vec<u8> = (0..4)
        .map(|i| m.read_obj(GuestAddress(0x50000 + i)).unwrap())
        .collect();
    assert_eq!(statuses, vec![S_IOERR, S_IOERR, S_IOERR, S_UNSUPP]);
    assert_eq!(
        std::fs::read(&disk.path).unwrap()[..8],
        *b"VMM-DISK",
        "read-only disk untouched"
    );
    let mut features_hi = [0u8; 4];
    use crate::bus::BusDevice;
    t.lock().unwrap().write(0, 0x14, &0u32.to_le_bytes());
    t.lock().unwrap().read(0, 0x10, &mut features_hi);
    assert_ne!(
        u32::from_le_bytes(features_hi) & (1 << 5),
        0,
        "RO feature offered"
    );
}

#[test]
fn malformed_chains_need_reset() {
    let disk = Disk::new("bad", 4);
    let m = memory();
    for bad in [
        // status byte not writable
        vec![
            RawDescriptor::from(SplitDescriptor::new(0x30000, 16, F_NEXT, 0)),
            RawDescriptor::from(SplitDescriptor::new(0x50000, 1, 0, 0)),
        ],
        // header too short
        vec![
            RawDescriptor::from(SplitDescriptor::new(0x30000, 8, F_NEXT, 0)),
            RawDescriptor::from(SplitDescriptor::new(0x50000, 1, F_WRITE, 0)),
        ],
        // a read whose data buffer is device-readable (wrong direction)
        chain(0x30000, Some((0x40000, 512, false)), 0x50000),
        // only one descriptor
        vec![RawDescriptor::from(SplitDescriptor::new(0x30000, 16, 0, 0))],
    ] {
        let vq = MockSplitQueue::create(&m, GuestAddress(0x10000), 16);
        header(&m, 0x30000, T_IN, 0);
        vq.add_desc_chains(&link(&bad), 0).unwrap();
        let t = transport(
            &m,
            &vq,
            BlockConfig {
                path: disk.path.clone(),
                readonly: false,
                id: String::new(),
            },
        );
        t.lock().unwrap().notify(0);
        let mut status = [0u8; 4];
        use crate::bus::BusDevice;
        t.lock().unwrap().read(0, 0x70, &mut status);
        assert_ne!(u32::from_le_bytes(status) & 64, 0, "needs reset");
    }
}

#[test]
fn discard_and_write_zeroes_clear_ranges() {
    let disk = Disk::new("zero", 16);
    std::fs::write(&disk.path, vec![0x5a; 16 * 512]).unwrap();
    let m = memory();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x10000), 16);
    let t = transport(
        &m,
        &vq,
        BlockConfig {
            path: disk.path.clone(),
            readonly: false,
            id: String::new(),
        },
    );
    header(&m, 0x30000, T_DISCARD, 0);
    header(&m, 0x30100, T_WRITE_ZEROES, 0);
    header(&m, 0x30200, T_WRITE_ZEROES, 0);
    let range = |at: u64, sector: u64, count: u32| {
        m.write_obj(sector, GuestAddress(at)).unwrap();
        m.write_obj(count, GuestAddress(at + 8)).unwrap();
        m.write_obj(0u32, GuestAddress(at + 12)).unwrap();
    };
    range(0x40000, 2, 2); // discard sectors 2-3
    range(0x40100, 8, 1); // zero sector 8
    range(0x40200, 15, 2); // past the end
    let mut descs = chain(0x30000, Some((0x40000, 16, false)), 0x50000);
    descs.extend(chain(0x30100, Some((0x40100, 16, false)), 0x50001));
    descs.extend(chain(0x30200, Some((0x40200, 16, false)), 0x50002));
    vq.add_desc_chains(&link(&descs), 0).unwrap();
    run(&t, &vq, 3);
    let statuses: Vec<u8> = (0..3)
        .map(|i| m.read_obj(GuestAddress(0x50000 + i)).unwrap())
        .collect();
    assert_eq!(statuses, vec![S_OK, S_OK, S_IOERR]);
    let data = std::fs::read(&disk.path).unwrap();
    assert_eq!(data.len(), 16 * 512, "size kept");
    assert!(data[2 * 512..4 * 512].iter().all(|b| *b == 0));
    assert!(data[8 * 512..9 * 512].iter().all(|b| *b == 0));
    assert!(
        data[4 * 512..8 * 512].iter().all(|b| *b == 0x5a),
        "neighbours untouched"
    );
    assert!(
        data[15 * 512..].iter().all(|b| *b == 0x5a),
        "the refused range untouched"
    );
}

#[test]
fn config_space_has_the_spec_size() {
    assert_eq!(size_of::<BlockConfigSpace>(), 60);
    assert_eq!(
        std::mem::offset_of!(BlockConfigSpace, max_discard_sectors),
        36
    );
    assert_eq!(
        std::mem::offset_of!(BlockConfigSpace, write_zeroes_may_unmap),
        56
    );
}

/// virtio_blk_config as the byte-offset code this replaced wrote it, for 8 sectors.
#[test]
fn config_space_bytes() {
    let disk = Disk::new("config-bytes", 8);
    let block = Block::new(&disk.config(false), memory(), Box::new(|| {})).unwrap();
    let mut config = [0xaau8; 64];
    block.read_config(0, &mut config);
    let mut want = [0u8; 64];
    want[0] = 8;
    want[36..57].copy_from_slice(&[
        0, 0, 0x40, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x40, 0, 1, 0, 0, 0, 1,
    ]);
    assert_eq!(config, want);
}

#[test]
fn capacity_in_config_space() {
    let disk = Disk::new("cap", 8);
    let block = Block::new(
        &BlockConfig {
            path: disk.path.clone(),
            readonly: false,
            id: String::new(),
        },
        memory(),
        Box::new(|| {}),
    )
    .unwrap();
    let mut cap = [0u8; 8];
    block.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 8);
    let mut past = [0xffu8; 4];
    block.read_config(u64::MAX, &mut past);
    assert_eq!(past, [0; 4]);
}
