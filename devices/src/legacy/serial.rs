//! The 8250 UART (vm-superio) on the port bus. Its interrupt is an eventfd the VMM hands to
//! KVM as an irqfd; its output goes to any writer, and a writer that fails (closed stdout, full
//! disk) is reported once and then ignored so the guest never stalls on its console.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use vm_superio::serial::{SerialEvents, SerialState};
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;

/// Raises the UART's interrupt line by writing its eventfd.
pub struct IrqTrigger(EventFd);

impl IrqTrigger {
    fn try_clone(&self) -> io::Result<IrqTrigger> {
        self.0.try_clone().map(IrqTrigger)
    }
}

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Console output that never fails towards the UART: a failed write (closed stdout, full disk)
/// is counted and the first one logged, and the byte is dropped. Later writes are still tried,
/// so output resumes if the failure was transient.
struct ConsoleWriter {
    out: Box<dyn Write + Send>,
    failed_writes: u64,
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.out.write_all(buf) {
            if self.failed_writes == 0 {
                log::warn!("serial console output failed, dropping output: {e}");
            }
            self.failed_writes = self.failed_writes.saturating_add(1);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.out.flush();
        Ok(())
    }
}

/// Where the console's output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialOutput {
    Stdout,
    /// Created, or truncated if it exists.
    File(PathBuf),
    Sink,
}

/// Opening a `SerialOutput::File` failed.
#[derive(Debug)]
pub struct SerialOutputError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for SerialOutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "serial output {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for SerialOutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl SerialOutput {
    /// The writer for `Serial::new`. Unbuffered: the UART writes one byte per guest OUT, and
    /// each must be visible at once (a guest that hangs later still shows its last words).
    pub fn open(&self) -> Result<Box<dyn Write + Send>, SerialOutputError> {
        match self {
            // Stdout's own handle is line-buffered behind a lock; a duplicate of its fd is not.
            SerialOutput::Stdout => io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map(|fd| Box::new(File::from(fd)) as Box<dyn Write + Send>)
                .map_err(|source| SerialOutputError {
                    path: PathBuf::from("<stdout>"),
                    source,
                }),
            SerialOutput::File(path) => File::create(path)
                .map(|f| Box::new(f) as Box<dyn Write + Send>)
                .map_err(|source| SerialOutputError {
                    path: path.clone(),
                    source,
                }),
            SerialOutput::Sink => Ok(Box::new(io::sink())),
        }
    }
}

/// Tells the VMM when the guest has read everything queued, so it can feed more input.
pub struct InputDrained(Option<EventFd>);

impl InputDrained {
    fn try_clone(&self) -> io::Result<InputDrained> {
        self.0
            .as_ref()
            .map(EventFd::try_clone)
            .transpose()
            .map(InputDrained)
    }
}

impl SerialEvents for InputDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        if let Some(event) = &self.0 {
            let _ = event.write(1);
        }
    }
}

pub struct Serial {
    uart: vm_superio::Serial<IrqTrigger, InputDrained, ConsoleWriter>,
}

impl Serial {
    /// `input_drained`, if given, is written each time the guest empties the receive FIFO.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>, input_drained: Option<EventFd>) -> Serial {
        let writer = ConsoleWriter {
            out,
            failed_writes: 0,
        };
        let events = InputDrained(input_drained);
        Serial {
            uart: vm_superio::Serial::with_events(IrqTrigger(irq), events, writer),
        }
    }

    /// Queues guest input; returns how many bytes fit (the FIFO's free space bounds it).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.uart.fifo_capacity() == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial input: {e}");
                0
            }
        }
    }

    /// Free space in the receive FIFO.
    pub fn input_space(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// How many console writes failed (their bytes were dropped).
    pub fn output_errors(&self) -> u64 {
        self.uart.writer().failed_writes
    }

    /// The power-on register state (as QEMU's serial_reset), on the same interrupt line and
    /// console. Input the host already queued is kept: those are bytes someone typed, and the
    /// next boot can read them.
    fn power_on(&mut self) -> io::Result<()> {
        let trigger = self.uart.interrupt_evt().try_clone()?;
        let events = self.uart.events().try_clone()?;
        let writer = self.uart.writer_mut();
        let writer = ConsoleWriter {
            out: std::mem::replace(&mut writer.out, Box::new(io::sink())),
            failed_writes: writer.failed_writes,
        };
        let state = SerialState {
            in_buffer: self.uart.state().in_buffer,
            ..SerialState::default()
        };
        self.uart = vm_superio::Serial::from_state(&state, trigger, events, writer)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        Ok(())
    }
}

