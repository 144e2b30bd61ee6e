//! virtio-net on a tap device. TX: each chain is a virtio_net_hdr plus a frame, written to the
//! tap. RX: a frame read from the tap goes into the next buffer the driver posted; while the
//! driver has posted none, the frame waits here and the tap is not read (the kernel queues the
//! rest), so a driver slow to refill loses and duplicates nothing.

use std::os::fd::RawFd;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};
use zerocopy::little_endian::U16;
use zerocopy::{Immutable, IntoBytes, KnownLayout};

use std::sync::Arc;

use super::stats::NetStats;
use super::tap::Tap;
use super::{read_config_bytes, GuestError, VirtioDevice, TYPE_NET, VIRTIO_F_VERSION_1};

const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZES: [u16; 2] = [256, 256];
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
const LINK_UP: u16 = 1;
/// virtio_net_hdr with VERSION_1: 12 bytes (num_buffers included).
const HDR_LEN: usize = 12;
/// Largest frame we move (no TSO/GSO offered): Ethernet with jumbo headroom.
const MAX_FRAME: usize = 65_550;

/// struct virtio_net_config (virtio 1.2, 5.1.4) up to `status`: without VIRTIO_NET_F_MQ and
/// VIRTIO_NET_F_MTU the later fields do not exist for the driver.
#[derive(IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct NetConfigSpace {
    mac: [u8; 6],
    status: U16,
}

/// `--net tap=NAME[,mac=MAC]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub tap: String,
    pub mac: [u8; 6],
}

pub struct Net {
    tap: Tap,
    mac: [u8; 6],
    /// A frame read from the tap and not yet delivered (no RX buffer was available).
    pending: Option<Vec<u8>>,
    scratch: Vec<u8>,
    /// Errors writing to the tap are reported once.
    tx_error_logged: bool,
    /// Reading the tap failed for good (its interface was deleted, say): it is no longer
    /// watched, and frames the guest sends are dropped, so the loop neither spins on the
    /// dead fd nor floods the log.
    tap_failed: bool,
    stats: Arc<NetStats>,
}

impl Net {
    pub fn new(config: &NetConfig) -> Result<Net, String> {
        Ok(Net {
            tap: Tap::open(&config.tap)?,
            mac: config.mac,
            pending: None,
            scratch: vec![0; MAX_FRAME],
            tx_error_logged: false,
            tap_failed: false,
            stats: Arc::default(),
        })
    }

    /// The interface's counters, kept by its queue handlers.
    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    /// The next frame from the tap into `scratch`: its length, or None if none is waiting or
    /// the tap has failed.
    fn read_tap(&mut self) -> Option<usize> {
        if self.tap_failed {
            return None;
        }
        match self.tap.read_frame(&mut self.scratch) {
            Ok(frame) => frame,
            Err(e) => {
                self.stats.rx_error();
                self.tap_failed = true;
                log::warn!("virtio-net: tap read: {e}; the tap is no longer read, and frames the guest sends are dropped");
                None
            }
        }
    }

