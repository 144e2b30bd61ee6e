//! The AioContext: one GLib source that carries the loop's fd handlers, timers and bottom
//! halves (QEMU util/async.c + aio-posix.c). prepare: timeout 0 if a bottom half is pending,
//! else the nearest timer deadline; check: ready if a BH is pending, an fd is ready or a timer
//! is due; dispatch, in order: bottom halves, fd handlers, timers.
//!
//! All of the GLib FFI of the main loop lives in this file.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use glib::ffi;
use glib::translate::ToGlibPtr;

use super::bh::{Bh, BhQueue};
use super::clock::{ClockType, Clocks};
use super::notify::LoopNotifier;
use super::timer::{Timer, TimerLists};

pub type FdCallback = Box<dyn FnMut()>;

struct FdHandler {
    fd: RawFd,
    tag: ffi::gpointer,
    read: RefCell<Option<FdCallback>>,
    write: RefCell<Option<FdCallback>>,
    removed: Cell<bool>,
}

struct AioInner {
    source: Cell<*mut ffi::GSource>,
    handlers: RefCell<Vec<Rc<FdHandler>>>,
    notifier: LoopNotifier,
    notifier_tag: Cell<ffi::gpointer>,
    bhs: Arc<BhQueue>,
    timers: Arc<TimerLists>,
    clocks: Arc<Clocks>,
}

/// The GSource as GLib allocates it: GLib's header, then our pointer.
#[repr(C)]
struct AioSource {
    base: ffi::GSource,
    inner: *const AioInner,
}

static SOURCE_FUNCS: ffi::GSourceFuncs = ffi::GSourceFuncs {
    prepare: Some(aio_prepare),
    check: Some(aio_check),
    dispatch: Some(aio_dispatch),
    finalize: Some(aio_finalize),
    closure_callback: None,
    closure_marshal: None,
};

/// # Safety
/// `source` must be an `AioSource` created by `AioContext::new` and not yet finalized.
unsafe fn inner_of<'a>(source: *mut ffi::GSource) -> &'a AioInner {
    // SAFETY: per the contract, `inner` holds a strong Rc reference released only in finalize.
    unsafe { &*(*(source as *mut AioSource)).inner }
}

fn poll_timeout_ms(deadline_ns: i64) -> i32 {
    if deadline_ns < 0 {
        -1
    } else {
        // Round up: waking before the deadline would just spin once more.
        ((deadline_ns + 999_999) / 1_000_000).min(i64::from(i32::MAX)) as i32
    }
}

unsafe extern "C" fn aio_prepare(source: *mut ffi::GSource, timeout: *mut i32) -> ffi::gboolean {
    // SAFETY: GLib calls prepare only on our live source.
    let inner = unsafe { inner_of(source) };
    let ms = if inner.bhs.has_pending() {
        0
    } else {
        poll_timeout_ms(inner.timers.deadline_ns())
    };
    // SAFETY: GLib passes a valid out-pointer.
    unsafe { *timeout = ms };
    ffi::gboolean::from(ms == 0)
}

unsafe extern "C" fn aio_check(source: *mut ffi::GSource) -> ffi::gboolean {
    // SAFETY: GLib calls check only on our live source.
    let inner = unsafe { inner_of(source) };
    let fd_ready = |tag: ffi::gpointer| {
        // SAFETY: `tag` was returned by g_source_add_unix_fd on this source and not removed.
        unsafe { ffi::g_source_query_unix_fd(source, tag) != 0 }
    };
    let ready = inner.bhs.has_pending()
        || fd_ready(inner.notifier_tag.get())
        || inner.handlers.borrow().iter().any(|h| fd_ready(h.tag))
        || inner.timers.deadline_ns() == 0;
    ffi::gboolean::from(ready)
}

