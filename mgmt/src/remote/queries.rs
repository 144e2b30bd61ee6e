//! Finding the domain and reading its state: lookups, lists, info, state, XML.

use super::args::{Flags, NoFlags};
use super::domain::{format_uuid, DomainRef};
use super::errors::{no_domain, rpc_error};
use super::filters;
use super::program::Call;
use super::protocol::{DOMAIN_LIST_MAX, UUID_LEN};
use crate::rpc::error::code;
use crate::rpc::RemoteError;

/// The domain if it matches `wanted`.
fn find(call: &Call, wanted: impl Fn(&DomainRef) -> bool) -> Option<DomainRef> {
    call.status().map(|s| s.domain).filter(|d| wanted(d))
}

pub fn lookup_by_name(call: &Call, name: String) -> Result<DomainRef, RemoteError> {
    find(call, |d| d.name == name)
        .ok_or_else(|| no_domain(format!("no domain with matching name '{name}'")))
}

pub fn lookup_by_uuid(call: &Call, uuid: [u8; UUID_LEN]) -> Result<DomainRef, RemoteError> {
    find(call, |d| d.uuid == uuid).ok_or_else(|| {
        no_domain(format!(
            "no domain with matching uuid '{}'",
            format_uuid(&uuid)
        ))
    })
}

pub fn lookup_by_id(call: &Call, id: i32) -> Result<DomainRef, RemoteError> {
    find(call, |d| id >= 0 && d.id == id)
        .ok_or_else(|| no_domain(format!("no domain with matching id {id}")))
}

/// `{need_results, flags}` → `{domains<>, ret}`, filtered as virConnectListAllDomains says.
pub fn list_all_domains(
    call: &Call,
    (need_results, flags): (i32, Flags<{ filters::ALL }>),
) -> Result<(Vec<DomainRef>, u32), RemoteError> {
    let wanted: Vec<DomainRef> = call
        .status()
        .filter(|status| filters::matches(status, flags.0))
        .map(|status| status.domain)
        .into_iter()
        .collect();
    let count = wanted.len() as u32;
    Ok((
        if need_results != 0 {
            wanted
        } else {
            Vec::new()
        },
        count,
    ))
}

/// The domain if it is running (`active`) or defined and shut off (`!active`).
fn in_list(call: &Call, active: bool) -> Option<DomainRef> {
    call.status()
        .filter(|s| s.is_active() == active)
        .map(|s| s.domain)
}

pub fn num_of_domains(call: &Call, (): ()) -> Result<i32, RemoteError> {
    Ok(i32::from(in_list(call, true).is_some()))
}

pub fn num_of_defined_domains(call: &Call, (): ()) -> Result<i32, RemoteError> {
    Ok(i32::from(in_list(call, false).is_some()))
}

/// The `maxids`/`maxnames` argument of the list calls, bounded as libvirt bounds it.
fn list_max(max: i32, what: &str) -> Result<i32, RemoteError> {
    if max < 0 || max as usize > DOMAIN_LIST_MAX {
        return Err(rpc_error(
            code::RPC,
            format!("too many domain {what} requested: {max}"),
        ));
    }
    Ok(max)
}

/// `{maxids}` → `{ids<>}`.
pub fn list_domains(call: &Call, max: i32) -> Result<Vec<i32>, RemoteError> {
    let max = list_max(max, "ids")?;
    Ok(in_list(call, true)
        .filter(|_| max > 0)
        .map(|d| d.id)
        .into_iter()
        .collect())
}

/// `{maxnames}` → `{names<>}`.
pub fn list_defined_domains(call: &Call, max: i32) -> Result<Vec<String>, RemoteError> {
    let max = list_max(max, "names")?;
    Ok(in_list(call, false)
        .filter(|_| max > 0)
        .map(|d| d.name)
        .into_iter()
        .collect())
}

/// → `{state, maxMem, memory, nrVirtCpu, cpuTime}`; a domain that is not running has used
/// no CPU time (its run's time ended with it, as libvirt reports).
pub fn get_info(call: &Call, dom: DomainRef) -> Result<(u32, u64, u64, u32, u64), RemoteError> {
    let s = call.domain(&dom)?;
    let cpu_time = if s.is_active() {
        call.hypervisor.cpu_time_ns()
    } else {
        0
    };
    Ok((
        s.state as u32,
        s.max_memory_kib,
        s.memory_kib,
        s.vcpus,
        cpu_time,
    ))
}

/// → `{state, reason}`.
pub fn get_state(call: &Call, (dom, _): (DomainRef, NoFlags)) -> Result<(i32, i32), RemoteError> {
    let s = call.domain(&dom)?;
    Ok((s.state as i32, s.reason))
}

/// VIR_DOMAIN_XML_INACTIVE: the configuration the next start uses (no run-time id).
const XML_INACTIVE: u32 = 2;

/// SECURE, INACTIVE, UPDATE_CPU, MIGRATABLE; only INACTIVE changes anything here (there are
/// no secrets, and the CPU is the host's).
pub fn get_xml_desc(
    call: &Call,
    (dom, flags): (DomainRef, Flags<0xf>),
) -> Result<String, RemoteError> {
    call.domain(&dom)?;
    Ok(call.hypervisor.xml(flags.has(XML_INACTIVE)))
}

pub fn get_os_type(call: &Call, dom: DomainRef) -> Result<&'static str, RemoteError> {
    call.domain(&dom)?;
    Ok("hvm")
}

pub fn get_autostart(call: &Call, dom: DomainRef) -> Result<i32, RemoteError> {
    call.domain(&dom)?;
    Ok(0)
}

pub fn is_active(call: &Call, dom: DomainRef) -> Result<i32, RemoteError> {
    Ok(i32::from(call.domain(&dom)?.is_active()))
}

pub fn is_persistent(call: &Call, dom: DomainRef) -> Result<i32, RemoteError> {
    Ok(i32::from(call.domain(&dom)?.persistent))
}

pub fn has_managed_save_image(
    call: &Call,
    (dom, _): (DomainRef, NoFlags),
) -> Result<i32, RemoteError> {
    call.domain(&dom)?;
    Ok(0)
}

pub fn get_max_memory(call: &Call, dom: DomainRef) -> Result<u64, RemoteError> {
    Ok(call.domain(&dom)?.max_memory_kib)
}

/// DEPRECATION, TAINTING: there are none of either.
pub fn get_messages(
    call: &Call,
    (dom, _): (DomainRef, Flags<0x3>),
) -> Result<Vec<String>, RemoteError> {
    call.domain(&dom)?;
    Ok(Vec::new())
}
