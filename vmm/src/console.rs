//! The serial console on the launcher's terminal: stdin feeds the UART's receive FIFO, the
//! terminal is raw while the guest owns it and restored on every exit path.
//!
//! Like QEMU's `-serial mon:stdio`, Ctrl-A is an escape on a terminal: `Ctrl-A x` quits,
//! `Ctrl-A Ctrl-A` sends one Ctrl-A to the guest. Piped stdin is passed through untouched.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use devices::legacy::Serial;
use nix::sys::termios::{self, SetArg, Termios};
use vmm_sys_util::eventfd::EventFd;

use crate::main_loop::{AioContext, Requests, ShutdownCause};

const CTRL_A: u8 = 0x01;

/// The terminal settings to put back, shared with the panic hook.
static SAVED_TERMIOS: OnceLock<Mutex<Option<Termios>>> = OnceLock::new();

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process (we never close it).
    unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) }
}

/// Puts the terminal on stdin in raw mode if it is one; a no-op otherwise.
pub fn enter_raw_mode() -> Result<bool, String> {
    let fd = stdin_fd();
    if !nix::unistd::isatty(fd).unwrap_or(false) {
        return Ok(false);
    }
    let original =
        termios::tcgetattr(fd).map_err(|e| format!("cannot read terminal settings: {e}"))?;
    let mut raw = original.clone();
    termios::cfmakeraw(&mut raw);
    // Keep output post-processing so our own messages (and "\n" from the guest) stay readable.
    raw.output_flags = original.output_flags;
    let saved = SAVED_TERMIOS.get_or_init(|| Mutex::new(None));
    *saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(original);
    termios::tcsetattr(fd, SetArg::TCSANOW, &raw)
        .map_err(|e| format!("cannot set raw mode: {e}"))?;
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous_hook(info);
    }));
    Ok(true)
}

/// Restores the terminal settings saved by `enter_raw_mode` (idempotent).
pub fn restore_terminal() {
    if let Some(saved) = SAVED_TERMIOS.get() {
        if let Some(original) = saved.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = termios::tcsetattr(stdin_fd(), SetArg::TCSANOW, &original);
        }
    }
}

/// Turns terminal input into guest input, interpreting the Ctrl-A escape.
pub struct EscapeFilter {
    after_ctrl_a: bool,
}

/// What one chunk of terminal input means.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    pub to_guest: Vec<u8>,
    pub quit: bool,
}

impl EscapeFilter {
    pub fn new() -> Self {
        EscapeFilter {
            after_ctrl_a: false,
        }
    }

    pub fn feed(&mut self, input: &[u8]) -> Filtered {
        let mut out = Filtered::default();
        for &byte in input {
            if self.after_ctrl_a {
                self.after_ctrl_a = false;
                match byte {
                    b'x' | b'X' => {
                        out.quit = true;
                        break;
                    }
                    CTRL_A => out.to_guest.push(CTRL_A),
                    _ => {} // unknown escape: dropped, as QEMU does
                }
            } else if byte == CTRL_A {
                self.after_ctrl_a = true;
            } else {
                out.to_guest.push(byte);
            }
        }
        out
    }
}

impl Default for EscapeFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads what stdin has (never blocks: called when poll says it is readable) and queues as
/// much as the UART's FIFO takes. Returns false at end of input.
pub struct StdinForwarder {
    serial: Arc<Mutex<Serial>>,
    requests: Arc<Requests>,
    filter: Option<EscapeFilter>,
    /// Bytes read from stdin that did not fit the FIFO yet (at most one read's worth).
    pending: Vec<u8>,
    /// Not reading stdin until the guest drains the FIFO.
    stalled: bool,
}

impl StdinForwarder {
    pub fn new(serial: Arc<Mutex<Serial>>, requests: Arc<Requests>, is_terminal: bool) -> Self {
        StdinForwarder {
            serial,
            requests,
            filter: is_terminal.then(EscapeFilter::new),
            pending: Vec::new(),
            stalled: false,
        }
    }

