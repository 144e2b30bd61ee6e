//! virtio-blk on a raw file. Requests are parsed on the main loop, where notifications
//! arrive, and carried out by the device's own I/O thread, so a slow disk never stalls the
//! loop. A finished request is queued in `completed` and the completion callback (a main-loop
//! bottom half in the VMM) has the transport put it on the used ring — QEMU's thread pool and
//! completion BH, in small.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueOwnedT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromZeros, Immutable, IntoBytes, KnownLayout};

use super::{read_config_bytes, GuestError, VirtioDevice, TYPE_BLOCK, VIRTIO_F_VERSION_1};

const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZES: [u16; 1] = [256];
const ID_BYTES: usize = 20;
/// Largest request (all data segments together); larger ones get IOERR.
const MAX_REQUEST_BYTES: u64 = 4 << 20;

const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;
const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;
/// Limits advertised for discard and write-zeroes: sectors per segment, segments per request.
const MAX_RANGE_SECTORS: u32 = 1 << 22;
const MAX_RANGE_SEGMENTS: u32 = 1;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const T_WRITE_ZEROES: u32 = 13;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// `--disk path=FILE[,readonly=on][,id=NAME]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockConfig {
    pub path: PathBuf,
    pub readonly: bool,
    pub id: String,
}

/// struct virtio_blk_config (virtio 1.2, 5.2.4), up to the write-zeroes fields.
#[derive(IntoBytes, FromZeros, Immutable, KnownLayout)]
#[repr(C, packed)]
struct BlockConfigSpace {
    capacity: U64,
    size_max: U32,
    seg_max: U32,
    /// geometry: cylinders (le16), heads, sectors.
    geometry: [u8; 4],
    blk_size: U32,
    /// topology: physical_block_exp, alignment_offset, min_io_size (le16), opt_io_size (le32).
    topology: [u8; 8],
    writeback: u8,
    unused0: u8,
    num_queues: U16,
    max_discard_sectors: U32,
    max_discard_seg: U32,
    discard_sector_alignment: U32,
    max_write_zeroes_sectors: U32,
    max_write_zeroes_seg: U32,
    write_zeroes_may_unmap: u8,
    unused1: [u8; 3],
}

/// One parsed request, owned by the I/O thread until it completes.
struct Request {
    generation: u64,
    queue: usize,
    head: u16,
    kind: u32,
    sector: u64,
    data: Vec<(GuestAddress, u32)>,
    status: GuestAddress,
}

type Completions = Arc<Mutex<Vec<(u64, usize, u16, u32)>>>;

/// How long a reset waits for the request the I/O thread is carrying out. A disk that takes
/// longer is broken; the reset goes on and says so.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests handed to the I/O thread and not yet finished, so a reset can wait for them
/// (QEMU drains a block device before resetting it).
#[derive(Default)]
struct InFlight {
    count: Mutex<u64>,
    idle: Condvar,
}

impl InFlight {
    fn start(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn finish(&self) {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.idle.notify_all();
        }
    }

