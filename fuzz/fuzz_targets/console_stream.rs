//! The serial console's management side (vmm::console_stream) against a model: an input is a
//! sequence of what clients do (open, forced or not; read; type; close), what the guest does
//! (print through the UART; read what was typed) and what the host does (the domain stops; a
//! new machine's UART replaces the old one). After each step the hub must agree with the
//! model: the output a session reads is exactly the newest SESSION_BUFFER bytes printed
//! since it opened, the guest reads exactly the bytes the hub accepted, in order, a session
//! taken over fails, and every wake-up the model expects happens (a lost one stalls a
//! client for good).
#![no_main]

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use devices::bus::BusDevice;
use devices::legacy::Serial;
use libfuzzer_sys::fuzz_target;
use mgmt::rpc::{StreamEndpoint, StreamRead, StreamWaker};
use vmm::console_stream::{ConsoleHub, ConsoleSession, OpenError, SESSION_BUFFER};
use vmm_sys_util::eventfd::EventFd;

/// Sessions a client holds at once here (takeovers leave old ones around).
const HANDLES: usize = 4;
/// UART registers (8250): data, line status and its data-ready bit.
const DATA: u64 = 0;
const LSR: u64 = 5;
const LSR_DATA_READY: u8 = 1;

/// One session's handle, with the model's view of it.
struct Handle {
    session: Arc<ConsoleSession>,
    wakes: Arc<AtomicUsize>,
    expected_wakes: usize,
}

/// The session holding the console, as the model sees it.
struct Current {
    handle: usize,
    output: VecDeque<u8>,
    wake_pending: bool,
    input_waiting: bool,
    ended: bool,
}

struct World {
    hub: Arc<ConsoleHub>,
    serial: Option<Arc<Mutex<Serial>>>,
    handles: Vec<Option<Handle>>,
    current: Option<Current>,
    /// Bytes the hub accepted that the guest has not read yet.
    typed: VecDeque<u8>,
}

impl World {
    fn new() -> World {
        let mut world = World {
            hub: ConsoleHub::new(),
            serial: None,
            handles: (0..HANDLES).map(|_| None).collect(),
            current: None,
            typed: VecDeque::new(),
        };
        world.new_uart();
        world
    }

