//! main_loop_should_exit and the loop as a whole, against a machine that records calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

#[derive(Default)]
struct FakeMachine {
    calls: Vec<String>,
    fail_reset: bool,
}

impl Machine for FakeMachine {
    fn pause_vcpus(&mut self) {
        self.calls.push("pause".into());
    }
    fn resume_vcpus(&mut self) {
        self.calls.push("resume".into());
    }
    fn reset(&mut self, cause: ShutdownCause) -> Result<(), String> {
        self.calls.push(format!("reset {cause:?}"));
        if self.fail_reset {
            Err("boom".into())
        } else {
            Ok(())
        }
    }
    fn powerdown(&mut self) {
        self.calls.push("powerdown".into());
    }
    fn wakeup(&mut self) {
        self.calls.push("wakeup".into());
    }
}

fn running() -> (MainLoop, FakeMachine, Arc<Mutex<Vec<Event>>>) {
    let mut ml = MainLoop::new().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    ml.add_event_listener(Box::new(move |ev| e.lock().unwrap().push(ev.clone())));
    let mut m = FakeMachine::default();
    ml.vm_start(&mut m);
    assert_eq!(ml.state(), RunState::Running);
    m.calls.clear();
    events.lock().unwrap().clear();
    (ml, m, events)
}

#[test]
fn reset_pauses_resets_and_resumes() {
    let (mut ml, mut m, events) = running();
    ml.requests().reset_request(ShutdownCause::GuestReset);
    assert_eq!(ml.main_loop_should_exit(&mut m), None);
    assert_eq!(m.calls, vec!["pause", "reset GuestReset", "resume"]);
    assert_eq!(
        *events.lock().unwrap(),
        vec![Event::Reset {
            cause: ShutdownCause::GuestReset
        }]
    );
    assert_eq!(ml.state(), RunState::Running);
}

/// As QEMU: a reset of a paused VM resets it and leaves it paused (no resume).
#[test]
fn reset_while_paused_stays_paused() {
    let (mut ml, mut m, _) = running();
    ml.requests().vmstop_request(RunState::Paused);
    ml.main_loop_should_exit(&mut m);
    m.calls.clear();
    ml.requests()
        .reset_request(ShutdownCause::HostQmpSystemReset);
    assert_eq!(ml.main_loop_should_exit(&mut m), None);
    assert_eq!(m.calls, vec!["pause", "reset HostQmpSystemReset"]);
    assert_eq!(ml.state(), RunState::Paused);
}

#[test]
fn no_reboot_turns_reset_into_shutdown() {
    let (mut ml, mut m, events) = running();
    ml.requests().set_no_reboot(true);
    ml.requests().reset_request(ShutdownCause::GuestReset);
    let exit = ml.main_loop_should_exit(&mut m);
    assert_eq!(
        exit,
        Some(LoopExit {
            cause: ShutdownCause::GuestReset,
            status: None
        })
    );
    assert!(m.calls.is_empty(), "no reset performed: {:?}", m.calls);
    assert_eq!(
        *events.lock().unwrap(),
        vec![Event::Shutdown {
            cause: ShutdownCause::GuestReset
        }]
    );
}

#[test]
fn shutdown_comes_before_reset_and_keeps_its_status() {
    let (mut ml, mut m, _) = running();
    let r = ml.requests();
    r.reset_request(ShutdownCause::GuestReset);
    r.shutdown_request_with_status(ShutdownCause::GuestShutdown, 7);
    r.shutdown_request(ShutdownCause::HostSignal(15)); // first cause wins
    let exit = ml.main_loop_should_exit(&mut m);
    assert_eq!(
        exit,
        Some(LoopExit {
            cause: ShutdownCause::GuestShutdown,
            status: Some(7)
        })
    );
    assert!(m.calls.is_empty());
}