    /// False if requests were still running after `timeout`.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self
                .idle
                .wait_timeout(count, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}
/// One descriptor as the parser sees it: guest address, length, device-writable.
type Segment = (GuestAddress, u32, bool);

pub struct Block {
    capacity_sectors: u64,
    readonly: bool,
    to_io: Option<Sender<Request>>,
    completed: Completions,
    /// Bumped on reset: older requests are skipped and their completions dropped.
    generation: Arc<AtomicU64>,
    in_flight: Arc<InFlight>,
    io_thread: Option<JoinHandle<()>>,
}

impl Block {
    /// Opens the file and starts the I/O thread. `on_complete` is called (from the I/O thread)
    /// after each request finishes.
    pub fn new(
        config: &BlockConfig,
        mem: GuestMemoryMmap,
        on_complete: Box<dyn Fn() + Send>,
    ) -> Result<Block, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(!config.readonly)
            .open(&config.path)
            .map_err(|e| format!("{}: {e}", config.path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", config.path.display()))?
            .len();
        let capacity_sectors = len / SECTOR_SIZE;
        let mut id = [0u8; ID_BYTES];
        for (dst, src) in id.iter_mut().zip(config.id.bytes()) {
            *dst = src;
        }
        let (to_io, from_main) = mpsc::channel();
        let completed: Completions = Arc::default();
        let generation = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(InFlight::default());
        let io = IoThread {
            generation: generation.clone(),
            in_flight: in_flight.clone(),
            file,
            mem,
            readonly: config.readonly,
            capacity_sectors,
            id,
            completed: completed.clone(),
            on_complete,
        };
        let io_thread = std::thread::Builder::new()
            .name("virtio-blk-io".into())
            .spawn(move || io.run(from_main))
            .map_err(|e| format!("cannot start the disk I/O thread: {e}"))?;
        Ok(Block {
            capacity_sectors,
            readonly: config.readonly,
            to_io: Some(to_io),
            completed,
            generation,
            in_flight,
            io_thread: Some(io_thread),
        })
    }

    /// Turns one descriptor chain into a request; Err for chains no driver would build.
    fn parse(
        &self,
        queue: usize,
        head: u16,
        descs: &[Segment],
        mem: &GuestMemoryMmap,
    ) -> Result<Request, GuestError> {
        let bad = |why: &str| GuestError(format!("virtio-blk: {why}"));
        let (first, rest) = descs.split_first().ok_or_else(|| bad("empty chain"))?;
        let (last, data) = rest
            .split_last()
            .ok_or_else(|| bad("request without a status byte"))?;
        let (hdr_addr, hdr_len, hdr_writable) = *first;
        if hdr_writable || hdr_len < 16 {
            return Err(bad("request header must be 16 device-readable bytes"));
        }
        let (status, status_len, status_writable) = *last;
        if !status_writable || status_len < 1 {
            return Err(bad("status must be a device-writable byte"));
        }
        let kind: u32 = mem
            .read_obj(hdr_addr)
            .map_err(|_| bad("header outside RAM"))?;
        let sector: u64 = mem
            .read_obj(GuestAddress(hdr_addr.0.wrapping_add(8)))
            .map_err(|_| bad("header outside RAM"))?;
        let device_writes = match kind {
            T_IN | T_GET_ID => Some(true),
            T_OUT | T_DISCARD | T_WRITE_ZEROES => Some(false),
            _ => None,
        };
        if let Some(want) = device_writes {
            if data.iter().any(|d| d.2 != want) {
                return Err(bad("data buffer in the wrong direction"));
            }
        }
        let data = data.iter().map(|d| (d.0, d.1)).collect();
        Ok(Request {
            generation: self.generation.load(Ordering::SeqCst),
            queue,
            head,
            kind,
            sector,
            data,
            status,
        })
    }
}

/// The thread that touches the file.
struct IoThread {
    file: File,
    mem: GuestMemoryMmap,
    readonly: bool,
    capacity_sectors: u64,
    id: [u8; ID_BYTES],
    completed: Completions,
    on_complete: Box<dyn Fn() + Send>,
    generation: Arc<AtomicU64>,
    in_flight: Arc<InFlight>,
}

impl IoThread {
    fn run(self, requests: Receiver<Request>) {
        while let Ok(req) = requests.recv() {
            // A request queued before a reset belongs to a driver that is gone: its buffers
            // may be the new boot's memory by now, so it is not carried out.
            if req.generation == self.generation.load(Ordering::SeqCst) {
                let (status, written) = self.execute(&req);
                // A status byte the guest moved out of RAM meanwhile is the guest's problem.
                let _ = self.mem.write_obj(status, req.status);
                self.completed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((req.generation, req.queue, req.head, written + 1));
                (self.on_complete)();
            }
            self.in_flight.finish();
        }
    }

