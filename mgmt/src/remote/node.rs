//! The host as clients see it: `virsh capabilities`, `domcapabilities`, `sysinfo`,
//! `nodecpustats`, `nodememstats`, `freecell`, with the bounds and refusals libvirtd and its
//! drivers apply to each argument.

use super::args::{Flags, NoFlags};
use super::errors::{driver_error, invalid_arg, rpc_error};
use super::program::Call;
use crate::host::capabilities::{self, emulator_path, GUEST_ARCH, MACHINE, VIRT_TYPE};
use crate::host::{domain_caps, numa, procfs, sysinfo};
use crate::rpc::error::code;
use crate::rpc::RemoteError;

/// REMOTE_NODE_CPU_STATS_MAX and REMOTE_NODE_MEMORY_STATS_MAX.
const STATS_MAX: i32 = 16;
/// REMOTE_NODE_MAX_CELLS.
const MAX_CELLS: i32 = 1024;
/// VIR_NODE_CPU_STATS_ALL_CPUS and VIR_NODE_MEMORY_STATS_ALL_CELLS.
const ALL: i32 = -1;
/// How many fields each stats call reports (libvirt's Linux drivers have four each).
const CPU_STATS: i32 = 4;
const MEMORY_STATS: i32 = 4;
/// VIR_CONNECT_GET_DOMAIN_CAPABILITIES_DISABLE_DEPRECATED_FEATURES: nothing of ours is
/// deprecated, so it changes nothing.
const DISABLE_DEPRECATED_FEATURES: u32 = 1;

/// `remote_node_get_cpu_stats` / `remote_node_get_memory_stats`: `{field, value}`.
type Stat = (&'static str, u64);

pub fn get_capabilities(call: &Call, (): ()) -> Result<String, RemoteError> {
    Ok(capabilities::capabilities_xml(call.hypervisor.max_vcpus()))
}

pub fn get_sysinfo(_: &Call, _: NoFlags) -> Result<String, RemoteError> {
    Ok(sysinfo::sysinfo_xml())
}

/// The first checks of both stats calls: libvirtd's bound on the array, and the public API's
/// refusal of a negative count or a number below "all".
fn check_stats_args(nparams: i32, number: i32, what: &str, api: &str) -> Result<(), RemoteError> {
    if nparams > STATS_MAX {
        return Err(rpc_error(code::INTERNAL_ERROR, "nparams too large"));
    }
    if nparams < 0 {
        return Err(invalid_arg(format!(
            "invalid argument: nparams in {api} must be non-negative"
        )));
    }
    if number < ALL {
        return Err(invalid_arg(format!(
            "invalid argument: {what} in {api} must be -1 (all) or a number from 0"
        )));
    }
    Ok(())
}

/// The answer to a stats call: with `nparams` 0 the client asks how many fields there are
/// (and gets no fields); otherwise it gets the fields, and libvirtd leaves the count 0.
fn count_only(count: i32) -> (Vec<Stat>, i32) {
    (Vec::new(), count)
}

/// `{cpuNum, nparams, flags}` → `{params<16>, nparams}`: kernel, user, idle, iowait in ns.
pub fn get_cpu_stats(
    _: &Call,
    (cpu, nparams, _): (i32, i32, NoFlags),
) -> Result<(Vec<Stat>, i32), RemoteError> {
    const API: &str = "virNodeGetCPUStats";
    check_stats_args(nparams, cpu, "cpuNum", API)?;
    if nparams == 0 {
        return Ok(count_only(CPU_STATS));
    }
    if nparams != CPU_STATS {
        return Err(invalid_arg(format!(
            "invalid argument: nparams in {API} must be equal to {CPU_STATS}"
        )));
    }
    let which = usize::try_from(cpu).ok();
    let ticks = procfs::cpu_ticks(which)
        .ok_or_else(|| invalid_arg(format!("invalid argument: Invalid cpuNum in {API}")))?;
    let ns = |t: u64| t.saturating_mul(procfs::nanoseconds_per_tick());
    let stats = vec![
        ("kernel", ns(ticks.system + ticks.irq + ticks.softirq)),
        ("user", ns(ticks.user + ticks.nice)),
        ("idle", ns(ticks.idle)),
        ("iowait", ns(ticks.iowait)),
    ];
    Ok((stats, 0))
}

/// `{nparams, cellNum, flags}` → `{params<16>, nparams}`: total, free, buffers, cached in
/// KiB, of the host (-1) or one cell (whose meminfo has total and free only).
pub fn get_memory_stats(
    _: &Call,
    (nparams, cell, _): (i32, i32, NoFlags),
) -> Result<(Vec<Stat>, i32), RemoteError> {
    const API: &str = "virNodeGetMemoryStats";
    check_stats_args(nparams, cell, "cellNum", API)?;
    if nparams == 0 {
        return Ok(count_only(MEMORY_STATS));
    }
    if nparams != MEMORY_STATS {
        return Err(invalid_arg(format!(
            "invalid argument: nparams in {API} must be {MEMORY_STATS}"
        )));
    }
    let info = match usize::try_from(cell) {
        Err(_) => procfs::meminfo(),
        Ok(cell) => {
            let last = numa::last_cell();
            if cell > last {
                return Err(invalid_arg(format!(
                    "invalid argument: cellNum in {API} must be less than or equal to {last}"
                )));
            }
            numa::cell_meminfo(cell)
        }
    };
    let info = info.unwrap_or_default();
    let stats: Vec<Stat> = [
        ("total", info.total),
        ("free", info.free),
        ("buffers", info.buffers),
        ("cached", info.cached),
    ]
    .into_iter()
    .filter_map(|(field, kib)| Some((field, kib?)))
    .collect();
    if stats.is_empty() {
        return Err(driver_error(
            code::INTERNAL_ERROR,
            "internal error: no available memory line found",
        ));
    }
    Ok((stats, 0))
}

/// `{startCell, maxcells}` → `{cells<1024>}`: free bytes of each cell from startCell on.
pub fn get_cells_free_memory(_: &Call, (start, max): (i32, i32)) -> Result<Vec<u64>, RemoteError> {
    if max > MAX_CELLS {
        return Err(rpc_error(code::RPC, "maxCells > REMOTE_NODE_MAX_CELLS"));
    }
    const API: &str = "virNodeGetCellsFreeMemory";
    let start = usize::try_from(start).map_err(|_| {
        invalid_arg(format!(
            "invalid argument: startCell in {API} must be non-negative"
        ))
    })?;
    let max = usize::try_from(max)
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| {
            invalid_arg(format!(
                "invalid argument: maxCells in {API} must be greater than zero"
            ))
        })?;
    let last = numa::last_cell();
    if start > last {
        return Err(driver_error(
            code::INTERNAL_ERROR,
            format!("internal error: start cell {start} out of range (0-{last})"),
        ));
    }
    let end = last.min(start + max - 1);
    Ok((start..=end).map(numa::cell_free_bytes).collect())
}

