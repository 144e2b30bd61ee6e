//! The `vmm` command line: `vmm run [OPTIONS]` and `vmm serve [OPTIONS]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::affinity;
use crate::config::{self, BootMode, KernelSource, RunConfig, SerialConfig, VmConfig};
use crate::placement::{CpuTune, VcpuPlacement};

#[derive(Debug, Parser)]
#[command(name = "vmm", version, about = "Run one KVM virtual machine", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest. Without --kernel, boots the built-in test guest.
    Run(Box<RunArgs>),
    /// Serve the libvirt protocol with no domain: clients create or define one from domain
    /// XML (virsh create/define/start), one at a time.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The VM as libvirt domain XML (what `virsh dumpxml` prints); instead of the flags that
    /// describe the machine (kernel, CPUs, memory, devices, console, name).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "kernel", "initrd", "cmdline", "cpus", "vcpu_pin", "emulator_pin", "memory", "serial",
        "no_reboot", "no_acpi", "disk", "net", "rng", "name", "uuid",
    ])]
    pub xml: Option<PathBuf>,
    /// Kernel to boot: ELF vmlinux (PVH note or 64-bit entry) or bzImage.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STRING")]
    pub cmdline: Option<String>,
    /// Number of vCPUs (1-254).
    #[arg(long, value_name = "N", default_value = "1", value_parser = config::parse_cpus)]
    pub cpus: u8,
    /// Pin vCPU VCPU's thread to host CPUs CPULIST: VCPU=CPULIST, e.g. 0=2 or 1=0-3,^2
    /// (repeatable; like libvirt's <vcpupin>).
    #[arg(long, value_name = "VCPU=CPULIST", value_parser = config::parse_vcpu_pin)]
    pub vcpu_pin: Vec<(u8, mgmt::cpuset::CpuSet)>,
    /// Pin the VMM's other threads (main loop, I/O, management) to host CPUs CPULIST.
    #[arg(long, value_name = "CPULIST", value_parser = config::parse_cpu_list)]
    pub emulator_pin: Option<mgmt::cpuset::CpuSet>,
    /// vCPUs without a pin: auto (one host CPU each, round-robin, where KVM needs it: kvm_pvm),
    /// spread (that, on any host) or none (wherever the scheduler puts them).
    #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = config::parse_vcpu_placement)]
    pub vcpu_placement: VcpuPlacement,
    /// Guest RAM: a number of MiB, or with a K/M/G/T suffix (512M, 2G).
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = config::parse_memory_size)]
    pub memory: u64,
    /// Serial console: stdio, file=PATH or none.
    #[arg(long, value_name = "WHERE", default_value = "stdio", value_parser = config::parse_serial)]
    pub serial: SerialConfig,
    /// Exit instead of rebooting when the guest resets (like QEMU's -no-reboot).
    #[arg(long)]
    pub no_reboot: bool,
    /// No ACPI tables (like QEMU's `-M microvm,acpi=off`): virtio devices are then announced
    /// on the kernel command line.
    #[arg(long)]
    pub no_acpi: bool,
    /// Announce virtio devices on the kernel command line too (virtio_mmio.device=...), for
    /// kernels built with VIRTIO_MMIO_CMDLINE_DEVICES.
    #[arg(long)]
    pub virtio_cmdline: bool,
    /// What SIGTERM does: shutdown (end the VMM) or powerdown (press the guest's power
    /// button; a guest that ignores it keeps running).
    #[arg(long, value_name = "ACTION", default_value = "shutdown", value_parser = config::parse_sigterm_action)]
    pub on_sigterm: config::SigtermAction,
    /// Boot entry: auto (PVH when the ELF has a PVH note), pvh or linux64.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = config::parse_boot_mode)]
    pub boot: BootMode,
    /// Add a virtio-blk disk: path=FILE[,readonly=on][,id=NAME] (repeatable).
    #[arg(long, value_name = "SPEC", value_parser = config::parse_disk)]
    pub disk: Vec<devices::virtio::BlockConfig>,
    /// Add a virtio-net interface on a tap: tap=NAME[,mac=MAC] (repeatable; the tap is
    /// created if it does not exist).
    #[arg(long, value_name = "SPEC", value_parser = config::parse_net)]
    pub net: Vec<devices::virtio::NetConfig>,
    /// Add a virtio-rng device (entropy from the host's getrandom).
    #[arg(long)]
    pub rng: bool,
    /// Domain name shown to management clients.
    #[arg(long, value_name = "NAME", default_value = "vmm", value_parser = config::parse_name)]
    pub name: String,
    /// Domain UUID (default: a random one).
    #[arg(long, value_name = "UUID", value_parser = config::parse_uuid)]
    pub uuid: Option<[u8; 16]>,
    #[command(flatten)]
    pub mgmt: MgmtArgs,
    /// Seccomp filters per thread: on (a forbidden system call kills the VMM), log (the
    /// kernel logs it instead) or off.
    #[arg(long, value_name = "MODE", default_value = "on", value_parser = crate::seccomp::parse_mode)]
    pub seccomp: crate::seccomp::SeccompMode,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "warn", value_parser = parse_log_level)]
    pub log_level: log::LevelFilter,
}

