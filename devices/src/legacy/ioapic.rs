//! A userspace IOAPIC for KVM's split irqchip. Its pins never carry signals through here: each
//! pin's redirection entry is translated into an x86 MSI and handed to an `MsiRouter`, which
//! (in the VMM) installs it as a KVM GSI route behind the pin's irqfd. A device's eventfd write
//! then reaches the target LAPIC entirely in the kernel.
//!
//! Level-triggered pins, minimally: the trigger bit goes into the MSI (so KVM's LAPIC sets TMR
//! and reports the guest's EOI to userspace as KVM_EXIT_IOAPIC_EOI), and an EOI, from that exit
//! via `end_of_interrupt` or from the EOI register, is passed on to the router for each
//! level-triggered pin with that vector, so the VMM can re-raise a line that is still asserted.
//! Not modelled: the remote IRR bit (delivery happens in the kernel, so this side never sees
//! it; it reads as 0), delivery status, and the polarity bit's effect (stored and read back).

use crate::bus::BusDevice;

pub const IOAPIC_PINS: usize = 24;

const IOAPIC_VERSION: u32 = 0x20;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARBITRATION: u32 = 0x02;
const REG_REDIRECTION_FIRST: u32 = 0x10;
const REG_REDIRECTION_LAST: u32 = REG_REDIRECTION_FIRST + 2 * IOAPIC_PINS as u32 - 1;
const OFFSET_REGSEL: u64 = 0x00;
const OFFSET_WINDOW: u64 = 0x10;
const OFFSET_EOI: u64 = 0x40;

const ENTRY_MASKED: u64 = 1 << 16;
const ENTRY_LEVEL: u64 = 1 << 15;
const ENTRY_DEST_LOGICAL: u64 = 1 << 11;
/// Bits the guest may write: vector, delivery mode, dest mode, polarity, trigger, mask, dest.
const ENTRY_WRITABLE: u64 = 0xff00_0000_0001_afff;

const MSI_ADDRESS_BASE: u32 = 0xfee0_0000;
/// Address bit 3: let the chipset pick any CPU of the destination set (lowest priority).
const MSI_ADDRESS_REDIRECTION_HINT: u32 = 1 << 3;
const DELIVERY_MODE_LOWEST_PRIORITY: u32 = 1;
const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;

/// An x86 MSI: what the LAPICs see on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
}

/// Installs the MSI a pin (GSI) delivers; `None` while the pin is masked.
pub trait MsiRouter: Send {
    fn set_route(&self, gsi: u32, msi: Option<MsiMessage>);

    /// The guest ended the interrupt of level-triggered pin `gsi`. Nothing to do for sources
    /// that signal edges through an irqfd.
    fn end_of_interrupt(&self, _gsi: u32) {}
}

pub struct Ioapic {
    id: u32,
    selected: u32,
    entries: [u64; IOAPIC_PINS],
    router: Box<dyn MsiRouter>,
}

/// The MSI equivalent of a redirection entry.
fn entry_to_msi(entry: u64) -> Option<MsiMessage> {
    if entry & ENTRY_MASKED != 0 {
        return None;
    }
    let vector = (entry & 0xff) as u32;
    let delivery_mode = ((entry >> 8) & 0x7) as u32;
    let dest = ((entry >> 56) & 0xff) as u32;
    let logical = u32::from(entry & ENTRY_DEST_LOGICAL != 0);
    let level = entry & ENTRY_LEVEL != 0;
    let hint = if delivery_mode == DELIVERY_MODE_LOWEST_PRIORITY {
        MSI_ADDRESS_REDIRECTION_HINT
    } else {
        0
    };
    let mut data = vector | (delivery_mode << 8);
    if level {
        data |= (1 << 15) | MSI_DATA_LEVEL_ASSERT;
    }
    Some(MsiMessage {
        address_lo: MSI_ADDRESS_BASE | (dest << 12) | hint | (logical << 2),
        address_hi: 0,
        data,
    })
}

impl Ioapic {
    pub fn new(router: Box<dyn MsiRouter>) -> Ioapic {
        Ioapic {
            id: 0,
            selected: 0,
            entries: [ENTRY_MASKED; IOAPIC_PINS],
            router,
        }
    }