    /// Reads `len` bytes at `offset` of the file straight into guest memory (no bounce buffer).
    fn read_into_guest(&self, addr: GuestAddress, len: u32, offset: u64) -> Result<(), ()> {
        let slice = self.mem.get_slice(addr, len as usize).map_err(|_| ())?;
        let mut done = 0usize;
        while done < slice.len() {
            // SAFETY: `slice` is a live mapping of guest RAM covering [ptr, ptr + len) (checked
            // by get_slice); pread writes at most the remaining bytes into it.
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    slice.ptr_guard_mut().as_ptr().add(done).cast(),
                    slice.len() - done,
                    (offset + done as u64) as libc::off_t,
                )
            };
            match n {
                n if n > 0 => done += n as usize,
                0 => return Err(()), // past the end of the file
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return Err(()),
            }
        }
        Ok(())
    }

    /// Discard and write-zeroes: each 16-byte segment {sector, num_sectors, flags} becomes a
    /// zeroed range (a punched hole where the file system can). Reading back gives zeroes
    /// either way, which discard allows and write-zeroes requires.
    fn zero_ranges(&self, req: &Request) -> Result<(), u8> {
        let mut segments = Vec::new();
        let bytes: u64 = req.data.iter().map(|d| u64::from(d.1)).sum();
        if bytes > 16 * u64::from(MAX_RANGE_SEGMENTS) {
            return Err(S_UNSUPP); // more segments than advertised (checked before allocating)
        }
        for &(addr, len) in &req.data {
            let mut buf = vec![0u8; len as usize];
            self.mem.read_slice(&mut buf, addr).map_err(|_| S_IOERR)?;
            segments.extend(buf.chunks_exact(16).map(|c| {
                let sector = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                let count = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
                (sector, count)
            }));
        }
        if segments.is_empty() || segments.len() > MAX_RANGE_SEGMENTS as usize {
            return Err(S_UNSUPP);
        }
        for (sector, count) in segments {
            let end = sector.checked_add(u64::from(count)).ok_or(S_IOERR)?;
            if count > MAX_RANGE_SECTORS || end > self.capacity_sectors {
                return Err(S_IOERR);
            }
            let (offset, len) = (
                (sector * SECTOR_SIZE) as libc::off_t,
                (u64::from(count) * SECTOR_SIZE) as libc::off_t,
            );
            // SAFETY: fallocate on our own file descriptor with a checked range.
            let punched = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset,
                    len,
                )
            };
            if punched != 0 {
                // No hole punching here: write the zeroes, a bounded chunk at a time.
                let zeroes = [0u8; 64 * 1024];
                let (mut at, end) = (offset as u64, (offset + len) as u64);
                while at < end {
                    let n = (end - at).min(zeroes.len() as u64) as usize;
                    self.file
                        .write_all_at(&zeroes[..n], at)
                        .map_err(|_| S_IOERR)?;
                    at += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Byte range of the request on the disk, if it fits.
    fn range(&self, req: &Request) -> Option<(u64, u64)> {
        let total: u64 = req.data.iter().map(|d| u64::from(d.1)).sum();
        let start = req.sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(total)?;
        (end <= self.capacity_sectors * SECTOR_SIZE && total <= MAX_REQUEST_BYTES)
            .then_some((start, total))
    }

    /// Carries out a request; returns the status and the bytes written into guest memory.
    fn execute(&self, req: &Request) -> (u8, u32) {
        match req.kind {
            T_IN => {
                let Some((mut offset, _)) = self.range(req) else {
                    return (S_IOERR, 0);
                };
                let mut written = 0u32;
                for &(addr, len) in &req.data {
                    if self.read_into_guest(addr, len, offset).is_err() {
                        return (S_IOERR, written);
                    }
                    offset += u64::from(len);
                    written += len;
                }
                (S_OK, written)
            }
            T_OUT => {
                if self.readonly {
                    return (S_IOERR, 0);
                }
                let Some((mut offset, _)) = self.range(req) else {
                    return (S_IOERR, 0);
                };
                for &(addr, len) in &req.data {
                    let mut buf = vec![0u8; len as usize];
                    if self.mem.read_slice(&mut buf, addr).is_err()
                        || self.file.write_all_at(&buf, offset).is_err()
                    {
                        return (S_IOERR, 0);
                    }
                    offset += u64::from(len);
                }
                (S_OK, 0)
            }
            T_FLUSH => {
                if self.readonly || self.file.sync_data().is_ok() {
                    (S_OK, 0)
                } else {
                    (S_IOERR, 0)
                }
            }
            T_DISCARD | T_WRITE_ZEROES => {
                if self.readonly {
                    return (S_IOERR, 0);
                }
                match self.zero_ranges(req) {
                    Ok(()) => (S_OK, 0),
                    Err(status) => (status, 0),
                }
            }
            T_GET_ID => match req.data.first() {
                Some(&(addr, len)) => {
                    let n = (len as usize).min(ID_BYTES);
                    match self.mem.write_slice(&self.id[..n], addr) {
                        Ok(()) => (S_OK, n as u32),
                        Err(_) => (S_IOERR, 0),
                    }
                }
                None => (S_IOERR, 0),
            },
            _ => (S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        let writable = if self.readonly {
            VIRTIO_BLK_F_RO
        } else {
            VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES
        };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | writable
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    /// Config space: capacity in 512-byte sectors, and the discard and write-zeroes limits;
    /// everything else reads as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = BlockConfigSpace {
            capacity: U64::new(self.capacity_sectors),
            max_discard_sectors: U32::new(MAX_RANGE_SECTORS),
            max_discard_seg: U32::new(MAX_RANGE_SEGMENTS),
            discard_sector_alignment: U32::new(1),
            max_write_zeroes_sectors: U32::new(MAX_RANGE_SECTORS),
            max_write_zeroes_seg: U32::new(MAX_RANGE_SEGMENTS),
            write_zeroes_may_unmap: 1,
            ..BlockConfigSpace::new_zeroed()
        };
        read_config_bytes(config.as_bytes(), offset, data);
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, GuestError> {
        let chains: Vec<(u16, Vec<Segment>)> = queue
            .iter(mem)
            .map_err(|e| GuestError(format!("virtio-blk: avail ring: {e:?}")))?
            .map(|chain| {
                let head = chain.head_index();
                (
                    head,
                    chain
                        .map(|d| (d.addr(), d.len(), d.is_write_only()))
                        .collect(),
                )
            })
            .collect();
        for (head, descs) in chains {
            let request = self.parse(index, head, &descs, mem)?;
            if let Some(to_io) = &self.to_io {
                self.in_flight.start();
                if to_io.send(request).is_err() {
                    self.in_flight.finish();
                    return Err(GuestError("virtio-blk: the I/O thread is gone".into()));
                }
            }
        }
        Ok(false)
    }

    fn take_completions(&mut self) -> Vec<(usize, u16, u32)> {
        let current = self.generation.load(Ordering::SeqCst);
        std::mem::take(&mut *self.completed.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .filter(|c| c.0 == current)
            .map(|c| (c.1, c.2, c.3))
            .collect()
    }

    /// Drops what the driver queued and waits for the request being carried out, so no
    /// I/O lands in guest memory after the reset.
    fn reset(&mut self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if !self.in_flight.wait_idle(DRAIN_TIMEOUT) {
            log::warn!(
                "virtio-blk: a request was still running {} s into a reset; it may still \
                 write guest memory",
                DRAIN_TIMEOUT.as_secs()
            );
        }
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.to_io.take(); // the I/O thread sees the channel close and ends
        if let Some(t) = self.io_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
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
        {
            use crate::bus::BusDevice;
            let mut t = t.lock().unwrap();
            let mut w = |off: u64, v: u32| t.write(0, off, &v.to_le_bytes());
            w(0x70, 1);
            w(0x70, 3);
            w(0x24, 1);
            w(0x20, 1);
            w(0x70, 11);
            w(0x38, 16);
            for (reg, addr) in [
                (0x80, vq.desc_table_addr().0),
                (0x90, vq.avail_addr().0),
                (0xa0, vq.used_addr().0),
            ] {
                w(reg, addr as u32);
                w(reg + 4, (addr >> 32) as u32);
            }
            w(0x44, 1);
            w(0x70, 15);
        }
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
        let m = mem();
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
        let m = mem();
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
        let m = mem();
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
        let m = mem();
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
        let m = mem();
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
        let block = Block::new(&disk.config(false), mem(), Box::new(|| {})).unwrap();
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
            mem(),
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
}
