//! The serial console's management side: `virsh console` and libvirt-python's
//! `openConsole` get the UART through an RPC stream. One session holds the console at a
//! time; a forced open takes it over and the old session's stream fails.
//!
//! The guest never waits for a client: its output is copied into the session's bounded
//! buffer, whose oldest bytes go when a client stops reading (the configured `--serial`
//! output still gets every byte). Client input goes straight into the UART's receive FIFO as
//! far as it has room; the rest waits in the RPC layer, which stops reading that client until
//! the guest drains the FIFO.
//!
//! Lock order: the UART's lock (held by a vCPU thread while the guest writes) is taken before
//! the hub's; so the hub's lock is never held while the UART's is taken.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use devices::legacy::Serial;
use mgmt::rpc::error::{code as error_code, domain as error_domain};
use mgmt::rpc::{RemoteError, StreamEndpoint, StreamRead, StreamWaker};

/// Guest output kept for a client that is not reading (then the oldest bytes go).
pub const SESSION_BUFFER: usize = 64 * 1024;

/// The session holding the console.
#[derive(Default)]
struct Session {
    id: u64,
    output: VecDeque<u8>,
    /// Output lost because the client did not read fast enough.
    dropped: u64,
    waker: Option<StreamWaker>,
    /// The client has been woken and not yet read everything: no need to wake it again.
    wake_pending: bool,
    /// Input did not fit the FIFO: wake the client when the guest drains it.
    input_waiting: bool,
    /// The domain stopped: the stream ends once the output is read.
    ended: bool,
}

impl Session {
    /// Says how much output the client lost, if any, as the session ends.
    fn log_dropped(&self) {
        if self.dropped > 0 {
            log::warn!(
                "console session {} ended; its client lost {} bytes of output",
                self.id,
                self.dropped
            );
        }
    }
}

#[derive(Default)]
struct HubState {
    next_id: u64,
    session: Option<Session>,
}

/// Why a console cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Another session holds it and the open was not forced.
    Busy,
    /// The UART is not attached yet (the VM is being built).
    NoDevice,
}

#[derive(Default)]
pub struct ConsoleHub {
    state: Mutex<HubState>,
    serial: Mutex<Option<Arc<Mutex<Serial>>>>,
}

