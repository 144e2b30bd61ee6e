//! Facts about the host: NODE_GET_INFO, NODE_GET_CPU_MAP, CONNECT_GET_HOSTNAME here;
//! `procfs` (CPU time, meminfo), `numa` (cells, CPU topology), and the documents built from
//! them: `capabilities`, `domain_caps`, `sysinfo`. Host files may be missing or odd: every
//! reader falls back instead of failing, and reads a bounded amount.

pub mod capabilities;
pub mod domain_caps;
pub mod numa;
pub mod procfs;
pub mod sysinfo;

use std::io::Read;

use crate::cpuset::CpuSet;

/// The start of a host file as text, at most `max` bytes; None if it cannot be read.
pub(crate) fn read_bounded(path: &str, max: usize) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(max as u64).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// A field of the first processor in /proc/cpuinfo (`vendor_id`, `cpu family`, ...).
pub fn cpuinfo_field(name: &str) -> Option<String> {
    let cpuinfo = read_bounded("/proc/cpuinfo", 1 << 20)?;
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// NODE_GET_INFO's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub model: String,
    pub memory_kib: u64,
    pub cpus: i32,
    pub mhz: i32,
    pub nodes: i32,
    pub sockets: i32,
    pub cores: i32,
    pub threads: i32,
}

/// The host's RAM (MemTotal in /proc/meminfo), in KiB; None if it cannot be read.
pub fn memory_total_kib() -> Option<u64> {
    procfs::meminfo()?.total
}

fn cpu_mhz() -> i32 {
    cpuinfo_field("cpu MHz")
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |mhz| mhz as i32)
}

/// The host CPUs online now, from sysfs (e.g. `0-1`).
pub fn online_cpus() -> Option<CpuSet> {
    sysfs_cpu_list("online")
}

/// The host CPUs present, online or not: libvirt numbers a node's CPUs 0..=the last of these.
pub fn present_cpus() -> Option<CpuSet> {
    sysfs_cpu_list("present")
}

fn sysfs_cpu_list(name: &str) -> Option<CpuSet> {
    let text = read_bounded(&format!("/sys/devices/system/cpu/{name}"), 64 << 10)?;
    CpuSet::parse(text.trim()).ok()
}

/// How many CPUs the node has in libvirt's sense (the width of every cpumap), and which
/// are online. Falls back to what this process may use when sysfs is not there.
pub fn node_cpus() -> (usize, CpuSet) {
    let online = online_cpus().unwrap_or_else(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n).collect()
    });
    let count = present_cpus()
        .and_then(|p| p.last())
        .max(online.last())
        .map_or(1, |last| last + 1);
    (count, online)
}

pub fn node_info() -> NodeInfo {
    // Online CPUs, as libvirt counts them: not this process's affinity (taskset would lie).
    let cpus = node_cpus().1.len() as i32;
    NodeInfo {
        model: std::env::consts::ARCH.to_string(),
        memory_kib: memory_total_kib().unwrap_or(0),
        cpus,
        mhz: cpu_mhz(),
        nodes: 1,
        sockets: 1,
        cores: cpus,
        threads: 1,
    }
}

pub fn hostname() -> String {
    nix_hostname().unwrap_or_else(|| "localhost".to_string())
}

fn nix_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..len].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_are_plausible() {
        let n = node_info();
        assert!(n.cpus >= 1 && n.memory_kib > 0);
        let (count, online) = node_cpus();
        assert!(online.len() <= count && online.last() < Some(count));
        assert!(!hostname().is_empty());
        assert!(cpuinfo_field("processor").is_some());
        assert!(read_bounded("/proc/self/status", 10).is_some_and(|s| s.len() <= 10));
        assert!(read_bounded("/nonexistent", 10).is_none());
    }
}