    /// The guest signalled EOI for `vector` (KVM_EXIT_IOAPIC_EOI, or the EOI register).
    pub fn end_of_interrupt(&mut self, vector: u8) {
        for (pin, entry) in self.entries.iter().enumerate() {
            let level = entry & ENTRY_LEVEL != 0;
            if level && entry & ENTRY_MASKED == 0 && (entry & 0xff) as u8 == vector {
                self.router.end_of_interrupt(pin as u32);
            }
        }
    }

    fn read_register(&self, reg: u32) -> u32 {
        match reg {
            REG_ID => self.id << 24,
            REG_VERSION => ((IOAPIC_PINS as u32 - 1) << 16) | IOAPIC_VERSION,
            REG_ARBITRATION => self.id << 24,
            REG_REDIRECTION_FIRST..=REG_REDIRECTION_LAST => {
                let index = (reg - REG_REDIRECTION_FIRST) as usize;
                let entry = self.entries[index / 2];
                if index.is_multiple_of(2) {
                    entry as u32
                } else {
                    (entry >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, reg: u32, value: u32) {
        match reg {
            REG_ID => self.id = (value >> 24) & 0xf,
            REG_REDIRECTION_FIRST..=REG_REDIRECTION_LAST => {
                let index = (reg - REG_REDIRECTION_FIRST) as usize;
                let pin = index / 2;
                let old = self.entries[pin];
                let merged = if index.is_multiple_of(2) {
                    (old & !0xffff_ffff) | u64::from(value)
                } else {
                    (old & 0xffff_ffff) | (u64::from(value) << 32)
                };
                let entry = (old & !ENTRY_WRITABLE) | (merged & ENTRY_WRITABLE);
                self.entries[pin] = entry;
                if entry_to_msi(entry) != entry_to_msi(old) {
                    self.router.set_route(pin as u32, entry_to_msi(entry));
                }
            }
            _ => {} // version and arbitration are read-only
        }
    }
}

fn to_u32(data: &[u8]) -> u32 {
    let mut bytes = [0u8; 4];
    for (dst, src) in bytes.iter_mut().zip(data) {
        *dst = *src;
    }
    u32::from_le_bytes(bytes)
}

impl BusDevice for Ioapic {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let value = match offset {
            OFFSET_REGSEL => self.selected,
            OFFSET_WINDOW => self.read_register(self.selected),
            _ => 0,
        };
        for (dst, src) in data
            .iter_mut()
            .zip(value.to_le_bytes().into_iter().chain(std::iter::repeat(0)))
        {
            *dst = src;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let value = to_u32(data);
        match offset {
            OFFSET_REGSEL => self.selected = value & 0xff,
            OFFSET_WINDOW => self.write_register(self.selected, value),
            OFFSET_EOI => self.end_of_interrupt(value as u8),
            _ => {}
        }
    }

    /// Power-on state: every pin masked, every route removed.
    fn reset(&mut self) {
        self.id = 0;
        self.selected = 0;
        self.entries = [ENTRY_MASKED; IOAPIC_PINS];
        for pin in 0..IOAPIC_PINS {
            self.router.set_route(pin as u32, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Routes = Arc<Mutex<Vec<(u32, Option<MsiMessage>)>>>;

    struct Recorder {
        routes: Routes,
        eois: Arc<Mutex<Vec<u32>>>,
    }

    impl MsiRouter for Recorder {
        fn set_route(&self, gsi: u32, msi: Option<MsiMessage>) {
            self.routes.lock().unwrap().push((gsi, msi));
        }
        fn end_of_interrupt(&self, gsi: u32) {
            self.eois.lock().unwrap().push(gsi);
        }
    }

    fn ioapic_with_eois() -> (Ioapic, Routes, Arc<Mutex<Vec<u32>>>) {
        let routes: Routes = Arc::default();
        let eois = Arc::default();
        let recorder = Recorder {
            routes: routes.clone(),
            eois: Arc::clone(&eois),
        };
        (Ioapic::new(Box::new(recorder)), routes, eois)
    }

    fn ioapic() -> (Ioapic, Routes) {
        let (io, routes, _) = ioapic_with_eois();
        (io, routes)
    }

    fn write_reg(io: &mut Ioapic, reg: u32, value: u32) {
        io.write(0, OFFSET_REGSEL, &reg.to_le_bytes());
        io.write(0, OFFSET_WINDOW, &value.to_le_bytes());
    }

    fn read_reg(io: &mut Ioapic, reg: u32) -> u32 {
        io.write(0, OFFSET_REGSEL, &reg.to_le_bytes());
        let mut v = [0u8; 4];
        io.read(0, OFFSET_WINDOW, &mut v);
        u32::from_le_bytes(v)
    }

    #[test]
    fn identification_registers() {
        let (mut io, _) = ioapic();
        assert_eq!(read_reg(&mut io, REG_VERSION), 0x0017_0020);
        write_reg(&mut io, REG_ID, 0x0200_0000);
        assert_eq!(read_reg(&mut io, REG_ID), 0x0200_0000);
        write_reg(&mut io, REG_VERSION, 0);
        assert_eq!(read_reg(&mut io, REG_VERSION), 0x0017_0020);
        assert_eq!(
            read_reg(&mut io, 0x10),
            ENTRY_MASKED as u32,
            "pins start masked"
        );
    }

    #[test]
    fn unmasking_a_pin_installs_its_msi() {
        let (mut io, routes) = ioapic();
        // Pin 4: vector 0x24, fixed, physical destination APIC 1, edge.
        write_reg(&mut io, 0x10 + 2 * 4 + 1, 0x0100_0000);
        assert!(routes.lock().unwrap().is_empty(), "still masked: no route");
        write_reg(&mut io, 0x10 + 2 * 4, 0x24);
        let msi = MsiMessage {
            address_lo: 0xfee0_1000,
            address_hi: 0,
            data: 0x24,
        };
        assert_eq!(routes.lock().unwrap().last(), Some(&(4, Some(msi))));
        assert_eq!(read_reg(&mut io, 0x10 + 2 * 4), 0x24);
        assert_eq!(read_reg(&mut io, 0x10 + 2 * 4 + 1), 0x0100_0000);
        write_reg(&mut io, 0x10 + 2 * 4, 0x24 | ENTRY_MASKED as u32);
        assert_eq!(routes.lock().unwrap().last(), Some(&(4, None)));
    }

    #[test]
    fn level_logical_lowest_priority_translation() {
        let entry = 0x0300_0000_0000_0000 | ENTRY_LEVEL | ENTRY_DEST_LOGICAL | (1 << 8) | 0x31;
        assert_eq!(
            entry_to_msi(entry),
            Some(MsiMessage {
                address_lo: 0xfee0_300c,
                address_hi: 0,
                data: 0x31 | (1 << 8) | (1 << 15) | (1 << 14)
            })
        );
    }

    #[test]
    fn eoi_reaches_level_pins_with_that_vector_only() {
        let (mut io, _, eois) = ioapic_with_eois();
        write_reg(&mut io, 0x10 + 2 * 5, 0x41 | ENTRY_LEVEL as u32); // pin 5: level, 0x41
        write_reg(&mut io, 0x10 + 2 * 6, 0x41); // pin 6: edge, same vector
        write_reg(
            &mut io,
            0x10 + 2 * 7,
            0x41 | (ENTRY_LEVEL | ENTRY_MASKED) as u32,
        ); // masked
        io.end_of_interrupt(0x41);
        io.end_of_interrupt(0x42);
        io.write(0, OFFSET_EOI, &0x41u32.to_le_bytes());
        assert_eq!(*eois.lock().unwrap(), vec![5, 5]);
    }

    #[test]
    fn reset_masks_and_removes_routes() {
        let (mut io, routes) = ioapic();
        write_reg(&mut io, 0x10, 0x30);
        io.reset();
        assert_eq!(read_reg(&mut io, 0x10), ENTRY_MASKED as u32);
        let r = routes.lock().unwrap();
        assert_eq!(r.len(), 1 + IOAPIC_PINS);
        assert!(r[1..].iter().all(|(_, m)| m.is_none()));
    }

    #[test]
    fn out_of_range_selects_are_harmless() {
        let (mut io, _) = ioapic();
        write_reg(&mut io, 0xff, 0xdead_beef);
        assert_eq!(read_reg(&mut io, 0xff), 0);
        io.write(0, 0x800, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut wide = [0u8; 8];
        io.read(0, OFFSET_REGSEL, &mut wide);
    }
}