impl ConsoleHub {
    pub fn new() -> Arc<ConsoleHub> {
        Arc::new(ConsoleHub::default())
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The UART whose receive FIFO client input goes to (set when a machine is built,
    /// replaced by the next machine's).
    pub fn attach_serial(&self, serial: Arc<Mutex<Serial>>) {
        *self.serial.lock().unwrap_or_else(|p| p.into_inner()) = Some(serial);
    }

    /// The machine is gone: its UART goes with it.
    pub fn detach_serial(&self) {
        *self.serial.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn serial(&self) -> Option<Arc<Mutex<Serial>>> {
        self.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wraps the configured console output so that every guest byte also reaches the session.
    pub fn tee(self: &Arc<Self>, out: Box<dyn Write + Send>) -> Box<dyn Write + Send> {
        Box::new(Tee {
            hub: self.clone(),
            out,
        })
    }

    /// Starts a session for a stream, taking the console over if `force`.
    pub fn open(
        self: &Arc<Self>,
        force: bool,
        waker: StreamWaker,
    ) -> Result<Arc<ConsoleSession>, OpenError> {
        if self.serial().is_none() {
            return Err(OpenError::NoDevice);
        }
        let (id, previous) = {
            let mut state = self.lock();
            if state.session.is_some() && !force {
                return Err(OpenError::Busy);
            }
            state.next_id += 1;
            let id = state.next_id;
            let previous = state.session.replace(Session {
                id,
                waker: Some(waker),
                ..Session::default()
            });
            (id, previous)
        };
        // The old session's next read finds it no longer holds the console.
        if let Some(previous) = previous {
            previous.log_dropped();
            if let Some(waker) = previous.waker {
                waker.wake();
            }
        }
        Ok(Arc::new(ConsoleSession {
            hub: self.clone(),
            id,
        }))
    }

    /// The domain stopped: the session's stream ends after what is buffered.
    pub fn end_session(&self) {
        let waker = {
            let mut state = self.lock();
            let Some(session) = state.session.as_mut() else {
                return;
            };
            session.ended = true;
            session.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The guest emptied the receive FIFO: input a client is holding back may go now.
    pub fn input_drained(&self) {
        let waker = {
            let mut state = self.lock();
            match state.session.as_mut() {
                Some(s) if s.input_waiting => {
                    s.input_waiting = false;
                    s.waker.clone()
                }
                _ => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Guest output (on a vCPU thread, with the UART locked).
    fn output(&self, bytes: &[u8]) {
        let waker = {
            let mut state = self.lock();
            let Some(session) = state.session.as_mut().filter(|s| !s.ended) else {
                return;
            };
            session.output.extend(bytes);
            let excess = session.output.len().saturating_sub(SESSION_BUFFER);
            if excess > 0 {
                if session.dropped == 0 {
                    log::warn!(
                        "console session {}: the client is not reading; its oldest output \
                         goes past {SESSION_BUFFER} bytes",
                        session.id
                    );
                }
                session.output.drain(..excess);
                session.dropped += excess as u64;
            }
            if session.wake_pending {
                None
            } else {
                session.wake_pending = true;
                session.waker.clone()
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Bytes of output the current session lost to a client that did not read.
    pub fn dropped(&self) -> u64 {
        self.lock().session.as_ref().map_or(0, |s| s.dropped)
    }
}

/// The configured console output plus the session: the session first, since the other may
/// fail (a full disk) and must not cost the client its bytes.
struct Tee {
    hub: Arc<ConsoleHub>,
    out: Box<dyn Write + Send>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hub.output(buf);
        self.out.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One client's hold on the console: the far end of its stream.
pub struct ConsoleSession {
    hub: Arc<ConsoleHub>,
    id: u64,
}

fn taken_over() -> RemoteError {
    RemoteError::new(
        error_code::OPERATION_ABORTED,
        error_domain::QEMU,
        "operation aborted: another session took the console over (console --force)",
    )
}

impl StreamEndpoint for ConsoleSession {
    fn read(&self, max: usize) -> StreamRead {
        let mut state = self.hub.lock();
        let Some(session) = state.session.as_mut().filter(|s| s.id == self.id) else {
            return StreamRead::Failed(taken_over());
        };
        if !session.output.is_empty() {
            let n = max.min(session.output.len());
            return StreamRead::Data(session.output.drain(..n).collect());
        }
        session.wake_pending = false;
        if session.ended {
            StreamRead::Eof
        } else {
            StreamRead::Empty
        }
    }

    fn write(&self, data: &[u8]) -> usize {
        {
            let state = self.hub.lock();
            match state.session.as_ref() {
                Some(s) if s.id == self.id && !s.ended => {}
                // The stream is over; its input has nowhere to go.
                _ => return data.len(),
            }
        }
        let Some(serial) = self.hub.serial() else {
            return data.len();
        };
        let taken = serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueue_input(data);
        let mut done = taken;
        // The FIFO is full: ask to be woken when the guest drains it, then try again, since
        // the drain may have come between the two locks. Until an attempt made after the
        // request takes nothing, a drain may have used up the request, so it is made again;
        // stopping earlier lost the wake-up and stalled a client's input for good.
        while done < data.len() {
            {
                let mut state = self.hub.lock();
                if let Some(s) = state.session.as_mut().filter(|s| s.id == self.id) {
                    s.input_waiting = true;
                }
            }
            let more = serial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enqueue_input(&data[done..]);
            if more == 0 {
                break;
            }
            done += more;
        }
        done
    }

    fn close(&self) {
        let mut state = self.hub.lock();
        if let Some(session) = state.session.take_if(|s| s.id == self.id) {
            session.log_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vmm_sys_util::eventfd::EventFd;

    use super::*;

    fn hub() -> Arc<ConsoleHub> {
        let hub = ConsoleHub::new();
        let irq = EventFd::new(0).unwrap();
        hub.attach_serial(Arc::new(Mutex::new(Serial::new(
            irq,
            Box::new(io::sink()),
            None,
        ))));
        hub
    }

    fn counting_waker() -> (StreamWaker, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        (
            StreamWaker::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            }),
            count,
        )
    }

    fn read_all(session: &ConsoleSession) -> Vec<u8> {
        match session.read(usize::MAX) {
            StreamRead::Data(d) => d,
            _ => Vec::new(),
        }
    }

    #[test]
    fn output_reaches_the_session_and_the_configured_output() {
        let hub = hub();
        let (waker, wakes) = counting_waker();
        let session = hub.open(false, waker).unwrap();
        let file = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut tee = hub.tee(Box::new(Shared(file.clone())));
        tee.write_all(b"he").unwrap();
        tee.write_all(b"llo").unwrap();
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "one wake until the client reads"
        );
        assert_eq!(read_all(&session), b"hello");
        assert!(matches!(session.read(10), StreamRead::Empty));
        tee.write_all(b"!").unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(*file.lock().unwrap(), b"hello!");
    }

    #[test]
    fn a_client_that_stops_reading_loses_the_oldest_output_only() {
        let hub = hub();
        let session = hub.open(false, counting_waker().0).unwrap();
        let mut tee = hub.tee(Box::new(io::sink()));
        for i in 0..SESSION_BUFFER + 10 {
            tee.write_all(&[(i % 251) as u8]).unwrap();
        }
        let got = read_all(&session);
        assert_eq!(got.len(), SESSION_BUFFER);
        assert_eq!(got[0], 10);
        assert_eq!(hub.dropped(), 10);
    }

    #[test]
    fn one_session_at_a_time_and_force_takes_over() {
        let hub = hub();
        let (waker, old_wakes) = counting_waker();
        let old = hub.open(false, waker).unwrap();
        assert_eq!(
            hub.open(false, counting_waker().0).err(),
            Some(OpenError::Busy)
        );
        let new = hub.open(true, counting_waker().0).unwrap();
        assert_eq!(
            old_wakes.load(Ordering::SeqCst),
            1,
            "the old client is told"
        );
        assert!(matches!(old.read(10), StreamRead::Failed(_)));
        // The old stream's close does not end the new session.
        old.close();
        assert!(matches!(new.read(10), StreamRead::Empty));
        new.close();
        assert!(hub.open(false, counting_waker().0).is_ok());
    }

    #[test]
    fn input_fills_the_fifo_then_waits_for_the_guest() {
        let hub = hub();
        let (waker, wakes) = counting_waker();
        let session = hub.open(false, waker).unwrap();
        let big = vec![b'a'; 4096];
        let taken = session.write(&big);
        assert!(
            taken > 0 && taken < big.len(),
            "the FIFO bounds it: {taken}"
        );
        assert_eq!(session.write(&big[taken..]), 0);
        hub.input_drained();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_stopped_domain_ends_the_stream_after_its_output() {
        let hub = hub();
        let session = hub.open(false, counting_waker().0).unwrap();
        hub.tee(Box::new(io::sink())).write_all(b"bye").unwrap();
        hub.end_session();
        assert_eq!(read_all(&session), b"bye");
        assert!(matches!(session.read(10), StreamRead::Eof));
    }

    #[test]
    fn no_uart_no_console() {
        assert_eq!(
            ConsoleHub::new().open(false, counting_waker().0).err(),
            Some(OpenError::NoDevice)
        );
    }
}
