//! The host's SMBIOS facts for `virsh sysinfo`: firmware, system, board and chassis from
//! /sys/class/dmi/id (files that are missing or unreadable, like the root-only serials for
//! other users, are left out), and one processor per socket from /proc/cpuinfo. A host
//! without DMI (a VM without SMBIOS, a container) gets the processors alone.

use super::{cpuinfo_field, numa, read_bounded};
use crate::xml::XmlWriter;

const DMI_DIR: &str = "/sys/class/dmi/id";
/// SMBIOS strings are short; anything longer is not one.
const DMI_VALUE_MAX: usize = 256;

/// Each SMBIOS block with its (libvirt entry name, DMI file name) pairs.
const DMI_BLOCKS: &[(&str, &[(&str, &str)])] = &[
    (
        "bios",
        &[
            ("vendor", "bios_vendor"),
            ("version", "bios_version"),
            ("date", "bios_date"),
            ("release", "bios_release"),
        ],
    ),
    (
        "system",
        &[
            ("manufacturer", "sys_vendor"),
            ("product", "product_name"),
            ("version", "product_version"),
            ("serial", "product_serial"),
            ("uuid", "product_uuid"),
            ("sku", "product_sku"),
            ("family", "product_family"),
        ],
    ),
    (
        "baseBoard",
        &[
            ("manufacturer", "board_vendor"),
            ("product", "board_name"),
            ("version", "board_version"),
            ("serial", "board_serial"),
            ("asset", "board_asset_tag"),
        ],
    ),
    (
        "chassis",
        &[
            ("manufacturer", "chassis_vendor"),
            ("version", "chassis_version"),
            ("serial", "chassis_serial"),
            ("asset", "chassis_asset_tag"),
        ],
    ),
];

/// One block's entries that have a value, read with `read`.
fn entries(
    fields: &[(&'static str, &str)],
    read: &dyn Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    fields
        .iter()
        .filter_map(|(entry, file)| {
            let value = read(file)?.trim().to_string();
            (!value.is_empty()).then_some((*entry, value))
        })
        .collect()
}

fn dmi_file(name: &str) -> Option<String> {
    read_bounded(&format!("{DMI_DIR}/{name}"), DMI_VALUE_MAX)
}

fn block(w: &mut XmlWriter, name: &'static str, entries: &[(&str, String)]) {
    if entries.is_empty() {
        return;
    }
    w.open(name, &[]);
    for (entry, value) in entries {
        w.text("entry", &[("name", entry)], value);
    }
    w.close();
}

/// The document, from `dmi` (a DMI file's contents by name) and the processor entries.
pub fn format_sysinfo(
    dmi: &dyn Fn(&str) -> Option<String>,
    processor: &[(&str, String)],
    sockets: usize,
) -> String {
    let mut w = XmlWriter::new();
    w.open("sysinfo", &[("type", "smbios")]);
    for (name, fields) in DMI_BLOCKS {
        block(&mut w, name, &entries(fields, dmi));
    }
    for _ in 0..sockets {
        block(&mut w, "processor", processor);
    }
    w.finish()
}

pub fn sysinfo_xml() -> String {
    let processor: Vec<(&str, String)> = [("manufacturer", "vendor_id"), ("version", "model name")]
        .iter()
        .filter_map(|(entry, field)| Some((*entry, cpuinfo_field(field)?)))
        .collect();
    let sockets = numa::summarize(
        &numa::cells()
            .into_iter()
            .flat_map(|c| c.cpus)
            .collect::<Vec<_>>(),
    )
    .sockets;
    format_sysinfo(&dmi_file, &processor, sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_what_dmi_has_and_skips_the_rest() {
        let dmi = |name: &str| match name {
            "bios_vendor" => Some("SeaBIOS & co\n".to_string()),
            "product_uuid" => Some("6695eb01-f6a4-8304-79aa-97f2502e193f\n".to_string()),
            "board_name" => Some("  \n".to_string()),
            _ => None,
        };
        let doc = format_sysinfo(&dmi, &[("manufacturer", "GenuineIntel".to_string())], 2);
        assert!(
            doc.starts_with("<sysinfo type='smbios'>\n  <bios>\n"),
            "{doc}"
        );
        assert!(doc.contains("<entry name='vendor'>SeaBIOS &amp; co</entry>"));
        assert!(doc.contains("<entry name='uuid'>6695eb01-f6a4-8304-79aa-97f2502e193f</entry>"));
        assert!(
            !doc.contains("baseBoard") && !doc.contains("chassis"),
            "{doc}"
        );
        assert_eq!(doc.matches("<processor>").count(), 2);
    }

    #[test]
    fn without_any_facts_it_is_still_a_document() {
        assert_eq!(
            format_sysinfo(&|_| None, &[], 1),
            "<sysinfo type='smbios'>\n</sysinfo>\n"
        );
        assert!(sysinfo_xml().starts_with("<sysinfo type='smbios'>"));
    }
}