    /// Moves pending bytes into the FIFO; true when nothing is left pending.
    pub fn flush_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let taken = self
            .serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueue_input(&self.pending);
        self.pending.drain(..taken);
        self.pending.is_empty()
    }

    /// Handles stdin being readable. Returns `Ok(false)` at end of input.
    pub fn on_readable(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 64];
        let n = match nix::unistd::read(stdin_fd().as_fd(), &mut buf) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(false);
        }
        let chunk = &buf[..n];
        match &mut self.filter {
            Some(filter) => {
                let filtered = filter.feed(chunk);
                self.pending.extend_from_slice(&filtered.to_guest);
                if filtered.quit {
                    self.requests.shutdown_request(ShutdownCause::HostUi);
                }
            }
            None => self.pending.extend_from_slice(chunk),
        }
        self.flush_pending();
        Ok(true)
    }

    /// True while more input should be read (the FIFO drained what we had).
    pub fn wants_input(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Feeds stdin to the UART from the main loop. While the UART's FIFO is full stdin is not
/// read at all (the kernel's pipe or tty buffer holds the rest), and reading resumes when the
/// guest drains the FIFO, as QEMU's character devices do. Returns what to run then.
pub fn attach_stdin(aio: &AioContext, forwarder: StdinForwarder) -> Box<dyn FnMut()> {
    let forwarder = Rc::new(RefCell::new(forwarder));
    watch_stdin(aio, forwarder.clone());
    let aio = aio.clone();
    Box::new(move || {
        let resume = {
            let mut f = forwarder.borrow_mut();
            f.stalled && f.flush_pending()
        };
        if resume {
            forwarder.borrow_mut().stalled = false;
            watch_stdin(&aio, forwarder.clone());
        }
    })
}

/// Runs `listeners` (the terminal's, the management console's) each time the guest empties
/// the UART's receive FIFO, which `drained` signals. Returns the fd watched, if any (to
/// unwatch it when the machine goes).
pub fn on_input_drained(
    aio: &AioContext,
    drained: EventFd,
    mut listeners: Vec<Box<dyn FnMut()>>,
) -> Option<RawFd> {
    if listeners.is_empty() {
        return None;
    }
    let fd = drained.as_raw_fd();
    aio.set_fd_handler(
        fd,
        Some(Box::new(move || {
            let _ = drained.read();
            for listener in &mut listeners {
                listener();
            }
        })),
        None,
    );
    Some(fd)
}

fn watch_stdin(aio: &AioContext, forwarder: Rc<RefCell<StdinForwarder>>) {
    let aio_in_handler = aio.clone();
    aio.set_fd_handler(
        libc::STDIN_FILENO,
        Some(Box::new(move || {
            let mut f = forwarder.borrow_mut();
            match f.on_readable() {
                Ok(true) if f.wants_input() => {}
                Ok(true) => {
                    f.stalled = true;
                    aio_in_handler.set_fd_handler(libc::STDIN_FILENO, None, None);
                }
                Ok(false) => aio_in_handler.set_fd_handler(libc::STDIN_FILENO, None, None),
                Err(e) => {
                    log::warn!("console input: {e}");
                    aio_in_handler.set_fd_handler(libc::STDIN_FILENO, None, None);
                }
            }
        })),
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences() {
        let mut f = EscapeFilter::new();
        assert_eq!(
            f.feed(b"ls\r"),
            Filtered {
                to_guest: b"ls\r".to_vec(),
                quit: false
            }
        );
        assert_eq!(f.feed(&[CTRL_A, CTRL_A, b'z']).to_guest, vec![CTRL_A, b'z']);
        assert_eq!(f.feed(&[b'a', CTRL_A, b'q', b'b']).to_guest, b"ab".to_vec());
        let out = f.feed(&[b'y', CTRL_A, b'x', b'z']);
        assert!(out.quit);
        assert_eq!(out.to_guest, b"y".to_vec());
    }

    #[test]
    fn escape_split_across_reads() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(&[CTRL_A]), Filtered::default());
        assert!(f.feed(b"x").quit);
    }
}