    /// A new machine: its UART (with an empty receive FIFO) replaces the old one.
    fn new_uart(&mut self) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let serial = Arc::new(Mutex::new(Serial::new(
            irq,
            self.hub.tee(Box::new(io::sink())),
            None,
        )));
        self.hub.attach_serial(serial.clone());
        self.serial = Some(serial);
        self.typed.clear();
    }

    fn wake(&mut self, handle: usize) {
        if let Some(h) = self.handles[handle].as_mut() {
            h.expected_wakes += 1;
        }
    }

    fn open(&mut self, slot: usize, force: bool) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let waker = StreamWaker::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let result = self.hub.open(force, waker);
        if self.serial.is_none() {
            assert_eq!(result.err(), Some(OpenError::NoDevice));
            return;
        }
        if self.current.is_some() && !force {
            assert_eq!(result.err(), Some(OpenError::Busy));
            return;
        }
        let session = result.expect("the console opens");
        // The handle in this slot, if any, is dropped without a close, as a client that
        // vanished would be; if it held the console, the new session has taken it over.
        if let Some(previous) = self.current.take() {
            self.wake(previous.handle);
        }
        self.handles[slot] = Some(Handle {
            session,
            wakes,
            expected_wakes: 0,
        });
        self.current = Some(Current {
            handle: slot,
            output: VecDeque::new(),
            wake_pending: false,
            input_waiting: false,
            ended: false,
        });
    }

    fn holds(&self, slot: usize) -> bool {
        self.current.as_ref().is_some_and(|c| c.handle == slot)
    }

    fn read(&mut self, slot: usize, max: usize) {
        let Some(handle) = self.handles[slot].as_ref() else {
            return;
        };
        let got = handle.session.read(max);
        if !self.holds(slot) {
            assert!(
                matches!(got, StreamRead::Failed(_)),
                "a session taken over reads on"
            );
            return;
        }
        let current = self.current.as_mut().expect("held");
        if !current.output.is_empty() {
            let n = max.min(current.output.len());
            let want: Vec<u8> = current.output.drain(..n).collect();
            match got {
                StreamRead::Data(data) => assert_eq!(data, want, "the session's output"),
                _ => panic!("output was waiting"),
            }
            return;
        }
        current.wake_pending = false;
        match (got, current.ended) {
            (StreamRead::Eof, true) | (StreamRead::Empty, false) => {}
            (other, ended) => panic!("empty session (ended: {ended}) read {}", describe(&other)),
        }
    }

    fn type_in(&mut self, slot: usize, data: &[u8]) {
        let Some(handle) = self.handles[slot].as_ref() else {
            return;
        };
        let space = self
            .serial
            .as_ref()
            .map_or(0, |s| s.lock().expect("uart").input_space());
        let taken = handle.session.write(data);
        let live = self
            .current
            .as_ref()
            .is_some_and(|c| c.handle == slot && !c.ended);
        if !live || self.serial.is_none() {
            assert_eq!(
                taken,
                data.len(),
                "input with nowhere to go is dropped whole"
            );
            return;
        }
        let fits = data.len().min(space);
        assert_eq!(taken, fits, "the FIFO's free space bounds what is taken");
        self.typed.extend(&data[..taken]);
        if taken < data.len() {
            if let Some(current) = self.current.as_mut() {
                current.input_waiting = true;
            }
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(handle) = self.handles[slot].take() else {
            return;
        };
        handle.session.close();
        if self.holds(slot) {
            self.current = None;
        }
    }

    fn guest_prints(&mut self, bytes: &[u8]) {
        let Some(serial) = self.serial.clone() else {
            return;
        };
        for &b in bytes {
            serial.lock().expect("uart").write(0, DATA, &[b]);
            let mut wake = None;
            if let Some(current) = self.current.as_mut().filter(|c| !c.ended) {
                current.output.push_back(b);
                if current.output.len() > SESSION_BUFFER {
                    current.output.pop_front();
                }
                if !current.wake_pending {
                    current.wake_pending = true;
                    wake = Some(current.handle);
                }
            }
            if let Some(handle) = wake {
                self.wake(handle);
            }
        }
    }

    fn guest_reads(&mut self, count: usize) {
        let Some(serial) = self.serial.clone() else {
            return;
        };
        for _ in 0..count {
            let mut uart = serial.lock().expect("uart");
            let mut lsr = [0u8];
            uart.read(0, LSR, &mut lsr);
            if lsr[0] & LSR_DATA_READY == 0 {
                assert!(self.typed.is_empty(), "typed bytes never reached the guest");
                break;
            }
            let mut byte = [0u8];
            uart.read(0, DATA, &mut byte);
            assert_eq!(Some(byte[0]), self.typed.pop_front(), "the guest's input");
        }
        // The main loop hears the FIFO drain and tells the hub.
        if self.typed.is_empty() {
            self.hub.input_drained();
            let mut wake = None;
            if let Some(current) = self.current.as_mut().filter(|c| c.input_waiting) {
                current.input_waiting = false;
                wake = Some(current.handle);
            }
            if let Some(handle) = wake {
                self.wake(handle);
            }
        }
    }

    fn domain_stops(&mut self) {
        self.hub.end_session();
        let mut wake = None;
        if let Some(current) = self.current.as_mut() {
            current.ended = true;
            wake = Some(current.handle);
        }
        if let Some(handle) = wake {
            self.wake(handle);
        }
    }

    fn machine_replaced(&mut self, with_uart: bool) {
        self.hub.detach_serial();
        self.serial = None;
        self.typed.clear();
        if with_uart {
            self.new_uart();
        }
    }

    fn check_wakes(&self) {
        for handle in self.handles.iter().flatten() {
            assert_eq!(
                handle.wakes.load(Ordering::Relaxed),
                handle.expected_wakes,
                "wake-ups of a session"
            );
        }
    }
}

impl Drop for World {
    /// The hub and its UART hold each other (the UART's output is the hub's tee) until the
    /// machine goes, as the VMM detaches a stopped machine's UART.
    fn drop(&mut self) {
        self.hub.detach_serial();
    }
}

fn describe(read: &StreamRead) -> &'static str {
    match read {
        StreamRead::Data(_) => "data",
        StreamRead::Empty => "empty",
        StreamRead::Eof => "end of stream",
        StreamRead::Failed(_) => "a failure",
    }
}

fuzz_target!(|data: &[u8]| {
    let mut world = World::new();
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let slot = usize::from(arg) % HANDLES;
        match op % 9 {
            0 => world.open(slot, arg & 0x80 != 0),
            // Reads of up to 64 KiB, or everything.
            1 => world.read(slot, usize::from(arg >> 2) << 10 | usize::from(arg & 3)),
            2 => {
                let len = usize::from(bytes.next().unwrap_or(0));
                let text: Vec<u8> = bytes.by_ref().take(len).collect();
                world.type_in(slot, &text);
            }
            3 => world.close(slot),
            // Guest output: a little, or 8-12 KiB (a few of those go past the session's
            // buffer; one of 64 KiB would make every input slow).
            4 => {
                let len = if arg & 0x80 != 0 {
                    SESSION_BUFFER / 8 + usize::from(arg & 0x7f) * 32
                } else {
                    usize::from(arg)
                };
                let text: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ arg).collect();
                world.guest_prints(&text);
            }
            5 => world.guest_reads(usize::from(arg)),
            6 => world.domain_stops(),
            7 => world.machine_replaced(arg & 1 == 0),
            _ => world.read(slot, usize::MAX),
        }
        world.check_wakes();
    }
});
