//! Reads the VMM's ACPI tables the way an OS does: the RSDP from the boot protocol (or by
//! scanning the EBDA and the BIOS area), then XSDT → FADT (→ DSDT) and MADT. Every checksum is
//! verified; a broken table is an error that says which.

use crate::aml::{self, Dsdt};
use crate::physmem::{byte_sum, PhysMem, MAPPED_END};

const BDA_EBDA_SEGMENT: u64 = 0x40e;
const BIOS_AREA: (u64, u64) = (0xe0000, 0x20000);
const HEADER_LEN: u64 = 36;
/// The biggest DSDT this reader copies out (ours is about 1 KiB for 18 devices).
const DSDT_MAX: usize = 8192;
/// The most local APICs a MADT can list with 8-bit ids.
pub const MAX_CPUS: usize = 256;

const FADT_FLAGS: u64 = 112;
const FADT_RESET_REG: u64 = 116;
const FADT_RESET_VALUE: u64 = 128;
const FADT_DSDT: u64 = 40;
const FADT_X_DSDT: u64 = 140;
const FADT_SLEEP_CONTROL: u64 = 244;
const FADT_SLEEP_STATUS: u64 = 256;
const FADT_HW_REDUCED: u32 = 1 << 20;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
const GAS_SYSTEM_MEMORY: u8 = 0;
const GAS_SYSTEM_IO: u8 = 1;

const MADT_LAPIC: u8 = 0;
const MADT_IOAPIC: u8 = 1;
const MADT_LAPIC_ENABLED: u32 = 1;

/// A byte register from a Generic Address Structure: an I/O port (this VMM) or a memory
/// address (QEMU's microvm puts its sleep registers in the GED's MMIO window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    Port(u16),
    Memory(u64),
}

impl Register {
    pub fn write(self, value: u8) {
        match self {
            Register::Port(port) => crate::io::outb(port, value),
            // SAFETY: the FADT names this MMIO register; 3..4 GiB is mapped uncached and user
            // accessible (entry.rs), and nothing else in the guest uses it.
            Register::Memory(addr) => unsafe {
                core::ptr::write_volatile(addr as usize as *mut u8, value)
            },
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Fadt {
    pub hw_reduced: bool,
    pub sleep_control: Option<Register>,
    pub sleep_status: Option<Register>,
    pub reset: Option<(Register, u8)>,
}

pub struct Madt {
    apic_ids: [u8; MAX_CPUS],
    count: usize,
    pub ioapics: u32,
}

impl Madt {
    /// APIC ids of the enabled local APICs, in table order.
    pub fn apic_ids(&self) -> &[u8] {
        &self.apic_ids[..self.count]
    }
}

pub struct Tables {
    pub rsdp: u64,
    /// Tables whose checksum was verified (RSDP counted once).
    pub checked: u32,
    pub fadt: Fadt,
    pub madt: Madt,
    pub dsdt: Dsdt,
}

fn checksum_ok(mem: &impl PhysMem, addr: u64, len: u64) -> bool {
    byte_sum(mem, addr, len) == Some(0)
}

/// A "RSD PTR " signature with a valid ACPI 1.0 checksum on a 16-byte boundary.
fn scan(mem: &impl PhysMem, start: u64, len: u64) -> Option<u64> {
    (start..start + len)
        .step_by(16)
        .find(|&at| mem.read_array::<8>(at) == Some(*b"RSD PTR ") && checksum_ok(mem, at, 20))
}

/// The RSDP: where the boot protocol says, else the EBDA's first KiB, else the BIOS area.
pub fn find_rsdp(hint: Option<u64>, mem: &impl PhysMem) -> Option<u64> {
    if let Some(at) = hint.filter(|&a| a != 0) {
        return Some(at);
    }
    let ebda = u64::from(mem.u16(BDA_EBDA_SEGMENT).unwrap_or(0)) << 4;
    (ebda != 0)
        .then(|| scan(mem, ebda, 1024))
        .flatten()
        .or_else(|| scan(mem, BIOS_AREA.0, BIOS_AREA.1))
}

/// A table's header: the signature must match, the length be sane and the checksum zero.
fn table(mem: &impl PhysMem, addr: u64, signature: &[u8; 4]) -> Result<u64, &'static str> {
    if mem.read_array::<4>(addr) != Some(*signature) {
        return Err("a table pointer leads to the wrong signature");
    }
    let len = u64::from(mem.u32(addr + 4).ok_or("table unreadable")?);
    if !(HEADER_LEN..=1 << 20).contains(&len) {
        return Err("table length out of range");
    }
    if !checksum_ok(mem, addr, len) {
        return Err(match signature {
            b"XSDT" => "bad XSDT checksum",
            b"FACP" => "bad FADT checksum",
            b"APIC" => "bad MADT checksum",
            b"DSDT" => "bad DSDT checksum",
            _ => "bad table checksum",
        });
    }
    Ok(len)
}

fn register(mem: &impl PhysMem, at: u64) -> Option<Register> {
    let space = mem.u8(at)?;
    let address = mem.u64(at + 4)?;
    match space {
        _ if address == 0 => None,
        GAS_SYSTEM_IO => u16::try_from(address).ok().map(Register::Port),
        GAS_SYSTEM_MEMORY if address < MAPPED_END => Some(Register::Memory(address)),
        _ => None,
    }
}

fn parse_fadt(mem: &impl PhysMem, at: u64, len: u64) -> Result<(Fadt, u64), &'static str> {
    if len < FADT_SLEEP_STATUS + 12 {
        return Err("FADT too short for ACPI 5 sleep registers");
    }
    let flags = mem.u32(at + FADT_FLAGS).ok_or("FADT unreadable")?;
    let dsdt = match mem.u64(at + FADT_X_DSDT) {
        Some(x) if x != 0 => x,
        _ => u64::from(mem.u32(at + FADT_DSDT).unwrap_or(0)),
    };
    let reset = if flags & FADT_RESET_REG_SUP != 0 {
        register(mem, at + FADT_RESET_REG).zip(mem.u8(at + FADT_RESET_VALUE))
    } else {
        None
    };
    let fadt = Fadt {
        hw_reduced: flags & FADT_HW_REDUCED != 0,
        sleep_control: register(mem, at + FADT_SLEEP_CONTROL),
        sleep_status: register(mem, at + FADT_SLEEP_STATUS),
        reset,
    };
    Ok((fadt, dsdt))
}

fn parse_madt(mem: &impl PhysMem, at: u64, len: u64) -> Result<Madt, &'static str> {
    let mut madt = Madt {
        apic_ids: [0; MAX_CPUS],
        count: 0,
        ioapics: 0,
    };
    let (mut entry, end) = (at + 44, at + len);
    while entry < end {
        let kind = mem.u8(entry).ok_or("MADT unreadable")?;
        let entry_len = u64::from(mem.u8(entry + 1).ok_or("MADT unreadable")?);
        if entry_len < 2 || entry + entry_len > end {
            return Err("MADT entry runs past the table");
        }
        match kind {
            MADT_LAPIC => {
                let apic_id = mem.u8(entry + 3).ok_or("MADT unreadable")?;
                let flags = mem.u32(entry + 4).ok_or("MADT unreadable")?;
                if flags & MADT_LAPIC_ENABLED != 0 && madt.count < MAX_CPUS {
                    madt.apic_ids[madt.count] = apic_id;
                    madt.count += 1;
                }
            }
            MADT_IOAPIC => madt.ioapics += 1,
            _ => {}
        }
        entry += entry_len;
    }
    Ok(madt)
}

