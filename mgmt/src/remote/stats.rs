//! Statistics of one device or of the domain: block and interface counters, memory, CPU
//! time, disk errors, the monitor and job state. Every number comes from the VMM (counters
//! kept where the work happens); what this VMM does not have is left out, not invented.

use super::args::{Flags, NoFlags};
use super::domain::{DomainRef, DomainStatus};
use super::errors::{invalid_arg, not_running, rpc_error};
use super::hypervisor::{DiskStats, InterfaceStats};
use super::program::Call;
use super::typed_params::TypedParams;
use crate::rpc::error::code;
use crate::rpc::RemoteError;

/// VIR_TYPED_PARAM_STRING_OKAY: the client takes string parameters (none are sent here).
pub const TYPED_PARAM_STRING_OKAY: u32 = 4;
/// REMOTE_DOMAIN_MEMORY_STATS_MAX, REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX,
/// REMOTE_NODE_CPU_STATS_MAX (per-CPU parameters), REMOTE_DOMAIN_GET_CPU_STATS_NCPUS_MAX.
const MEMORY_STATS_MAX: u32 = 1024;
const BLOCK_STATS_PARAMETERS_MAX: i32 = 16;
const CPU_STATS_PARAMS_MAX: u32 = 16;
const CPU_STATS_NCPUS_MAX: u32 = 128;

/// virDomainMemoryStatTags this VMM has (no balloon: nothing the guest would report).
const MEMORY_STAT_ACTUAL_BALLOON: i32 = 6;
const MEMORY_STAT_RSS: i32 = 7;

fn active(call: &Call, dom: &DomainRef) -> Result<DomainStatus, RemoteError> {
    let status = call.domain(dom)?;
    if !status.is_active() {
        return Err(not_running());
    }
    Ok(status)
}

/// A disk named by its target (`vda`) or its host path, as libvirt accepts either.
fn find_disk(call: &Call, path: &str) -> Result<DiskStats, RemoteError> {
    call.hypervisor
        .disks()
        .into_iter()
        .find(|d| d.target == path || d.path == path)
        .ok_or_else(|| invalid_arg(format!("invalid argument: invalid path: {path}")))
}

/// An interface named by its target (the tap) or its MAC address.
fn find_interface(call: &Call, path: &str) -> Result<InterfaceStats, RemoteError> {
    call.hypervisor
        .interfaces()
        .into_iter()
        .find(|i| i.target == path || i.mac.eq_ignore_ascii_case(path))
        .ok_or_else(|| {
            invalid_arg(format!(
                "invalid argument: invalid path, '{path}' is not a known interface"
            ))
        })
}

/// The disk a block-stats call names; the empty path means all disks together (libvirt's
/// summary for `virsh domblkstat DOM`).
fn disk_or_sum(call: &Call, path: &str) -> Result<DiskStats, RemoteError> {
    if !path.is_empty() {
        return find_disk(call, path);
    }
    let mut sum = DiskStats::default();
    for d in call.hypervisor.disks() {
        sum.rd_reqs += d.rd_reqs;
        sum.rd_bytes += d.rd_bytes;
        sum.rd_total_ns += d.rd_total_ns;
        sum.wr_reqs += d.wr_reqs;
        sum.wr_bytes += d.wr_bytes;
        sum.wr_total_ns += d.wr_total_ns;
        sum.flush_reqs += d.flush_reqs;
        sum.flush_total_ns += d.flush_total_ns;
        sum.errors += d.errors;
    }
    Ok(sum)
}

/// `{dom, path}` → `{rd_req, rd_bytes, wr_req, wr_bytes, errs}`.
pub fn block_stats(call: &Call, (dom, path): (DomainRef, String)) -> Result<Five, RemoteError> {
    active(call, &dom)?;
    let d = disk_or_sum(call, &path)?;
    Ok((d.rd_reqs, d.rd_bytes, d.wr_reqs, d.wr_bytes, d.errors))
}

