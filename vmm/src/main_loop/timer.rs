//! Timer lists (QEMU's QEMUTimerList): one per clock. A `Timer` is armed with a deadline on
//! its clock; the loop polls no longer than the nearest deadline and runs what is due. Timers
//! may be armed from any thread (arming wakes the loop); callbacks run on the loop thread and
//! may re-arm their own or other timers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::clock::{ClockType, Clocks};
use super::notify::LoopNotifier;

type Callback = Box<dyn FnMut() + Send>;

struct Entry {
    clock: ClockType,
    deadline: Option<i64>,
    /// Taken out while it runs so that it may touch the lists.
    callback: Option<Callback>,
}

pub struct TimerLists {
    clocks: Arc<Clocks>,
    notifier: LoopNotifier,
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
}

/// Handle to one timer.
pub struct Timer {
    id: u64,
    lists: Arc<TimerLists>,
}

impl TimerLists {
    pub fn new(clocks: Arc<Clocks>, notifier: LoopNotifier) -> Arc<TimerLists> {
        Arc::new(TimerLists {
            clocks,
            notifier,
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new, disarmed timer on `clock`.
    pub fn timer_new(
        self: &Arc<Self>,
        clock: ClockType,
        callback: impl FnMut() + Send + 'static,
    ) -> Timer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Entry {
                clock,
                deadline: None,
                callback: Some(Box::new(callback)),
            },
        );
        Timer {
            id,
            lists: self.clone(),
        }
    }

    /// Nanoseconds until the nearest deadline (0 if one is due), or -1 if no timer is armed.
    /// Timers on a stopped virtual clock do not count.
    pub fn deadline_ns(&self) -> i64 {
        let virtual_running = self.clocks.virtual_enabled();
        self.lock()
            .values()
            .filter(|e| e.clock != ClockType::Virtual || virtual_running)
            .filter_map(|e| e.deadline.map(|d| (d - self.clocks.now_ns(e.clock)).max(0)))
            .min()
            .unwrap_or(-1)
    }

    /// Runs every due timer once; returns how many ran.
    pub fn run_expired(&self) -> usize {
        let virtual_running = self.clocks.virtual_enabled();
        let due: Vec<u64> = {
            let mut entries = self.lock();
            let mut due: Vec<(i64, u64)> = entries
                .iter()
                .filter(|(_, e)| e.clock != ClockType::Virtual || virtual_running)
                .filter_map(|(id, e)| {
                    e.deadline
                        .filter(|d| *d <= self.clocks.now_ns(e.clock))
                        .map(|d| (d, *id))
                })
                .collect();
            due.sort_unstable();
            for (_, id) in &due {
                if let Some(e) = entries.get_mut(id) {
                    e.deadline = None;
                }
            }
            due.into_iter().map(|(_, id)| id).collect()
        };
        let mut ran = 0;
        for id in due {
            let Some(mut callback) = self.lock().get_mut(&id).and_then(|e| e.callback.take())
            else {
                continue;
            };
            callback();
            ran += 1;
            if let Some(e) = self.lock().get_mut(&id) {
                e.callback = Some(callback);
            }
        }
        ran
    }
}

impl Timer {
    /// Arms the timer for absolute time `deadline_ns` on its clock.
    /// The loop is always woken: it recomputes its poll timeout from the new deadline.
    pub fn mod_ns(&self, deadline_ns: i64) {
        match self.lists.lock().get_mut(&self.id) {
            Some(entry) => entry.deadline = Some(deadline_ns),
            None => return,
        }
        self.lists.notifier.notify();
    }

    /// Arms the timer `delta_ns` from now.
    pub fn mod_in_ns(&self, delta_ns: i64) {
        let clock = match self.lists.lock().get(&self.id) {
            Some(e) => e.clock,
            None => return,
        };
        self.mod_ns(self.lists.clocks.now_ns(clock).saturating_add(delta_ns));
    }

    pub fn del(&self) {
        if let Some(e) = self.lists.lock().get_mut(&self.id) {
            e.deadline = None;
        }
    }

    pub fn is_pending(&self) -> bool {
        self.lists
            .lock()
            .get(&self.id)
            .is_some_and(|e| e.deadline.is_some())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.lists.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn lists() -> (Arc<TimerLists>, Arc<Clocks>) {
        let clocks = Arc::new(Clocks::new());
        (
            TimerLists::new(clocks.clone(), LoopNotifier::new().unwrap()),
            clocks,
        )
    }

    #[test]
    fn deadlines_and_order() {
        let (l, clocks) = lists();
        assert_eq!(l.deadline_ns(), -1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (log.clone(), log.clone());
        let t1 = l.timer_new(ClockType::Realtime, move || a.lock().unwrap().push(1));
        let t2 = l.timer_new(ClockType::Realtime, move || b.lock().unwrap().push(2));
        t1.mod_in_ns(50_000_000);
        let d = l.deadline_ns();
        assert!(d > 40_000_000 && d <= 50_000_000, "{d}");
        let now = clocks.now_ns(ClockType::Realtime);
        t2.mod_ns(now - 50);
        t1.mod_ns(now - 100);
        assert_eq!(l.deadline_ns(), 0);
        assert_eq!(l.run_expired(), 2);
        assert_eq!(*log.lock().unwrap(), vec![1, 2], "earliest deadline first");
        assert!(!t1.is_pending());
        assert_eq!(l.run_expired(), 0);
        t2.mod_in_ns(1_000_000_000);
        t2.del();
        assert_eq!(l.deadline_ns(), -1);
    }

    #[test]
    fn callback_rearms_itself() {
        let (l, _) = lists();
        let count = Arc::new(AtomicUsize::new(0));
        let slot: Arc<Mutex<Option<Timer>>> = Arc::default();
        let (c, s) = (count.clone(), slot.clone());
        let timer = l.timer_new(ClockType::Realtime, move || {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(t) = s.lock().unwrap().as_ref() {
                t.mod_in_ns(-1);
            }
        });
        timer.mod_in_ns(-1);
        *slot.lock().unwrap() = Some(timer);
        assert_eq!(l.run_expired(), 1);
        assert_eq!(
            l.run_expired(),
            1,
            "re-armed for the next pass, not run twice in one"
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
        slot.lock().unwrap().take();
        assert_eq!(l.run_expired(), 0, "dropped timer is gone");
    }

    #[test]
    fn virtual_timers_wait_for_the_virtual_clock() {
        let (l, clocks) = lists();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let t = l.timer_new(ClockType::Virtual, move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        t.mod_in_ns(-1);
        assert_eq!(l.deadline_ns(), -1, "stopped virtual clock: no deadline");
        assert_eq!(l.run_expired(), 0);
        clocks.enable_virtual(true);
        assert_eq!(l.run_expired(), 1);
    }
}
