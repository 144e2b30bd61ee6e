//! A VMM serving the management protocol, and the real clients that drive it: Debian's virsh
//! and libvirt-python.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    kill_and_reap, kvm_available, read_lossy, skip, wait_timeout, TempDir, BOOT_TIMEOUT, VMM,
};

pub const NAME: &str = "testvm";
pub const UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";
/// Event kinds libvirt 9.0 knows (VIR_DOMAIN_EVENT_ID_LAST): what `virsh event --all` registers.
pub const EVENT_KINDS: usize = 27;

/// A VMM serving the management protocol.
pub struct Managed {
    pub child: Child,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub ro_socket: PathBuf,
    /// How long waits for a state or console output last.
    patience: Duration,
}

impl Managed {
    /// `vmm run ARGS...` with a name, a console file and both sockets. `wrapper` runs first
    /// (e.g. `taskset -c 0`, `ip netns exec NS`) and execs the VMM.
    pub fn spawn(tag: &str, args: &[&str], wrapper: &[&str]) -> Managed {
        let dir = TempDir::new(tag);
        let socket = dir.path("vmm.sock");
        let ro_socket = dir.path("vmm-ro.sock");
        let console = format!("file={}", dir.path("console.log").display());
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(VMM);
                c
            }
            None => Command::new(VMM),
        };
        let child = command
            .args([
                "run",
                "--name",
                NAME,
                "--uuid",
                UUID,
                "--serial",
                &console,
                "--log-level",
                "info",
            ])
            .args(args)
            .arg("--mgmt-socket")
            .arg(&socket)
            .arg("--mgmt-socket-ro")
            .arg(&ro_socket)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.path("stderr.log")).unwrap())
            .spawn()
            .expect("start vmm");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while !(socket.exists() && ro_socket.exists()) {
            assert!(Instant::now() < deadline, "no management socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Managed {
            child,
            dir,
            socket,
            ro_socket,
            patience: Duration::from_secs(30),
        }
    }

    /// Waits up to `patience` for states and console output (slow guests: Linux, the lane).
    pub fn with_patience(mut self, patience: Duration) -> Managed {
        self.patience = patience;
        self
    }

    pub fn uri(socket: &Path) -> String {
        format!("qemu+unix:///system?socket={}", socket.display())
    }

    pub fn virsh_on(&self, socket: &Path, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(Self::uri(socket))
            .args(args)
            .output()
            .expect("run virsh");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs virsh and returns its stdout; panics with its stderr if it fails.
    pub fn virsh(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.virsh_on(&self.socket, args);
        assert!(ok, "virsh {args:?} failed: {err}");
        out
    }

    pub fn console(&self) -> String {
        read_lossy(&self.dir.path("console.log"))
    }

    /// Polls `virsh domstate --reason` until it reads `want`.
    pub fn wait_for_state(&self, want: &str) {
        let deadline = Instant::now() + self.patience;
        loop {
            let state = self.virsh(&["domstate", NAME, "--reason"]);
            if state.trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "domain stayed {state:?}, wanted {want:?}; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for_console(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + self.patience;
        while self.console().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count}x {needle:?}; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the VMM logged so far (its stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path("stderr.log"))
    }

    /// Event callbacks clients have registered so far (the VMM logs each at info level).
    pub fn registered_callbacks(&self) -> usize {
        self.log().matches("event callback").count()
    }

    /// `virsh event --all --loop` on this VM, registered before it returns.
    pub fn watch_events(&self) -> Child {
        let before = self.registered_callbacks();
        let watcher = Command::new("virsh")
            .arg("-c")
            .arg(Self::uri(&self.socket))
            .args(["event", "--all", "--loop", "--timeout", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // `--all` registers one callback per event kind that libvirt 9.0 has.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.registered_callbacks() < before + EVENT_KINDS {
            assert!(Instant::now() < deadline, "virsh event did not register");
            std::thread::sleep(Duration::from_millis(10));
        }
        watcher
    }

    pub fn ticks(&self) -> usize {
        read_lossy(&self.dir.path("console.log"))
            .matches("TICK")
            .count()
    }

    /// The guest is still making progress at CPL3.
    pub fn assert_guest_runs(&self) {
        let before = self.ticks();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ticks() <= before {
            assert!(Instant::now() < deadline, "the guest stopped ticking");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let stuck = kill_and_reap(&mut self.child);
            if !stuck.is_empty() {
                eprintln!("vmm pid {}{stuck}", self.child.id());
            }
        }
    }
}

/// Stops a `watch_events` watcher; returns what it printed.
pub fn stop_watching(watcher: Child) -> String {
    // SAFETY: kill(2) on the event watcher we started.
    unsafe { libc::kill(watcher.id() as i32, libc::SIGINT) };
    let out = watcher.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn clients_available(test: &str) -> bool {
    if !kvm_available(test) {
        return false;
    }
    if !Path::new("/usr/bin/virsh").exists() {
        return skip(
            test,
            "virsh is not installed (apt-get install libvirt-clients)",
        );
    }
    true
}

/// Runs a libvirt-python script with Debian's python3; panics unless it prints `ok_line`.
pub fn run_python(script: &str, ok_line: &str) {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(ok_line),
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// virsh and KVM, and libvirt-python for Debian's python3.
pub fn python_available(test: &str) -> bool {
    if !clients_available(test) {
        return false;
    }
    let imports = Command::new("/usr/bin/python3")
        .args(["-c", "import libvirt"])
        .status()
        .is_ok_and(|s| s.success());
    imports
        || skip(
            test,
            "libvirt-python is not installed (apt-get install python3-libvirt)",
        )
}
