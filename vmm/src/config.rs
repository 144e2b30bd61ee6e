//! The VM's configuration as the launcher understood it, and the parsers for its values.
//!
//! Every parser returns an error message meant for one terminal line; the CLI adds the flag.

use std::fmt;
use std::path::PathBuf;

use mgmt::cpuset::CpuSet;

use crate::placement::{CpuTune, VcpuPlacement};

/// The guest map's limits: the smallest RAM it lays out, and the most vCPUs its MP table and
/// MADT describe.
pub use crate::arch::x86_64::layout::{MAX_VCPUS, MIN_MEMORY};

/// Where the guest's serial console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialConfig {
    Stdio,
    File(PathBuf),
    None,
}

/// Which entry point the kernel is started at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootMode {
    /// PVH when the ELF has a PVH note, the Linux 64-bit protocol otherwise.
    #[default]
    Auto,
    Pvh,
    Linux64,
}

/// Where the kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The test guest built into this binary.
    Embedded,
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The domain's name and UUID, as management clients see them.
    pub name: String,
    pub uuid: [u8; 16],
    pub kernel: KernelSource,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    pub memory: u64,
    pub serial: SerialConfig,
    pub no_reboot: bool,
    pub boot: BootMode,
    /// A virtio-rng device fed from the host's getrandom.
    pub rng: bool,
    /// virtio-blk disks, in order.
    pub disks: Vec<devices::virtio::BlockConfig>,
    /// virtio-net interfaces on taps, in order.
    pub nets: Vec<devices::virtio::NetConfig>,
    /// ACPI tables (how distro kernels find virtio-mmio devices, CPUs and the power button).
    pub acpi: bool,
    /// Also announce the virtio-mmio devices on the kernel command line
    /// (`virtio_mmio.device=`), for kernels built with VIRTIO_MMIO_CMDLINE_DEVICES. Always on
    /// without ACPI, since nothing else would tell the guest where they are.
    pub virtio_cmdline: bool,
    /// Which host CPUs the vCPU threads and the other threads run on.
    pub cpu_tune: CpuTune,
    /// SIGTERM stops the VM at once (QEMU's default) or presses the power button.
    pub on_sigterm: SigtermAction,
}

/// Everything one run of the VMM is given: the VM, its management server if any, and the log
/// level. Built from the CLI (later also from domain XML); main reads nothing else.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub vm: VmConfig,
    pub management: Option<mgmt::ServerConfig>,
    pub log_level: log::LevelFilter,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            name: "vmm".to_string(),
            uuid: random_uuid(),
            kernel: KernelSource::Embedded,
            initrd: None,
            cmdline: String::new(),
            cpus: 1,
            memory: 512 << 20,
            serial: SerialConfig::Stdio,
            no_reboot: false,
            boot: BootMode::Auto,
            rng: false,
            disks: Vec::new(),
            nets: Vec::new(),
            acpi: true,
            virtio_cmdline: false,
            cpu_tune: CpuTune::default(),
            on_sigterm: SigtermAction::Shutdown,
        }
    }
}

impl VmConfig {
    /// The kernel's file, unless it is the built-in test guest.
    pub fn kernel_path(&self) -> Option<PathBuf> {
        match &self.kernel {
            KernelSource::File(path) => Some(path.clone()),
            KernelSource::Embedded => None,
        }
    }
}

pub use mgmt::remote::domain::random_uuid;

/// Parses a UUID (with or without dashes).
pub fn parse_uuid(text: &str) -> Result<[u8; 16], ParseError> {
    mgmt::remote::domain::parse_uuid(text).ok_or_else(|| {
        ParseError(format!(
            "'{text}' is not a UUID (like 6695eb01-f6a4-8304-79aa-97f2502e193f)"
        ))
    })
}

/// Parses a domain name: what libvirt clients can pass around unquoted.
pub fn parse_name(text: &str) -> Result<String, ParseError> {
    if text.is_empty()
        || text.len() > 256
        || text.contains('/')
        || text.chars().any(char::is_control)
        || check_xml_text(text).is_err()
    {
        return err(format!(
            "'{text}' is not a usable domain name (1-256 characters, no '/' or control characters)"
        ));
    }
    Ok(text.to_string())
}

