//! Where the domain runs on the host: `virsh vcpuinfo`, `vcpupin`, `emulatorpin`, and the
//! node's CPU map every cpumap is sized by. Answers come from the threads' real affinities.

use super::args::{Flags, NoFlags};
use super::domain::{DomainRef, DomainStatus};
use super::errors::{driver_error, invalid_arg, not_running, rpc_error};
use super::program::Call;
use super::protocol::{AFFECT_CONFIG, AFFECT_LIVE, CPUMAP_MAX, VCPUINFO_MAX, VCPU_MAXIMUM};
use crate::cpuset::CpuSet;
use crate::host;
use crate::rpc::error::code;
use crate::rpc::xdr::{Decode, Encode, Opaque, XdrError, XdrReader, XdrWriter};
use crate::rpc::RemoteError;

/// virVcpuState: libvirt's QEMU driver reports every online vCPU as running.
const VCPU_RUNNING: i32 = 1;

/// virDomainModificationImpact.
type ImpactFlags = Flags<{ AFFECT_LIVE | AFFECT_CONFIG }>;

/// A count or map length from the client, within `0..=max` (libvirtd's own refusals).
fn bounded(value: i32, name: &str, max: usize, max_name: &str) -> Result<usize, RemoteError> {
    let bad_size = |message: String| rpc_error(code::INTERNAL_ERROR, message);
    let value =
        usize::try_from(value).map_err(|_| bad_size(format!("{name} must be non-negative")))?;
    if value > max {
        return Err(bad_size(format!("{name} > {max_name}")));
    }
    Ok(value)
}

/// What virDomainModificationImpact flags ask of the domain: a query may not ask for both
/// the live and the persistent view; either way `live` needs a running domain.
fn check_impact(flags: u32, query: bool, status: &DomainStatus) -> Result<(), RemoteError> {
    let both = AFFECT_LIVE | AFFECT_CONFIG;
    if query && flags & both == both {
        return Err(invalid_arg(
            "invalid argument: Flags 'affect live' and 'affect config' are mutually exclusive",
        ));
    }
    if flags & AFFECT_LIVE != 0 && !status.is_active() {
        return Err(not_running());
    }
    Ok(())
}

/// `opaque cpumaps<>`: rows of `maplen` bytes, one per set.
fn cpumaps(sets: &[CpuSet], maplen: usize) -> Opaque {
    Opaque(sets.iter().flat_map(|s| s.to_map(maplen)).collect())
}

/// A `cpumap<REMOTE_CPUMAP_MAX>` argument: the host CPUs to pin to.
pub struct CpuMap(CpuSet);

impl Decode for CpuMap {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(CpuMap(CpuSet::from_map(r.get_opaque(CPUMAP_MAX)?)))
    }
}

impl CpuMap {
    fn pinning(self) -> Result<CpuSet, RemoteError> {
        if self.0.is_empty() {
            return Err(invalid_arg("invalid argument: Empty cpu list for pinning"));
        }
        Ok(self.0)
    }
}

/// `{need_map, need_online, flags}` → `{cpumap, online, ret}`: ret is the number of CPUs.
pub fn node_get_cpu_map(
    _: &Call,
    (need_map, need_online, _): (i32, i32, NoFlags),
) -> Result<(Opaque, u32, i32), RemoteError> {
    let (count, online) = host::node_cpus();
    let map = if need_map != 0 {
        online.to_map(count.div_ceil(8))
    } else {
        Vec::new()
    };
    let online_count = if need_online != 0 {
        online.len() as u32
    } else {
        0
    };
    Ok((Opaque(map), online_count, count as i32))
}

pub fn get_max_vcpus(call: &Call, dom: DomainRef) -> Result<i32, RemoteError> {
    Ok(call.domain(&dom)?.vcpus as i32)
}

/// The count is the same live and persistent, current and maximum: no vCPU hotplug.
pub fn get_vcpus_flags(
    call: &Call,
    (dom, flags): (
        DomainRef,
        Flags<{ AFFECT_LIVE | AFFECT_CONFIG | VCPU_MAXIMUM }>,
    ),
) -> Result<i32, RemoteError> {
    let s = call.domain(&dom)?;
    check_impact(flags.0, true, &s)?;
    Ok(s.vcpus as i32)
}

/// `remote_vcpu_info`.
pub struct VcpuRow {
    number: u32,
    cpu_time_ns: u64,
    cpu: i32,
}

impl Encode for VcpuRow {
    fn encode(&self, w: &mut XdrWriter) {
        (self.number, VCPU_RUNNING, self.cpu_time_ns, self.cpu).encode(w);
    }
}