/// The block parameters of virDomainBlockStatsFlags, in libvirt's order and types.
fn block_params(d: &DiskStats) -> TypedParams {
    let mut p = TypedParams::default();
    let ll = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    p.llong("rd_bytes", ll(d.rd_bytes))
        .llong("rd_operations", ll(d.rd_reqs))
        .llong("rd_total_times", ll(d.rd_total_ns))
        .llong("wr_bytes", ll(d.wr_bytes))
        .llong("wr_operations", ll(d.wr_reqs))
        .llong("wr_total_times", ll(d.wr_total_ns))
        .llong("flush_operations", ll(d.flush_reqs))
        .llong("flush_total_times", ll(d.flush_total_ns))
        .llong("errs", ll(d.errors));
    p
}

/// `{dom, path, nparams, flags}` → `{params<>, nparams}`; nparams 0 asks how many there are.
pub fn block_stats_flags(
    call: &Call,
    (dom, path, nparams, _): (DomainRef, String, i32, Flags<TYPED_PARAM_STRING_OKAY>),
) -> Result<(TypedParams, i32), RemoteError> {
    if !(0..=BLOCK_STATS_PARAMETERS_MAX).contains(&nparams) {
        return Err(rpc_error(code::RPC, "nparams too large"));
    }
    active(call, &dom)?;
    let params = block_params(&disk_or_sum(call, &path)?);
    let count = params.len() as i32;
    if nparams == 0 {
        return Ok((TypedParams::default(), count));
    }
    let params = params.truncated(nparams as usize);
    let n = params.len() as i32;
    Ok((params, n))
}

/// `{dom, path, flags}` → `{allocation, capacity, physical}`.
pub fn block_info(
    call: &Call,
    (dom, path, _): (DomainRef, String, NoFlags),
) -> Result<(u64, u64, u64), RemoteError> {
    call.domain(&dom)?;
    let d = find_disk(call, &path)?;
    Ok((d.allocation, d.capacity, d.physical))
}

/// `{dom, maxerrors, flags}` → `{errors<>, nerrors}`. A failed request is counted and
/// reported to the guest; no disk is ever left in an error state that pauses the domain.
pub fn disk_errors(
    call: &Call,
    (dom, _maxerrors, _): (DomainRef, u32, NoFlags),
) -> Result<(Vec<(String, i32)>, i32), RemoteError> {
    active(call, &dom)?;
    Ok((Vec::new(), 0))
}

/// Four hypers in a row (one direction of an interface's counters).
type Four = (u64, u64, u64, u64);
/// Five hypers in a row.
type Five = (u64, u64, u64, u64, u64);

/// `{dom, path}` → rx bytes, packets, errs, drop, then the same for tx.
pub fn interface_stats(
    call: &Call,
    (dom, path): (DomainRef, String),
) -> Result<(Four, Four), RemoteError> {
    active(call, &dom)?;
    let i = find_interface(call, &path)?;
    Ok((
        (i.rx_bytes, i.rx_packets, i.rx_errors, i.rx_drops),
        (i.tx_bytes, i.tx_packets, i.tx_errors, i.tx_drops),
    ))
}

/// `{dom, maxStats, flags}` → `{stats<{tag, val}>}`: the memory the guest has and the
/// process's resident set (there is no balloon to report more).
pub fn memory_stats(
    call: &Call,
    (dom, max_stats, _): (DomainRef, u32, NoFlags),
) -> Result<Vec<(i32, u64)>, RemoteError> {
    if max_stats > MEMORY_STATS_MAX {
        return Err(rpc_error(
            code::RPC,
            "maxStats > REMOTE_DOMAIN_MEMORY_STATS_MAX",
        ));
    }
    let status = active(call, &dom)?;
    let mut stats = vec![
        (MEMORY_STAT_ACTUAL_BALLOON, status.memory_kib),
        (MEMORY_STAT_RSS, call.hypervisor.rss_kib()),
    ];
    stats.truncate(max_stats as usize);
    Ok(stats)
}