/// Refuses text that domain XML cannot carry: XML 1.0 has no control characters but tab,
/// newline and carriage return, and no U+FFFE or U+FFFF. Whatever the CLI accepts, `virsh
/// dumpxml` can then print and `virsh define` read back.
pub fn check_xml_text(text: &str) -> Result<(), ParseError> {
    let unwritable = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    match text.chars().find(|&c| unwritable(c)) {
        Some(c) => err(format!(
            "{:?} contains {c:?}, which domain XML cannot carry",
            text
        )),
        None => Ok(()),
    }
}

/// Parses octal permission bits such as 600 or 0660.
pub fn parse_mode(text: &str) -> Result<u32, ParseError> {
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => err(format!("'{text}' is not an octal permission mode like 600")),
    }
}

/// Parses `VCPU=CPULIST`, e.g. `0=2` or `1=0-3,^2`.
pub fn parse_vcpu_pin(text: &str) -> Result<(u8, CpuSet), ParseError> {
    let (vcpu, cpus) = text
        .split_once('=')
        .ok_or_else(|| ParseError(format!("'{text}' is not VCPU=CPULIST (like 0=2 or 1=0-3)")))?;
    let vcpu = vcpu
        .trim()
        .parse::<u8>()
        .map_err(|_| ParseError(format!("'{vcpu}' is not a vCPU number")))?;
    Ok((vcpu, parse_cpu_list(cpus)?))
}

/// Parses a host CPU list such as `0-3,^2`.
pub fn parse_cpu_list(text: &str) -> Result<CpuSet, ParseError> {
    CpuSet::parse(text).map_err(ParseError)
}

pub fn parse_vcpu_placement(text: &str) -> Result<VcpuPlacement, ParseError> {
    match text {
        "auto" => Ok(VcpuPlacement::Auto),
        "spread" => Ok(VcpuPlacement::Spread),
        "none" => Ok(VcpuPlacement::None),
        _ => err(format!("'{text}' is not one of auto, spread, none")),
    }
}

/// Parses `path=FILE[,readonly=on|off][,id=NAME]`.
pub fn parse_disk(text: &str) -> Result<devices::virtio::BlockConfig, ParseError> {
    let mut path = None;
    let mut readonly = false;
    let mut id = None;
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| ParseError(format!("'{part}' is not KEY=VALUE")))?;
        match key {
            "path" if !value.is_empty() => {
                check_xml_text(value)?;
                path = Some(PathBuf::from(value))
            }
            "readonly" => {
                readonly = match value {
                    "on" | "true" | "yes" => true,
                    "off" | "false" | "no" => false,
                    _ => return err(format!("readonly={value}: use on or off")),
                }
            }
            "id" if value.len() <= 20 => {
                check_xml_text(value)?;
                id = Some(value.to_string())
            }
            "id" => return err(format!("id={value}: at most 20 bytes (virtio-blk's limit)")),
            _ => {
                return err(format!(
                    "'{part}': expected path=FILE, readonly=on|off or id=NAME"
                ))
            }
        }
    }
    let path = path.ok_or_else(|| ParseError("path=FILE is required".into()))?;
    Ok(devices::virtio::BlockConfig {
        path,
        readonly,
        id: id.unwrap_or_default(),
    })
}

/// Parses `tap=NAME[,mac=MAC]`; without a MAC, a random locally administered one.
pub fn parse_net(text: &str) -> Result<devices::virtio::NetConfig, ParseError> {
    let mut tap = None;
    let mut mac = None;
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("tap", name)) if !name.is_empty() && name.len() < 16 => {
                check_xml_text(name)?;
                tap = Some(name.to_string())
            }
            Some(("tap", name)) => {
                return err(format!("tap={name}: an interface name of 1 to 15 bytes"))
            }
            Some(("mac", text)) => mac = Some(parse_mac(text)?),
            _ => return err(format!("'{part}': expected tap=NAME or mac=MAC")),
        }
    }
    let tap = tap.ok_or_else(|| ParseError("tap=NAME is required".into()))?;
    let mac = mac.unwrap_or_else(|| {
        let u = random_uuid();
        [0x52, 0x54, 0x00, u[0], u[1], u[2]] // QEMU's locally administered prefix
    });
    Ok(devices::virtio::NetConfig { tap, mac })
}

