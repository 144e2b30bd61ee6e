//! Thread placement on host CPUs: reading and setting a thread's CPU affinity, the CPUs this
//! process may use, and what /proc says about a thread (last CPU, CPU time).

use std::sync::OnceLock;

use mgmt::cpuset::{CpuSet, MAX_CPU};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet as NixCpuSet};
use nix::unistd::Pid;

/// A kernel thread id (what /proc/self/task lists).
pub type Tid = libc::pid_t;

/// The calling thread's id.
pub fn current_tid() -> Tid {
    nix::unistd::gettid().as_raw()
}

fn to_nix(set: &CpuSet) -> Result<NixCpuSet, String> {
    let mut nix_set = NixCpuSet::new();
    for cpu in set.iter() {
        nix_set
            .set(cpu)
            .map_err(|_| format!("host CPU {cpu} is beyond what this kernel can address"))?;
    }
    Ok(nix_set)
}

/// The host CPUs thread `tid` may run on (0: the calling thread).
pub fn thread_affinity(tid: Tid) -> Result<CpuSet, String> {
    let set = sched_getaffinity(Pid::from_raw(tid))
        .map_err(|e| format!("sched_getaffinity({tid}): {e}"))?;
    let limit = NixCpuSet::count().min(MAX_CPU + 1);
    Ok((0..limit)
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Restricts thread `tid` (0: the calling thread) to `set`.
pub fn set_thread_affinity(tid: Tid, set: &CpuSet) -> Result<(), String> {
    sched_setaffinity(Pid::from_raw(tid), &to_nix(set)?)
        .map_err(|e| format!("cannot place thread {tid} on host CPUs {set}: {e}"))
}

/// The CPUs the process was allowed when it started (its affinity then, as taskset or a
/// cgroup left it). Call first from `main` before any thread is pinned.
pub fn process_cpus() -> &'static CpuSet {
    static CPUS: OnceLock<CpuSet> = OnceLock::new();
    CPUS.get_or_init(|| match thread_affinity(0) {
        Ok(set) if !set.is_empty() => set,
        // Without sched_getaffinity assume every CPU the kernel has online.
        _ => mgmt::host::node_cpus().1,
    })
}

/// True when /dev/kvm is PVM (`kvm_pvm`): there a vCPU thread that moves between host CPUs
/// can lose its vCPU state, so each must stay on one CPU (see ../shared/design/PLATFORM.md).
pub fn kvm_is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// What the scheduler says about one thread of this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// The host CPU it last ran on.
    pub last_cpu: i32,
    /// User plus system time, in nanoseconds.
    pub cpu_time_ns: u64,
}

/// Reads /proc/self/task/TID/stat (fields 14-15: utime, stime; 39: processor).
pub fn thread_stats(tid: Tid) -> Option<ThreadStats> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<ThreadStats> {
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // `fields[0]` is field 3 (state).
    let field = |n: usize| fields.get(n - 3).copied();
    let ticks = |n| field(n).and_then(|v| v.parse::<u64>().ok());
    let total_ticks = ticks(14)? + ticks(15)?;
    let last_cpu = field(39)?.parse().ok()?;
    Some(ThreadStats {
        last_cpu,
        cpu_time_ns: total_ticks.saturating_mul(1_000_000_000) / clock_ticks_per_second(),
    })
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// Moves every thread of this process but `except` onto `cpus`.
pub fn set_affinity_except(except: &[Tid], cpus: &CpuSet) -> Result<(), String> {
    for tid in process_threads() {
        if except.contains(&tid) {
            continue;
        }
        match set_thread_affinity(tid, cpus) {
            Ok(()) => {}
            // A thread that ended since the listing needs no placement.
            Err(_) if !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every thread of this process.
pub fn process_threads() -> Vec<Tid> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_an_odd_command_name() {
        let stat = "42 (vcpu 0) (x)) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0 20 0 1 0 5 6 7 8 9 \
                    10 11 12 13 14 15 16 17 18 19 20 21 1 0 0";
        let stats = parse_stat(stat).unwrap();
        assert_eq!(stats.last_cpu, 1);
        assert_eq!(
            stats.cpu_time_ns,
            500 * 1_000_000_000 / clock_ticks_per_second()
        );
        assert_eq!(parse_stat("42 (x) S 1"), None);
    }

    #[test]
    fn this_thread_can_be_pinned_and_read_back() {
        let allowed = thread_affinity(0).unwrap();
        let cpu = allowed.first().unwrap();
        std::thread::spawn(move || {
            set_thread_affinity(0, &CpuSet::single(cpu)).unwrap();
            assert_eq!(thread_affinity(current_tid()).unwrap(), CpuSet::single(cpu));
            assert_eq!(thread_stats(current_tid()).unwrap().last_cpu, cpu as i32);
        })
        .join()
        .unwrap();
        assert!(process_threads().contains(&current_tid()));
    }
}