/// → `{freeMem}` in bytes.
pub fn get_free_memory(_: &Call, (): ()) -> Result<u64, RemoteError> {
    Ok(numa::free_bytes())
}

/// Whether `asked` names this executable (directly or through a link).
fn is_our_emulator(asked: &str, ours: &str) -> bool {
    let canonical = |p: &str| std::fs::canonicalize(p).ok();
    asked == ours || canonical(asked).is_some_and(|a| Some(a) == canonical(ours))
}

/// `{emulatorbin *, arch *, machine *, virttype *, flags}` → `{capabilities}`. Each given
/// argument must name what this VMM is; absent ones mean ours.
pub fn get_domain_capabilities(
    call: &Call,
    (emulator, arch, machine, virttype, _): (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Flags<DISABLE_DEPRECATED_FEATURES>,
    ),
) -> Result<String, RemoteError> {
    let ours = emulator_path().ok_or_else(|| {
        driver_error(
            code::INTERNAL_ERROR,
            "internal error: cannot tell this VMM's own path",
        )
    })?;
    if let Some(virttype) = virttype.filter(|v| !v.eq_ignore_ascii_case(VIRT_TYPE)) {
        return Err(invalid_arg(format!(
            "invalid argument: virttype '{virttype}' is not supported: this VMM runs {VIRT_TYPE} domains only"
        )));
    }
    if let Some(arch) = arch.filter(|a| a != GUEST_ARCH) {
        return Err(invalid_arg(format!(
            "invalid argument: architecture '{arch}' is not supported: this VMM runs {GUEST_ARCH} guests only"
        )));
    }
    if let Some(emulator) = emulator.filter(|e| !is_our_emulator(e, &ours)) {
        return Err(invalid_arg(format!(
            "invalid argument: emulator '{emulator}' is not this VMM ('{ours}')"
        )));
    }
    if let Some(machine) = machine.filter(|m| m != MACHINE) {
        return Err(invalid_arg(format!(
            "invalid argument: the machine '{machine}' is not supported by emulator '{ours}' (it has '{MACHINE}')"
        )));
    }
    Ok(domain_caps::domain_caps_xml(
        &ours,
        call.hypervisor.max_vcpus(),
    ))
}