fn parse_mac(text: &str) -> Result<[u8; 6], ParseError> {
    let bad = || ParseError(format!("mac={text}: six hex bytes like 52:54:00:12:34:56"));
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 != 0 {
        return err(format!(
            "mac={text}: a multicast address cannot be an interface's"
        ));
    }
    Ok(mac)
}

/// A value the user gave that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Parses a memory size the way QEMU's `-m` does: a bare number is MiB; K, M, G, T suffixes
/// (optionally followed by `iB` or `B`, any case) scale it.
pub fn parse_memory_size(text: &str) -> Result<u64, ParseError> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    if number.is_empty() {
        return err(format!("'{text}' is not a size (examples: 512M, 2G, 1024)"));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| ParseError(format!("'{text}' is too large")))?;
    let unit = suffix.to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" if unit.is_empty() => 20,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return err(format!("'{text}' has an unknown unit (use K, M, G or T)")),
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| ParseError(format!("'{text}' is too large")))
}

/// Checks a memory size against what the loader needs and what this host has.
pub fn check_memory_size(bytes: u64, host_ram: Option<u64>) -> Result<u64, ParseError> {
    if bytes < MIN_MEMORY {
        return err(format!(
            "{} is too small: the guest needs at least {} MiB",
            format_size(bytes),
            MIN_MEMORY >> 20
        ));
    }
    if !bytes.is_multiple_of(4096) {
        return err(format!(
            "{bytes} bytes is not a whole number of 4 KiB pages"
        ));
    }
    if let Some(host) = host_ram {
        if bytes > host {
            return err(format!(
                "{} is more than this host's {} of RAM",
                format_size(bytes),
                format_size(host)
            ));
        }
    }
    Ok(bytes)
}

/// Formats a byte count with the largest unit that divides it.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Total RAM of this host (MemTotal from /proc/meminfo), if it can be read.
pub fn host_ram_bytes() -> Option<u64> {
    mgmt::host::memory_total_kib()?.checked_mul(1024)
}

/// Parses `stdio`, `none` or `file=PATH`.
pub fn parse_serial(text: &str) -> Result<SerialConfig, ParseError> {
    match text {
        "stdio" => Ok(SerialConfig::Stdio),
        "none" => Ok(SerialConfig::None),
        _ => match text.strip_prefix("file=") {
            Some("") => err("file= needs a path (file=PATH)"),
            Some(path) => {
                check_xml_text(path)?;
                Ok(SerialConfig::File(PathBuf::from(path)))
            }
            None => err(format!("'{text}' is not one of stdio, file=PATH, none")),
        },
    }
}

/// Parses a vCPU count: 1 to [`MAX_VCPUS`].
pub fn parse_cpus(text: &str) -> Result<u8, ParseError> {
    let n: u32 = text
        .trim()
        .parse()
        .map_err(|_| ParseError(format!("'{text}' is not a number of vCPUs")))?;
    if n == 0 || n > u32::from(MAX_VCPUS) {
        return err(format!("{n} vCPUs: must be between 1 and {MAX_VCPUS}"));
    }
    Ok(n as u8)
}

/// What SIGTERM asks of the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigtermAction {
    Shutdown,
    Powerdown,
}

pub fn parse_sigterm_action(text: &str) -> Result<SigtermAction, ParseError> {
    match text {
        "shutdown" => Ok(SigtermAction::Shutdown),
        "powerdown" => Ok(SigtermAction::Powerdown),
        _ => err(format!("'{text}' is not one of shutdown, powerdown")),
    }
}

/// Parses `auto`, `pvh` or `linux64`.
pub fn parse_boot_mode(text: &str) -> Result<BootMode, ParseError> {
    match text {
        "auto" => Ok(BootMode::Auto),
        "pvh" => Ok(BootMode::Pvh),
        "linux64" => Ok(BootMode::Linux64),
        _ => err(format!("'{text}' is not one of auto, pvh, linux64")),
    }
}

#[cfg(test)]
mod tests;
