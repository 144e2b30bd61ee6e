//! Helpers shared by the integration tests: run the `vmm` binary, watch its serial file.

#![allow(dead_code)] // each test binary uses a different subset

pub mod managed;
pub mod raw_rpc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The launcher under test, built by cargo for this test run.
pub const VMM: &str = env!("CARGO_BIN_EXE_vmm");

/// Generous: the test guest needs a few ms, but CI machines are shared and slow.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Under CI (`CI=true`) nothing may skip: what a test needs is part of the machine.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says why `test` cannot run here; returns false so the caller returns. Under CI a missing
/// prerequisite is a failure, never a silent pass.
pub fn skip(test: &str, reason: &str) -> bool {
    assert!(!in_ci(), "{test}: CI=true, but {reason}");
    eprintln!("{test}: skipped: {reason}");
    false
}

/// True if /dev/kvm is usable; prints why a test is skipped otherwise.
pub fn kvm_available(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => skip(test, &format!("/dev/kvm is not usable ({e})")),
    }
}

/// True where KVM is kvm_pvm, where the VMM pins each vCPU to one host CPU by default.
pub fn kvm_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// Whether KVM here is hardware-style (VMX/SVM: kvm_intel or kvm_amd, or the CPU flags), where
/// guest CPL0 code runs natively and CPL3 can enter it.
pub fn hardware_kvm() -> bool {
    ["kvm_intel", "kvm_amd"]
        .iter()
        .any(|m| Path::new("/sys/module").join(m).exists())
        || std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
}

/// Threads that keep every host CPU busy while they live (a CPU hog, like
/// `stress-ng --cpu N`).
pub struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    pub fn start() -> CpuHog {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        CpuHog { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Expands a CPU list as /proc and virsh print it (`0-2,5`).
pub fn cpu_list(text: &str) -> Vec<usize> {
    text.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|part| {
            let (low, high) = part.split_once('-').unwrap_or((part, part));
            let (low, high): (usize, usize) = (
                low.trim().parse().expect("CPU number"),
                high.trim().parse().expect("CPU number"),
            );
            low..=high
        })
        .collect()
}

/// The host CPUs this test process may use (what a `vmm` it starts inherits), as /proc
/// prints them.
pub fn allowed_cpus_text() -> String {
    let me = std::process::id();
    let main = tasks(me)
        .into_iter()
        .find(|t| t.tid == me)
        .expect("own task");
    main.cpus_allowed
}

/// The same, expanded.
pub fn allowed_cpus() -> Vec<usize> {
    cpu_list(&allowed_cpus_text())
}

/// One thread of a process, as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub tid: u32,
    pub name: String,
    /// `Cpus_allowed_list` from its status file, e.g. `0-1`.
    pub cpus_allowed: String,
}

/// Every thread of process `pid`.
pub fn tasks(pid: u32) -> Vec<TaskInfo> {
    let dir = format!("/proc/{pid}/task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut tasks: Vec<TaskInfo> = entries
        .filter_map(|e| {
            let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(format!("{dir}/{tid}/status")).ok()?;
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
            };
            Some(TaskInfo {
                tid,
                name: field("Name:")?,
                cpus_allowed: field("Cpus_allowed_list:")?,
            })
        })
        .collect();
    tasks.sort_by_key(|t| t.tid);
    tasks
}

/// The vCPU threads (`vcpu0`, `vcpu1`, ...) of process `pid`, in vCPU order.
pub fn vcpu_tasks(pid: u32) -> Vec<TaskInfo> {
    let mut vcpus: Vec<(usize, TaskInfo)> = tasks(pid)
        .into_iter()
        .filter_map(|t| Some((t.name.strip_prefix("vcpu")?.parse().ok()?, t)))
        .collect();
    vcpus.sort_by_key(|(index, _)| *index);
    vcpus.into_iter().map(|(_, t)| t).collect()
}

/// A thread's scheduler state letter and the nanoseconds it has run (schedstat).
fn run_state(pid: u32, tid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 1..].trim_start().chars().next()?;
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    Some((state, schedstat.split_whitespace().next()?.parse().ok()?))
}

