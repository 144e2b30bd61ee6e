//! Emulated devices: the port-I/O and MMIO bus, and the legacy PC devices (8250 UART, i8042,
//! debug-exit port, no-op ports, IOAPIC), and virtio-mmio devices.

pub mod acpi;
pub mod bus;
pub mod legacy;
pub mod thread_hook;
pub mod virtio;
