//! Seccomp filters, one per kind of thread, as Firecracker confines its threads: each thread
//! installs its own before it touches what a guest or a client sends, and a system call
//! outside its list kills the process (`--seccomp=log` logs it instead, for diagnosing;
//! `--seccomp=off` installs nothing).
//!
//! The lists come from what the threads were seen to call (strace of the whole test suite,
//! the nested-Linux lane included); each entry says why. Filters stack: a thread started by
//! a filtered thread (a vCPU the main loop starts on `virsh start`) runs under both, so the
//! main loop's list holds everything the threads it starts need.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

mod lists;

use lists::{Allowed, Ioctl};

/// What `--seccomp` asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeccompMode {
    /// A call outside the list kills the process (SIGSYS).
    #[default]
    On,
    /// A call outside the list is allowed and logged by the kernel (dmesg: `audit: type=1326`).
    Log,
    Off,
}

pub fn parse_mode(text: &str) -> Result<SeccompMode, String> {
    match text {
        "on" => Ok(SeccompMode::On),
        "log" => Ok(SeccompMode::Log),
        "off" => Ok(SeccompMode::Off),
        _ => Err(format!("'{text}' is not one of on, log, off")),
    }
}

/// The kinds of thread, each with its own list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main loop: devices' MMIO/PIO and queues, the console, timers, signals, and the
    /// building and tearing down of machines.
    Main,
    /// A vCPU: KVM_RUN and the exits it hands to the devices.
    Vcpu,
    /// A virtio-blk disk's I/O thread: reads, writes and flushes of its file.
    BlockIo,
    /// The management server: its event loop and its workers (they share a list because the
    /// loop starts workers, which would run under its filter anyway).
    Management,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 4] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::BlockIo,
        ThreadKind::Management,
    ];

    /// The kind of the thread a crate names when it starts one.
    fn of_thread(name: &str) -> Option<ThreadKind> {
        match name {
            "virtio-blk-io" => Some(ThreadKind::BlockIo),
            "mgmt-loop" | "mgmt-worker" | "mgmt-prio-worker" => Some(ThreadKind::Management),
            _ => None,
        }
    }

    fn lists(self) -> (&'static [Allowed], &'static [Ioctl]) {
        match self {
            ThreadKind::Main => (lists::MAIN, lists::MAIN_IOCTLS),
            ThreadKind::Vcpu => (lists::VCPU, lists::VCPU_IOCTLS),
            ThreadKind::BlockIo => (lists::BLOCK_IO, lists::BLOCK_IO_IOCTLS),
            ThreadKind::Management => (lists::MANAGEMENT, lists::MANAGEMENT_IOCTLS),
        }
    }

    /// The system calls this kind may make: its list, the common one, the file writes for
    /// the main loop and the management threads, and for the main loop those of the threads
    /// it starts, since they run under its filter too.
    pub fn syscalls(self) -> BTreeSet<i64> {
        let mut calls: BTreeSet<i64> = self.entries().map(|a| a.0).collect();
        // A kind with an empty ioctl list makes none.
        if self.ioctl_entries().next().is_some() {
            calls.insert(libc::SYS_ioctl);
        }
        calls
    }

    /// The ioctl requests this kind may make: its list, and for the main loop the vCPU
    /// threads' too, since they start under its filter.
    fn ioctl_requests(self) -> BTreeSet<u64> {
        self.ioctl_entries().map(|i| i.0).collect()
    }

    fn ioctl_entries(self) -> impl Iterator<Item = &'static Ioctl> {
        let (_, own) = self.lists();
        let also: &[Ioctl] = match self {
            ThreadKind::Main => lists::VCPU_IOCTLS,
            _ => &[],
        };
        own.iter().chain(also)
    }

    /// Every entry of the lists this kind holds, with its reason.
    fn entries(self) -> impl Iterator<Item = &'static Allowed> {
        let (own, _) = self.lists();
        let also: &[&[Allowed]] = match self {
            ThreadKind::Main => &[lists::FILES, lists::VCPU, lists::BLOCK_IO],
            ThreadKind::Management => &[lists::FILES],
            _ => &[],
        };
        let lists = [lists::COMMON, own].into_iter().chain(also.iter().copied());
        lists.flat_map(|list| list.iter())
    }

    /// Says at debug level what the filter allows and why.
    fn log_lists(self) {
        for Allowed(call, why) in self.entries() {
            log::debug!("seccomp {self:?}: system call {call}: {why}");
        }
        for Ioctl(request, why) in self.ioctl_entries() {
            log::debug!("seccomp {self:?}: ioctl {request:#x}: {why}");
        }
    }
}

struct Filters {
    mode: SeccompMode,
    programs: Vec<(ThreadKind, BpfProgram)>,
}

static FILTERS: OnceLock<Filters> = OnceLock::new();

/// Compiles every filter (so a bad list fails at start-up, not in a thread) and has the
/// device and management crates call back at the start of their threads.
pub fn init(mode: SeccompMode) -> Result<(), String> {
    let mut programs = Vec::new();
    if mode != SeccompMode::Off {
        for kind in ThreadKind::ALL {
            programs.push((kind, compile(kind, mode)?));
            kind.log_lists();
        }
    }
    let _ = FILTERS.set(Filters { mode, programs });
    devices::thread_hook::set(thread_started);
    mgmt::thread_hook::set(thread_started);
    Ok(())
}