/// Waits until every vCPU thread of `pid` is asleep and did not run between two looks: it
/// is parked, not in the guest (a vCPU running the guest at CPL3 is always runnable).
pub fn wait_until_vcpus_sleep(pid: u32) {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let vcpus = vcpu_tasks(pid);
        let first: Vec<_> = vcpus.iter().map(|t| run_state(pid, t.tid)).collect();
        let second: Vec<_> = vcpus.iter().map(|t| run_state(pid, t.tid)).collect();
        let asleep = !vcpus.is_empty()
            && first
                .iter()
                .zip(&second)
                .all(|(a, b)| matches!((a, b), (Some(('S', x)), Some(('S', y))) if x == y));
        if asleep {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vCPU threads still running: {first:?} {second:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vmm-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One run of the launcher with its console in a file.
pub struct VmmRun {
    pub child: Child,
    pub serial: PathBuf,
    pub stderr: PathBuf,
    _dir: TempDir,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub serial: String,
    pub stderr: String,
}

impl Finished {
    /// Panics, showing the console and stderr, unless the run exited with status 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{:?}\nconsole:\n{}\nstderr:\n{}",
            self.status,
            self.serial,
            self.stderr
        );
    }

    /// Panics, showing the console, unless it contains every needle.
    pub fn assert_console_has(&self, needles: &[&str]) {
        for needle in needles {
            assert!(
                self.serial.contains(needle),
                "missing {needle:?}; console:\n{}",
                self.serial
            );
        }
    }

    /// Panics, showing the console, unless the guest's report line `key` says `expected`.
    pub fn assert_report(&self, key: &str, expected: &str) {
        assert_eq!(
            report_value(&self.serial, key),
            Some(expected),
            "{key}; console:\n{}",
            self.serial
        );
    }
}

impl VmmRun {
    /// Starts `vmm run ARGS... --serial file=...` with stdin closed.
    pub fn start(tag: &str, args: &[&str]) -> VmmRun {
        Self::spawn(tag, args, false, None)
    }

    /// Like `start`, inside the network namespace `ns` (where its tap lives).
    pub fn start_in(ns: &NetNs, tag: &str, args: &[&str]) -> VmmRun {
        Self::spawn(tag, args, false, Some(ns))
    }

    /// Starts `vmm run ARGS... --serial stdio` with stdin piped; the console lands in the
    /// same file as with `start`.
    pub fn start_interactive(tag: &str, args: &[&str]) -> VmmRun {
        Self::spawn(tag, args, true, None)
    }

    fn spawn(tag: &str, args: &[&str], interactive: bool, ns: Option<&NetNs>) -> VmmRun {
        let dir = TempDir::new(tag);
        let serial = dir.path("serial.log");
        let stderr = dir.path("stderr.log");
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, VMM]);
                c
            }
            None => Command::new(VMM),
        };
        command.arg("run").args(args);
        if interactive {
            command
                .args(["--serial", "stdio"])
                .stdin(Stdio::piped())
                .stdout(std::fs::File::create(&serial).expect("console file"));
        } else {
            command
                .arg("--serial")
                .arg(format!("file={}", serial.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null());
        }
        let child = command
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start vmm");
        VmmRun {
            child,
            serial,
            stderr,
            _dir: dir,
        }
    }

    pub fn serial_text(&self) -> String {
        read_lossy(&self.serial)
    }

    /// Waits until the console shows `needle` `count` times; panics with the console on timeout.
    pub fn wait_for_serial(&mut self, needle: &str, count: usize) {
        self.wait_for_serial_n(needle, count, BOOT_TIMEOUT);
    }

    /// `wait_for_serial` once, with a timeout of the caller's.
    pub fn wait_for_serial_within(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_serial_n(needle, 1, timeout);
    }

    fn wait_for_serial_n(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.serial_text();
            if text.matches(needle).count() >= count {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vmm exited ({status}) before {count}x {needle:?}; console:\n{text}\nstderr:\n{}", read_lossy(&self.stderr));
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count}x {needle:?}; console:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signo: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, signo) };
        assert_eq!(rc, 0, "kill({signo})");
    }

    /// Waits for the process to end (panics on timeout after killing it).
    pub fn finish(self) -> Finished {
        self.finish_within(BOOT_TIMEOUT)
    }

    /// `finish` with a timeout of the caller's (a Linux boot under nested KVM takes minutes).
    pub fn finish_within(mut self, timeout: Duration) -> Finished {
        let status = wait_timeout(&mut self.child, timeout).unwrap_or_else(|| {
            let stuck = kill_and_reap(&mut self.child);
            panic!(
                "vmm did not exit{stuck}; console:\n{}\nstderr:\n{}",
                self.serial_text(),
                read_lossy(&self.stderr)
            )
        });
        Finished {
            status,
            serial: self.serial_text(),
            stderr: read_lossy(&self.stderr),
        }
    }
}

