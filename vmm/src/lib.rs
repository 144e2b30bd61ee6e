//! vmm: one process runs one KVM virtual machine.
//!
//! - `main_loop`: the QEMU vl.c-style loop on GLib (clocks, timers, bottom halves, fd
//!   handlers, signalfd, run-state requests and `main_loop_should_exit`).
//! - `arch`: x86_64 boot-time state (memory layout, CPUID, registers, e820, MP table).
//! - `vm`, `vcpu`: the KVM VM (RAM, split irqchip, MSI routes) and the vCPU threads;
//!   `guest_ram`: the RAM mapped 2 MiB aligned, so KVM can use large pages for it.
//! - `placement`, `affinity`: which host CPUs the threads run on, and the system calls for it.
//! - `loader`: kernel, initrd, command line and boot tables into guest RAM.
//! - `device_manager`: the devices' ports, MMIO windows, interrupts and reset, virtio ones
//!   attached with their KVM irqfd/ioeventfds and main-loop handlers in one step.
//! - `machine`: all of it assembled from a `config::VmConfig`; what the main loop drives.
//! - `host`: the one-domain host the libvirt management server talks to (mgmt::Hypervisor):
//!   definitions, create/define/start/undefine; `management`: the running domain's side;
//!   `state_dir`: where the persistent domain is stored; `launcher`: a managed process's
//!   machines, built, run and torn down one after another on the main loop.
//! - `domain_xml`, `xml_config`: the VM as libvirt domain XML, written and read.
//! - `cli`, `console`, `logger`: the `vmm` launcher's command line, terminal and log output.

pub mod affinity;
pub mod arch;
pub mod cli;
pub mod config;
pub mod console;
pub mod console_stream;
pub mod device_manager;
pub mod domain_xml;
pub mod guest_ram;
pub mod host;
pub mod launcher;
pub mod loader;
pub mod logger;
pub mod machine;
pub mod main_loop;
pub mod management;
pub mod placement;
pub mod seccomp;
pub mod state_dir;
pub mod vcpu;
pub mod vm;
pub mod xml_config;
