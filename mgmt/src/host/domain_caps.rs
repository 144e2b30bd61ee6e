//! The domain capabilities document (`virsh domcapabilities`, domaincaps.rng): what a domain
//! of this VMM can have. Only what the VMM really does is "yes": virtio disks and entropy
//! from getrandom, host CPU passthrough, anonymous memory; no firmware, graphics or device
//! assignment.

use super::capabilities::{GUEST_ARCH, MACHINE, VIRT_TYPE};
use crate::xml::XmlWriter;

fn yes_no(supported: bool) -> &'static str {
    if supported {
        "yes"
    } else {
        "no"
    }
}

/// `<NAME supported='…'>` with `<enum name='…'>` lists of values.
fn with_enums(w: &mut XmlWriter, name: &'static str, supported: bool, enums: &[(&str, &[&str])]) {
    if enums.is_empty() {
        w.empty(name, &[("supported", yes_no(supported))]);
        return;
    }
    w.open(name, &[("supported", yes_no(supported))]);
    for (enum_name, values) in enums {
        if values.is_empty() {
            w.empty("enum", &[("name", enum_name)]);
            continue;
        }
        w.open("enum", &[("name", enum_name)]);
        for value in *values {
            w.text("value", &[], value);
        }
        w.close();
    }
    w.close();
}

fn cpu_modes(w: &mut XmlWriter) {
    // The guest sees the host CPU as KVM reports it; no named models, no host-model.
    w.open("cpu", &[]);
    w.open(
        "mode",
        &[("name", "host-passthrough"), ("supported", "yes")],
    );
    w.open("enum", &[("name", "hostPassthroughMigratable")]);
    w.text("value", &[], "off");
    w.close().close();
    for mode in ["maximum", "host-model", "custom"] {
        w.empty("mode", &[("name", mode), ("supported", "no")]);
    }
    w.close();
}

fn devices(w: &mut XmlWriter) {
    w.open("devices", &[]);
    with_enums(
        w,
        "disk",
        true,
        &[("diskDevice", &["disk"]), ("bus", &["virtio"])],
    );
    for unsupported in ["graphics", "video", "hostdev"] {
        with_enums(w, unsupported, false, &[]);
    }
    // The device fills buffers from getrandom(2): libvirt's "builtin" backend.
    with_enums(
        w,
        "rng",
        true,
        &[("model", &["virtio"]), ("backendModel", &["builtin"])],
    );
    for unsupported in ["filesystem", "tpm", "redirdev", "channel"] {
        with_enums(w, unsupported, false, &[]);
    }
    w.close();
}

fn features(w: &mut XmlWriter) {
    w.open("features", &[]);
    for name in [
        "gic",
        "vmcoreinfo",
        "genid",
        "backingStoreInput",
        "backup",
        "sev",
        "sgx",
        "hyperv",
    ] {
        w.empty(name, &[("supported", "no")]);
    }
    w.close();
}

/// The document for `emulator` (this executable) with the VMM's vCPU limit.
pub fn domain_caps_xml(emulator: &str, max_vcpus: u32) -> String {
    let mut w = XmlWriter::new();
    w.open("domainCapabilities", &[]);
    w.text("path", &[], emulator);
    w.text("domain", &[], VIRT_TYPE);
    w.text("machine", &[], MACHINE);
    w.text("arch", &[], GUEST_ARCH);
    w.empty("vcpu", &[("max", &max_vcpus.to_string())]);
    w.empty("iothreads", &[("supported", "no")]);
    // Kernels are loaded directly: no firmware to choose, no loader.
    w.open("os", &[("supported", "yes")]);
    w.empty("enum", &[("name", "firmware")]);
    w.empty("loader", &[("supported", "no")]);
    w.close();
    cpu_modes(&mut w);
    with_enums(
        &mut w,
        "memoryBacking",
        true,
        &[("sourceType", &["anonymous"])],
    );
    devices(&mut w);
    features(&mut w);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_the_vmm_does() {
        let doc = domain_caps_xml("/usr/bin/vmm", 254);
        for part in [
            "<path>/usr/bin/vmm</path>",
            "<domain>kvm</domain>",
            "<machine>vmm</machine>",
            "<vcpu max='254'/>",
            "<mode name='host-passthrough' supported='yes'>",
            "<graphics supported='no'/>",
            "<value>builtin</value>",
            "<sev supported='no'/>",
        ] {
            assert!(doc.contains(part), "{part} missing from\n{doc}");
        }
    }
}
