//! The capabilities document (`virsh capabilities`, capability.rng): the host (its uuid,
//! CPU, NUMA cells and CPUs) and the one kind of guest this VMM runs. `virsh freecell --all`
//! takes its list of cells from here.

use super::numa::{self, Cell};
use super::{cpuinfo_field, read_bounded};
use crate::xml::XmlWriter;

/// The machine type of our domains (`<type machine='vmm'>` in the domain XML).
pub const MACHINE: &str = "vmm";
/// The only guest architecture and virtualization type.
pub const GUEST_ARCH: &str = "x86_64";
pub const VIRT_TYPE: &str = "kvm";

const SMALL_FILE: usize = 4096;

/// `hex` (32 hex digits, dashes anywhere) as a canonical 8-4-4-4-12 uuid; None for anything
/// else, and for the all-zero and all-ones values firmware leaves unset.
pub fn canonical_uuid(hex: &str) -> Option<String> {
    let digits: String = hex.trim().chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let digits = digits.to_ascii_lowercase();
    if digits.chars().all(|c| c == '0') || digits.chars().all(|c| c == 'f') {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &digits[..8],
        &digits[8..12],
        &digits[12..16],
        &digits[16..20],
        &digits[20..]
    ))
}

/// The host's uuid: the firmware's (SMBIOS, readable by root) or else systemd's machine id.
pub fn host_uuid() -> Option<String> {
    ["/sys/class/dmi/id/product_uuid", "/etc/machine-id"]
        .iter()
        .find_map(|path| canonical_uuid(&read_bounded(path, SMALL_FILE)?))
}

/// The CPU vendor as libvirt names it, from /proc/cpuinfo's vendor_id.
pub fn cpu_vendor() -> Option<&'static str> {
    match cpuinfo_field("vendor_id")?.as_str() {
        "GenuineIntel" => Some("Intel"),
        "AuthenticAMD" => Some("AMD"),
        "HygonGenuine" => Some("Hygon"),
        _ => None,
    }
}

/// This executable: the emulator of every domain.
pub fn emulator_path() -> Option<String> {
    let path = std::env::current_exe().ok()?.display().to_string();
    path.starts_with('/').then_some(path)
}

/// Whether the host has IOMMU groups (what device assignment would need).
fn host_has_iommu() -> bool {
    std::fs::read_dir("/sys/kernel/iommu_groups").is_ok_and(|mut d| d.next().is_some())
}

fn host_cpu(w: &mut XmlWriter, cells: &[Cell]) {
    w.open("cpu", &[]);
    w.text("arch", &[], std::env::consts::ARCH);
    if let Some(vendor) = cpu_vendor() {
        w.text("vendor", &[], vendor);
    }
    let number = |name| cpuinfo_field(name).and_then(|v| v.parse::<u32>().ok());
    if let (Some(family @ 1..), Some(model), Some(stepping)) =
        (number("cpu family"), number("model"), number("stepping"))
    {
        let (family, model, stepping) =
            (family.to_string(), model.to_string(), stepping.to_string());
        w.empty(
            "signature",
            &[
                ("family", &family),
                ("model", &model),
                ("stepping", &stepping),
            ],
        );
    }
    let cpus: Vec<_> = cells.iter().flat_map(|c| c.cpus.iter().cloned()).collect();
    let t = numa::summarize(&cpus);
    let [sockets, dies, cores, threads] =
        [t.sockets, t.dies, t.cores, t.threads].map(|n| n.to_string());
    w.empty(
        "topology",
        &[
            ("sockets", &sockets),
            ("dies", &dies),
            ("cores", &cores),
            ("threads", &threads),
        ],
    );
    w.close();
}

fn topology(w: &mut XmlWriter, cells: &[Cell]) {
    w.open("topology", &[]);
    w.open("cells", &[("num", &cells.len().to_string())]);
    for cell in cells {
        w.open("cell", &[("id", &cell.id.to_string())]);
        if let Some(kib) = cell.memory_kib {
            w.text("memory", &[("unit", "KiB")], &kib.to_string());
        }
        w.open("cpus", &[("num", &cell.cpus.len().to_string())]);
        for cpu in &cell.cpus {
            let id = cpu.id.to_string();
            match &cpu.place {
                Some(p) => {
                    let (socket, die, core, siblings) = (
                        p.socket.to_string(),
                        p.die.to_string(),
                        p.core.to_string(),
                        p.siblings.to_string(),
                    );
                    w.empty(
                        "cpu",
                        &[
                            ("id", &id),
                            ("socket_id", &socket),
                            ("die_id", &die),
                            ("core_id", &core),
                            ("siblings", &siblings),
                        ],
                    )
                }
                None => w.empty("cpu", &[("id", &id)]),
            };
        }
        w.close().close();
    }
    w.close().close();
}

fn guest(w: &mut XmlWriter, max_vcpus: u32) {
    w.open("guest", &[]);
    w.text("os_type", &[], "hvm");
    w.open("arch", &[("name", GUEST_ARCH)]);
    w.text("wordsize", &[], "64");
    if let Some(path) = emulator_path() {
        w.text("emulator", &[], &path);
    }
    w.text("machine", &[("maxCpus", &max_vcpus.to_string())], MACHINE);
    w.empty("domain", &[("type", VIRT_TYPE)]);
    w.close();
    // ACPI can be turned off (--no-acpi); the local APIC is always there.
    w.open("features", &[]);
    w.empty("acpi", &[("default", "on"), ("toggle", "yes")]);
    w.empty("apic", &[("default", "on"), ("toggle", "no")]);
    w.close();
    w.close();
}

/// The whole document; `max_vcpus` is the VMM's own limit.
pub fn capabilities_xml(max_vcpus: u32) -> String {
    let cells = numa::cells();
    let mut w = XmlWriter::new();
    w.open("capabilities", &[]);
    w.open("host", &[]);
    if let Some(uuid) = host_uuid() {
        w.text("uuid", &[], &uuid);
    }
    host_cpu(&mut w, &cells);
    w.empty("power_management", &[]);
    let iommu = if host_has_iommu() { "yes" } else { "no" };
    w.empty("iommu", &[("support", iommu)]);
    topology(&mut w, &cells);
    w.close();
    guest(&mut w, max_vcpus);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_canonical_or_refused() {
        assert_eq!(
            canonical_uuid("3d1219c7c4c5404aaa1f6d2a48adfda4\n").as_deref(),
            Some("3d1219c7-c4c5-404a-aa1f-6d2a48adfda4")
        );
        assert_eq!(
            canonical_uuid("6695EB01-F6A4-8304-79AA-97F2502E193F").as_deref(),
            Some("6695eb01-f6a4-8304-79aa-97f2502e193f")
        );
        for bad in [
            "",
            "xyz",
            "3d1219c7c4c5404aaa1f6d2a48adfda",
            "00000000-0000-0000-0000-000000000000",
            "ffffffffffffffffffffffffffffffff",
            "3d1219c7c4c5404aaa1f6d2a48adfdag",
        ] {
            assert_eq!(canonical_uuid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn document_has_host_cells_and_the_guest() {
        let doc = capabilities_xml(254);
        for part in [
            "<capabilities>",
            "<topology>",
            "<cells num=",
            "<memory unit='KiB'>",
            "<os_type>hvm</os_type>",
            "<arch name='x86_64'>",
            "<machine maxCpus='254'>vmm</machine>",
            "<domain type='kvm'/>",
            "</capabilities>",
        ] {
            assert!(doc.contains(part), "{part} missing from\n{doc}");
        }
    }
}
