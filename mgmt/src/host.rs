//! Facts about the host for NODE_GET_INFO, NODE_GET_CPU_MAP, CONNECT_GET_HOSTNAME and
//! capabilities.

use crate::cpuset::CpuSet;

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
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn cpu_mhz() -> i32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("cpu MHz")).and_then(|l| {
                l.split(':')
                    .nth(1)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .map(|mhz| mhz as i32)
        .unwrap_or(0)
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
    let text = std::fs::read_to_string(format!("/sys/devices/system/cpu/{name}")).ok()?;
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

/// A minimal capabilities document: the host CPU architecture and one hvm guest type.
pub fn capabilities_xml() -> String {
    let arch = std::env::consts::ARCH;
    format!(
        "<capabilities>\n  <host>\n    <cpu>\n      <arch>{arch}</arch>\n    </cpu>\n  </host>\n  <guest>\n    <os_type>hvm</os_type>\n    <arch name='{arch}'>\n      <wordsize>64</wordsize>\n      <domain type='kvm'/>\n    </arch>\n  </guest>\n</capabilities>\n"
    )
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
        assert!(capabilities_xml().contains("<os_type>hvm</os_type>"));
    }
}