/// The management server's settings, shared by `run` and `serve`.
#[derive(Debug, clap::Args)]
pub struct MgmtArgs {
    /// Serve the libvirt remote protocol on this unix socket (virsh, libvirt-python).
    #[arg(long, value_name = "PATH")]
    pub mgmt_socket: Option<PathBuf>,
    /// A second socket that allows only read-only procedures.
    #[arg(long, value_name = "PATH", requires = "mgmt_socket")]
    pub mgmt_socket_ro: Option<PathBuf>,
    /// Permission bits of the management sockets (octal).
    #[arg(long, value_name = "MODE", default_value = "600", value_parser = config::parse_mode)]
    pub mgmt_socket_mode: u32,
    /// Most management clients connected at once.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub mgmt_max_clients: u32,
    /// Worker threads for management calls: started at once, at most, and for priority calls.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub mgmt_min_workers: u32,
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub mgmt_max_workers: u32,
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub mgmt_prio_workers: u32,
    /// Calls one client may have in flight before the server stops reading from it.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub mgmt_max_client_requests: u32,
    /// Seconds of silence before pinging a client that asked for keepalive (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub mgmt_keepalive_interval: u64,
    /// Unanswered pings before such a client is dropped.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub mgmt_keepalive_count: u32,
}

impl MgmtArgs {
    /// The management server's settings, if a socket was asked for.
    pub fn server_config(&self) -> Option<mgmt::ServerConfig> {
        let socket = self.mgmt_socket.clone()?;
        Some(mgmt::ServerConfig {
            socket,
            readonly_socket: self.mgmt_socket_ro.clone(),
            socket_mode: self.mgmt_socket_mode,
            max_clients: self.mgmt_max_clients as usize,
            min_workers: self.mgmt_min_workers as usize,
            max_workers: (self.mgmt_max_workers as usize).max(self.mgmt_min_workers as usize),
            prio_workers: self.mgmt_prio_workers as usize,
            max_client_requests: self.mgmt_max_client_requests as usize,
            keepalive_interval: self.mgmt_keepalive_interval,
            keepalive_count: self.mgmt_keepalive_count,
            ..mgmt::ServerConfig::default()
        })
    }
}

/// `vmm serve`: a management server with no domain until a client creates or defines one.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub mgmt: MgmtArgs,
    /// Keep the persistent domain here (NAME.xml); without it a defined domain lives only
    /// as long as the process.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How vCPU threads are placed on host CPUs when the domain XML does not pin them.
    #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = config::parse_vcpu_placement)]
    pub vcpu_placement: VcpuPlacement,
    /// Seccomp filters per thread: on (a forbidden system call kills the VMM), log (the
    /// kernel logs it instead) or off.
    #[arg(long, value_name = "MODE", default_value = "on", value_parser = crate::seccomp::parse_mode)]
    pub seccomp: crate::seccomp::SeccompMode,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "warn", value_parser = parse_log_level)]
    pub log_level: log::LevelFilter,
}