impl Drop for VmmRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let stuck = kill_and_reap(&mut self.child);
            if !stuck.is_empty() {
                eprintln!("vmm pid {}{stuck}", self.child.id());
            }
        }
    }
}

/// Runs to completion and returns the result.
pub fn run_to_end(tag: &str, args: &[&str]) -> Finished {
    VmmRun::start(tag, args).finish()
}

/// SIGKILLs `child` and reaps it, waiting at most 10 s: a process stuck in the kernel (seen
/// once with nested KVM in the lane) must fail the test, not hang the suite. Returns "" once
/// reaped, else what its threads are blocked in.
pub fn kill_and_reap(child: &mut Child) -> String {
    let _ = child.kill();
    if wait_timeout(child, Duration::from_secs(10)).is_some() {
        return String::new();
    }
    let tasks = format!("/proc/{}/task", child.id());
    let mut report = String::from(" and could not be reaped after SIGKILL; its threads:");
    for task in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
        let path = task.path();
        let status = read_lossy(&path.join("status"));
        let state = status
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("");
        let wchan = read_lossy(&path.join("wchan"));
        let stack = read_lossy(&path.join("stack"));
        report += &format!("\n  {}: {state} wchan={wchan}\n{stack}", path.display());
    }
    report
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The value after `key` on the first console line that starts with it.
pub fn report_value<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(key))
        .map(str::trim)
}

/// A network namespace of the test's own with a configured tap in it; removed on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Option<NetNs> {
        let name = format!("vmmtest-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !ip(&["netns", "add", &name]) {
            skip(
                tag,
                "cannot create a network namespace (needs root and iproute2)",
            );
            return None;
        }
        let ns = NetNs { name };
        for args in [
            &["tuntap", "add", "tap0", "mode", "tap"][..],
            &["addr", "add", "10.0.2.1/24", "dev", "tap0"][..],
            &["link", "set", "tap0", "up"][..],
            &["link", "set", "lo", "up"][..],
        ] {
            assert!(
                ip(&[&["netns", "exec", &ns.name, "ip"][..], args].concat()),
                "ip {args:?}"
            );
        }
        Some(ns)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The test guest ELF the `vmm` binary embeds, as a file (for clients that must name a
/// kernel, such as virt-install): the newest one cargo's build script left beside the binary.
pub fn test_guest_elf() -> PathBuf {
    let build = Path::new(VMM)
        .parent()
        .expect("the vmm binary is in a directory")
        .join("build");
    let newest = std::fs::read_dir(&build)
        .expect("cargo's build directory")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("vmm-"))
        .map(|entry| entry.path().join("out/test-guest.elf"))
        .filter_map(|elf| Some((elf.metadata().ok()?.modified().ok()?, elf)))
        .max();
    newest.expect("vmm's build script built the test guest").1
}

/// Starts `vmm serve --mgmt-socket SOCKET EXTRA...` (stdin and stdout closed, stderr to
/// `stderr`) and waits for its socket.
pub fn spawn_serve(socket: &Path, extra: &[&std::ffi::OsStr], stderr: Stdio) -> Child {
    let _ = std::fs::remove_file(socket);
    let child = Command::new(VMM)
        .args(["serve", "--mgmt-socket"])
        .arg(socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start vmm serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "vmm serve made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}
