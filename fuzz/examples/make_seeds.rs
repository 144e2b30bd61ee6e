//! Writes the seed inputs that are not recorded from clients: well-formed virtio requests in
//! the harness's layout (vmm_fuzz::virtio), a driver's register sequence, and the ACPI tables
//! the VMM really builds. `cargo run --example make_seeds -- CORPUS_DIR` (fuzz/seeds.sh).

use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm::arch::x86_64::acpi::{create_dsdt, setup_acpi, MmioDevice};
use vmm_fuzz::virtio::{MEM_SIZE, QUEUE_STRIDE};

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
/// Named seed inputs for one target.
type Seeds = Vec<(String, Vec<u8>)>;

/// Where the seeds' buffers live: above both queues' rings.
const BUFFERS: u64 = 0x6000;

/// Guest memory as the harness lays it out, built one structure at a time.
struct Image(Vec<u8>);

impl Image {
    fn new() -> Image {
        Image(vec![0; BUFFERS as usize + 0x2000])
    }

    fn put(&mut self, at: u64, bytes: &[u8]) {
        let at = at as usize;
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn descriptor(&mut self, queue: u64, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = queue * QUEUE_STRIDE + u64::from(index) * 16;
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        self.put(at, &d);
    }

    /// The available ring offering `heads` in order.
    fn offer(&mut self, queue: u64, heads: &[u16]) {
        let avail = queue * QUEUE_STRIDE + 0x1000;
        self.put(avail + 2, &(heads.len() as u16).to_le_bytes());
        for (i, head) in heads.iter().enumerate() {
            self.put(avail + 4 + 2 * i as u64, &head.to_le_bytes());
        }
    }

    /// The input: queue size 16, notify `queues` (a mask), one round. Trailing zeros are left
    /// out: the harness zeroes memory first.
    fn input(&self, queues: u8) -> Vec<u8> {
        let used = self.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let mut v = vec![16, queues << 2];
        v.extend_from_slice(&self.0[..used]);
        v
    }
}

fn block_request(image: &mut Image, kind: u32, sector: u64, data_len: u32, data_writable: bool) {
    let header = BUFFERS;
    let mut h = kind.to_le_bytes().to_vec();
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&sector.to_le_bytes());
    image.put(header, &h);
    image.descriptor(0, 0, header, 16, F_NEXT, 1);
    let status = if data_len > 0 {
        let flags = F_NEXT | if data_writable { F_WRITE } else { 0 };
        image.descriptor(0, 1, BUFFERS + 0x100, data_len, flags, 2);
        2
    } else {
        image.descriptor(0, 0, header, 16, F_NEXT, 2);
        2
    };
    image.descriptor(0, status, BUFFERS + 0x1f00, 1, F_WRITE, 0);
    image.offer(0, &[0]);
}

fn virtio_blk() -> Seeds {
    // (name, type, sector, data length, device-writable data)
    let kinds = [
        ("read", 0, 0, 512, true),
        ("write", 1, 3, 1024, false),
        ("flush", 4, 0, 0, false),
        ("get-id", 8, 0, 20, true),
        ("discard", 11, 0, 16, false),
        ("write-zeroes", 13, 0, 16, false),
        ("past-the-end", 0, 1 << 40, 512, true),
    ];
    kinds
        .iter()
        .map(|&(name, kind, sector, len, writable)| {
            let mut image = Image::new();
            block_request(&mut image, kind, sector, len, writable);
            if kind == 11 || kind == 13 {
                // One discard/write-zeroes segment: sector, count, flags.
                let mut seg = 2u64.to_le_bytes().to_vec();
                seg.extend_from_slice(&4u32.to_le_bytes());
                seg.extend_from_slice(&0u32.to_le_bytes());
                image.put(BUFFERS + 0x100, &seg);
            }
            (name.to_string(), image.input(1))
        })
        .collect()
}

fn virtio_rng() -> Seeds {
    let mut image = Image::new();
    image.descriptor(0, 0, BUFFERS, 64, F_WRITE | F_NEXT, 1);
    image.descriptor(0, 1, BUFFERS + 0x100, 32, F_WRITE, 0);
    image.descriptor(0, 2, BUFFERS + 0x200, 4096, F_WRITE, 0);
    image.offer(0, &[0, 2]);
    vec![("two-chains".into(), image.input(1))]
}

