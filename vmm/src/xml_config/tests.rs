use std::path::PathBuf;

use devices::virtio::{BlockConfig, NetConfig};
use mgmt::cpuset::CpuSet;

use super::*;
use crate::domain_xml::domain_xml;

fn round_trip(config: &VmConfig) {
    let xml = domain_xml(config, None, "/usr/bin/vmm");
    let back = parse_domain_xml(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(&back, config, "{xml}");
}

fn full() -> VmConfig {
    let mut config = VmConfig {
        name: "web&1".into(),
        kernel: KernelSource::File("/boot/vmlinuz".into()),
        initrd: Some("/boot/initrd.img".into()),
        cmdline: "console=ttyS0 panic=-1".into(),
        cpus: 3,
        memory: 256 << 20,
        serial: SerialConfig::File("/tmp/console.log".into()),
        no_reboot: true,
        rng: true,
        disks: vec![
            BlockConfig {
                path: "/var/a.img".into(),
                readonly: false,
                id: "disk0".into(),
            },
            BlockConfig {
                path: "/var/b.iso".into(),
                readonly: true,
                id: String::new(),
            },
        ],
        nets: vec![NetConfig {
            tap: "tap0".into(),
            mac: [0x52, 0x54, 0, 1, 2, 3],
        }],
        ..VmConfig::default()
    };
    config.cpu_tune.vcpu_pins.insert(1, CpuSet::single(0));
    config.cpu_tune.emulator_pin = Some(CpuSet::parse("0-1").unwrap());
    config
}

#[test]
fn what_dumpxml_writes_reads_back_the_same() {
    round_trip(&VmConfig::default());
    round_trip(&full());
    round_trip(&VmConfig {
        acpi: false,
        serial: SerialConfig::None,
        ..VmConfig::default()
    });
    round_trip(&VmConfig {
        serial: SerialConfig::Stdio,
        ..full()
    });
}

/// libvirt's own style of document (as virsh dumpxml of a QEMU domain prints it), trimmed to
/// what this VMM supports.
const LIBVIRT_STYLE: &str = r#"<domain type='kvm'>
  <name>demo</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <title>A demo</title>
  <memory unit='MiB'>128</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <kernel>/boot/vmlinuz</kernel>
    <cmdline>console=ttyS0</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/demo.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='52:54:00:aa:bb:cc'/>
      <target dev='vnet7'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target type='isa-serial' port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>"#;

#[test]
fn a_libvirt_style_document_maps_onto_the_configuration() {
    let config = parse_domain_xml(LIBVIRT_STYLE).unwrap();
    assert_eq!(config.name, "demo");
    assert_eq!((config.cpus, config.memory), (2, 128 << 20));
    assert_eq!(config.kernel, KernelSource::File("/boot/vmlinuz".into()));
    assert!(config.acpi && config.rng && !config.no_reboot);
    assert_eq!(
        config.disks[0].path,
        PathBuf::from("/var/lib/libvirt/images/demo.img")
    );
    assert_eq!(config.nets[0].tap, "vnet7");
    assert_eq!(config.nets[0].mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
    assert_eq!(config.serial, SerialConfig::Stdio);
}

fn refused(xml: &str) -> String {
    match parse_domain_xml(xml) {
        Ok(_) => panic!("accepted:\n{xml}"),
        Err(e) => e.0,
    }
}

#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let with = |from: &str, to: &str| {
        assert!(LIBVIRT_STYLE.contains(from), "{from}");
        LIBVIRT_STYLE.replace(from, to)
    };
    for (xml, named) in [
        (
            with("<memballoon", "<graphics type='vnc'/><memballoon"),
            "element <graphics>",
        ),
        (with("type='raw'", "type='qcow2'"), "type='qcow2'"),
        (
            with("<disk type='file'", "<disk type='network'"),
            "type='network'",
        ),
        (
            with("<interface type='ethernet'>", "<interface type='network'>"),
            "type='network'",
        ),
        (
            with(
                "<model type='virtio'/>",
                "<model type='virtio'/><address type='pci' bus='0x01'/>",
            ),
            "element <address>",
        ),
        (with("<acpi/>", "<acpi/><hyperv/>"), "element <hyperv>"),
        (
            with("<memballoon", "<controller type='usb' model='ich9-ehci1'/><memballoon"),
            "model='ich9-ehci1'",
        ),
        (
            with(
                "<on_poweroff>",
                "<clock offset='utc'><timer name='hpet' present='yes'/></clock><on_poweroff>",
            ),
            "<timer name='hpet'>",
        ),
        (
            with("<on_poweroff>", "<clock offset='localtime'/><on_poweroff>"),
            "offset='localtime'",
        ),
        (with("type='kvm'", "type='qemu'"), "type='qemu'"),
        (with("dev='vda'", "dev='vdb'"), "vdb"),
        (with("131072", "65536"), "currentMemory"),
        (with("<on_crash>destroy", "<on_crash>preserve"), "preserve"),
        (
            with(
                "<memory unit='MiB'>128</memory>\n  <currentMemory unit='KiB'>131072</currentMemory>",
                "<memory unit='MiB'>1</memory>",
            ),
            "too small",
        ),
        (with("52:54:00:aa:bb:cc", "53:54:00:aa:bb:cc"), "multicast"),
        (
            with("<kernel>/boot/vmlinuz", "<kernel>vmlinuz"),
            "absolute path",
        ),
        (with("<vcpu placement='static'>2", "<vcpu>0"), "0 vCPUs"),
        (with("<name>demo</name>", ""), "needs a <name>"),
        (with("</devices>", "</devices"), "malformed XML"),
    ] {
        let error = refused(&xml);
        assert!(error.contains(named), "want {named:?} in {error:?}");
    }
    let huge = format!("<domain>{}</domain>", " ".repeat(XML_MAX));
    assert!(refused(&huge).contains("at most"));
}