unsafe extern "C" fn aio_dispatch(
    source: *mut ffi::GSource,
    _: ffi::GSourceFunc,
    _: ffi::gpointer,
) -> ffi::gboolean {
    // SAFETY: GLib calls dispatch only on our live source.
    let inner = unsafe { inner_of(source) };
    inner.notifier.clear();
    inner.bhs.poll();
    // Handlers may add or remove handlers (their own included): iterate over a snapshot and
    // skip the ones removed meanwhile.
    let snapshot: Vec<Rc<FdHandler>> = inner.handlers.borrow().clone();
    for handler in snapshot {
        if handler.removed.get() {
            continue;
        }
        // SAFETY: the handler is still registered, so its tag is valid for this source.
        let revents = unsafe { ffi::g_source_query_unix_fd(source, handler.tag) };
        if revents & (ffi::G_IO_IN | ffi::G_IO_HUP | ffi::G_IO_ERR) != 0 {
            if let Some(read) = handler.read.borrow_mut().as_mut() {
                read();
            }
        }
        if !handler.removed.get() && revents & (ffi::G_IO_OUT | ffi::G_IO_ERR) != 0 {
            if let Some(write) = handler.write.borrow_mut().as_mut() {
                write();
            }
        }
    }
    inner.timers.run_expired();
    ffi::GTRUE
}

unsafe extern "C" fn aio_finalize(source: *mut ffi::GSource) {
    // SAFETY: finalize runs once; it releases the strong reference taken in `AioContext::new`.
    unsafe { drop(Rc::from_raw((*(source as *mut AioSource)).inner)) };
}

/// Handle to the loop's AioContext (cheap to clone; loop thread only).
#[derive(Clone)]
pub struct AioContext {
    inner: Rc<AioInner>,
}

impl AioContext {
    pub fn new(clocks: Arc<Clocks>) -> std::io::Result<AioContext> {
        let notifier = LoopNotifier::new()?;
        let inner = Rc::new(AioInner {
            source: Cell::new(std::ptr::null_mut()),
            handlers: RefCell::new(Vec::new()),
            bhs: BhQueue::new(notifier.clone()),
            timers: TimerLists::new(clocks.clone(), notifier.clone()),
            notifier,
            notifier_tag: Cell::new(std::ptr::null_mut()),
            clocks,
        });
        let size = std::mem::size_of::<AioSource>() as u32;
        // SAFETY: SOURCE_FUNCS is a static GLib only reads; `size` covers AioSource, whose
        // first field is the GSource header.
        let source = unsafe { ffi::g_source_new(&SOURCE_FUNCS as *const _ as *mut _, size) };
        // SAFETY: `source` is a fresh AioSource; the Rc reference stored in it is released in
        // aio_finalize. The notifier fd outlives the source (the source keeps `inner` alive).
        unsafe {
            (*(source as *mut AioSource)).inner = Rc::into_raw(inner.clone());
            inner.notifier_tag.set(ffi::g_source_add_unix_fd(
                source,
                inner.notifier.fd(),
                ffi::G_IO_IN,
            ));
        }
        inner.source.set(source);
        Ok(AioContext { inner })
    }

    /// Adds the source to `context`; the loop then polls it.
    pub fn attach(&self, context: &glib::MainContext) {
        // SAFETY: both pointers are valid; the context takes its own reference to the source.
        unsafe { ffi::g_source_attach(self.inner.source.get(), context.to_glib_none().0) };
    }

    /// Detaches and releases the source (its handlers are dropped with it).
    pub fn destroy(&self) {
        let source = self.inner.source.replace(std::ptr::null_mut());
        if source.is_null() {
            return;
        }
        self.inner.handlers.borrow_mut().clear();
        // SAFETY: we own one reference from g_source_new; destroy detaches it from its context.
        unsafe {
            ffi::g_source_destroy(source);
            ffi::g_source_unref(source);
        }
    }