/// Kernel command line used for a user's kernel when none is given.
pub const DEFAULT_LINUX_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

impl RunArgs {
    /// The whole run's configuration: the VM, the management server, the log level.
    pub fn to_run_config(&self) -> Result<RunConfig, String> {
        Ok(RunConfig {
            vm: self.to_config()?,
            management: self.management(),
            log_level: self.log_level,
        })
    }

    /// Turns the arguments into a configuration, checking what clap cannot: files exist and
    /// the memory size fits this host. Errors name the flag.
    pub fn to_config(&self) -> Result<VmConfig, String> {
        if let Some(file) = &self.xml {
            return self.xml_config(file);
        }
        for (flag, path) in [("--kernel", &self.kernel), ("--initrd", &self.initrd)] {
            if let Some(path) = path {
                check_readable_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
            }
        }
        for disk in &self.disk {
            check_readable_file(&disk.path)
                .map_err(|e| format!("--disk path={}: {e}", disk.path.display()))?;
        }
        let memory = config::check_memory_size(self.memory, config::host_ram_bytes())
            .map_err(|e| format!("--memory: {e}"))?;
        let cpu_tune = self.cpu_tune()?;
        cpu_tune.resolve(self.cpus, affinity::process_cpus(), affinity::kvm_is_pvm())?;
        let kernel = match &self.kernel {
            Some(path) => KernelSource::File(config_path("--kernel ", path)?),
            None => KernelSource::Embedded,
        };
        let cmdline = match (&self.cmdline, &kernel) {
            (Some(c), _) => {
                config::check_xml_text(c).map_err(|e| format!("--cmdline: {e}"))?;
                c.clone()
            }
            (None, KernelSource::File(_)) => DEFAULT_LINUX_CMDLINE.to_string(),
            (None, KernelSource::Embedded) => String::new(),
        };
        let mut disks = self.disk.clone();
        for disk in &mut disks {
            disk.path = config_path("--disk path=", &disk.path)?;
        }
        let serial = match &self.serial {
            SerialConfig::File(path) => SerialConfig::File(config_path("--serial file=", path)?),
            other => other.clone(),
        };
        Ok(VmConfig {
            name: self.name.clone(),
            uuid: self.uuid.unwrap_or_else(config::random_uuid),
            kernel,
            initrd: (self.initrd.as_deref())
                .map(|path| config_path("--initrd ", path))
                .transpose()?,
            cmdline,
            cpus: self.cpus,
            memory,
            serial,
            no_reboot: self.no_reboot,
            boot: self.boot,
            rng: self.rng,
            disks,
            nets: self.net.clone(),
            acpi: !self.no_acpi,
            virtio_cmdline: self.virtio_cmdline || self.no_acpi,
            cpu_tune,
            on_sigterm: self.on_sigterm,
        })
    }

    /// The configuration a domain XML file describes, checked as the flags would be; the
    /// flags that XML cannot express (placement policy, boot entry, SIGTERM) still apply.
    fn xml_config(&self, file: &std::path::Path) -> Result<VmConfig, String> {
        let at = |e: String| format!("--xml {}: {e}", file.display());
        check_readable_file(file).map_err(at)?;
        let size = std::fs::metadata(file)
            .map_err(|e| at(describe_io_error(&e)))?
            .len();
        if size > crate::xml_config::XML_MAX as u64 {
            return Err(at(format!(
                "{size} bytes; at most {} are read",
                crate::xml_config::XML_MAX
            )));
        }
        let text = std::fs::read_to_string(file).map_err(|e| at(describe_io_error(&e)))?;
        let mut config = crate::xml_config::read_domain(&text, self.vcpu_placement)
            .map_err(at)?
            .config;
        config.boot = self.boot;
        config.on_sigterm = self.on_sigterm;
        config.virtio_cmdline = self.virtio_cmdline || !config.acpi;
        Ok(config)
    }

