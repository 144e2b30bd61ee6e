//! Legacy PC devices and where they live.

mod debug_exit;
mod i8042;
mod ioapic;
mod noop;
mod serial;

pub use debug_exit::DebugExit;
pub use i8042::I8042;
pub use ioapic::{Ioapic, MsiMessage, MsiRouter, IOAPIC_PINS};
pub use noop::{register_noops, Noop};
pub use serial::{Serial, SerialOutput, SerialOutputError};

/// COM1: the 8250 UART's ports and its ISA interrupt line.
pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_SIZE: u64 = 8;
pub const COM1_IRQ: u32 = 4;
/// i8042 keyboard controller: data at 0x60, status/command at 0x64.
pub const I8042_BASE: u64 = 0x60;
pub const I8042_SIZE: u64 = 5;
/// QEMU's isa-debug-exit default port: a guest write of STATUS ends the VM with STATUS.
pub const DEBUG_EXIT_BASE: u64 = 0x501;
pub const DEBUG_EXIT_SIZE: u64 = 2;
/// The IOAPIC's register window (the machine's memory map places it).
pub const IOAPIC_SIZE: u64 = 0x1000;
