//! The domain XML reader (virsh define/create, `vmm run --config`) and the storage pool
//! reader. A document that reads must survive the round trip: dumpxml of it reads back to the
//! same configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::domain_xml::domain_xml;
use vmm::xml_config::parse_domain_xml;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = mgmt::storage::read_pool_xml(text);
    let Ok(config) = parse_domain_xml(text) else {
        return;
    };
    let dumped = domain_xml(&config, None, "/usr/bin/vmm");
    let again = parse_domain_xml(&dumped)
        .unwrap_or_else(|e| panic!("dumpxml output does not read back: {e:?}\n{dumped}"));
    assert_eq!(
        config, again,
        "the round trip changed the domain:\n{dumped}"
    );
});
