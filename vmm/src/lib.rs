//! vmm: one process runs one KVM virtual machine.
//!
//! The pieces, each in its own module:
//! - `main_loop`: QEMU vl.c-style loop on GLib (clocks, timers, bottom halves, fd handlers,
//!   signalfd, run-state requests and `main_loop_should_exit`).
//! - `arch`: x86_64 boot-time state (memory layout, CPUID, registers, e820, MP table).

pub mod arch;
pub mod main_loop;
