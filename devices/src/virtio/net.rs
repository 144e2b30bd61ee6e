//! virtio-net on a tap device. TX: each chain is a virtio_net_hdr plus a frame, written to the
//! tap. RX: a frame read from the tap goes into the next buffer the driver posted; while the
//! driver has posted none, the frame waits here and the tap is not read (the kernel queues the
//! rest), so a driver slow to refill loses and duplicates nothing.

use std::os::fd::RawFd;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::tap::Tap;
use super::{GuestError, VirtioDevice, TYPE_NET, VIRTIO_F_VERSION_1};

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
}

impl Net {
    pub fn new(config: &NetConfig) -> Result<Net, String> {
        Ok(Net {
            tap: Tap::open(&config.tap)?,
            mac: config.mac,
            pending: None,
            scratch: vec![0; MAX_FRAME],
            tx_error_logged: false,
        })
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
            if frame.len() > HDR_LEN {
                if let Err(e) = self.tap.write_frame(&frame[HDR_LEN..]) {
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
                match self.tap.read_frame(&mut self.scratch) {
                    Ok(Some(n)) => self.pending = Some(self.scratch[..n].to_vec()),
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("virtio-net: tap read: {e}");
                        break;
                    }
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
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        config[6..].copy_from_slice(&LINK_UP.to_le_bytes());
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|at| config.get(at))
                .copied()
                .unwrap_or(0);
        }
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
            while let Ok(Some(_)) = self.tap.read_frame(&mut self.scratch) {}
            self.pending = None;
            return Ok(false);
        }
        match queues.get_mut(RX) {
            Some(rx) if rx.ready() => self.receive(rx, mem),
            _ => Ok(false),
        }
    }

    fn wants_events(&self) -> bool {
        self.pending.is_none()
    }

    fn reset(&mut self) {
        self.pending = None;
    }
}
