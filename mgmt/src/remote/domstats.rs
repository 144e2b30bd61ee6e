//! virConnectGetAllDomainStats and virDomainListGetStats (one procedure): the domain's
//! statistics by group, with libvirt's key names (`state.state`, `block.0.rd.reqs`,
//! `net.0.tx.pkts`, ...), so monitoring agents read them unchanged.

use super::domain::{DomainRef, DomainStatus};
use super::errors::driver_error;
use super::filters;
use super::program::Call;
use super::protocol::DOMAIN_LIST_MAX;
use super::typed_params::TypedParams;
use crate::rpc::xdr::{Decode, Encode, XdrError, XdrReader, XdrWriter};
use crate::rpc::RemoteError;

/// virDomainStatsTypes this VMM fills.
pub const STATE: u32 = 1;
pub const CPU_TOTAL: u32 = 2;
pub const BALLOON: u32 = 4;
pub const VCPU: u32 = 8;
pub const INTERFACE: u32 = 16;
pub const BLOCK: u32 = 32;
const SUPPORTED: u32 = STATE | CPU_TOTAL | BALLOON | VCPU | INTERFACE | BLOCK;

/// VIR_CONNECT_GET_ALL_DOMAINS_STATS_*: NOWAIT (never waits here anyway), BACKING (no
/// backing chains), ENFORCE_STATS (refuse groups we do not have).
const NOWAIT: u32 = 1 << 29;
const BACKING: u32 = 1 << 30;
const ENFORCE_STATS: u32 = 1 << 31;
const FLAGS: u32 = filters::ACTIVE
    | filters::INACTIVE
    | filters::PERSISTENT
    | filters::TRANSIENT
    | filters::RUNNING
    | filters::PAUSED
    | filters::SHUTOFF
    | filters::OTHER
    | NOWAIT
    | BACKING
    | ENFORCE_STATS;

/// VIR_ERR_ARGUMENT_UNSUPPORTED.
const ARGUMENT_UNSUPPORTED: i32 = 74;
/// VIR_VCPU_RUNNING.
const VCPU_RUNNING: i32 = 1;

/// `remote_nonnull_domain doms<REMOTE_DOMAIN_LIST_MAX>`.
pub struct DomainList(Vec<DomainRef>);

impl Decode for DomainList {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        let n = r.get_u32()? as usize;
        if n > DOMAIN_LIST_MAX {
            return Err(XdrError::TooLong {
                len: n,
                max: DOMAIN_LIST_MAX,
            });
        }
        (0..n)
            .map(|_| DomainRef::decode(r))
            .collect::<Result<_, _>>()
            .map(DomainList)
    }
}

/// `remote_domain_stats_record`.
pub struct Record(DomainRef, TypedParams);

impl Encode for Record {
    fn encode(&self, w: &mut XdrWriter) {
        self.0.encode(w);
        self.1.encode(w);
    }
}

/// The `flags` argument: every bit it may carry is known; the filters are applied.
pub struct StatsFlags(u32);

impl Decode for StatsFlags {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_u32().map(StatsFlags)
    }

    fn unsupported_flags(&self) -> u32 {
        self.0 & !FLAGS
    }
}

/// `{doms<>, stats, flags}` → `{retStats<>}`. An empty `doms` means every domain that passes
/// the filters; stats 0 means every group this VMM has.
pub fn get_all_domain_stats(
    call: &Call,
    (doms, stats, StatsFlags(flags)): (DomainList, u32, StatsFlags),
) -> Result<Vec<Record>, RemoteError> {
    if flags & ENFORCE_STATS != 0 && stats & !SUPPORTED != 0 {
        return Err(driver_error(
            ARGUMENT_UNSUPPORTED,
            format!(
                "argument unsupported: Stats types bits 0x{:x} are not supported by this daemon",
                stats & !SUPPORTED
            ),
        ));
    }
    let groups = if stats == 0 {
        SUPPORTED
    } else {
        stats & SUPPORTED
    };
    let Some(status) = call.status() else {
        return Ok(Vec::new());
    };
    let named = doms.0.is_empty() || doms.0.iter().any(|d| d.uuid == status.domain.uuid);
    if !named || !filters::matches(&status, flags & filters::ALL) {
        return Ok(Vec::new());
    }
    let params = collect(call, &status, groups)?;
    Ok(vec![Record(status.domain, params)])
}

fn collect(call: &Call, status: &DomainStatus, groups: u32) -> Result<TypedParams, RemoteError> {
    let mut p = TypedParams::default();
    let active = status.is_active();
    if groups & STATE != 0 {
        p.int("state.state", status.state as i32)
            .int("state.reason", status.reason);
    }
    if groups & CPU_TOTAL != 0 && active {
        let t = call.hypervisor.cpu_times();
        p.ullong("cpu.time", t.total_ns)
            .ullong("cpu.user", t.user_ns)
            .ullong("cpu.system", t.system_ns);
    }
    if groups & BALLOON != 0 {
        p.ullong("balloon.current", status.memory_kib)
            .ullong("balloon.maximum", status.max_memory_kib);
        if active {
            p.ullong("balloon.rss", call.hypervisor.rss_kib());
        }
    }
    if groups & VCPU != 0 {
        p.uint("vcpu.current", status.vcpus)
            .uint("vcpu.maximum", status.vcpus);
        if active {
            for v in call.hypervisor.vcpu_info()? {
                p.int(format!("vcpu.{}.state", v.number), VCPU_RUNNING)
                    .ullong(format!("vcpu.{}.time", v.number), v.cpu_time_ns);
            }
        }
    }
    if groups & INTERFACE != 0 {
        let nets = call.hypervisor.interfaces();
        p.uint("net.count", nets.len() as u32);
        for (i, n) in nets.iter().enumerate() {
            p.string(format!("net.{i}.name"), n.target.as_str());
            if active {
                for (key, v) in [
                    ("rx.bytes", n.rx_bytes),
                    ("rx.pkts", n.rx_packets),
                    ("rx.errs", n.rx_errors),
                    ("rx.drop", n.rx_drops),
                    ("tx.bytes", n.tx_bytes),
                    ("tx.pkts", n.tx_packets),
                    ("tx.errs", n.tx_errors),
                    ("tx.drop", n.tx_drops),
                ] {
                    p.ullong(format!("net.{i}.{key}"), v);
                }
            }
        }
    }
    if groups & BLOCK != 0 {
        let disks = call.hypervisor.disks();
        p.uint("block.count", disks.len() as u32);
        for (i, d) in disks.iter().enumerate() {
            p.string(format!("block.{i}.name"), d.target.as_str())
                .string(format!("block.{i}.path"), d.path.as_str());
            if active {
                for (key, v) in [
                    ("rd.reqs", d.rd_reqs),
                    ("rd.bytes", d.rd_bytes),
                    ("rd.times", d.rd_total_ns),
                    ("wr.reqs", d.wr_reqs),
                    ("wr.bytes", d.wr_bytes),
                    ("wr.times", d.wr_total_ns),
                    ("fl.reqs", d.flush_reqs),
                    ("fl.times", d.flush_total_ns),
                ] {
                    p.ullong(format!("block.{i}.{key}"), v);
                }
            }
            p.ullong(format!("block.{i}.allocation"), d.allocation)
                .ullong(format!("block.{i}.capacity"), d.capacity)
                .ullong(format!("block.{i}.physical"), d.physical);
        }
    }
    Ok(p)
}
