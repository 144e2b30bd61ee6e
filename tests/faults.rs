//! Nothing is lost, and nothing crashes, when the host side fails: the VMM killed mid-write,
//! a disk that fills up or fails, a tap that goes away.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kvm_available, TempDir, VmmRun};

const SECTOR: usize = 512;

/// The last `FLUSHED END stamp=S` line the guest completed (a line cut by the kill is not
/// complete, so it does not count).
fn last_flush(console: &str) -> Option<(u64, u64)> {
    let complete = &console[..console.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().rev().find_map(|line| {
        let rest = line.trim_end_matches('\r').strip_prefix("FLUSHED ")?;
        let (end, stamp) = rest.split_once(" stamp=0x")?;
        Some((end.parse().ok()?, u64::from_str_radix(stamp, 16).ok()?))
    })
}

/// What the guest's blk-stream check writes to sector `number` (see the test guest's README).
fn stream_sector(stamp: u64, number: u64) -> Vec<u8> {
    let mut s = Vec::with_capacity(SECTOR);
    s.extend_from_slice(&stamp.to_le_bytes());
    s.extend_from_slice(&number.to_le_bytes());
    s.extend((16..SECTOR).map(|i| number as u8 ^ i as u8));
    s
}

/// The sectors in [1, end) that do not hold what the guest flushed.
fn lost_sectors(disk: &Path, end: u64, stamp: u64) -> Vec<u64> {
    let bytes = std::fs::read(disk).expect("read the disk file");
    (1..end)
        .filter(|&n| {
            let at = n as usize * SECTOR;
            bytes.get(at..at + SECTOR) != Some(&stream_sector(stamp, n)[..])
        })
        .collect()
}

/// A small xorshift generator: kill points differ from run to run, and the seed is printed so
/// that a failing sequence can be replayed with VMM_TEST_SEED.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::env::var("VMM_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64 | 1)
            });
        eprintln!("kill points from VMM_TEST_SEED={seed}");
        Random(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn stream_args(disk: &Path) -> Vec<String> {
    vec![
        "--memory".into(),
        "64M".into(),
        "--disk".into(),
        format!("path={},id=stream0", disk.display()),
        "--cmdline".into(),
        "end=exit test=blk-stream stream.flush=4".into(),
    ]
}

fn start(tag: &str, args: &[String]) -> VmmRun {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    VmmRun::start(tag, &args)
}

/// The guest writes the disk and flushes every 16 KiB; the VMM is SIGKILLed at a random
/// point, 20 times. Every sector a completed flush covered must be on the host's file.
/// The kill points are random flushes of the stream (then a random few milliseconds), not
/// random times, so a loaded host still kills mid-stream.
#[test]
fn flushed_sectors_survive_a_sigkill_at_any_point() {
    if !kvm_available("flushed_sectors_survive_a_sigkill_at_any_point") {
        return;
    }
    let dir = TempDir::new("kill-write");
    let disk = dir.path("disk.img");
    let sectors = 16 * 1024; // 8 MiB
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(sectors * SECTOR as u64))
        .expect("disk file");

    // One whole run first: it shows the stream works, and how many flushes it makes.
    let whole = start("kill-write-whole", &stream_args(&disk)).finish();
    whole.assert_success();
    let end = sectors - (sectors - 1) % 8; // whole 4 KiB requests from sector 1
    whole.assert_console_has(&[&format!("TEST blk-stream PASS end={end}")]);
    let (flushed, stamp) = last_flush(&whole.serial).expect("a FLUSHED line");
    assert_eq!(flushed, end);
    assert_eq!(lost_sectors(&disk, end, stamp), Vec::<u64>::new());
    let flushes = whole.serial.matches("FLUSHED ").count() as u64;

    let mut random = Random::new();
    let mut mid_stream = 0;
    for run in 0..20 {
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(sectors * SECTOR as u64))
            .expect("blank disk");
        let mut vm = start(&format!("kill-write-{run}"), &stream_args(&disk));
        let kill_after = 1 + random.below(flushes * 8 / 10) as usize;
        vm.wait_for_serial("FLUSHED ", kill_after);
        std::thread::sleep(Duration::from_millis(random.below(5)));
        vm.signal(libc::SIGKILL);
        let status = common::wait_timeout(&mut vm.child, Duration::from_secs(10))
            .expect("a SIGKILLed vmm is reaped");
        let console = vm.serial_text();
        let finished = console.contains("TEST blk-stream");
        if !finished {
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(libc::SIGKILL)
            );
            mid_stream += 1;
        }
        let (end, stamp) = last_flush(&console).expect("a FLUSHED line before the kill");
        let lost = lost_sectors(&disk, end, stamp);
        eprintln!("run {run}: killed after FLUSHED {end}; lost {}", lost.len());
        assert!(
            lost.is_empty(),
            "run {run}: sectors flushed before the kill are not on disk: {lost:?}"
        );
    }
    // Most kills must land while the guest is still writing, or the test shows nothing.
    assert!(
        mid_stream >= 10,
        "only {mid_stream} of 20 kills were mid-stream"
    );
}

/// A tmpfs of its own, unmounted (with its loop device detached) on drop.
struct SmallFs {
    dir: PathBuf,
    loop_device: Option<String>,
}

