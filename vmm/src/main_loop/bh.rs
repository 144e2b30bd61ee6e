//! Bottom halves (QEMU util/async.c): callbacks any thread can schedule to run on the loop
//! thread. Scheduling an already pending BH does nothing; the loop takes the whole pending list
//! at once and runs that batch, so a BH that schedules itself again runs in the next iteration
//! and cannot starve the loop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::notify::LoopNotifier;

const BH_PENDING: u32 = 1 << 0;
const BH_SCHEDULED: u32 = 1 << 1;
const BH_DELETED: u32 = 1 << 2;
const BH_ONESHOT: u32 = 1 << 3;
/// Does not wake the loop: runs whenever the loop next iterates.
const BH_IDLE: u32 = 1 << 4;

type Callback = Box<dyn FnMut() + Send>;

pub struct Bh {
    flags: AtomicU32,
    callback: Mutex<Option<Callback>>,
    queue: Arc<BhQueue>,
}

/// The context's list of pending bottom halves.
pub struct BhQueue {
    pending: Mutex<Vec<Arc<Bh>>>,
    notifier: LoopNotifier,
}

impl BhQueue {
    pub fn new(notifier: LoopNotifier) -> Arc<BhQueue> {
        Arc::new(BhQueue {
            pending: Mutex::new(Vec::new()),
            notifier,
        })
    }

    fn push(&self, bh: Arc<Bh>) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bh);
    }

    /// True if some BH waits to run.
    pub fn has_pending(&self) -> bool {
        let list = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .any(|bh| bh.flags.load(Ordering::Acquire) & BH_SCHEDULED != 0)
    }

    /// Runs the batch pending now (aio_bh_poll); returns how many callbacks ran.
    pub fn poll(&self) -> usize {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut ran = 0;
        for bh in batch {
            let old = bh
                .flags
                .fetch_and(!(BH_PENDING | BH_SCHEDULED), Ordering::AcqRel);
            if old & BH_SCHEDULED == 0 || old & BH_DELETED != 0 {
                continue;
            }
            let mut slot = bh.callback.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(callback) = slot.as_mut() {
                callback();
                ran += 1;
            }
            if old & BH_ONESHOT != 0 {
                *slot = None;
                bh.flags.fetch_or(BH_DELETED, Ordering::AcqRel);
            }
        }
        ran
    }

    /// A new, unscheduled bottom half.
    pub fn bh_new(self: &Arc<Self>, callback: impl FnMut() + Send + 'static) -> Arc<Bh> {
        Arc::new(Bh {
            flags: AtomicU32::new(0),
            callback: Mutex::new(Some(Box::new(callback))),
            queue: self.clone(),
        })
    }

    /// Runs `callback` once on the loop thread (aio_bh_schedule_oneshot).
    pub fn schedule_oneshot(self: &Arc<Self>, callback: impl FnOnce() + Send + 'static) {
        let mut once = Some(callback);
        let bh = self.bh_new(move || {
            if let Some(f) = once.take() {
                f()
            }
        });
        bh.flags.fetch_or(BH_ONESHOT, Ordering::AcqRel);
        bh.schedule();
    }
}

impl Bh {
    /// Marks the BH to run on the loop thread and wakes the loop (from any thread).
    pub fn schedule(self: &Arc<Self>) {
        self.schedule_with(0);
    }

    /// Like `schedule`, without waking the loop (QEMU's idle BHs).
    pub fn schedule_idle(self: &Arc<Self>) {
        self.schedule_with(BH_IDLE);
    }

    fn schedule_with(self: &Arc<Self>, extra: u32) {
        let old = self
            .flags
            .fetch_or(BH_PENDING | BH_SCHEDULED | extra, Ordering::AcqRel);
        if old & BH_DELETED != 0 {
            return;
        }
        if old & BH_PENDING == 0 {
            self.queue.push(self.clone());
            if extra & BH_IDLE == 0 {
                self.queue.notifier.notify();
            }
        }
    }

    /// Unschedules without deleting.
    pub fn cancel(&self) {
        self.flags.fetch_and(!BH_SCHEDULED, Ordering::AcqRel);
    }

    /// The BH never runs again.
    pub fn delete(&self) {
        self.flags.fetch_or(BH_DELETED, Ordering::AcqRel);
        *self.callback.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Arc<BhQueue> {
        BhQueue::new(LoopNotifier::new().unwrap())
    }

    #[test]
    fn runs_in_schedule_order_once_per_schedule() {
        let q = queue();
        let log = Arc::new(Mutex::new(Vec::new()));
        let bhs: Vec<_> = (0..3)
            .map(|i| {
                let log = log.clone();
                q.bh_new(move || log.lock().unwrap().push(i))
            })
            .collect();
        bhs[2].schedule();
        bhs[0].schedule();
        bhs[2].schedule(); // already pending: no second run
        bhs[1].schedule();
        assert!(q.has_pending());
        assert_eq!(q.poll(), 3);
        assert_eq!(*log.lock().unwrap(), vec![2, 0, 1]);
        assert_eq!(q.poll(), 0);
        assert!(!q.has_pending());
    }

    #[test]
    fn self_rescheduling_bh_runs_once_per_poll() {
        let q = queue();
        let count = Arc::new(AtomicU32::new(0));
        let slot: Arc<Mutex<Option<Arc<Bh>>>> = Arc::default();
        let (c, s) = (count.clone(), slot.clone());
        let bh = q.bh_new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(me) = s.lock().unwrap().as_ref() {
                me.schedule();
            }
        });
        *slot.lock().unwrap() = Some(bh.clone());
        bh.schedule();
        for expected in 1..=3 {
            assert_eq!(q.poll(), 1);
            assert_eq!(count.load(Ordering::SeqCst), expected);
        }
        bh.delete();
        assert_eq!(q.poll(), 0);
    }

    #[test]
    fn cancel_delete_and_oneshot() {
        let q = queue();
        let count = Arc::new(AtomicU32::new(0));
        let c = count.clone();
        let bh = q.bh_new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        bh.schedule();
        bh.cancel();
        assert_eq!(q.poll(), 0);
        bh.delete();
        bh.schedule();
        assert_eq!(q.poll(), 0);
        let c = count.clone();
        q.schedule_oneshot(move || {
            c.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(q.poll(), 1);
        assert_eq!(count.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn schedule_from_another_thread_notifies() {
        let notifier = LoopNotifier::new().unwrap();
        let q = BhQueue::new(notifier.clone());
        let bh = q.bh_new(|| {});
        std::thread::spawn(move || bh.schedule()).join().unwrap();
        let mut fds = [libc::pollfd {
            fd: notifier.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, zero timeout.
        assert_eq!(
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) },
            1,
            "eventfd readable"
        );
        assert_eq!(q.poll(), 1);
    }
}