    /// The management server's settings, if a socket was asked for.
    pub fn management(&self) -> Option<mgmt::ServerConfig> {
        self.mgmt.server_config()
    }

    fn cpu_tune(&self) -> Result<CpuTune, String> {
        let mut tune = CpuTune {
            placement: self.vcpu_placement,
            emulator_pin: self.emulator_pin.clone(),
            ..CpuTune::default()
        };
        for (vcpu, cpus) in &self.vcpu_pin {
            if tune.vcpu_pins.insert(*vcpu, cpus.clone()).is_some() {
                return Err(format!(
                    "--vcpu-pin {vcpu}=...: vCPU {vcpu} is pinned twice"
                ));
            }
        }
        Ok(tune)
    }
}

/// A path as the configuration keeps it: absolute, since domain XML names files that way,
/// and in text XML can carry.
fn config_path(flag: &str, path: &std::path::Path) -> Result<PathBuf, String> {
    let at = |e: String| format!("{flag}{}: {e}", path.display());
    let text = path
        .to_str()
        .ok_or_else(|| at("the path is not UTF-8, which domain XML cannot name".into()))?;
    config::check_xml_text(text).map_err(|e| at(e.0))?;
    std::path::absolute(path).map_err(|e| at(describe_io_error(&e)))
}

fn parse_log_level(text: &str) -> Result<log::LevelFilter, String> {
    match text.parse::<log::LevelFilter>() {
        Ok(level) if level != log::LevelFilter::Off => Ok(level),
        _ => Err(format!(
            "'{text}' is not one of error, warn, info, debug, trace"
        )),
    }
}

/// A file we can open for reading and that is not a directory.
pub fn check_readable_file(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| describe_io_error(&e))?;
    let meta = file.metadata().map_err(|e| describe_io_error(&e))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    Ok(())
}

