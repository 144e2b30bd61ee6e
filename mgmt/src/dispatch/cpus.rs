//! Where the domain runs on the host: `virsh vcpuinfo`, `vcpupin`, `emulatorpin`, and the
//! node's CPU map every cpumap is sized by. Answers come from the threads' real affinities.

use super::{check_flags, Call};
use crate::cpuset::CpuSet;
use crate::domain::DomainStatus;
use crate::host;
use crate::protocol::{
    error_code, error_domain, AFFECT_CONFIG, AFFECT_LIVE, CPUMAP_MAX, VCPUINFO_MAX, VCPU_MAXIMUM,
};
use crate::wire::RemoteError;
use crate::xdr::{XdrReader, XdrWriter};

/// virVcpuState: libvirt's QEMU driver reports every online vCPU as running.
const VCPU_RUNNING: i32 = 1;

/// libvirtd's own refusals of sizes a client should not ask for.
fn bad_size(message: &str) -> RemoteError {
    RemoteError::new(error_code::INTERNAL_ERROR, error_domain::RPC, message)
}

fn invalid_arg(message: impl Into<String>) -> RemoteError {
    RemoteError::new(error_code::INVALID_ARG, error_domain::QEMU, message)
}

fn not_running() -> RemoteError {
    RemoteError::new(
        error_code::OPERATION_INVALID,
        error_domain::QEMU,
        "Requested operation is not valid: domain is not running",
    )
}

/// A count or map length from the client, within `0..=max`.
fn bounded(value: i32, name: &str, max: usize, max_name: &str) -> Result<usize, RemoteError> {
    let value =
        usize::try_from(value).map_err(|_| bad_size(&format!("{name} must be non-negative")))?;
    if value > max {
        return Err(bad_size(&format!("{name} > {max_name}")));
    }
    Ok(value)
}

/// virDomainModificationImpact flags (plus `extra`). A query may not ask for both the live
/// and the persistent view; either way `live` needs a running domain.
fn check_impact(
    flags: u32,
    extra: u32,
    query: bool,
    status: &DomainStatus,
    function: &str,
) -> Result<(), RemoteError> {
    check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG | extra, function)?;
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

/// Rows of `maplen` bytes, one per set: the layout of every cpumaps array.
fn put_cpumaps(ret: &mut XdrWriter, sets: &[CpuSet], maplen: usize) {
    let rows: Vec<u8> = sets.iter().flat_map(|s| s.to_map(maplen)).collect();
    ret.put_opaque(&rows);
}

fn requested_cpus(args: &mut XdrReader) -> Result<CpuSet, RemoteError> {
    let cpus = CpuSet::from_map(args.get_opaque(CPUMAP_MAX)?);
    if cpus.is_empty() {
        return Err(invalid_arg("invalid argument: Empty cpu list for pinning"));
    }
    Ok(cpus)
}

/// `{need_map, need_online, flags}` → `{cpumap, online, ret}`: ret is the number of CPUs.
pub(super) fn node_get_cpu_map(
    _: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let need_map = args.get_i32()? != 0;
    let need_online = args.get_i32()? != 0;
    check_flags(args.get_u32()?, 0, "virNodeGetCPUMap")?;
    let (count, online) = host::node_cpus();
    let map = if need_map {
        online.to_map(count.div_ceil(8))
    } else {
        Vec::new()
    };
    ret.put_opaque(&map);
    ret.put_u32(if need_online { online.len() as u32 } else { 0 });
    ret.put_i32(count as i32);
    Ok(())
}

pub(super) fn domain_get_max_vcpus(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    ret.put_i32(s.vcpus as i32);
    Ok(())
}

/// The count is the same live and persistent, current and maximum: no vCPU hotplug.
pub(super) fn domain_get_vcpus_flags(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    check_impact(
        args.get_u32()?,
        VCPU_MAXIMUM,
        true,
        &s,
        "virDomainGetVcpusFlags",
    )?;
    ret.put_i32(s.vcpus as i32);
    Ok(())
}

