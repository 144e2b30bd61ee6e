//! virtio-blk on a raw file. Requests are parsed on the main loop, where notifications
//! arrive, and carried out by the device's own I/O thread, so a slow disk never stalls the
//! loop. A finished request is queued in `completed` and the completion callback (a main-loop
//! bottom half in the VMM) has the transport put it on the used ring — QEMU's thread pool and
//! completion BH, in small.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
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

use super::stats::BlockStats;
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
/// Waits for the requests a disk has handed to its I/O thread: how a caller outside the main
/// loop (the fuzz harness) knows that what a notify started has finished.
#[derive(Clone)]
pub struct BlockDrain(Arc<InFlight>);

impl BlockDrain {
    /// False if requests were still running after `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.0.wait_idle(timeout)
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
    stats: Arc<BlockStats>,
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
        // Seeking to the end measures block devices too, whose metadata says 0 bytes.
        let len = (&file)
            .seek(SeekFrom::End(0))
            .map_err(|e| format!("{}: {e}", config.path.display()))?;
        let capacity_sectors = len / SECTOR_SIZE;
        let mut id = [0u8; ID_BYTES];
        for (dst, src) in id.iter_mut().zip(config.id.bytes()) {
            *dst = src;
        }
        let (to_io, from_main) = mpsc::channel();
        let completed: Completions = Arc::default();
        let generation = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(InFlight::default());
        let stats = Arc::new(BlockStats::default());
        let io = IoThread {
            stats: stats.clone(),
            generation: generation.clone(),
            in_flight: in_flight.clone(),
            file,
            mem,
            readonly: config.readonly,
            capacity_sectors,
            id,
            completed: completed.clone(),
            on_complete,
            host_error_logged: Cell::new(false),
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
            stats,
        })
    }

    pub fn drain(&self) -> BlockDrain {
        BlockDrain(self.in_flight.clone())
    }

    /// The disk's counters, kept by its I/O thread.
    pub fn stats(&self) -> Arc<BlockStats> {
        self.stats.clone()
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
    stats: Arc<BlockStats>,
    /// The host's first I/O error is logged; the guest sees every one as IOERR.
    host_error_logged: Cell<bool>,
}

impl IoThread {
    /// A read, write or flush the host refused (a full or failing disk): logged once per
    /// disk, so a guest retrying cannot flood the log.
    fn host_error(&self, what: &str, e: &std::io::Error) {
        if !self.host_error_logged.replace(true) {
            log::warn!("virtio-blk: {what}: {e}; the guest gets an I/O error (logged once)");
        }
    }

    fn run(self, requests: Receiver<Request>) {
        crate::thread_hook::thread_started("virtio-blk-io");
        while let Ok(req) = requests.recv() {
            // A request queued before a reset belongs to a driver that is gone: its buffers
            // may be the new boot's memory by now, so it is not carried out.
            if req.generation == self.generation.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (status, written) = self.execute(&req);
                self.count(&req, status, started.elapsed());
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

    /// Counts a finished request as libvirt's block stats do: reads, writes and flushes that
    /// succeeded, with their bytes and time; every failure as an error.
    fn count(&self, req: &Request, status: u8, took: Duration) {
        if status != S_OK {
            self.stats.failed();
            return;
        }
        let bytes = || req.data.iter().map(|d| u64::from(d.1)).sum();
        match req.kind {
            T_IN => self.stats.read_done(bytes(), took),
            T_OUT => self.stats.write_done(bytes(), took),
            T_FLUSH => self.stats.flush_done(took),
            _ => {}
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
                    if self.mem.read_slice(&mut buf, addr).is_err() {
                        return (S_IOERR, 0);
                    }
                    if let Err(e) = self.file.write_all_at(&buf, offset) {
                        self.host_error(&format!("write at byte {offset}"), &e);
                        return (S_IOERR, 0);
                    }
                    offset += u64::from(len);
                }
                (S_OK, 0)
            }
            T_FLUSH => {
                if self.readonly {
                    return (S_OK, 0);
                }
                match self.file.sync_data() {
                    Ok(()) => (S_OK, 0),
                    Err(e) => {
                        self.host_error("flush", &e);
                        (S_IOERR, 0)
                    }
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
mod tests;