#[test]
fn vmstop_pauses_and_stops_the_virtual_clock_then_cont_resumes() {
    let (mut ml, mut m, events) = running();
    assert!(ml.clocks().virtual_enabled());
    ml.requests().vmstop_request(RunState::Paused);
    assert_eq!(ml.main_loop_should_exit(&mut m), None);
    assert_eq!(m.calls, vec!["pause"]);
    assert_eq!(ml.state(), RunState::Paused);
    assert_eq!(ml.requests().state(), RunState::Paused);
    assert!(!ml.clocks().virtual_enabled());
    ml.requests().vm_start_request();
    ml.main_loop_should_exit(&mut m);
    assert_eq!(m.calls, vec!["pause", "resume"]);
    assert!(ml.clocks().virtual_enabled());
    let ev = events.lock().unwrap();
    assert!(
        ev.contains(&Event::Stop) && ev.contains(&Event::Resume),
        "{ev:?}"
    );
    assert!(ev.contains(&Event::StateChanged {
        from: RunState::Running,
        to: RunState::Paused
    }));
}

#[test]
fn reboot_restarts_the_guest_when_it_powers_off() {
    let (mut ml, mut m, events) = running();
    ml.requests().reboot_request();
    assert_eq!(ml.main_loop_should_exit(&mut m), None);
    assert_eq!(m.calls, vec!["powerdown"]);
    ml.requests().shutdown_request(ShutdownCause::GuestShutdown);
    assert_eq!(ml.main_loop_should_exit(&mut m), None, "no exit: a reboot");
    assert_eq!(
        m.calls,
        vec!["powerdown", "pause", "reset GuestShutdown", "resume"]
    );
    assert_eq!(ml.state(), RunState::Running);
    assert!(events.lock().unwrap().contains(&Event::Reset {
        cause: ShutdownCause::GuestShutdown
    }));
    // Once only: the next poweroff is a poweroff.
    ml.requests().shutdown_request(ShutdownCause::GuestShutdown);
    assert!(ml.main_loop_should_exit(&mut m).is_some());
}

#[test]
fn a_later_powerdown_cancels_the_reboot() {
    let (mut ml, mut m, _) = running();
    ml.requests().reboot_request();
    ml.main_loop_should_exit(&mut m);
    ml.requests().powerdown_request();
    ml.main_loop_should_exit(&mut m);
    ml.requests().shutdown_request(ShutdownCause::GuestShutdown);
    assert!(
        ml.main_loop_should_exit(&mut m).is_some(),
        "shut down, not rebooted"
    );
}

#[test]
fn powerdown_leaves_the_vcpus_alone() {
    let (mut ml, mut m, events) = running();
    ml.requests().powerdown_request();
    assert_eq!(ml.main_loop_should_exit(&mut m), None);
    assert_eq!(m.calls, vec!["powerdown"]);
    assert_eq!(*events.lock().unwrap(), vec![Event::Powerdown]);
    assert_eq!(ml.state(), RunState::Running);
}

#[test]
fn suspend_wakeup_and_debug() {
    let (mut ml, mut m, _) = running();
    ml.requests().suspend_request();
    ml.main_loop_should_exit(&mut m);
    assert_eq!(ml.state(), RunState::Suspended);
    ml.requests().wakeup_request();
    ml.main_loop_should_exit(&mut m);
    assert_eq!(ml.state(), RunState::Running);
    assert_eq!(m.calls, vec!["pause", "wakeup", "resume"]);
    ml.requests().debug_request();
    ml.main_loop_should_exit(&mut m);
    assert_eq!(ml.state(), RunState::Debug);
    assert_eq!(m.calls, vec!["pause", "wakeup", "resume", "pause"]);
    // A paused VM ignores a debug request (Paused -> Debug is not a transition).
    ml.requests().vm_start_request();
    ml.main_loop_should_exit(&mut m);
    ml.requests().vmstop_request(RunState::Paused);
    ml.main_loop_should_exit(&mut m);
    assert_eq!(ml.state(), RunState::Paused);
    m.calls.clear();
    ml.requests().debug_request();
    ml.main_loop_should_exit(&mut m);
    assert_eq!(ml.state(), RunState::Paused);
    assert!(m.calls.is_empty(), "{:?}", m.calls);
}

