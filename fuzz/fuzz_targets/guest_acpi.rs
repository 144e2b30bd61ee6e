//! The test guest's ACPI readers on hostile tables: the AML reader on a DSDT body, and the
//! table walk (RSDP → XSDT → FADT/DSDT, MADT) over a small memory the input fills.
#![no_main]

#[path = "../../resources/test-guest/src/acpi.rs"]
#[allow(dead_code)]
mod acpi;
#[path = "../../resources/test-guest/src/aml.rs"]
#[allow(dead_code)]
mod aml;
#[path = "../../resources/test-guest/src/physmem.rs"]
#[allow(dead_code)]
mod physmem;

/// What acpi.rs needs of the guest's port I/O: nothing happens on the host.
mod io {
    pub fn outb(_port: u16, _value: u8) {}
}

use libfuzzer_sys::fuzz_target;
use physmem::PhysMem;

/// The input as guest-physical memory from 0xe0000 (the BIOS area the RSDP scan reads).
struct InputMem<'a>(&'a [u8]);

const BASE: u64 = 0xe0000;

impl PhysMem for InputMem<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(start) = addr.checked_sub(BASE) else {
            return false;
        };
        let Some(end) = start.checked_add(buf.len() as u64) else {
            return false;
        };
        match self.0.get(start as usize..end as usize) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = aml::parse(data);
    let _ = acpi::load(None, &InputMem(data));
});
