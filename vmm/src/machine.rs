//! The machine: a VM, its vCPU threads and devices, assembled from a `VmConfig`, and the
//! operations the main loop performs on it (pause, resume, reset, power button).

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::acpi::{Ged, PmControl, PmEvent, GED_SIZE, PM_SIZE};
use devices::legacy::{self, DebugExit, Ioapic, Serial, I8042};
use devices::virtio::{Net, Rng};
use kvm_ioctls::VcpuFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::arch::x86_64::cpuid::{add_timing_leaf, filter_cpuid};
use crate::arch::x86_64::layout;
use crate::config::VmConfig;
use crate::device_manager::{DeviceManager, DeviceStats};
use crate::main_loop::{self, AioContext, Requests, ShutdownCause};
use crate::placement::CpuPinning;
use crate::vcpu::{VcpuContext, VcpuGroup};
use crate::vm::{GsiRouter, Vm};
use crate::{affinity, loader, vm};

/// Entries requested from KVM_GET_SUPPORTED_CPUID (KVM's own upper bound is 256).
const MAX_CPUID_ENTRIES: usize = 256;

#[derive(Debug)]
pub enum Error {
    Vm(vm::Error),
    Load(loader::Error),
    Device(String),
    Vcpu(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Vm(e) => e.fmt(f),
            Error::Load(e) => e.fmt(f),
            Error::Device(e) => write!(f, "device setup: {e}"),
            Error::Vcpu(e) => write!(f, "vCPU setup: {e}"),
        }
    }
}

impl std::error::Error for Error {}

pub struct Machine {
    config: VmConfig,
    // Field order is drop order: threads stop before the VM fd and RAM go away.
    vcpus: VcpuGroup,
    serial: Arc<Mutex<Serial>>,
    /// Written when the guest has read all queued console input.
    serial_input_drained: EventFd,
    /// Every device the guest reaches, and what a machine reset resets.
    devices: DeviceManager,
    /// The power button's event device (present with ACPI).
    ged: Option<Arc<Mutex<Ged>>>,
    pinning: Arc<CpuPinning>,
    device_stats: DeviceStats,
    vm: Vm,
}

