//! Counters the devices keep where the work happens (the disk's I/O thread, the net device's
//! queue handlers), read by management calls at any time. Atomics, so counting never takes a
//! lock on the I/O path and a reader never stalls a device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One counter: relaxed, since each is read on its own and only ever grows.
#[derive(Default, Debug)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a virtio-blk disk has done since the VMM started (resets do not clear it, as QEMU's
/// blockstats survive a guest reboot).
#[derive(Default, Debug)]
pub struct BlockStats {
    rd_reqs: Counter,
    rd_bytes: Counter,
    rd_ns: Counter,
    wr_reqs: Counter,
    wr_bytes: Counter,
    wr_ns: Counter,
    flush_reqs: Counter,
    flush_ns: Counter,
    errors: Counter,
}

/// A consistent-enough copy of `BlockStats` (each field read once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounters {
    pub rd_reqs: u64,
    pub rd_bytes: u64,
    pub rd_total_ns: u64,
    pub wr_reqs: u64,
    pub wr_bytes: u64,
    pub wr_total_ns: u64,
    pub flush_reqs: u64,
    pub flush_total_ns: u64,
    /// Requests that ended with an error status.
    pub errors: u64,
}

impl BlockStats {
    pub fn read_done(&self, bytes: u64, took: Duration) {
        self.rd_reqs.add(1);
        self.rd_bytes.add(bytes);
        self.rd_ns.add(nanos(took));
    }

    pub fn write_done(&self, bytes: u64, took: Duration) {
        self.wr_reqs.add(1);
        self.wr_bytes.add(bytes);
        self.wr_ns.add(nanos(took));
    }

    pub fn flush_done(&self, took: Duration) {
        self.flush_reqs.add(1);
        self.flush_ns.add(nanos(took));
    }

    pub fn failed(&self) {
        self.errors.add(1);
    }

    pub fn snapshot(&self) -> BlockCounters {
        BlockCounters {
            rd_reqs: self.rd_reqs.get(),
            rd_bytes: self.rd_bytes.get(),
            rd_total_ns: self.rd_ns.get(),
            wr_reqs: self.wr_reqs.get(),
            wr_bytes: self.wr_bytes.get(),
            wr_total_ns: self.wr_ns.get(),
            flush_reqs: self.flush_reqs.get(),
            flush_total_ns: self.flush_ns.get(),
            errors: self.errors.get(),
        }
    }
}

/// What a virtio-net interface has carried, from the guest's side as libvirt reports it: rx
/// is what the guest received, tx what it sent.
#[derive(Default, Debug)]
pub struct NetStats {
    rx_bytes: Counter,
    rx_packets: Counter,
    rx_errors: Counter,
    rx_drops: Counter,
    tx_bytes: Counter,
    tx_packets: Counter,
    tx_errors: Counter,
    tx_drops: Counter,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

impl NetStats {
    /// A frame (without the virtio header) went into a guest buffer.
    pub fn received(&self, bytes: u64) {
        self.rx_packets.add(1);
        self.rx_bytes.add(bytes);
    }

    /// A frame for the guest was thrown away (no driver, or the tap read failed).
    pub fn rx_dropped(&self) {
        self.rx_drops.add(1);
    }

    pub fn rx_error(&self) {
        self.rx_errors.add(1);
    }

    /// A frame from the guest reached the tap.
    pub fn sent(&self, bytes: u64) {
        self.tx_packets.add(1);
        self.tx_bytes.add(bytes);
    }

    /// A frame from the guest could not be written to the tap, and was dropped.
    pub fn tx_failed(&self) {
        self.tx_errors.add(1);
        self.tx_drops.add(1);
    }

    pub fn snapshot(&self) -> NetCounters {
        NetCounters {
            rx_bytes: self.rx_bytes.get(),
            rx_packets: self.rx_packets.get(),
            rx_errors: self.rx_errors.get(),
            rx_drops: self.rx_drops.get(),
            tx_bytes: self.tx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_errors: self.tx_errors.get(),
            tx_drops: self.tx_drops.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_counters_add_up() {
        let s = BlockStats::default();
        s.read_done(4096, Duration::from_micros(3));
        s.read_done(512, Duration::from_micros(1));
        s.write_done(512, Duration::from_nanos(7));
        s.flush_done(Duration::from_nanos(9));
        s.failed();
        let c = s.snapshot();
        assert_eq!((c.rd_reqs, c.rd_bytes, c.rd_total_ns), (2, 4608, 4000));
        assert_eq!((c.wr_reqs, c.wr_bytes, c.wr_total_ns), (1, 512, 7));
        assert_eq!((c.flush_reqs, c.flush_total_ns, c.errors), (1, 9, 1));
    }

    #[test]
    fn net_counters_add_up() {
        let s = NetStats::default();
        s.received(60);
        s.sent(64);
        s.sent(64);
        s.tx_failed();
        s.rx_dropped();
        let c = s.snapshot();
        assert_eq!((c.rx_packets, c.rx_bytes, c.rx_drops), (1, 60, 1));
        assert_eq!((c.tx_packets, c.tx_bytes), (2, 128));
        assert_eq!((c.tx_errors, c.tx_drops), (1, 1));
    }
}