    /// Watches `fd`: `read` runs when it is readable (or hung up), `write` when writable.
    /// Passing two `None`s removes the watch. Callable from inside handlers.
    pub fn set_fd_handler(&self, fd: RawFd, read: Option<FdCallback>, write: Option<FdCallback>) {
        let source = self.inner.source.get();
        if source.is_null() {
            return;
        }
        let mut handlers = self.inner.handlers.borrow_mut();
        if let Some(pos) = handlers.iter().position(|h| h.fd == fd) {
            let old = handlers.remove(pos);
            old.removed.set(true);
            // SAFETY: `old.tag` was added to this source and has not been removed yet.
            unsafe { ffi::g_source_remove_unix_fd(source, old.tag) };
        }
        if read.is_none() && write.is_none() {
            return;
        }
        let mut events = 0;
        if read.is_some() {
            events |= ffi::G_IO_IN | ffi::G_IO_HUP | ffi::G_IO_ERR;
        }
        if write.is_some() {
            events |= ffi::G_IO_OUT | ffi::G_IO_ERR;
        }
        // SAFETY: valid source; the caller keeps `fd` open while the handler is registered.
        let tag = unsafe { ffi::g_source_add_unix_fd(source, fd, events) };
        handlers.push(Rc::new(FdHandler {
            fd,
            tag,
            read: RefCell::new(read),
            write: RefCell::new(write),
            removed: Cell::new(false),
        }));
    }

    pub fn bh_new(&self, callback: impl FnMut() + Send + 'static) -> Arc<Bh> {
        self.inner.bhs.bh_new(callback)
    }

    pub fn timer_new(&self, clock: ClockType, callback: impl FnMut() + Send + 'static) -> Timer {
        self.inner.timers.timer_new(clock, callback)
    }

    pub fn notifier(&self) -> LoopNotifier {
        self.inner.notifier.clone()
    }

    pub fn clocks(&self) -> Arc<Clocks> {
        self.inner.clocks.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use vmm_sys_util::eventfd::EventFd;

    fn context() -> (glib::MainContext, AioContext) {
        let ctx = glib::MainContext::new();
        let aio = AioContext::new(Arc::new(Clocks::new())).unwrap();
        aio.attach(&ctx);
        (ctx, aio)
    }

    #[test]
    fn timeout_rounds_up() {
        assert_eq!(poll_timeout_ms(-1), -1);
        assert_eq!(poll_timeout_ms(0), 0);
        assert_eq!(poll_timeout_ms(1), 1);
        assert_eq!(poll_timeout_ms(2_000_000), 2);
    }

    #[test]
    fn bh_from_another_thread_wakes_a_blocked_loop() {
        let (ctx, aio) = context();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let bh = aio.bh_new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            bh.schedule();
        });
        while ran.load(Ordering::SeqCst) == 0 {
            ctx.iteration(true); // blocks: nothing else can wake it
        }
        t.join().unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(25) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[test]
    fn fd_handler_fires_and_removes_itself() {
        let (ctx, aio) = context();
        let event = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&event);
        let calls = Rc::new(Cell::new(0));
        let (c, a) = (calls.clone(), aio.clone());
        let reader = event.try_clone().unwrap();
        aio.set_fd_handler(
            fd,
            Some(Box::new(move || {
                let _ = reader.read();
                c.set(c.get() + 1);
                a.set_fd_handler(fd, None, None);
            })),
            None,
        );
        event.write(1).unwrap();
        while calls.get() == 0 {
            ctx.iteration(true);
        }
        event.write(1).unwrap();
        ctx.iteration(false);
        ctx.iteration(false);
        assert_eq!(calls.get(), 1, "removed handler does not fire");
    }

    #[test]
    fn timers_fire_after_bhs_in_dispatch_order() {
        let (ctx, aio) = context();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = order.clone();
        let timer = aio.timer_new(ClockType::Realtime, move || o.lock().unwrap().push("timer"));
        let o = order.clone();
        let bh = aio.bh_new(move || o.lock().unwrap().push("bh"));
        timer.mod_in_ns(-1);
        bh.schedule();
        ctx.iteration(false);
        assert_eq!(*order.lock().unwrap(), vec!["bh", "timer"]);
        let o = order.clone();
        let later = aio.timer_new(ClockType::Realtime, move || o.lock().unwrap().push("later"));
        let start = Instant::now();
        later.mod_in_ns(20_000_000);
        while order.lock().unwrap().len() < 3 {
            ctx.iteration(true);
        }
        assert!(
            start.elapsed() >= Duration::from_millis(19),
            "{:?}",
            start.elapsed()
        );
        aio.destroy();
    }
}