impl SmallFs {
    fn mount(test: &str, dir: &TempDir, size: &str) -> Option<SmallFs> {
        let mountpoint = dir.path("fs");
        std::fs::create_dir_all(&mountpoint).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            common::skip(test, "cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(SmallFs {
            dir: mountpoint,
            loop_device: None,
        })
    }

    /// A sparse disk file larger than the file system, with the blk check's label.
    fn disk(&self, id: &str) -> PathBuf {
        let path = self.dir.join("disk.img");
        let file = std::fs::File::create(&path).expect("disk file");
        file.set_len(4 << 20).expect("sparse 4 MiB");
        std::os::unix::fs::FileExt::write_all_at(&file, format!("VMM-DISK{id}").as_bytes(), 0)
            .expect("label");
        path
    }

    /// A loop device over `file`: buffered writes reach its page cache, and the full file
    /// system under it fails them at flush time, with EIO.
    fn loop_device(&mut self, test: &str, file: &Path) -> Option<String> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()
            .filter(|o| o.status.success());
        let Some(out) = out else {
            common::skip(
                test,
                "cannot attach a loop device (needs root and util-linux)",
            );
            return None;
        };
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        self.loop_device = Some(device.clone());
        Some(device)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if let Some(device) = &self.loop_device {
            let _ = Command::new("losetup").args(["-d", device]).status();
        }
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Runs blk-stream then blk on `disk`: the stream must fail with an I/O error status, the
/// device must go on serving reads, and the VMM must end normally and say why, once.
fn assert_io_error_reaches_the_guest(tag: &str, disk: &str, id: &str, request: &str) {
    let r = common::run_to_end(
        tag,
        &[
            "--memory",
            "64M",
            "--disk",
            &format!("path={disk},id={id}"),
            "--cmdline",
            "end=exit test=blk-stream,blk",
        ],
    );
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    r.assert_console_has(&[
        &format!("TEST blk-stream FAIL {request} status=1 sector="),
        &format!("TEST blk PASS id={id}"),
        "RESULT FAIL pass=1 fail=1",
    ]);
    assert_eq!(
        r.stderr.matches("the guest gets an I/O error").count(),
        1,
        "one warning: {}",
        r.stderr
    );
}

/// A disk file on a full file system: the write the host refuses (ENOSPC) is an I/O error
/// to the guest, not a hang or a crash.
#[test]
fn a_full_disk_is_an_io_error_for_the_guest() {
    let test = "a_full_disk_is_an_io_error_for_the_guest";
    if !kvm_available(test) {
        return;
    }
    let dir = TempDir::new("enospc");
    let Some(fs) = SmallFs::mount(test, &dir, "1M") else {
        return;
    };
    let disk = fs.disk("full0");
    assert_io_error_reaches_the_guest("enospc", &disk.to_string_lossy(), "full0", "write");
}

/// A block device whose writes fail at flush (EIO): a loop device over a full file system.
/// Its capacity must come from the device itself (its metadata says 0 bytes).
#[test]
fn a_failing_block_device_is_an_io_error_for_the_guest() {
    let test = "a_failing_block_device_is_an_io_error_for_the_guest";
    if !kvm_available(test) {
        return;
    }
    let dir = TempDir::new("eio");
    let Some(mut fs) = SmallFs::mount(test, &dir, "1M") else {
        return;
    };
    let backing = fs.disk("loop0");
    let Some(device) = fs.loop_device(test, &backing) else {
        return;
    };
    assert_io_error_reaches_the_guest("eio", &device, "loop0", "flush");
}

/// CPU time (user + system, clock ticks) of one thread.
fn thread_cpu_ticks(pid: u32, tid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).expect("stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    // utime and stime are fields 14 and 15; the slice starts at field 3.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// The tap is deleted while the guest sends: frames are dropped (and counted), the guest's
/// requests still complete, and the main loop neither spins on the dead fd nor floods the log.
#[test]
fn a_tap_that_goes_away_drops_frames_and_the_vm_runs_on() {
    let test = "a_tap_that_goes_away_drops_frames_and_the_vm_runs_on";
    if !kvm_available(test) {
        return;
    }
    let Some(ns) = common::NetNs::new("tapgone") else {
        return;
    };
    let dir = TempDir::new("tapgone");
    let socket = dir.path("mgmt.sock");
    let mut vm = VmmRun::start_in(
        &ns,
        "tapgone",
        &[
            "--name",
            "tapgone",
            "--memory",
            "64M",
            "--net",
            "tap=tap0,mac=52:54:00:12:34:56",
            "--mgmt-socket",
            &socket.to_string_lossy(),
            "--cmdline",
            "end=wait test=net-bench bench.frames=60000",
        ],
    );
    vm.wait_for_serial("cmdline:", 1);
    let deleted = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ip", "link", "del", "tap0"])
        .status()
        .expect("ip");
    assert!(deleted.success(), "ip link del tap0");
    vm.wait_for_serial("TEST net-bench PASS frames=60000", 1);
    vm.wait_for_serial("end=wait", 1);

    // The main loop (the process's first thread) stays idle with the dead tap.
    let pid = vm.child.id();
    let before = thread_cpu_ticks(pid, pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = thread_cpu_ticks(pid, pid) - before;
    assert!(
        used < 50,
        "the main loop used {used} ticks of 200 with the tap gone"
    );

    // The dropped frames are counted where monitoring reads them.
    let uri = format!("qemu+unix:///system?socket={}", socket.display());
    let stats = Command::new("virsh")
        .args(["-c", &uri, "domifstat", "tapgone", "tap0"])
        .output()
        .expect("virsh");
    let text = String::from_utf8_lossy(&stats.stdout);
    let tx_errors: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tap0 tx_errs "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tx_errs in {text:?}"));
    assert!(tx_errors > 0, "{text}");

    let stderr = common::read_lossy(&vm.stderr);
    assert!(
        stderr.matches("virtio-net").count() <= 2,
        "the log is flooded:\n{stderr}"
    );
    vm.signal(libc::SIGKILL);
}
