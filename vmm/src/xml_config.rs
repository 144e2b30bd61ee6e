//! Reads libvirt domain XML into the VM configuration: the subset of libvirt's domain schema
//! this VMM can honour, the same subset `domain_xml` writes. Anything else is refused with
//! an error naming the element or attribute, never dropped: a user who asked for a graphics
//! card or a qcow2 disk must hear that they will not get it. Values go through the CLI's
//! parsers, so they are checked the same way and fail with the same messages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use devices::virtio::{BlockConfig, NetConfig};
use roxmltree::{Document, Node};

use crate::affinity;
use crate::cli::check_readable_file;
use crate::config::{
    self, parse_cpu_list, parse_cpus, parse_name, parse_uuid, KernelSource, ParseError,
    SerialConfig, VmConfig,
};
use crate::domain_xml::disk_target;
use crate::placement::VcpuPlacement;

/// The largest document read (libvirt's own limit for a domain XML is 10 MiB; ours is
/// smaller because a one-domain VMM never needs more).
pub const XML_MAX: usize = 1 << 20;

fn fail<T>(message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(message.into()))
}

fn name_of(node: Node) -> String {
    format!("<{}>", node.tag_name().name())
}

/// Refuses attributes of `node` outside `allowed`.
fn only_attributes(node: Node, allowed: &[&str]) -> Result<(), ParseError> {
    for attribute in node.attributes() {
        if !allowed.contains(&attribute.name()) {
            return fail(format!(
                "attribute '{}' of {} is not supported",
                attribute.name(),
                name_of(node)
            ));
        }
    }
    Ok(())
}

/// The element children of `node`, refusing any not in `allowed`.
fn children<'a, 'i>(node: Node<'a, 'i>, allowed: &[&str]) -> Result<Vec<Node<'a, 'i>>, ParseError> {
    let mut out = Vec::new();
    for child in node.children().filter(Node::is_element) {
        if !allowed.contains(&child.tag_name().name()) {
            return fail(format!(
                "element {} in {} is not supported",
                name_of(child),
                name_of(node)
            ));
        }
        out.push(child);
    }
    Ok(out)
}

/// A keyword's or a number's text: surrounding whitespace is layout.
fn text(node: Node) -> String {
    raw_text(node).trim().to_string()
}

/// A name's, a path's or a command line's text, exactly as written (what `domain_xml`
/// writes reads back the same, spaces included, as libvirt reads it).
fn raw_text(node: Node) -> String {
    node.text().unwrap_or("").to_string()
}

/// An attribute that must be there, with one of `values` when those are given.
fn attribute<'a>(node: Node<'a, '_>, name: &str, values: &[&str]) -> Result<&'a str, ParseError> {
    let value = node
        .attribute(name)
        .ok_or_else(|| ParseError(format!("{} needs the attribute '{name}'", name_of(node))))?;
    if !values.is_empty() && !values.contains(&value) {
        return fail(format!(
            "{name}='{value}' of {} is not supported (only {})",
            name_of(node),
            values.join(", ")
        ));
    }
    Ok(value)
}

/// An optional attribute that, when given, must be one of `values`.
fn optional(node: Node, name: &str, values: &[&str]) -> Result<(), ParseError> {
    if node.attribute(name).is_some() {
        attribute(node, name, values)?;
    }
    Ok(())
}

/// `<memory unit='KiB'>N</memory>` in bytes; libvirt's units (b, KiB, MiB, GB, ...).
fn memory_bytes(node: Node) -> Result<u64, ParseError> {
    only_attributes(node, &["unit"])?;
    let value: u64 = text(node).parse().map_err(|_| {
        ParseError(format!(
            "{} '{}' is not a number",
            name_of(node),
            text(node)
        ))
    })?;
    let unit = node.attribute("unit").unwrap_or("KiB");
    let scale: u64 = match unit {
        "b" | "bytes" => 1,
        "k" | "KiB" => 1 << 10,
        "KB" => 1000,
        "M" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "G" | "GiB" => 1 << 30,
        "GB" => 1_000_000_000,
        "T" | "TiB" => 1 << 40,
        "TB" => 1_000_000_000_000,
        _ => return fail(format!("unit='{unit}' of {} is not a unit", name_of(node))),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| ParseError(format!("{} is too large", name_of(node))))
}

/// Reads a domain document. Paths are not opened here: the machine opens them and reports
/// what is missing, as it does for the CLI's.
pub fn parse_domain_xml(xml: &str) -> Result<VmConfig, ParseError> {
    parse_document(xml).map(|document| document.config)
}