fn compile(kind: ThreadKind, mode: SeccompMode) -> Result<BpfProgram, String> {
    let at = |e: seccompiler::BackendError| format!("seccomp filter for {kind:?}: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in kind.syscalls() {
        rules.insert(call, Vec::new());
    }
    let requests = kind.ioctl_requests();
    if !requests.is_empty() {
        // Only these requests (the second argument), whatever the fd.
        let mut conditions = Vec::new();
        for request in requests {
            let request =
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
                    .map_err(at)?;
            conditions.push(SeccompRule::new(vec![request]).map_err(at)?);
        }
        rules.insert(libc::SYS_ioctl, conditions);
    }
    let mismatch = match mode {
        SeccompMode::Log => SeccompAction::Log,
        _ => SeccompAction::KillProcess,
    };
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(at)?;
    BpfProgram::try_from(filter).map_err(at)
}

/// Confines the calling thread to `kind`'s list. A thread that cannot be confined ends the
/// process: running it unconfined would be worse than not running.
pub fn install(kind: ThreadKind) {
    let Some(filters) = FILTERS.get() else {
        return;
    };
    let Some((_, program)) = filters.programs.iter().find(|(k, _)| *k == kind) else {
        return;
    };
    if let Err(e) = seccompiler::apply_filter(program) {
        log::error!("cannot install the {kind:?} thread's seccomp filter: {e}");
        std::process::exit(1);
    }
    if kind == ThreadKind::Vcpu && std::env::var_os(FORBIDDEN_CALL_TEST).is_some() {
        forbidden_call();
    }
}

/// The mode the process runs with (Off when `init` was not called).
pub fn mode() -> SeccompMode {
    FILTERS.get().map_or(SeccompMode::Off, |f| f.mode)
}

fn thread_started(name: &'static str) {
    match ThreadKind::of_thread(name) {
        Some(kind) => install(kind),
        None => {
            log::error!("thread '{name}' has no seccomp filter");
            if mode() != SeccompMode::Off {
                std::process::exit(1);
            }
        }
    }
}

/// Test hook: with this variable set, each vCPU thread makes a call no vCPU makes, right
/// after confining itself, so a test can see the filter kill the process.
pub const FORBIDDEN_CALL_TEST: &str = "VMM_SECCOMP_TEST_FORBIDDEN_CALL";

fn forbidden_call() {
    // SAFETY: socket(2) with constant arguments; the fd, if any, is closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_compiles_in_both_modes() {
        for kind in ThreadKind::ALL {
            for mode in [SeccompMode::On, SeccompMode::Log] {
                let program = compile(kind, mode).unwrap();
                assert!(!program.is_empty(), "{kind:?}");
            }
        }
    }

    #[test]
    fn lists_have_no_repeats_and_give_reasons() {
        for kind in ThreadKind::ALL {
            let (own, _) = kind.lists();
            let mut seen = std::collections::BTreeSet::new();
            for (nr, why) in lists::COMMON.iter().chain(own).map(|a| (a.0, a.1)) {
                assert!(seen.insert(nr), "{kind:?}: syscall {nr} listed twice");
                assert!(!why.is_empty());
                assert_ne!(nr, libc::SYS_ioctl, "ioctl has its own rules");
            }
            let mut requests = std::collections::BTreeSet::new();
            for Ioctl(request, why) in kind.ioctl_entries() {
                assert!(
                    requests.insert(request),
                    "{kind:?}: ioctl {request:#x} twice"
                );
                assert!(!why.is_empty());
            }
        }
    }

    /// Runs `calls` in a child confined to `kind`'s filter; the child's wait status.
    fn confined_child(kind: ThreadKind, calls: impl FnOnce()) -> i32 {
        let program = compile(kind, SeccompMode::On).unwrap();
        // SAFETY: fork in a test; the child only installs the filter compiled before and
        // makes system calls before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if seccompiler::apply_filter(&program).is_err() {
                // SAFETY: leaving the child.
                unsafe { libc::_exit(2) };
            }
            calls();
            // SAFETY: leaving the child.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child we forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    #[test]
    fn the_main_loop_may_make_only_its_ioctls() {
        // SAFETY (both): ioctls on fd 0 with a zeroed buffer big enough for either request.
        let allowed = confined_child(ThreadKind::Main, || unsafe {
            let mut buf = [0u8; 64];
            libc::ioctl(0, libc::TCGETS, buf.as_mut_ptr());
        });
        assert!(libc::WIFEXITED(allowed) && libc::WEXITSTATUS(allowed) == 0);
        let refused = confined_child(ThreadKind::Main, || unsafe {
            let mut buf = [0u8; 64];
            libc::ioctl(0, libc::SIOCGIFFLAGS, buf.as_mut_ptr());
        });
        assert!(libc::WIFSIGNALED(refused), "status {refused:#x}");
        assert_eq!(libc::WTERMSIG(refused), libc::SIGSYS);
    }

    #[test]
    fn a_confined_thread_is_killed_only_for_what_it_may_not_do() {
        // SAFETY: write(2) of a valid buffer to stderr, then socket(2), which the I/O thread
        // may not call.
        let status = confined_child(ThreadKind::BlockIo, || unsafe {
            libc::write(2, b"".as_ptr().cast(), 0);
            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        });
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
