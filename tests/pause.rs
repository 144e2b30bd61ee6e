//! Pausing and resuming running vCPUs from another thread while the guest works at CPL3:
//! the VMM library driven in-process, as the management thread will drive it.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{kvm_available, read_lossy, TempDir};
use vmm::config::{SerialConfig, VmConfig};
use vmm::machine::Machine;
use vmm::main_loop::{MainLoop, RunState, ShutdownCause};

fn ticks(path: &std::path::Path) -> usize {
    read_lossy(path).matches("TICK ").count()
}

fn wait_for_ticks(path: &std::path::Path, more_than: usize) -> usize {
    let deadline = Instant::now() + common::BOOT_TIMEOUT;
    loop {
        let n = ticks(path);
        if n > more_than {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "guest stuck at {n} ticks:\n{}",
            read_lossy(path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pause_and_resume_while_the_guest_runs_at_cpl3() {
    if !kvm_available("pause_and_resume_while_the_guest_runs_at_cpl3") {
        return;
    }
    let dir = TempDir::new("pause");
    let console = dir.path("console.log");
    let config = VmConfig {
        cmdline: "quiet test=ticker ticker.count=1000 end=exit".into(),
        cpus: 2,
        memory: 64 << 20,
        serial: SerialConfig::File(console.clone()),
        ..VmConfig::default()
    };
    let (tx, rx) = mpsc::channel();
    let out = std::fs::File::create(&console).unwrap();
    let vm = std::thread::spawn(move || {
        let mut main_loop = MainLoop::new().unwrap();
        let mut machine = Machine::new(
            &config,
            main_loop.aio(),
            main_loop.requests(),
            Box::new(out),
        )
        .unwrap();
        tx.send(main_loop.requests()).unwrap();
        main_loop.vm_start(&mut machine);
        let exit = main_loop.run(&mut machine);
        machine.stop();
        exit
    });
    let requests = rx.recv().unwrap();
    wait_for_ticks(&console, 2);

    for _ in 0..3 {
        requests.vmstop_request(RunState::Paused);
        let state = requests.wait_for_state(|s| s == RunState::Paused, Duration::from_secs(10));
        assert_eq!(state, Some(RunState::Paused));
        let paused_at = ticks(&console);
        common::wait_until_vcpus_sleep(std::process::id());
        assert_eq!(
            ticks(&console),
            paused_at,
            "the guest made progress while paused"
        );

        requests.vm_start_request();
        let state = requests.wait_for_state(|s| s == RunState::Running, Duration::from_secs(10));
        assert_eq!(state, Some(RunState::Running));
        wait_for_ticks(&console, paused_at);
    }

    requests.shutdown_request(ShutdownCause::HostQmpQuit);
    let exit = vm.join().expect("main loop thread");
    assert_eq!(exit.cause, ShutdownCause::HostQmpQuit);
}