    fn transmit(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, GuestError> {
        let mut used = false;
        let mut frame = Vec::new();
        while let Some(chain) = queue
            .iter(mem)
            .map_err(|e| GuestError(format!("virtio-net: tx ring: {e:?}")))?
            .next()
        {
            let head = chain.head_index();
            frame.clear();
            for desc in chain {
                if desc.is_write_only() {
                    return Err(GuestError(
                        "virtio-net: device-writable buffer on the TX queue".into(),
                    ));
                }
                let len = desc.len() as usize;
                if frame.len() + len > HDR_LEN + MAX_FRAME {
                    return Err(GuestError("virtio-net: TX frame too large".into()));
                }
                let start = frame.len();
                frame.resize(start + len, 0);
                mem.read_slice(&mut frame[start..], desc.addr())
                    .map_err(|e| GuestError(format!("virtio-net: TX buffer outside RAM: {e}")))?;
            }
            if frame.len() > HDR_LEN && self.tap_failed {
                self.stats.tx_failed();
            } else if frame.len() > HDR_LEN {
                let sent = self.tap.write_frame(&frame[HDR_LEN..]);
                match &sent {
                    Ok(_) => self.stats.sent((frame.len() - HDR_LEN) as u64),
                    Err(_) => self.stats.tx_failed(),
                }
                if let Err(e) = sent {
                    if !self.tx_error_logged {
                        self.tx_error_logged = true;
                        log::warn!("virtio-net: tap write: {e} (frames are dropped)");
                    }
                }
            }
            queue
                .add_used(mem, head, 0)
                .map_err(|e| GuestError(format!("virtio-net: used ring: {e:?}")))?;
            used = true;
        }
        Ok(used)
    }

    /// Delivers frames while both a frame and a posted buffer exist.
    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, GuestError> {
        let mut used = false;
        loop {
            if self.pending.is_none() {
                match self.read_tap() {
                    Some(n) => self.pending = Some(self.scratch[..n].to_vec()),
                    None => break,
                }
            }
            let Some(frame) = self.pending.as_ref() else {
                break;
            };
            let Some(chain) = queue
                .iter(mem)
                .map_err(|e| GuestError(format!("virtio-net: rx ring: {e:?}")))?
                .next()
            else {
                break; // no buffer posted: keep the frame, stop reading the tap
            };
            let head = chain.head_index();
            let mut header = [0u8; HDR_LEN];
            header[10] = 1; // num_buffers
            let mut source = header.iter().chain(frame.iter()).copied();
            let total = HDR_LEN + frame.len();
            let mut written = 0usize;
            for desc in chain {
                if !desc.is_write_only() {
                    return Err(GuestError(
                        "virtio-net: device-readable buffer on the RX queue".into(),
                    ));
                }
                let chunk: Vec<u8> = source.by_ref().take(desc.len() as usize).collect();
                if chunk.is_empty() {
                    break;
                }
                mem.write_slice(&chunk, desc.addr())
                    .map_err(|e| GuestError(format!("virtio-net: RX buffer outside RAM: {e}")))?;
                written += chunk.len();
            }
            if written < total {
                log::debug!("virtio-net: RX buffer too small, frame of {total} bytes truncated");
            }
            queue
                .add_used(mem, head, written as u32)
                .map_err(|e| GuestError(format!("virtio-net: used ring: {e:?}")))?;
            self.stats.received(frame.len() as u64);
            self.pending = None;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    /// Config space: mac[6], status u16.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = NetConfigSpace {
            mac: self.mac,
            status: U16::new(LINK_UP),
        };
        read_config_bytes(config.as_bytes(), offset, data);
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, GuestError> {
        match index {
            RX => self.receive(queue, mem),
            TX => self.transmit(queue, mem),
            _ => Ok(false),
        }
    }

    fn event_fd(&self) -> Option<RawFd> {
        Some(self.tap.fd())
    }

    fn process_event(
        &mut self,
        queues: &mut [Queue],
        mem: &GuestMemoryMmap,
        driver_ready: bool,
    ) -> Result<bool, GuestError> {
        if !driver_ready {
            // No driver yet: like a NIC without receive buffers, drop what arrives.
            while self.read_tap().is_some() {
                self.stats.rx_dropped();
            }
            if self.pending.take().is_some() {
                self.stats.rx_dropped();
            }
            return Ok(false);
        }
        match queues.get_mut(RX) {
            Some(rx) if rx.ready() => self.receive(rx, mem),
            _ => Ok(false),
        }
    }

    fn wants_events(&self) -> bool {
        self.pending.is_none() && !self.tap_failed
    }

    fn reset(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    const F_WRITE: u16 = 2;

    /// A device on a fresh, non-persistent tap (gone when the device is dropped).
    fn net() -> Option<Net> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "vt{}x{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        match Net::new(&NetConfig {
            tap: name,
            mac: [0x52, 0x54, 0, 1, 2, 3],
        }) {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("skipped: cannot open a tap ({e})");
                None
            }
        }
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
    }

    fn queue<'a>(
        m: &'a GuestMemoryMmap,
        at: u64,
        descs: &[RawDescriptor],
    ) -> (MockSplitQueue<'a, GuestMemoryMmap>, Queue) {
        let vq = MockSplitQueue::create(m, GuestAddress(at), 16);
        vq.add_desc_chains(descs, 0).unwrap();
        let q: Queue = vq.create_queue().unwrap();
        (vq, q)
    }

    #[test]
    fn config_space_has_the_spec_size() {
        assert_eq!(size_of::<NetConfigSpace>(), 8);
        let c = NetConfigSpace {
            mac: [0x52, 0x54, 0, 1, 2, 3],
            status: U16::new(LINK_UP),
        };
        assert_eq!(c.as_bytes(), [0x52, 0x54, 0, 1, 2, 3, 1, 0]);
    }

    #[test]
    fn config_space_has_the_mac_and_link_up() {
        let Some(n) = net() else { return };
        let mut c = [0u8; 8];
        n.read_config(0, &mut c);
        assert_eq!(c, [0x52, 0x54, 0, 1, 2, 3, 1, 0]);
        let mut past = [9u8; 2];
        n.read_config(u64::MAX, &mut past);
        assert_eq!(past, [0, 0]);
    }

    #[test]
    fn a_frame_waits_for_a_buffer_and_is_delivered_once() {
        let Some(mut n) = net() else { return };
        let m = mem();
        let frame: Vec<u8> = (0..60u8).collect();
        n.pending = Some(frame.clone());
        // No RX buffer posted: nothing delivered, the frame is kept, stop reading the tap.
        let (_empty, mut no_buffers) = queue(&m, 0x10000, &[]);
        assert_eq!(n.process_queue(RX, &mut no_buffers, &m), Ok(false));
        assert!(!n.wants_events());
        // The driver posts one buffer: the frame arrives exactly once, behind the header.
        let (vq, mut rx) = queue(
            &m,
            0x20000,
            &[RawDescriptor::from(SplitDescriptor::new(
                0x40000, 2048, F_WRITE, 0,
            ))],
        );
        assert_eq!(n.process_queue(RX, &mut rx, &m), Ok(true));
        assert!(n.wants_events());
        assert_eq!(vq.used().idx().load(), 1);
        assert_eq!(
            vq.used().ring().ref_at(0).unwrap().load().len(),
            (HDR_LEN + 60) as u32
        );
        let mut got = vec![0u8; HDR_LEN + 60];
        m.read_slice(&mut got, GuestAddress(0x40000)).unwrap();
        assert_eq!(got[10], 1, "num_buffers");
        assert_eq!(&got[HDR_LEN..], &frame[..]);
        assert_eq!(
            n.process_queue(RX, &mut rx, &m),
            Ok(false),
            "not delivered twice"
        );
    }

    #[test]
    fn hostile_buffers_are_refused() {
        let Some(mut n) = net() else { return };
        let m = mem();
        // TX: a device-writable buffer, and one outside RAM.
        for desc in [
            SplitDescriptor::new(0x40000, 64, F_WRITE, 0),
            SplitDescriptor::new(0xffff_0000_0000, 64, 0, 0),
        ] {
            let (_vq, mut tx) = queue(&m, 0x10000, &[RawDescriptor::from(desc)]);
            assert!(n.process_queue(TX, &mut tx, &m).is_err(), "{desc:?}");
        }
        // TX: a frame larger than any Ethernet frame we move.
        let (_vq, mut tx) = queue(
            &m,
            0x10000,
            &[RawDescriptor::from(SplitDescriptor::new(
                0x40000, 0x80000, 0, 0,
            ))],
        );
        assert!(n.process_queue(TX, &mut tx, &m).is_err());
        // RX: a device-readable buffer, and one outside RAM.
        for desc in [
            SplitDescriptor::new(0x40000, 2048, 0, 0),
            SplitDescriptor::new(0xffff_0000_0000, 2048, F_WRITE, 0),
        ] {
            n.pending = Some(vec![1; 60]);
            let (_vq, mut rx) = queue(&m, 0x20000, &[RawDescriptor::from(desc)]);
            assert!(n.process_queue(RX, &mut rx, &m).is_err(), "{desc:?}");
        }
    }

    #[test]
    fn transmit_consumes_every_chain() {
        let Some(mut n) = net() else { return };
        let m = mem();
        let descs: Vec<RawDescriptor> = (0..3)
            .map(|i| {
                RawDescriptor::from(SplitDescriptor::new(
                    0x40000 + i * 0x1000,
                    (HDR_LEN + 60) as u32,
                    0,
                    0,
                ))
            })
            .collect();
        let (vq, mut tx) = queue(&m, 0x10000, &descs);
        assert_eq!(n.process_queue(TX, &mut tx, &m), Ok(true));
        assert_eq!(vq.used().idx().load(), 3);
    }
}