impl BusDevice for Serial {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(offset)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(offset);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (Some(&value), Ok(offset)) = (data.first(), u8::try_from(offset)) else {
            return;
        };
        if let Err(e) = self.uart.write(offset, value) {
            log::warn!("serial: {e}");
        }
    }

    fn reset(&mut self) {
        if let Err(e) = self.power_on() {
            log::warn!("serial: reset failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer tests can look into.
    #[derive(Clone, Default)]
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

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn serial(out: Box<dyn Write + Send>) -> (Serial, EventFd) {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (Serial::new(irq.try_clone().unwrap(), out, None), irq)
    }

    #[test]
    fn draining_the_fifo_is_announced() {
        let drained = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut s = Serial::new(
            irq,
            Box::new(io::sink()),
            Some(drained.try_clone().unwrap()),
        );
        s.enqueue_input(b"ab");
        let mut b = [0u8];
        s.read(0x3f8, 0, &mut b);
        assert!(drained.read().is_err(), "one byte still queued");
        s.read(0x3f8, 0, &mut b);
        assert_eq!(drained.read().unwrap(), 1);
    }

    #[test]
    fn reset_restores_registers_and_keeps_console_and_input() {
        let sink = Shared::default();
        let (mut s, _) = serial(Box::new(sink.clone()));
        s.write(0x3f8, 7, &[0x5a]); // scratch
        s.write(0x3f8, 3, &[0x80]); // LCR: DLAB
        s.enqueue_input(b"k");
        s.reset();
        let mut b = [0u8];
        s.read(0x3f8, 7, &mut b);
        assert_eq!(b[0], 0, "scratch back to power-on");
        s.read(0x3f8, 3, &mut b);
        assert_eq!(b[0] & 0x80, 0, "DLAB cleared");
        s.read(0x3f8, 0, &mut b);
        assert_eq!(b[0], b'k', "queued input kept");
        s.write(0x3f8, 0, b"!");
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"!");
    }

    #[test]
    fn output_reaches_the_writer() {
        let sink = Shared::default();
        let (mut s, _) = serial(Box::new(sink.clone()));
        for b in b"hi\n" {
            s.write(0x3f8, 0, &[*b]);
        }
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"hi\n");
    }

    #[test]
    fn input_respects_capacity_and_raises_the_irq() {
        let (mut s, irq) = serial(Box::new(io::sink()));
        s.write(0x3f8, 1, &[0x01]); // IER: received-data interrupt
        let capacity = s.input_space();
        assert!(capacity > 0);
        let big = vec![b'x'; capacity + 10];
        assert_eq!(s.enqueue_input(&big), capacity);
        assert_eq!(s.enqueue_input(b"y"), 0);
        assert_eq!(irq.read().unwrap(), 1);
        let mut lsr = [0u8];
        s.read(0x3f8, 5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut rbr = [0u8];
        s.read(0x3f8, 0, &mut rbr);
        assert_eq!(rbr[0], b'x');
        assert_eq!(s.input_space(), 1);
    }

    #[test]
    fn broken_output_never_stops_the_guest() {
        let (mut s, _) = serial(Box::new(Broken));
        for _ in 0..3 {
            s.write(0x3f8, 0, b"z");
        }
        let mut lsr = [0u8];
        s.read(0x3f8, 5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR still empty");
        assert_eq!(s.output_errors(), 3);
    }

    #[test]
    fn file_output_is_truncated_and_receives_bytes() {
        let path = std::env::temp_dir().join(format!("devices-serial-{}", std::process::id()));
        std::fs::write(&path, b"old contents").unwrap();
        let out = SerialOutput::File(path.clone()).open().unwrap();
        let (mut s, _) = serial(out);
        s.write(0x3f8, 0, b"k");
        assert_eq!(std::fs::read(&path).unwrap(), b"k");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn unopenable_file_names_its_path() {
        let path = PathBuf::from("/nonexistent-dir/console.log");
        let err = SerialOutput::File(path.clone()).open().err().unwrap();
        assert_eq!(err.path, path);
        assert!(err.to_string().contains("/nonexistent-dir/console.log"));
        assert!(SerialOutput::Sink.open().is_ok());
    }

    #[test]
    fn scratch_register_and_odd_offsets() {
        let (mut s, _) = serial(Box::new(io::sink()));
        s.write(0x3f8, 7, &[0xa5]);
        let mut v = [0u8; 2];
        s.read(0x3f8, 7, &mut v);
        assert_eq!(v, [0xa5, 0]);
        s.write(0x3f8, 1 << 40, &[1]); // never panics on a huge offset
        s.write(0x3f8, 0, &[]);
    }
}