impl Machine {
    /// Builds the VM and its devices, loads the guest and starts the vCPU threads parked. The
    /// devices' notifications and completions are handled on `aio` (the main loop's).
    pub fn new(
        config: &VmConfig,
        aio: &AioContext,
        requests: Arc<Requests>,
        serial_out: Box<dyn Write + Send>,
    ) -> Result<Machine, Error> {
        let placement = config
            .cpu_tune
            .resolve(
                config.cpus,
                affinity::process_cpus(),
                affinity::kvm_is_pvm(),
            )
            .map_err(Error::Vcpu)?;
        placement.log_choices(&config.cpu_tune);
        let vm = Vm::new(config.memory, config.cpus).map_err(Error::Vm)?;
        let mut devices = DeviceManager::new(aio);

        let dev = |e: &dyn fmt::Display| Error::Device(e.to_string());
        let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(|e| dev(&e))?;
        vm.register_irqfd(&serial_irq, legacy::COM1_IRQ)
            .map_err(Error::Vm)?;
        let input_drained = EventFd::new(EFD_NONBLOCK).map_err(|e| dev(&e))?;
        let drained_for_uart = input_drained.try_clone().map_err(|e| dev(&e))?;
        let serial = Arc::new(Mutex::new(Serial::new(
            serial_irq,
            serial_out,
            Some(drained_for_uart),
        )));
        devices
            .insert_pio(serial.clone(), legacy::COM1_BASE, legacy::COM1_SIZE)
            .map_err(Error::Device)?;

        let on_reset = requests.clone();
        let i8042 = I8042::new(Box::new(move || {
            on_reset.reset_request(ShutdownCause::GuestReset);
        }));
        devices
            .insert_pio(
                Arc::new(Mutex::new(i8042)),
                legacy::I8042_BASE,
                legacy::I8042_SIZE,
            )
            .map_err(Error::Device)?;

        let on_exit = requests.clone();
        let debug_exit = DebugExit::new(Box::new(move |status| {
            on_exit.shutdown_request_with_status(ShutdownCause::GuestShutdown, i32::from(status));
        }));
        devices
            .insert_pio(
                Arc::new(Mutex::new(debug_exit)),
                legacy::DEBUG_EXIT_BASE,
                legacy::DEBUG_EXIT_SIZE,
            )
            .map_err(Error::Device)?;
        devices.insert_noop_ports().map_err(Error::Device)?;
        let ged = if config.acpi {
            Some(attach_acpi_devices(&vm, &mut devices, &requests)?)
        } else {
            None
        };

        let router = GsiRouter::new(vm.fd().clone());
        let ioapic = Arc::new(Mutex::new(Ioapic::new(Box::new(router))));
        devices
            .insert_mmio(ioapic.clone(), layout::IOAPIC_START, legacy::IOAPIC_SIZE)
            .map_err(Error::Device)?;

        let mut device_stats = DeviceStats::default();
        for disk in &config.disks {
            let stats = devices.attach_block(&vm, disk).map_err(Error::Device)?;
            device_stats.disks.push(stats);
        }
        for net in &config.nets {
            let device = Net::new(net).map_err(|e| Error::Device(format!("--net {e}")))?;
            device_stats.nets.push(device.stats());
            devices
                .attach_virtio(&vm, Box::new(device))
                .map_err(Error::Device)?;
        }
        if config.rng {
            devices
                .attach_virtio(&vm, Box::new(Rng::new()))
                .map_err(Error::Device)?;
        }
        // Kernels built with VIRTIO_MMIO_CMDLINE_DEVICES find the devices on the command line.
        let mut config = config.clone();
        let words = devices.cmdline_words();
        if config.virtio_cmdline && !words.is_empty() {
            config.cmdline = [config.cmdline.as_str(), words.as_str()]
                .join(" ")
                .trim()
                .to_string();
        }
        let config = &config;

        let entry = loader::load_boot_images(vm.memory(), config, devices.virtio_windows())
            .map_err(Error::Load)?;
        let vcpu_fds = create_vcpus(&vm, config.cpus)?;
        let (pio_bus, mmio_bus) = devices.buses();
        let ctx = VcpuContext {
            pio_bus: pio_bus.clone(),
            mmio_bus: mmio_bus.clone(),
            requests,
            memory: vm.memory().clone(),
            ioapic,
        };
        let vcpus =
            VcpuGroup::start(vcpu_fds, entry, ctx, &placement.vcpus).map_err(Error::Vcpu)?;
        let emulator_pin = placement.emulator.clone();
        let pinning = CpuPinning::new(placement, vcpus.threads());
        if let Some(cpus) = emulator_pin {
            pinning
                .pin_emulator(&cpus)
                .map_err(|e| Error::Vcpu(format!("--emulator-pin {cpus}: {e}")))?;
        }
        Ok(Machine {
            config: config.clone(),
            vcpus,
            serial,
            serial_input_drained: input_drained,
            devices,
            ged,
            pinning,
            device_stats,
            vm,
        })
    }

    /// The disks' and interfaces' counters, for management statistics.
    pub fn device_stats(&self) -> &DeviceStats {
        &self.device_stats
    }

    /// The vCPU threads, for management calls that reach the vCPUs (the NMI button).
    pub fn vcpu_threads(&self) -> crate::vcpu::VcpuThreads {
        self.vcpus.threads()
    }

    /// The threads' host CPU placement, for management calls.
    pub fn pinning(&self) -> &Arc<CpuPinning> {
        &self.pinning
    }

    pub fn serial(&self) -> &Arc<Mutex<Serial>> {
        &self.serial
    }

    pub fn serial_input_drained(&self) -> &EventFd {
        &self.serial_input_drained
    }

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Stops and joins the vCPU threads.
    pub fn stop(&mut self) {
        self.vcpus.stop();
    }
}

