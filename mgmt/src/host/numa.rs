//! The host's NUMA cells and CPU topology, from sysfs (`/sys/devices/system/node`,
//! `/sys/devices/system/cpu/cpuN/topology`). A host without node directories (no NUMA in
//! the kernel, or a container) is one cell 0 holding every online CPU and all memory, as
//! libvirt shows such a host.

use super::procfs::{self, MemInfo};
use super::{node_cpus, read_bounded};
use crate::cpuset::CpuSet;

const NODE_DIR: &str = "/sys/devices/system/node";
const SMALL_FILE: usize = 64 << 10;

/// Where one CPU sits: libvirt's `<cpu socket_id die_id core_id siblings>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuPlace {
    pub socket: u32,
    pub die: u32,
    pub core: u32,
    /// The hardware threads of its core, itself included.
    pub siblings: CpuSet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCpu {
    pub id: usize,
    /// None where sysfs does not say (then only the id is shown).
    pub place: Option<CpuPlace>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub id: usize,
    pub memory_kib: Option<u64>,
    pub cpus: Vec<HostCpu>,
}

/// The online nodes' numbers, or None on a host without NUMA nodes in sysfs.
pub fn node_ids() -> Option<CpuSet> {
    let text = read_bounded(&format!("{NODE_DIR}/online"), SMALL_FILE)?;
    CpuSet::parse(text.trim()).ok()
}

/// The highest cell number clients may ask about.
pub fn last_cell() -> usize {
    node_ids().and_then(|ids| ids.last()).unwrap_or(0)
}

/// A cell's meminfo; the single cell of a host without nodes has the host's.
pub fn cell_meminfo(cell: usize) -> Option<MemInfo> {
    match node_ids() {
        Some(ids) if ids.contains(cell) => procfs::node_meminfo(cell),
        Some(_) => None,
        None if cell == 0 => procfs::meminfo(),
        None => None,
    }
}

/// A cell's free memory in bytes (libvirt's unit for free memory); 0 when it cannot be read,
/// as libvirt counts a node it cannot read.
pub fn cell_free_bytes(cell: usize) -> u64 {
    cell_meminfo(cell)
        .and_then(|m| m.free)
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// Free memory of the whole host in bytes: the sum over the cells, as libvirt adds it up.
pub fn free_bytes() -> u64 {
    match node_ids() {
        Some(ids) => ids.iter().map(cell_free_bytes).sum(),
        None => cell_free_bytes(0),
    }
}

fn cpu_topology_file(cpu: usize, name: &str) -> Option<String> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/{name}");
    read_bounded(&path, SMALL_FILE).map(|t| t.trim().to_string())
}

/// Where `cpu` sits, from its topology directory.
pub fn cpu_place(cpu: usize) -> Option<CpuPlace> {
    let number = |name: &str| cpu_topology_file(cpu, name)?.parse::<u32>().ok();
    Some(CpuPlace {
        socket: number("physical_package_id")?,
        // Kernels before 5.2 have no dies: one per socket, as libvirt assumes.
        die: number("die_id").unwrap_or(0),
        core: number("core_id")?,
        siblings: CpuSet::parse(&cpu_topology_file(cpu, "thread_siblings_list")?).ok()?,
    })
}

fn host_cpus(ids: &CpuSet) -> Vec<HostCpu> {
    ids.iter()
        .map(|id| HostCpu {
            id,
            place: cpu_place(id),
        })
        .collect()
}

/// Every online cell with its memory and online CPUs.
pub fn cells() -> Vec<Cell> {
    let online = node_cpus().1;
    let Some(ids) = node_ids() else {
        return vec![Cell {
            id: 0,
            memory_kib: procfs::meminfo().and_then(|m| m.total),
            cpus: host_cpus(&online),
        }];
    };
    ids.iter()
        .map(|id| {
            let cpus = read_bounded(&format!("{NODE_DIR}/node{id}/cpulist"), SMALL_FILE)
                .and_then(|t| CpuSet::parse(t.trim()).ok())
                .map(|set| set.iter().filter(|c| online.contains(*c)).collect())
                .unwrap_or_default();
            Cell {
                id,
                memory_kib: procfs::node_meminfo(id).and_then(|m| m.total),
                cpus: host_cpus(&cpus),
            }
        })
        .collect()
}

/// The host CPU's `<topology>`: sockets, dies per socket, cores per die, threads per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    pub sockets: usize,
    pub dies: usize,
    pub cores: usize,
    pub threads: usize,
}

/// Summarises where the CPUs sit; CPUs without a place count as one core each.
pub fn summarize(cpus: &[HostCpu]) -> Topology {
    let places: Vec<&CpuPlace> = cpus.iter().filter_map(|c| c.place.as_ref()).collect();
    let mut sockets: Vec<u32> = places.iter().map(|p| p.socket).collect();
    sockets.sort_unstable();
    sockets.dedup();
    let mut dies: Vec<(u32, u32)> = places.iter().map(|p| (p.socket, p.die)).collect();
    dies.sort_unstable();
    dies.dedup();
    let sockets = sockets.len().max(1);
    let dies = (dies.len() / sockets).max(1);
    let threads = places.first().map_or(1, |p| p.siblings.len().max(1));
    let cores = (cpus.len() / (sockets * dies * threads)).max(1);
    Topology {
        sockets,
        dies,
        cores,
        threads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(id: usize, socket: u32, core: u32, siblings: &str) -> HostCpu {
        HostCpu {
            id,
            place: Some(CpuPlace {
                socket,
                die: 0,
                core,
                siblings: CpuSet::parse(siblings).unwrap(),
            }),
        }
    }

    #[test]
    fn summarizes_sockets_cores_and_threads() {
        // Two sockets of two cores with two threads each.
        let cpus: Vec<HostCpu> = (0..8)
            .map(|i| {
                let core = (i % 4) as u32 / 2;
                let first = i - i % 2;
                cpu(i, (i / 4) as u32, core, &format!("{first}-{}", first + 1))
            })
            .collect();
        let t = summarize(&cpus);
        assert_eq!((t.sockets, t.dies, t.cores, t.threads), (2, 1, 2, 2));
        let unknown = [
            HostCpu { id: 0, place: None },
            HostCpu { id: 1, place: None },
        ];
        let t = summarize(&unknown);
        assert_eq!((t.sockets, t.dies, t.cores, t.threads), (1, 1, 2, 1));
        assert_eq!(summarize(&[]).cores, 1);
    }

    #[test]
    fn this_host_has_a_cell_with_memory_and_cpus() {
        let cells = cells();
        assert!(!cells.is_empty());
        assert!(cells.iter().any(|c| !c.cpus.is_empty()));
        assert!(cells.iter().all(|c| c.memory_kib.is_some_and(|m| m > 0)));
        assert!(free_bytes() > 0 && free_bytes().is_multiple_of(1024));
        assert!(cells.iter().any(|c| c.id == last_cell()));
        assert!(cell_meminfo(last_cell() + 1).is_none());
    }
}