/// `{dom, maxinfo, maplen}` → `{info<>, cpumaps<>}` for a running domain.
pub(super) fn domain_get_vcpus(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    let maxinfo = bounded(
        args.get_i32()?,
        "maxinfo",
        VCPUINFO_MAX,
        "REMOTE_VCPUINFO_MAX",
    )?;
    let maplen = bounded(args.get_i32()?, "maplen", CPUMAP_MAX, "REMOTE_CPUMAP_MAX")?;
    if !s.is_active() {
        return Err(RemoteError::new(
            error_code::OPERATION_INVALID,
            error_domain::QEMU,
            "Requested operation is not valid: cannot retrieve vcpu information for inactive domain",
        ));
    }
    let mut vcpus = call.shared.hypervisor().vcpu_info()?;
    vcpus.truncate(maxinfo);
    ret.put_u32(vcpus.len() as u32);
    for v in &vcpus {
        ret.put_u32(v.number);
        ret.put_i32(VCPU_RUNNING);
        ret.put_u64(v.cpu_time_ns);
        ret.put_i32(v.cpu);
    }
    let affinities: Vec<CpuSet> = vcpus.into_iter().map(|v| v.affinity).collect();
    put_cpumaps(ret, &affinities, maplen);
    Ok(())
}

/// `{dom, ncpumaps, maplen, flags}` → `{cpumaps<>, num}`.
pub(super) fn domain_get_vcpu_pin_info(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    let ncpumaps = bounded(
        args.get_i32()?,
        "ncpumaps",
        VCPUINFO_MAX,
        "REMOTE_VCPUINFO_MAX",
    )?;
    let maplen = bounded(args.get_i32()?, "maplen", CPUMAP_MAX, "REMOTE_CPUMAP_MAX")?;
    check_impact(args.get_u32()?, 0, true, &s, "virDomainGetVcpuPinInfo")?;
    let mut affinities = call.shared.hypervisor().vcpu_affinities()?;
    affinities.truncate(ncpumaps);
    put_cpumaps(ret, &affinities, maplen);
    ret.put_i32(affinities.len() as i32);
    Ok(())
}

fn pin_vcpu(call: &Call, args: &mut XdrReader, flags: Option<u32>) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    let vcpu = args.get_u32()?;
    let cpus = requested_cpus(args)?;
    // The old call without flags means the live domain (as libvirt's QEMU driver has it).
    let flags = match flags {
        Some(_) => args.get_u32()?,
        None => AFFECT_LIVE,
    };
    check_impact(flags, 0, false, &s, "virDomainPinVcpuFlags")?;
    if vcpu >= s.vcpus {
        return Err(invalid_arg(format!(
            "invalid argument: vcpu {vcpu} is out of range of live cpu count {}",
            s.vcpus
        )));
    }
    call.shared.hypervisor().pin_vcpu(vcpu, &cpus)
}

/// `{dom, vcpu, cpumap<>}`: what `virsh vcpupin DOM VCPU LIST` sends without flags.
pub(super) fn domain_pin_vcpu(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    pin_vcpu(call, args, None)
}

/// `{dom, vcpu, cpumap<>, flags}`.
pub(super) fn domain_pin_vcpu_flags(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    pin_vcpu(call, args, Some(0))
}

/// `{dom, cpumap<>, flags}`.
pub(super) fn domain_pin_emulator(
    call: &Call,
    args: &mut XdrReader,
    _: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    let cpus = requested_cpus(args)?;
    check_impact(args.get_u32()?, 0, false, &s, "virDomainPinEmulator")?;
    call.shared.hypervisor().pin_emulator(&cpus)
}

/// `{dom, maplen, flags}` → `{cpumaps<>, ret}`; ret 1: the map is filled in.
pub(super) fn domain_get_emulator_pin_info(
    call: &Call,
    args: &mut XdrReader,
    ret: &mut XdrWriter,
) -> Result<(), RemoteError> {
    let s = call.domain_arg(args)?;
    let maplen = bounded(args.get_i32()?, "maplen", CPUMAP_MAX, "REMOTE_CPUMAP_MAX")?;
    check_impact(args.get_u32()?, 0, true, &s, "virDomainGetEmulatorPinInfo")?;
    let affinity = call.shared.hypervisor().emulator_affinity()?;
    put_cpumaps(ret, &[affinity], maplen);
    ret.put_i32(1);
    Ok(())
}
