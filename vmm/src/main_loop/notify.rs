//! Waking the main loop from any thread: an eventfd that the loop's source polls.
//!
//! QEMU skips the write unless the loop is in or entering poll (its `notify_me` flag); we always
//! write, which costs one syscall per notification and cannot lose a wakeup.

use std::os::fd::RawFd;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Cloneable, thread-safe handle that wakes the loop.
#[derive(Clone)]
pub struct LoopNotifier {
    event: Arc<EventFd>,
}

impl LoopNotifier {
    pub fn new() -> std::io::Result<LoopNotifier> {
        Ok(LoopNotifier {
            event: Arc::new(EventFd::new(EFD_NONBLOCK)?),
        })
    }

    pub fn notify(&self) {
        // EAGAIN means the counter is saturated: the loop is woken anyway.
        let _ = self.event.write(1);
    }

    /// Consumes pending notifications (on the loop thread).
    pub fn clear(&self) {
        let _ = self.event.read();
    }

    pub fn fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }
}
