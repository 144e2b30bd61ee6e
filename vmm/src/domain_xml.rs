//! The VM's configuration as libvirt domain XML (what `virsh dumpxml` prints), valid against
//! libvirt's domain schema: the devices monitoring tools look for (disks, interfaces, the
//! console) and the run-time facts that differ from the configuration (id, real pinning).

use std::fmt::Write;

use mgmt::cpuset::CpuSet;
use mgmt::remote::domain::format_uuid;

use crate::config::{KernelSource, SerialConfig, VmConfig};

/// What the running VM adds to its configuration. `None` everywhere gives the inactive XML.
#[derive(Clone, Debug, Default)]
pub struct LiveFacts {
    /// The run's domain id.
    pub id: Option<i32>,
    /// The vCPU threads' real affinities, where they differ from anywhere-allowed.
    pub vcpu_pins: Vec<(usize, CpuSet)>,
    /// The other threads' real affinity, where it differs from anywhere-allowed.
    pub emulator_pin: Option<CpuSet>,
}

/// A guest disk's name by its position: vda, vdb, ... vdz, vdaa, ...
pub fn disk_target(index: usize) -> String {
    let mut name = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        name.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    name.reverse();
    format!("vd{}", String::from_utf8_lossy(&name))
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub use mgmt::xml::escape;

/// The guest's clock: the host's UTC through kvm-clock, and none of the PC's timers.
const CLOCK: &str = "  <clock offset='utc'>
    <timer name='rtc' present='no'/>
    <timer name='pit' present='no'/>
    <timer name='hpet' present='no'/>
  </clock>
";

/// The whole document. `live` is None for the inactive configuration (`--inactive`).
pub fn domain_xml(config: &VmConfig, live: Option<&LiveFacts>, emulator: &str) -> String {
    let mut x = String::new();
    let id = live
        .and_then(|l| l.id)
        .map(|id| format!(" id='{id}'"))
        .unwrap_or_default();
    let kib = config.memory / 1024;
    let _ = writeln!(x, "<domain type='kvm'{id}>");
    let _ = writeln!(x, "  <name>{}</name>", escape(&config.name));
    let _ = writeln!(x, "  <uuid>{}</uuid>", format_uuid(&config.uuid));
    let _ = writeln!(x, "  <memory unit='KiB'>{kib}</memory>");
    let _ = writeln!(x, "  <currentMemory unit='KiB'>{kib}</currentMemory>");
    let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", config.cpus);
    x += &cputune(config, live);
    x += &os(config);
    if config.acpi {
        x += "  <features>\n    <acpi/>\n  </features>\n";
    }
    // A guest poweroff or crash leaves the domain shut off (the process goes on serving);
    // a guest reboot restarts it unless --no-reboot.
    let on_reboot = if config.no_reboot {
        "destroy"
    } else {
        "restart"
    };
    let _ = writeln!(x, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(x, "  <on_reboot>{on_reboot}</on_reboot>");
    let _ = writeln!(x, "  <on_crash>destroy</on_crash>");
    x += CLOCK;
    x += "  <devices>\n";
    let _ = writeln!(x, "    <emulator>{}</emulator>", escape(emulator));
    x += &disks(config);
    x += &interfaces(config);
    x += &serial(&config.serial);
    if config.rng {
        x += "    <rng model='virtio'>\n      <backend model='builtin'/>\n    </rng>\n";
    }
    x += "    <controller type='usb' model='none'/>\n";
    x += "    <memballoon model='none'/>\n";
    x += "  </devices>\n</domain>\n";
    x
}

/// `<cputune>`: the real placement when running, the configured pins otherwise.
fn cputune(config: &VmConfig, live: Option<&LiveFacts>) -> String {
    let (vcpus, emulator): (Vec<(usize, CpuSet)>, Option<CpuSet>) = match live {
        Some(l) => (l.vcpu_pins.clone(), l.emulator_pin.clone()),
        None => (
            config
                .cpu_tune
                .vcpu_pins
                .iter()
                .map(|(v, cpus)| (usize::from(*v), cpus.clone()))
                .collect(),
            config.cpu_tune.emulator_pin.clone(),
        ),
    };
    let mut pins = String::new();
    for (vcpu, cpus) in vcpus {
        let _ = writeln!(pins, "    <vcpupin vcpu='{vcpu}' cpuset='{cpus}'/>");
    }
    if let Some(cpus) = emulator {
        let _ = writeln!(pins, "    <emulatorpin cpuset='{cpus}'/>");
    }
    if pins.is_empty() {
        return pins;
    }
    format!("  <cputune>\n{pins}  </cputune>\n")
}

fn os(config: &VmConfig) -> String {
    let mut x = String::from("  <os>\n    <type arch='x86_64' machine='vmm'>hvm</type>\n");
    // No <kernel>: the built-in test guest (it has no file, and the schema wants a path).
    if let KernelSource::File(kernel) = &config.kernel {
        let _ = writeln!(
            x,
            "    <kernel>{}</kernel>",
            escape(&kernel.display().to_string())
        );
    }
    if let Some(initrd) = &config.initrd {
        let _ = writeln!(
            x,
            "    <initrd>{}</initrd>",
            escape(&initrd.display().to_string())
        );
    }
    if !config.cmdline.is_empty() {
        let _ = writeln!(x, "    <cmdline>{}</cmdline>", escape(&config.cmdline));
    }
    x += "  </os>\n";
    x
}

fn disks(config: &VmConfig) -> String {
    let mut x = String::new();
    for (index, disk) in config.disks.iter().enumerate() {
        x += "    <disk type='file' device='disk'>\n";
        x += "      <driver name='vmm' type='raw'/>\n";
        let _ = writeln!(
            x,
            "      <source file='{}'/>",
            escape(&disk.path.display().to_string())
        );
        let _ = writeln!(
            x,
            "      <target dev='{}' bus='virtio'/>",
            disk_target(index)
        );
        if disk.readonly {
            x += "      <readonly/>\n";
        }
        if !disk.id.is_empty() {
            let _ = writeln!(x, "      <serial>{}</serial>", escape(&disk.id));
        }
        x += "    </disk>\n";
    }
    x
}

fn interfaces(config: &VmConfig) -> String {
    let mut x = String::new();
    for net in &config.nets {
        x += "    <interface type='ethernet'>\n";
        let _ = writeln!(x, "      <mac address='{}'/>", format_mac(&net.mac));
        let _ = writeln!(x, "      <target dev='{}' managed='no'/>", escape(&net.tap));
        x += "      <model type='virtio'/>\n    </interface>\n";
    }
    x
}

/// The 8250 at COM1 as `<serial>`, and the console on it, as libvirt pairs them.
fn serial(config: &SerialConfig) -> String {
    let (kind, source) = match config {
        SerialConfig::Stdio => ("stdio", String::new()),
        SerialConfig::File(path) => (
            "file",
            format!(
                "      <source path='{}'/>\n",
                escape(&path.display().to_string())
            ),
        ),
        SerialConfig::None => ("null", String::new()),
    };
    format!(
        "    <serial type='{kind}'>\n{source}      <target type='isa-serial' port='0'/>\n    </serial>\n    <console type='{kind}'>\n{source}      <target type='serial' port='0'/>\n    </console>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::virtio::{BlockConfig, NetConfig};
    use std::path::PathBuf;

    #[test]
    fn disk_targets_count_like_libvirt() {
        assert_eq!(disk_target(0), "vda");
        assert_eq!(disk_target(25), "vdz");
        assert_eq!(disk_target(26), "vdaa");
        assert_eq!(disk_target(27), "vdab");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & 'c'"), "a&lt;b &amp; &apos;c&apos;");
    }

    fn full_config() -> VmConfig {
        VmConfig {
            name: "web&1".into(),
            disks: vec![
                BlockConfig {
                    path: PathBuf::from("/var/a.img"),
                    readonly: false,
                    id: "disk0".into(),
                },
                BlockConfig {
                    path: PathBuf::from("/var/b.iso"),
                    readonly: true,
                    id: String::new(),
                },
            ],
            nets: vec![NetConfig {
                tap: "tap7".into(),
                mac: [0x52, 0x54, 0, 1, 2, 3],
            }],
            rng: true,
            serial: SerialConfig::File(PathBuf::from("/tmp/console.log")),
            ..VmConfig::default()
        }
    }

    #[test]
    fn devices_are_described() {
        let live = LiveFacts {
            id: Some(3),
            vcpu_pins: vec![(0, CpuSet::single(1))],
            emulator_pin: None,
        };
        let xml = domain_xml(&full_config(), Some(&live), "/usr/bin/vmm");
        for want in [
            "<domain type='kvm' id='3'>",
            "<name>web&amp;1</name>",
            "<source file='/var/a.img'/>",
            "<target dev='vda' bus='virtio'/>",
            "<serial>disk0</serial>",
            "<target dev='vdb' bus='virtio'/>\n      <readonly/>",
            "<mac address='52:54:00:01:02:03'/>",
            "<target dev='tap7' managed='no'/>",
            "<model type='virtio'/>",
            "<backend model='builtin'/>",
            "<serial type='file'>\n      <source path='/tmp/console.log'/>",
            "<console type='file'>",
            "<vcpupin vcpu='0' cpuset='1'/>",
            "<features>\n    <acpi/>\n  </features>",
            "<on_reboot>restart</on_reboot>",
        ] {
            assert!(xml.contains(want), "missing {want:?} in\n{xml}");
        }
    }

    #[test]
    fn inactive_has_no_id_and_the_configured_pins() {
        let mut config = full_config();
        config.acpi = false;
        config.no_reboot = true;
        config.cpu_tune.emulator_pin = Some(CpuSet::single(0));
        let xml = domain_xml(&config, None, "vmm");
        assert!(xml.starts_with("<domain type='kvm'>"));
        assert!(xml.contains("<emulatorpin cpuset='0'/>"));
        assert!(!xml.contains("<acpi/>"));
        assert!(xml.contains("<on_reboot>destroy</on_reboot>"));
    }
}