/// `{dom, maxinfo, maplen}` → `{info<>, cpumaps<>}` for a running domain.
pub fn get_vcpus(
    call: &Call,
    (dom, maxinfo, maplen): (DomainRef, i32, i32),
) -> Result<(Vec<VcpuRow>, Opaque), RemoteError> {
    let s = call.domain(&dom)?;
    let maxinfo = bounded(maxinfo, "maxinfo", VCPUINFO_MAX, "REMOTE_VCPUINFO_MAX")?;
    let maplen = bounded(maplen, "maplen", CPUMAP_MAX, "REMOTE_CPUMAP_MAX")?;
    if !s.is_active() {
        return Err(driver_error(
            code::OPERATION_INVALID,
            "Requested operation is not valid: cannot retrieve vcpu information for inactive domain",
        ));
    }
    let mut vcpus = call.hypervisor.vcpu_info()?;
    vcpus.truncate(maxinfo);
    let rows = vcpus
        .iter()
        .map(|v| VcpuRow {
            number: v.number,
            cpu_time_ns: v.cpu_time_ns,
            cpu: v.cpu,
        })
        .collect();
    let affinities: Vec<CpuSet> = vcpus.into_iter().map(|v| v.affinity).collect();
    Ok((rows, cpumaps(&affinities, maplen)))
}

/// `{dom, ncpumaps, maplen, flags}` → `{cpumaps<>, num}`.
pub fn get_vcpu_pin_info(
    call: &Call,
    (dom, ncpumaps, maplen, flags): (DomainRef, i32, i32, ImpactFlags),
) -> Result<(Opaque, i32), RemoteError> {
    let s = call.domain(&dom)?;
    let ncpumaps = bounded(ncpumaps, "ncpumaps", VCPUINFO_MAX, "REMOTE_VCPUINFO_MAX")?;
    let maplen = bounded(maplen, "maplen", CPUMAP_MAX, "REMOTE_CPUMAP_MAX")?;
    check_impact(flags.0, true, &s)?;
    let mut affinities = call.hypervisor.vcpu_affinities()?;
    affinities.truncate(ncpumaps);
    Ok((cpumaps(&affinities, maplen), affinities.len() as i32))
}

fn pin(
    call: &Call,
    dom: DomainRef,
    vcpu: u32,
    cpus: CpuMap,
    flags: u32,
) -> Result<(), RemoteError> {
    let s = call.domain(&dom)?;
    let cpus = cpus.pinning()?;
    check_impact(flags, false, &s)?;
    if vcpu >= s.vcpus {
        return Err(invalid_arg(format!(
            "invalid argument: vcpu {vcpu} is out of range of live cpu count {}",
            s.vcpus
        )));
    }
    call.hypervisor.pin_vcpu(vcpu, &cpus)
}

/// `{dom, vcpu, cpumap<>}`: what `virsh vcpupin DOM VCPU LIST` sends without flags. The old
/// call means the live domain (as libvirt's QEMU driver has it).
pub fn pin_vcpu(
    call: &Call,
    (dom, vcpu, cpus): (DomainRef, u32, CpuMap),
) -> Result<(), RemoteError> {
    pin(call, dom, vcpu, cpus, AFFECT_LIVE)
}

/// `{dom, vcpu, cpumap<>, flags}`.
pub fn pin_vcpu_flags(
    call: &Call,
    (dom, vcpu, cpus, flags): (DomainRef, u32, CpuMap, ImpactFlags),
) -> Result<(), RemoteError> {
    pin(call, dom, vcpu, cpus, flags.0)
}

/// `{dom, cpumap<>, flags}`.
pub fn pin_emulator(
    call: &Call,
    (dom, cpus, flags): (DomainRef, CpuMap, ImpactFlags),
) -> Result<(), RemoteError> {
    let s = call.domain(&dom)?;
    let cpus = cpus.pinning()?;
    check_impact(flags.0, false, &s)?;
    call.hypervisor.pin_emulator(&cpus)
}

/// `{dom, maplen, flags}` → `{cpumaps<>, ret}`; ret 1: the map is filled in.
pub fn get_emulator_pin_info(
    call: &Call,
    (dom, maplen, flags): (DomainRef, i32, ImpactFlags),
) -> Result<(Opaque, i32), RemoteError> {
    let s = call.domain(&dom)?;
    let maplen = bounded(maplen, "maplen", CPUMAP_MAX, "REMOTE_CPUMAP_MAX")?;
    check_impact(flags.0, true, &s)?;
    let affinity = call.hypervisor.emulator_affinity()?;
    Ok((cpumaps(&[affinity], maplen), 1))
}