/// The hardware the ACPI tables describe: sleep/reset registers (a guest poweroff is a
/// guest-shutdown request) and the GED behind the power button.
fn attach_acpi_devices(
    vm: &Vm,
    devices: &mut DeviceManager,
    requests: &Arc<Requests>,
) -> Result<Arc<Mutex<Ged>>, Error> {
    let dev = |e: &dyn fmt::Display| Error::Device(e.to_string());
    let on_event = requests.clone();
    let pm = PmControl::new(Box::new(move |event| match event {
        PmEvent::PowerOff => {
            log::info!("guest powered off through ACPI S5");
            on_event.shutdown_request(ShutdownCause::GuestShutdown);
        }
        PmEvent::Reset => {
            log::info!("guest reset through the ACPI reset register");
            on_event.reset_request(ShutdownCause::GuestReset);
        }
    }));
    devices
        .insert_pio(Arc::new(Mutex::new(pm)), layout::ACPI_PM_PORT, PM_SIZE)
        .map_err(Error::Device)?;
    let irq = EventFd::new(EFD_NONBLOCK).map_err(|e| dev(&e))?;
    vm.register_irqfd(&irq, layout::GED_GSI)
        .map_err(Error::Vm)?;
    let ged = Arc::new(Mutex::new(Ged::new(irq)));
    devices
        .insert_mmio(ged.clone(), layout::GED_START, GED_SIZE)
        .map_err(Error::Device)?;
    Ok(ged)
}

/// Creates the vCPUs with their CPUID (APIC id, topology, hypervisor leaf) set. Registers
/// and MSRs are loaded by each vCPU thread before it first runs (and again after a reset).
fn create_vcpus(vm: &Vm, count: u8) -> Result<Vec<VcpuFd>, Error> {
    let supported = vm
        .kvm()
        .get_supported_cpuid(MAX_CPUID_ENTRIES)
        .map_err(|e| Error::Vcpu(format!("KVM_GET_SUPPORTED_CPUID: {e}")))?;
    (0..count)
        .map(|index| {
            let fd = vm
                .fd()
                .create_vcpu(u64::from(index))
                .map_err(|e| Error::Vcpu(format!("KVM_CREATE_VCPU {index}: {e}")))?;
            let mut cpuid = supported.clone();
            filter_cpuid(&mut cpuid, index, count).map_err(|e| Error::Vcpu(e.to_string()))?;
            // Without KVM_CAP_GET_TSC_KHZ the guest calibrates (or assumes) on its own.
            match fd.get_tsc_khz() {
                Ok(khz) => {
                    add_timing_leaf(&mut cpuid, khz).map_err(|e| Error::Vcpu(e.to_string()))?
                }
                Err(e) => log::debug!(
                    "vCPU {index}: no TSC frequency for the guest: KVM_GET_TSC_KHZ: {e}"
                ),
            }
            fd.set_cpuid2(&cpuid)
                .map_err(|e| Error::Vcpu(format!("KVM_SET_CPUID2 {index}: {e}")))?;
            Ok(fd)
        })
        .collect()
}

impl main_loop::Machine for Machine {
    fn pause_vcpus(&mut self) {
        self.vcpus.pause();
    }

    fn resume_vcpus(&mut self) {
        self.vcpus.resume();
    }

    /// Like QEMU's qemu_system_reset: RAM keeps its contents; every device returns to its
    /// power-on state (virtio transports drop their queues and wait for in-flight disk I/O,
    /// so nothing of the old boot lands in the new one's memory), the kernel, initrd and boot
    /// tables are loaded again, and every vCPU reloads its boot registers.
    fn reset(&mut self, _cause: ShutdownCause) -> Result<(), String> {
        self.devices.reset();
        let entry = loader::load_boot_images(
            self.vm.memory(),
            &self.config,
            self.devices.virtio_windows(),
        )
        .map_err(|e| e.to_string())?;
        self.vcpus.reset(entry);
        Ok(())
    }

    /// Presses the ACPI power button; what happens next is up to the guest.
    fn powerdown(&mut self) {
        match &self.ged {
            Some(ged) => ged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .press_power_button(),
            None => log::warn!("powerdown requested, but without ACPI there is no power button"),
        }
    }
}
