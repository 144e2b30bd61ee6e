//! QEMU's clocks (init_clocks): REALTIME runs always, VIRTUAL runs only while the VM runs,
//! HOST follows the wall clock.

use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockType {
    /// Monotonic; keeps running while the VM is paused.
    Realtime,
    /// Monotonic minus the time the VM spent stopped.
    Virtual,
    /// Wall-clock time (may jump).
    Host,
}

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids are always available.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

struct VirtualClock {
    /// Nanoseconds the clock spent disabled, subtracted from the monotonic clock.
    stopped_total: i64,
    /// When it was disabled, if it is now.
    stopped_at: Option<i64>,
}

pub struct Clocks {
    virtual_clock: Mutex<VirtualClock>,
}

impl Default for Clocks {
    fn default() -> Self {
        Self::new()
    }
}

impl Clocks {
    /// The virtual clock starts stopped, like a VM in prelaunch.
    pub fn new() -> Clocks {
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        Clocks {
            virtual_clock: Mutex::new(VirtualClock {
                stopped_total: now,
                stopped_at: Some(now),
            }),
        }
    }

    pub fn now_ns(&self, clock: ClockType) -> i64 {
        match clock {
            ClockType::Realtime => clock_ns(libc::CLOCK_MONOTONIC),
            ClockType::Host => clock_ns(libc::CLOCK_REALTIME),
            ClockType::Virtual => {
                let v = self.virtual_clock.lock().unwrap_or_else(|p| p.into_inner());
                v.stopped_at
                    .unwrap_or_else(|| clock_ns(libc::CLOCK_MONOTONIC))
                    - v.stopped_total
            }
        }
    }

    /// Starts or stops the virtual clock (stopped while the VM is not running).
    pub fn enable_virtual(&self, enable: bool) {
        let mut v = self.virtual_clock.lock().unwrap_or_else(|p| p.into_inner());
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        match (enable, v.stopped_at) {
            (true, Some(at)) => {
                v.stopped_total += now - at;
                v.stopped_at = None;
            }
            (false, None) => v.stopped_at = Some(now),
            _ => {}
        }
    }

    pub fn virtual_enabled(&self) -> bool {
        self.virtual_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stopped_at
            .is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn virtual_clock_stops_while_disabled() {
        let clocks = Clocks::new();
        assert!(!clocks.virtual_enabled());
        let t0 = clocks.now_ns(ClockType::Virtual);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            clocks.now_ns(ClockType::Virtual),
            t0,
            "stopped clock does not move"
        );
        clocks.enable_virtual(true);
        std::thread::sleep(Duration::from_millis(20));
        let t1 = clocks.now_ns(ClockType::Virtual);
        assert!(t1 - t0 >= 15_000_000, "running clock moves: {}", t1 - t0);
        clocks.enable_virtual(false);
        let r0 = clocks.now_ns(ClockType::Realtime);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            clocks.now_ns(ClockType::Realtime) - r0 >= 15_000_000,
            "realtime always runs"
        );
        let t2 = clocks.now_ns(ClockType::Virtual);
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(clocks.now_ns(ClockType::Virtual), t2);
        assert!(clocks.now_ns(ClockType::Host) > 1_600_000_000_000_000_000);
    }
}
