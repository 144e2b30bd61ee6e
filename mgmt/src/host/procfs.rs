//! The kernel's text reports of CPU time and memory: `/proc/stat` and the meminfo files
//! (`/proc/meminfo`, and each NUMA node's, whose lines start with "Node N"). The parsers take
//! text so tests can feed them odd files; the readers fall back to None when a file is
//! missing.

use super::read_bounded;

/// A /proc/stat is a few hundred bytes a CPU; this is enough for thousands of CPUs.
const STAT_MAX: usize = 4 << 20;
const MEMINFO_MAX: usize = 64 << 10;

/// One `cpu` line of /proc/stat, in clock ticks (USER_HZ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
}

/// The `cpu` line (all CPUs) or the `cpuN` line of `stat`; None if it is not there.
/// Columns a kernel leaves out count as 0 (old kernels had only four).
pub fn parse_cpu_ticks(stat: &str, cpu: Option<usize>) -> Option<CpuTicks> {
    let label = match cpu {
        None => "cpu".to_string(),
        Some(n) => format!("cpu{n}"),
    };
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    let mut columns = line.split_whitespace().skip(1).map(|v| v.parse::<u64>());
    let mut next = || -> Option<u64> {
        match columns.next() {
            None => Some(0),
            Some(v) => v.ok(),
        }
    };
    Some(CpuTicks {
        user: next()?,
        nice: next()?,
        system: next()?,
        idle: next()?,
        iowait: next()?,
        irq: next()?,
        softirq: next()?,
    })
}

/// CPU time of all CPUs (`cpu` None) or of one, from /proc/stat.
pub fn cpu_ticks(cpu: Option<usize>) -> Option<CpuTicks> {
    parse_cpu_ticks(&read_bounded("/proc/stat", STAT_MAX)?, cpu)
}

/// Nanoseconds per clock tick of /proc/stat.
pub fn nanoseconds_per_tick() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    1_000_000_000 / hz
}

/// The meminfo lines libvirt reports, in KiB; None for a line the file lacks (a node's
/// meminfo has no Buffers or Cached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: Option<u64>,
    pub free: Option<u64>,
    pub buffers: Option<u64>,
    pub cached: Option<u64>,
}

/// Reads `Key: value kB` lines, with or without a node's `Node N ` prefix.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut info = MemInfo::default();
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek() == Some(&"Node") {
            words.next();
            words.next();
        }
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let slot = match key {
            "MemTotal:" => &mut info.total,
            "MemFree:" => &mut info.free,
            "Buffers:" => &mut info.buffers,
            "Cached:" => &mut info.cached,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    info
}

/// /proc/meminfo: the whole host.
pub fn meminfo() -> Option<MemInfo> {
    Some(parse_meminfo(&read_bounded("/proc/meminfo", MEMINFO_MAX)?))
}

/// One NUMA node's meminfo from sysfs.
pub fn node_meminfo(node: usize) -> Option<MemInfo> {
    let path = format!("/sys/devices/system/node/node{node}/meminfo");
    Some(parse_meminfo(&read_bounded(&path, MEMINFO_MAX)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  857733 144 101820 8076065 3362 0 17382 88212 7500 0\n\
                        cpu0 429957 45 51589 4037305 2096 0 8532 44089 7168 0\n\
                        cpu1 427776 99 50231 4038759 1266 0 8849 44123 331 0\n\
                        cpu10 1 2 3 4\n\
                        intr 12345 0 0\nctxt 999\n";

    #[test]
    fn reads_the_all_cpu_line_and_one_cpu() {
        let all = parse_cpu_ticks(STAT, None).unwrap();
        assert_eq!(
            all,
            CpuTicks {
                user: 857733,
                nice: 144,
                system: 101820,
                idle: 8076065,
                iowait: 3362,
                irq: 0,
                softirq: 17382
            }
        );
        assert_eq!(parse_cpu_ticks(STAT, Some(1)).unwrap().user, 427776);
        // cpu1 is not cpu10's prefix; short lines (old kernels) fill in zeros.
        let ten = parse_cpu_ticks(STAT, Some(10)).unwrap();
        assert_eq!((ten.idle, ten.iowait, ten.softirq), (4, 0, 0));
        assert_eq!(parse_cpu_ticks(STAT, Some(2)), None);
    }

    #[test]
    fn odd_stat_files_give_none() {
        assert_eq!(parse_cpu_ticks("", None), None);
        assert_eq!(parse_cpu_ticks("cpu  1 2 x 4\n", None), None);
        assert_eq!(parse_cpu_ticks("cpux 1 2 3\n", None), None);
    }

    #[test]
    fn reads_host_and_node_meminfo() {
        let host = parse_meminfo(
            "MemTotal:       24683584 kB\nMemFree:        21367108 kB\n\
             MemAvailable:   2 kB\nBuffers:          223184 kB\nCached:          2760308 kB\n\
             SwapCached:            7 kB\n",
        );
        assert_eq!(
            host,
            MemInfo {
                total: Some(24683584),
                free: Some(21367108),
                buffers: Some(223184),
                cached: Some(2760308)
            }
        );
        let node = parse_meminfo(
            "Node 1 MemTotal:        8611576 kB\nNode 1 MemFree:         6593972 kB\n\
             Node 1 MemUsed:         2017604 kB\nNode 1 SwapCached:            0 kB\n",
        );
        assert_eq!(
            node,
            MemInfo {
                total: Some(8611576),
                free: Some(6593972),
                buffers: None,
                cached: None
            }
        );
    }

    #[test]
    fn odd_meminfo_lines_are_skipped() {
        let info = parse_meminfo("MemTotal:\nMemFree: lots kB\nNode\nCached: 5 kB\nCached: 9 kB\n");
        assert_eq!(
            info,
            MemInfo {
                cached: Some(5),
                ..MemInfo::default()
            }
        );
    }

    #[test]
    fn this_host_has_cpu_time_and_memory() {
        assert!(cpu_ticks(None).is_some_and(|t| t.idle + t.user > 0));
        assert!(meminfo().and_then(|m| m.total).is_some_and(|kib| kib > 0));
        assert!(nanoseconds_per_tick() > 0);
    }
}