/// Ok(None) without an RSDP; Err names the first thing that is broken.
pub fn load(hint: Option<u64>, mem: &impl PhysMem) -> Result<Option<Tables>, &'static str> {
    let Some(rsdp) = find_rsdp(hint, mem) else {
        return Ok(None);
    };
    if mem.read_array::<8>(rsdp) != Some(*b"RSD PTR ") || !checksum_ok(mem, rsdp, 20) {
        return Err("bad RSDP signature or checksum");
    }
    if mem.u8(rsdp + 15) != Some(2) || !checksum_ok(mem, rsdp, 36) {
        return Err("RSDP is not revision 2 with a valid extended checksum");
    }
    let xsdt = mem.u64(rsdp + 24).ok_or("RSDP unreadable")?;
    let xsdt_len = table(mem, xsdt, b"XSDT")?;
    let mut checked = 2;
    let (mut fadt, mut madt, mut dsdt_addr) = (None, None, 0);
    for i in 0..(xsdt_len - HEADER_LEN) / 8 {
        let at = mem
            .u64(xsdt + HEADER_LEN + i * 8)
            .ok_or("XSDT unreadable")?;
        match mem.read_array::<4>(at) {
            Some(sig) if &sig == b"FACP" || &sig == b"APIC" => {
                let len = table(mem, at, &sig)?;
                checked += 1;
                if &sig == b"FACP" {
                    let (f, d) = parse_fadt(mem, at, len)?;
                    fadt = Some(f);
                    dsdt_addr = d;
                } else {
                    madt = Some(parse_madt(mem, at, len)?);
                }
            }
            Some(sig) => {
                table(mem, at, &sig)?;
                checked += 1;
            }
            None => return Err("an XSDT entry points out of reach"),
        }
    }
    let fadt = fadt.ok_or("no FADT in the XSDT")?;
    let madt = madt.ok_or("no MADT in the XSDT")?;
    let dsdt_len = table(mem, dsdt_addr, b"DSDT")?;
    checked += 1;
    let mut aml = [0u8; DSDT_MAX];
    let body = usize::try_from(dsdt_len - HEADER_LEN).unwrap_or(usize::MAX);
    let aml = aml
        .get_mut(..body)
        .ok_or("DSDT too large for this reader")?;
    if !mem.read(dsdt_addr + HEADER_LEN, aml) {
        return Err("DSDT unreadable");
    }
    let dsdt = aml::parse(aml)?;
    Ok(Some(Tables {
        rsdp,
        checked,
        fadt,
        madt,
        dsdt,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physmem::FakeMem;

    fn fix_checksum(mem: &mut FakeMem, at: u64, len: usize, field: u64) {
        mem.put(at + field, &[0]);
        let start = (at - mem.base) as usize;
        let sum = mem.bytes[start..start + len]
            .iter()
            .fold(0u8, |s, b| s.wrapping_add(*b));
        mem.put(at + field, &[0u8.wrapping_sub(sum)]);
    }

    fn header(mem: &mut FakeMem, at: u64, sig: &[u8; 4], len: u32) {
        mem.put(at, sig);
        mem.put(at + 4, &len.to_le_bytes());
    }

    /// RSDP at 0xe0000, XSDT → FADT + MADT (2 CPUs), FADT → an empty-bodied DSDT with _S5.
    fn tables() -> FakeMem {
        let mut m = FakeMem::new(0xe0000, 0x2000);
        let (xsdt, fadt, madt, dsdt) = (0xe0100u64, 0xe0200u64, 0xe0400u64, 0xe0500u64);
        m.put(0xe0000, b"RSD PTR ");
        m.put(0xe0000 + 15, &[2]);
        m.put(0xe0000 + 20, &36u32.to_le_bytes());
        m.put(0xe0000 + 24, &xsdt.to_le_bytes());
        fix_checksum(&mut m, 0xe0000, 20, 8);
        fix_checksum(&mut m, 0xe0000, 36, 32);

        header(&mut m, xsdt, b"XSDT", 52);
        m.put(xsdt + 36, &fadt.to_le_bytes());
        m.put(xsdt + 44, &madt.to_le_bytes());
        fix_checksum(&mut m, xsdt, 52, 9);

        header(&mut m, fadt, b"FACP", 276);
        m.put(
            fadt + FADT_FLAGS,
            &(FADT_HW_REDUCED | FADT_RESET_REG_SUP).to_le_bytes(),
        );
        m.put(fadt + FADT_X_DSDT, &dsdt.to_le_bytes());
        for (gas, port) in [
            (FADT_RESET_REG, 0x3c2u64),
            (FADT_SLEEP_CONTROL, 0x3c0),
            (FADT_SLEEP_STATUS, 0x3c1),
        ] {
            m.put(fadt + gas, &[GAS_SYSTEM_IO, 8, 0, 1]);
            m.put(fadt + gas + 4, &port.to_le_bytes());
        }
        m.put(fadt + FADT_RESET_VALUE, &[1]);
        fix_checksum(&mut m, fadt, 276, 9);

        header(&mut m, madt, b"APIC", 44 + 8 + 8 + 12);
        m.put(madt + 44, &[0, 8, 0, 0, 1, 0, 0, 0]);
        m.put(madt + 52, &[0, 8, 1, 1, 1, 0, 0, 0]);
        m.put(madt + 60, &[1, 12, 2, 0]);
        fix_checksum(&mut m, madt, 72, 9);

        let s5 = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00,
        ];
        header(&mut m, dsdt, b"DSDT", 36 + s5.len() as u32);
        m.put(dsdt + 36, &s5);
        fix_checksum(&mut m, dsdt, 36 + s5.len(), 9);
        m
    }

    #[test]
    fn walks_every_table() {
        let t = load(None, &tables()).unwrap().unwrap();
        assert_eq!(t.rsdp, 0xe0000);
        assert_eq!(t.checked, 5);
        assert!(t.fadt.hw_reduced);
        assert_eq!(t.fadt.sleep_control, Some(Register::Port(0x3c0)));
        assert_eq!(t.fadt.sleep_status, Some(Register::Port(0x3c1)));
        assert_eq!(t.fadt.reset, Some((Register::Port(0x3c2), 1)));
        assert_eq!(t.madt.apic_ids(), &[0, 1]);
        assert_eq!(t.madt.ioapics, 1);
        assert_eq!(t.dsdt.s5, Some(5));
    }

    #[test]
    fn a_bad_checksum_names_its_table() {
        for (at, why) in [
            (0xe0100 + 40, "bad XSDT checksum"),
            (0xe0200 + 50, "bad FADT checksum"),
            (0xe0400 + 50, "bad MADT checksum"),
            (0xe0500 + 37, "bad DSDT checksum"),
        ] {
            let mut m = tables();
            let old = m.u8(at).unwrap();
            m.put(at, &[old ^ 0x10]);
            assert_eq!(load(None, &m).err(), Some(why));
        }
    }

    #[test]
    fn no_rsdp_is_no_acpi() {
        assert!(load(None, &FakeMem::new(0xe0000, 0x100)).unwrap().is_none());
    }
}