/// A domain document read, and whether it named its UUID (a define without one adopts the
/// defined domain's, as virsh's users expect when they edit by name).
pub struct DomainDocument {
    pub config: VmConfig,
    pub has_uuid: bool,
}

/// Reads a domain document and checks what the machine will need of this host, as the CLI
/// checks its flags: the files can be read, the memory fits, the vCPU placement resolves
/// under `placement`. Errors name the element.
pub fn read_domain(xml: &str, placement: VcpuPlacement) -> Result<DomainDocument, String> {
    let mut document = parse_document(xml).map_err(|e| e.0)?;
    let config = &mut document.config;
    let files = [
        ("<kernel>", config.kernel_path()),
        ("<initrd>", config.initrd.clone()),
    ];
    for (element, path) in files {
        if let Some(path) = path {
            check_readable_file(&path).map_err(|e| format!("{element} {}: {e}", path.display()))?;
        }
    }
    for disk in &config.disks {
        check_readable_file(&disk.path)
            .map_err(|e| format!("<disk> {}: {e}", disk.path.display()))?;
    }
    config::check_memory_size(config.memory, config::host_ram_bytes())
        .map_err(|e| format!("<memory>: {e}"))?;
    config.cpu_tune.placement = placement;
    config.cpu_tune.resolve(
        config.cpus,
        affinity::process_cpus(),
        affinity::kvm_is_pvm(),
    )?;
    config.virtio_cmdline = !config.acpi;
    Ok(document)
}

fn parse_document(xml: &str) -> Result<DomainDocument, ParseError> {
    if xml.len() > XML_MAX {
        return fail(format!(
            "the domain XML is {} bytes; at most {XML_MAX} are read",
            xml.len()
        ));
    }
    let doc = Document::parse(xml).map_err(|e| ParseError(format!("malformed XML: {e}")))?;
    let domain = doc.root_element();
    if domain.tag_name().name() != "domain" {
        return fail(format!("the document is {}, not <domain>", name_of(domain)));
    }
    only_attributes(domain, &["type", "id"])?;
    attribute(domain, "type", &["kvm"])?;
    let mut config = VmConfig {
        acpi: false,
        ..VmConfig::default()
    };
    let mut name = None;
    let mut has_uuid = false;
    let mut current_memory = None;
    for child in children(
        domain,
        &[
            "name",
            "uuid",
            "title",
            "description",
            "memory",
            "currentMemory",
            "vcpu",
            "cputune",
            "os",
            "features",
            "on_poweroff",
            "on_reboot",
            "on_crash",
            "clock",
            "devices",
        ],
    )? {
        match child.tag_name().name() {
            "name" => name = Some(parse_name(&raw_text(child))?),
            "uuid" => {
                config.uuid = parse_uuid(&text(child))?;
                has_uuid = true;
            }
            // Free text for people; nothing to honour.
            "title" | "description" => {}
            "memory" => config.memory = memory_bytes(child)?,
            "currentMemory" => current_memory = Some(memory_bytes(child)?),
            "vcpu" => {
                only_attributes(child, &["placement"])?;
                optional(child, "placement", &["static"])?;
                config.cpus = parse_cpus(&text(child))?;
            }
            "cputune" => read_cputune(child, &mut config)?,
            "os" => read_os(child, &mut config)?,
            "features" => {
                for feature in children(child, &["acpi", "apic", "pae"])? {
                    only_attributes(feature, &[])?;
                    if feature.tag_name().name() == "acpi" {
                        config.acpi = true;
                    }
                }
            }
            "on_poweroff" | "on_crash" => {
                let what = text(child);
                if what != "destroy" {
                    return fail(format!(
                        "{} {what} is not supported (the domain is shut off: destroy)",
                        name_of(child)
                    ));
                }
            }
            "on_reboot" => match text(child).as_str() {
                "restart" => config.no_reboot = false,
                "destroy" => config.no_reboot = true,
                other => return fail(format!("<on_reboot> {other}: use restart or destroy")),
            },
            "clock" => read_clock(child)?,
            _ => read_devices(child, &mut config)?,
        }
    }
    config.name = name.ok_or_else(|| ParseError("the domain needs a <name>".into()))?;
    if current_memory.is_some_and(|current| current != config.memory) {
        return fail("<currentMemory> differs from <memory>: there is no balloon to hold it");
    }
    config::check_memory_size(config.memory, None)?;
    if let Some((&vcpu, _)) = config.cpu_tune.vcpu_pins.range(config.cpus..).next() {
        return fail(format!(
            "<vcpupin vcpu='{vcpu}'> names a vCPU the domain does not have"
        ));
    }
    Ok(DomainDocument { config, has_uuid })
}