/// The per-CPU parameters: CPU time of the vCPU threads that are pinned to that CPU alone
/// (time of threads that may move cannot be split between CPUs honestly, so it is left out).
fn per_cpu_params(call: &Call, cpus: usize) -> Result<Vec<u64>, RemoteError> {
    let mut per_cpu = vec![0u64; cpus];
    for vcpu in call.hypervisor.vcpu_info()? {
        let mut allowed = vcpu.affinity.iter();
        if let (Some(cpu), None) = (allowed.next(), allowed.next()) {
            if let Some(slot) = per_cpu.get_mut(cpu) {
                *slot += vcpu.cpu_time_ns;
            }
        }
    }
    Ok(per_cpu)
}

/// `{dom, nparams, start_cpu, ncpus, flags}` → `{params<>, nparams}` with libvirt's
/// conventions: nparams 0 and ncpus 0 ask for the number of host CPUs; nparams 0 for the
/// number of parameters; start_cpu -1 for the domain's total.
pub fn cpu_stats(
    call: &Call,
    (dom, nparams, start_cpu, ncpus, _): (DomainRef, u32, i32, u32, Flags<TYPED_PARAM_STRING_OKAY>),
) -> Result<(TypedParams, i32), RemoteError> {
    if nparams > CPU_STATS_PARAMS_MAX || ncpus > CPU_STATS_NCPUS_MAX {
        return Err(rpc_error(code::RPC, "nparams or ncpus too large"));
    }
    active(call, &dom)?;
    let host_cpus = crate::host::node_cpus().0;
    if start_cpu == -1 {
        if ncpus != 1 {
            return Err(invalid_arg(
                "invalid argument: ncpus must be 1 when start_cpu is -1",
            ));
        }
        let t = call.hypervisor.cpu_times();
        let mut p = TypedParams::default();
        p.ullong("cpu_time", t.total_ns)
            .ullong("user_time", t.user_ns)
            .ullong("system_time", t.system_ns);
        let count = p.len() as i32;
        if nparams == 0 {
            return Ok((TypedParams::default(), count));
        }
        let p = p.truncated(nparams as usize);
        let n = p.len() as i32;
        return Ok((p, n));
    }
    if nparams == 0 && ncpus == 0 {
        return Ok((TypedParams::default(), host_cpus as i32));
    }
    let start = usize::try_from(start_cpu)
        .ok()
        .filter(|s| *s < host_cpus)
        .ok_or_else(|| {
            invalid_arg(format!(
                "invalid argument: start_cpu {start_cpu} larger than maximum of {}",
                host_cpus.saturating_sub(1)
            ))
        })?;
    const PER_CPU: u32 = 2; // cpu_time, vcpu_time
    if nparams == 0 {
        return Ok((TypedParams::default(), PER_CPU as i32));
    }
    let per_cpu = per_cpu_params(call, host_cpus)?;
    let width = nparams.min(PER_CPU) as usize;
    let mut params = TypedParams::default();
    for time in per_cpu.iter().skip(start).take(ncpus as usize) {
        let mut one = TypedParams::default();
        one.ullong("cpu_time", *time).ullong("vcpu_time", *time);
        params.0.extend(one.truncated(width).0);
    }
    Ok((params, width as i32))
}

/// `{dom, flags}` → `{state, details, stateTime}`: the monitor is in-process, always OK (0).
pub fn control_info(
    call: &Call,
    (dom, _): (DomainRef, NoFlags),
) -> Result<(u32, u32, u64), RemoteError> {
    active(call, &dom)?;
    Ok((0, 0, 0))
}

/// virDomainJobType NONE: nothing here runs as a background job (no migration, no dump).
const JOB_NONE: i32 = 0;

/// → `{type, timeElapsed, ...}`: eleven zero counters after the type.
pub fn job_info(call: &Call, dom: DomainRef) -> Result<(i32, Five, Five, u64), RemoteError> {
    active(call, &dom)?;
    Ok((JOB_NONE, (0, 0, 0, 0, 0), (0, 0, 0, 0, 0), 0))
}

/// COMPLETED (1), KEEP_COMPLETED (2): no job has ever completed here either.
pub fn job_stats(
    call: &Call,
    (dom, _): (DomainRef, Flags<0x3>),
) -> Result<(i32, TypedParams), RemoteError> {
    active(call, &dom)?;
    Ok((JOB_NONE, TypedParams::default()))
}