fn virtio_net() -> Seeds {
    let mut image = Image::new();
    // Receive: two posted buffers.
    image.descriptor(0, 0, BUFFERS, 1526, F_WRITE, 0);
    image.descriptor(0, 1, BUFFERS + 0x800, 1526, F_WRITE, 0);
    image.offer(0, &[0, 1]);
    // Transmit: virtio_net_hdr (12 bytes) then a 60-byte broadcast ARP-sized frame.
    let frame_at = BUFFERS + 0x1000;
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06]);
    frame.resize(72, 0);
    image.put(frame_at, &frame);
    image.descriptor(1, 0, frame_at, 12, F_NEXT, 1);
    image.descriptor(1, 1, frame_at + 12, 60, 0, 0);
    image.offer(1, &[0]);
    // The same frame arrives from the tap for the receive buffers (the target's input
    // starts with the arriving frame's length, then the frame).
    let arriving = &frame[12..];
    let with_frame = |input: Vec<u8>| {
        let mut v = (arriving.len() as u16).to_le_bytes().to_vec();
        v.extend_from_slice(arriving);
        v.extend_from_slice(&input);
        v
    };
    let mut seeds = vec![
        ("rx-and-tx".into(), with_frame(image.input(3))),
        ("rx-only".into(), with_frame(image.input(1))),
    ];
    // A frame larger than both buffers: truncated into a chain of two.
    let mut small = Image::new();
    small.descriptor(0, 0, BUFFERS, 40, F_WRITE | F_NEXT, 1);
    small.descriptor(0, 1, BUFFERS + 0x800, 20, F_WRITE, 0);
    small.offer(0, &[0]);
    seeds.push(("rx-truncated".into(), with_frame(small.input(1))));
    seeds
}

/// A Linux driver's register writes up to DRIVER_OK, then a notify, as 7-byte records.
fn virtio_mmio() -> Seeds {
    let mut v = Vec::new();
    let mut write = |offset: u16, value: u32| {
        v.push(2 << 2); // a 4-byte write
        v.extend_from_slice(&offset.to_le_bytes());
        v.extend_from_slice(&value.to_le_bytes());
    };
    write(0x70, 1);
    write(0x70, 3);
    write(0x14, 1);
    write(0x24, 1);
    write(0x20, 1);
    write(0x70, 11);
    write(0x30, 0);
    write(0x38, 16);
    write(0x80, 0);
    write(0x90, 0x1000);
    write(0xa0, 0x2000);
    write(0x44, 1);
    write(0x70, 15);
    v.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0]); // notify queue 0
    v.extend_from_slice(&[1 | (2 << 2), 0x70, 0, 0, 0, 0, 0]); // read Status
    vec![("bring-up".into(), v)]
}

fn guest_acpi() -> Seeds {
    let virtio: Vec<MmioDevice> = (0..3)
        .map(|i| MmioDevice {
            base: 0xd000_0000 + i * 0x1000,
            size: 0x1000,
            gsi: 5 + i as u32,
        })
        .collect();
    let mut seeds = Vec::new();
    let dsdt = create_dsdt(&virtio).expect("DSDT");
    seeds.push(("dsdt-body".to_string(), dsdt[36..].to_vec()));
    for cpus in [1u8, 4] {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("memory");
        setup_acpi(&mem, cpus, &virtio).expect("ACPI tables");
        let mut area = vec![0u8; 0x2_0000];
        mem.read_slice(&mut area, GuestAddress(0xe_0000))
            .expect("ACPI area");
        let used = area.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        area.truncate(used);
        seeds.push((format!("tables-{cpus}-cpus"), area));
    }
    seeds
}

/// Console sessions, in the target's steps (op, argument, ...): see
/// fuzz_targets/console_stream.rs.
fn console_stream() -> Seeds {
    let typed = |slot: u8, text: &[u8]| {
        let mut v = vec![2, slot, text.len() as u8];
        v.extend_from_slice(text);
        v
    };
    let mut session = vec![0, 0];
    session.extend(typed(0, b"info\r"));
    session.extend([5, 16, 4, 100, 1, 0x10, 8, 0, 3, 0]);
    let mut full_fifo = vec![0, 0];
    full_fifo.extend(typed(0, &[b'a'; 100]));
    full_fifo.extend([5, 200]);
    full_fifo.extend(typed(0, b"again"));
    full_fifo.extend([5, 10, 8, 0]);
    let mut replaced = vec![0, 0, 7, 1];
    replaced.extend(typed(0, b"abc"));
    replaced.extend([0, 1, 7, 0]);
    replaced.extend(typed(0, b"abc"));
    replaced.extend([5, 3, 8, 0]);
    vec![
        ("session".into(), session),
        (
            "takeover".into(),
            vec![0, 0, 4, 50, 0, 0x81, 1, 0, 8, 1, 3, 0, 3, 1],
        ),
        ("overflow".into(), {
            // Nine prints of 8 KiB and more: past the 64 KiB buffer.
            let mut v = vec![0, 0];
            v.extend([4, 0x80].repeat(9));
            v.extend([8, 0, 8, 0]);
            v
        }),
        ("full-fifo".into(), full_fifo),
        (
            "stopped".into(),
            vec![0, 0, 4, 10, 6, 0, 8, 0, 8, 0, 0, 0, 3, 0],
        ),
        ("replaced".into(), replaced),
    ]
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: make_seeds CORPUS_DIR");
    let targets: [(&str, Seeds); 6] = [
        ("console_stream", console_stream()),
        ("virtio_blk", virtio_blk()),
        ("virtio_rng", virtio_rng()),
        ("virtio_net", virtio_net()),
        ("virtio_mmio", virtio_mmio()),
        ("guest_acpi", guest_acpi()),
    ];
    for (target, seeds) in targets {
        let dir = Path::new(&out).join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (name, bytes) in seeds {
            assert!(bytes.len() <= MEM_SIZE + 2 + 2 + 1514 || target == "guest_acpi");
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
        }
    }
}