fn read_cputune(node: Node, config: &mut VmConfig) -> Result<(), ParseError> {
    only_attributes(node, &[])?;
    let mut pins = BTreeMap::new();
    for child in children(node, &["vcpupin", "emulatorpin"])? {
        let cpus = parse_cpu_list(attribute(child, "cpuset", &[])?)?;
        if child.tag_name().name() == "emulatorpin" {
            only_attributes(child, &["cpuset"])?;
            config.cpu_tune.emulator_pin = Some(cpus);
            continue;
        }
        only_attributes(child, &["vcpu", "cpuset"])?;
        let vcpu = attribute(child, "vcpu", &[])?;
        let vcpu: u8 = vcpu
            .parse()
            .map_err(|_| ParseError(format!("<vcpupin vcpu='{vcpu}'> is not a vCPU number")))?;
        pins.insert(vcpu, cpus);
    }
    config.cpu_tune.vcpu_pins = pins;
    Ok(())
}

fn read_os(node: Node, config: &mut VmConfig) -> Result<(), ParseError> {
    only_attributes(node, &[])?;
    for child in children(node, &["type", "kernel", "initrd", "cmdline"])? {
        match child.tag_name().name() {
            "type" => {
                only_attributes(child, &["arch", "machine"])?;
                optional(child, "arch", &["x86_64"])?;
                if text(child) != "hvm" {
                    return fail(format!("<type> {}: only hvm", text(child)));
                }
            }
            "kernel" => config.kernel = KernelSource::File(path(child)?),
            "initrd" => config.initrd = Some(path(child)?),
            _ => config.cmdline = raw_text(child),
        }
    }
    Ok(())
}

/// `<clock offset='utc'>`: the guest reads the host's UTC through kvm-clock. The machine has
/// no RTC, PIT or HPET, so a timer may be described as absent (`present='no'`, what
/// dumpxml prints) or given a tick policy (what virt-install adds for QEMU): with no timer
/// there are no ticks to lose, and no policy to honour. Asking for one present is refused.
fn read_clock(node: Node) -> Result<(), ParseError> {
    only_attributes(node, &["offset"])?;
    attribute(node, "offset", &["utc"])?;
    for timer in children(node, &["timer"])? {
        only_attributes(timer, &["name", "present", "tickpolicy"])?;
        let name = attribute(timer, "name", &[])?;
        match (name, timer.attribute("present")) {
            ("kvmclock", None | Some("yes")) => {}
            ("rtc" | "pit" | "hpet", None | Some("no")) => optional(
                timer,
                "tickpolicy",
                &["delay", "catchup", "merge", "discard"],
            )?,
            _ => {
                return fail(format!(
                    "<timer name='{name}'> present is not supported (this machine's only timer \
                     beside the CPU's is kvmclock)"
                ))
            }
        }
    }
    Ok(())
}

fn path(node: Node) -> Result<PathBuf, ParseError> {
    only_attributes(node, &[])?;
    let value = raw_text(node);
    if !value.starts_with('/') {
        return fail(format!(
            "{} '{value}' must be an absolute path",
            name_of(node)
        ));
    }
    Ok(PathBuf::from(value))
}

fn read_devices(node: Node, config: &mut VmConfig) -> Result<(), ParseError> {
    only_attributes(node, &[])?;
    let mut serial = None;
    let mut console = None;
    for child in children(
        node,
        &[
            "emulator",
            "disk",
            "interface",
            "rng",
            "serial",
            "console",
            "memballoon",
            "controller",
        ],
    )? {
        match child.tag_name().name() {
            // Whatever emulator the document names, this process is the one that runs it.
            "emulator" => {}
            "disk" => {
                let disk = read_disk(child)?;
                config.disks.push(disk);
                check_target(child, config.disks.len() - 1)?;
            }
            "interface" => config.nets.push(read_interface(child)?),
            "rng" => {
                read_rng(child)?;
                config.rng = true;
            }
            "serial" => serial = Some(read_char_device(child, "isa-serial")?),
            "console" => console = Some(read_char_device(child, "serial")?),
            // There is no USB: the one controller description that is true says so.
            "controller" => {
                only_attributes(child, &["type", "model", "index"])?;
                attribute(child, "type", &["usb"])?;
                attribute(child, "model", &["none"])?;
                optional(child, "index", &["0"])?;
            }
            _ => {
                only_attributes(child, &["model"])?;
                attribute(child, "model", &["none"])?;
            }
        }
    }
    config.serial = match (serial, console) {
        (Some(s), Some(c)) if s != c => {
            return fail("<serial> and <console> must be the same port (this VMM has one)")
        }
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => SerialConfig::None,
    };
    Ok(())
}