/// The OS error text without Rust's " (os error N)" suffix.
pub fn describe_io_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vmm").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).expect("valid arguments").command {
            Command::Run(r) => *r,
            Command::Serve(_) => panic!("not a run"),
        }
    }

    #[test]
    fn defaults_boot_the_embedded_guest() {
        let cfg = run_args(&["run"]).to_config().unwrap();
        assert_eq!(cfg.kernel, KernelSource::Embedded);
        assert_eq!(cfg.cpus, 1);
        assert_eq!(cfg.memory, 512 << 20);
        assert_eq!(cfg.serial, SerialConfig::Stdio);
        assert_eq!(cfg.cmdline, "");
        assert!(!cfg.no_reboot);
    }

    #[test]
    fn all_flags() {
        let r = run_args(&[
            "run",
            "--cpus",
            "2",
            "--memory",
            "1G",
            "--serial",
            "file=/tmp/s",
            "--no-reboot",
            "--cmdline",
            "end=exit",
            "--boot",
            "linux64",
            "--log-level",
            "debug",
        ]);
        let cfg = r.to_config().unwrap();
        assert_eq!(cfg.cpus, 2);
        assert_eq!(cfg.memory, 1 << 30);
        assert_eq!(cfg.serial, SerialConfig::File("/tmp/s".into()));
        assert!(cfg.no_reboot);
        assert_eq!(cfg.cmdline, "end=exit");
        assert_eq!(cfg.boot, BootMode::Linux64);
        assert_eq!(r.log_level, log::LevelFilter::Debug);
        assert!(r.management().is_none());
    }

    #[test]
    fn management_flags() {
        let r = run_args(&[
            "run",
            "--name",
            "web",
            "--uuid",
            "6695eb01-f6a4-8304-79aa-97f2502e193f",
            "--mgmt-socket",
            "/tmp/s",
            "--mgmt-socket-ro",
            "/tmp/r",
            "--mgmt-max-client-requests",
            "3",
            "--mgmt-socket-mode",
            "660",
        ]);
        let cfg = r.to_config().unwrap();
        assert_eq!(cfg.name, "web");
        assert_eq!(cfg.uuid[0], 0x66);
        let m = r.management().unwrap();
        assert_eq!(m.socket, PathBuf::from("/tmp/s"));
        assert_eq!(m.readonly_socket, Some(PathBuf::from("/tmp/r")));
        assert_eq!((m.max_client_requests, m.socket_mode), (3, 0o660));
        assert!(
            parse(&["run", "--mgmt-socket-ro", "/tmp/r"]).is_err(),
            "ro needs the main socket"
        );
        assert!(parse(&["run", "--mgmt-max-client-requests", "0"]).is_err());
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["run", "--cpus", "0"][..], "--cpus"),
            (&["run", "--memory", "lots"][..], "--memory"),
            (&["run", "--serial", "tcp"][..], "--serial"),
            (&["run", "--log-level", "loud"][..], "--log-level"),
            (&["run", "--vcpu-pin", "0"][..], "--vcpu-pin"),
            (&["run", "--vcpu-pin", "x=1"][..], "--vcpu-pin"),
            (&["run", "--vcpu-pin", "0=3-1"][..], "--vcpu-pin"),
            (&["run", "--emulator-pin", "a"][..], "--emulator-pin"),
            (
                &["run", "--vcpu-placement", "tight"][..],
                "--vcpu-placement",
            ),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn pins_are_checked_against_this_process() {
        let allowed = affinity::process_cpus();
        let outside = allowed.last().unwrap() + 1;
        let e = run_args(&["run", "--vcpu-pin", &format!("0={outside}")])
            .to_config()
            .unwrap_err();
        assert!(
            e.starts_with(&format!(
                "--vcpu-pin 0={outside}: host CPU {outside} is not available to this process"
            )),
            "{e}"
        );
        let e = run_args(&["run", "--emulator-pin", &outside.to_string()])
            .to_config()
            .unwrap_err();
        assert!(e.starts_with("--emulator-pin"), "{e}");
        let e = run_args(&["run", "--cpus", "2", "--vcpu-pin", "2=0"])
            .to_config()
            .unwrap_err();
        assert_eq!(e, "--vcpu-pin 2=0: there is no vCPU 2 (--cpus 2)");
        let e = run_args(&["run", "--vcpu-pin", "0=0", "--vcpu-pin", "0=0"])
            .to_config()
            .unwrap_err();
        assert!(e.contains("pinned twice"), "{e}");
        let first = allowed.first().unwrap().to_string();
        let cfg = run_args(&[
            "run",
            "--vcpu-pin",
            &format!("0={first}"),
            "--vcpu-placement",
            "none",
        ])
        .to_config()
        .unwrap();
        assert_eq!(cfg.cpu_tune.placement, VcpuPlacement::None);
        assert_eq!(cfg.cpu_tune.vcpu_pins[&0].to_string(), first);
    }

    #[test]
    fn missing_kernel_file_is_named() {
        let e = run_args(&["run", "--kernel", "/nonexistent/vmlinux"])
            .to_config()
            .unwrap_err();
        assert_eq!(
            e,
            "--kernel /nonexistent/vmlinux: No such file or directory"
        );
        let e = run_args(&["run", "--kernel", "/tmp"])
            .to_config()
            .unwrap_err();
        assert_eq!(e, "--kernel /tmp: is a directory");
    }

    #[test]
    fn memory_too_small_is_named() {
        let e = run_args(&["run", "--memory", "1M"])
            .to_config()
            .unwrap_err();
        assert!(e.starts_with("--memory: 1 MiB is too small"), "{e}");
    }

    #[test]
    fn user_kernel_gets_a_console_cmdline() {
        let exe = std::env::current_exe().unwrap();
        let cfg = run_args(&["run", "--kernel", exe.to_str().unwrap()])
            .to_config()
            .unwrap();
        assert_eq!(cfg.cmdline, DEFAULT_LINUX_CMDLINE);
    }
}