#[test]
fn shutdown_action_end_run_stops_the_vm_then_ends_the_loop() {
    let (mut ml, mut m, _) = running();
    ml.set_shutdown_action(ShutdownAction::EndRun);
    ml.requests().shutdown_request(ShutdownCause::GuestShutdown);
    let exit = ml.main_loop_should_exit(&mut m).map(|e| e.cause);
    assert_eq!(exit, Some(ShutdownCause::GuestShutdown));
    assert_eq!(ml.state(), RunState::Shutdown);
    // The next machine boots from prelaunch.
    ml.prepare_boot();
    assert_eq!(ml.state(), RunState::Prelaunch);
    ml.vm_start(&mut m);
    assert_eq!(ml.state(), RunState::Running);
    // The host quitting ends the loop without stopping the VM first.
    ml.requests()
        .shutdown_request(ShutdownCause::HostSignal(15));
    assert!(ml.main_loop_should_exit(&mut m).is_some());
    assert_eq!(ml.state(), RunState::Running);
}

#[test]
fn failed_reset_ends_the_loop_with_a_host_error() {
    let (mut ml, mut m, _) = running();
    m.fail_reset = true;
    ml.requests().reset_request(ShutdownCause::GuestReset);
    let exit = ml.main_loop_should_exit(&mut m).unwrap();
    assert_eq!(exit.cause, ShutdownCause::HostError);
}

#[test]
fn request_from_another_thread_ends_a_blocked_run() {
    let (mut ml, mut m, _) = running();
    let r = ml.requests();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        r.shutdown_request(ShutdownCause::HostQmpQuit);
    });
    let exit = ml.run(&mut m);
    t.join().unwrap();
    assert_eq!(exit.cause, ShutdownCause::HostQmpQuit);
}

#[test]
fn waiters_see_state_changes() {
    let (mut ml, mut m, _) = running();
    let r = ml.requests();
    let waiter = std::thread::spawn(move || {
        r.wait_for_state(|s| s == RunState::Paused, Duration::from_secs(5))
    });
    std::thread::sleep(Duration::from_millis(10));
    ml.requests().vmstop_request(RunState::Paused);
    ml.main_loop_should_exit(&mut m);
    assert_eq!(waiter.join().unwrap(), Some(RunState::Paused));
    assert_eq!(
        ml.requests()
            .wait_for_state(|s| s == RunState::Running, Duration::from_millis(10)),
        None
    );
}

/// SIGTERM to a process whose threads block it arrives through the signalfd as a shutdown
/// request. Runs in a forked child so the test harness's threads are not involved.
#[test]
fn sigterm_becomes_a_host_signal_shutdown() {
    // SAFETY: the child only runs this test's code and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let ok = (|| {
            signals::block_host_signals().ok()?;
            let mut ml = MainLoop::new().ok()?;
            let mut m = FakeMachine::default();
            ml.vm_start(&mut m);
            // SAFETY: signalling ourselves; the signal is blocked, so it waits in the signalfd.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            let exit = ml.run(&mut m);
            (exit.cause == ShutdownCause::HostSignal(libc::SIGTERM)).then_some(())
        })()
        .is_some();
        // SAFETY: leave the child without running the parent's atexit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
}

#[test]
fn tickets_are_handled_by_the_next_pass() {
    let (mut ml, mut m, _) = running();
    let r = ml.requests();
    let ticket = r.vmstop_request(RunState::Paused);
    assert_eq!(
        r.wait_handled(ticket, Duration::from_millis(10)),
        None,
        "not handled yet"
    );
    ml.main_loop_should_exit(&mut m);
    assert_eq!(
        r.wait_handled(ticket, Duration::from_millis(10)),
        Some(RunState::Paused)
    );
    // A waiter on another thread is released by the pass that handles its request.
    let waiter = {
        let r = r.clone();
        let ticket = r.vm_start_request();
        std::thread::spawn(move || r.wait_handled(ticket, Duration::from_secs(5)))
    };
    std::thread::sleep(Duration::from_millis(20));
    ml.main_loop_should_exit(&mut m);
    assert_eq!(waiter.join().unwrap(), Some(RunState::Running));
}