/// Disks are vda, vdb, ... in document order, as the guest will see them.
fn check_target(disk: Node, index: usize) -> Result<(), ParseError> {
    let want = disk_target(index);
    let target = disk
        .children()
        .find(|c| c.has_tag_name("target"))
        .and_then(|t| t.attribute("dev"));
    match target {
        Some(dev) if dev == want => Ok(()),
        Some(dev) => fail(format!(
            "<target dev='{dev}'>: disk {} is {want} here (disks are named in order)",
            index + 1
        )),
        None => fail("<disk> needs <target dev='vdX' bus='virtio'/>"),
    }
}

fn read_disk(node: Node) -> Result<BlockConfig, ParseError> {
    only_attributes(node, &["type", "device"])?;
    attribute(node, "type", &["file"])?;
    optional(node, "device", &["disk"])?;
    let mut disk = BlockConfig {
        path: PathBuf::new(),
        readonly: false,
        id: String::new(),
    };
    for child in children(node, &["driver", "source", "target", "readonly", "serial"])? {
        match child.tag_name().name() {
            "driver" => {
                only_attributes(child, &["name", "type"])?;
                optional(child, "type", &["raw"])?;
            }
            "source" => {
                only_attributes(child, &["file"])?;
                let file = attribute(child, "file", &[])?;
                disk.path = PathBuf::from(file);
            }
            "target" => {
                only_attributes(child, &["dev", "bus"])?;
                optional(child, "bus", &["virtio"])?;
            }
            "readonly" => disk.readonly = true,
            _ => {
                only_attributes(child, &[])?;
                let id = raw_text(child);
                // virtio-blk's serial is 20 bytes, the CLI's id=NAME limit.
                if id.len() > 20 {
                    return fail(format!(
                        "<serial>{id}</serial>: at most 20 bytes (virtio-blk's limit)"
                    ));
                }
                disk.id = id;
            }
        }
    }
    if disk.path.as_os_str().is_empty() {
        return fail("<disk> needs <source file='...'/>");
    }
    Ok(disk)
}

fn read_interface(node: Node) -> Result<NetConfig, ParseError> {
    only_attributes(node, &["type"])?;
    attribute(node, "type", &["ethernet"])?;
    let mut spec = Vec::new();
    for child in children(node, &["mac", "target", "model"])? {
        match child.tag_name().name() {
            "mac" => {
                only_attributes(child, &["address"])?;
                spec.push(format!("mac={}", attribute(child, "address", &[])?));
            }
            "target" => {
                only_attributes(child, &["dev", "managed"])?;
                optional(child, "managed", &["no"])?;
                spec.push(format!("tap={}", attribute(child, "dev", &[])?));
            }
            _ => {
                only_attributes(child, &["type"])?;
                attribute(child, "type", &["virtio"])?;
            }
        }
    }
    if !spec.iter().any(|s| s.starts_with("tap=")) {
        return fail("<interface type='ethernet'> needs <target dev='TAP'/>");
    }
    config::parse_net(&spec.join(","))
}

fn read_rng(node: Node) -> Result<(), ParseError> {
    only_attributes(node, &["model"])?;
    attribute(node, "model", &["virtio"])?;
    for backend in children(node, &["backend"])? {
        only_attributes(backend, &["model"])?;
        let model = attribute(backend, "model", &["builtin", "random"])?;
        // The device reads the host's getrandom, which is what /dev/urandom gives.
        let source = text(backend);
        if model == "random" && !matches!(source.as_str(), "" | "/dev/urandom" | "/dev/random") {
            return fail(format!(
                "<backend model='random'> {source}: only /dev/urandom or /dev/random"
            ));
        }
    }
    Ok(())
}

/// `<serial>` or `<console>`: pty and stdio are the launcher's terminal, file a file, null
/// none.
fn read_char_device(node: Node, target_type: &str) -> Result<SerialConfig, ParseError> {
    only_attributes(node, &["type"])?;
    let kind = attribute(node, "type", &["pty", "stdio", "file", "null"])?;
    let mut file = None;
    for child in children(node, &["source", "target"])? {
        if child.tag_name().name() == "source" {
            only_attributes(child, &["path"])?;
            file = Some(PathBuf::from(attribute(child, "path", &[])?));
        } else {
            only_attributes(child, &["type", "port"])?;
            optional(child, "type", &[target_type])?;
            optional(child, "port", &["0"])?;
        }
    }
    match kind {
        "file" => file.map(SerialConfig::File).ok_or_else(|| {
            ParseError(format!(
                "{} type='file' needs <source path=...>",
                name_of(node)
            ))
        }),
        "null" => Ok(SerialConfig::None),
        _ => Ok(SerialConfig::Stdio),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod round_trip_properties;
