//! Just enough of an AML reader to find the devices a VMM's DSDT declares (ACPI 6.5, 20.2):
//! Scope, Device, Name with data objects (integers, strings, EISA ids, buffers, packages),
//! OperationRegion and Field; Method bodies are skipped by their package length. Resource
//! templates (the `_CRS` buffers) are decoded for I/O ports, 32-bit fixed memory windows and
//! extended interrupts.
//!
//! Self-contained (no crate imports): the VMM's unit tests include this file to decode the
//! DSDT they generate.

/// Most devices a DSDT may declare before the rest are dropped (and counted).
pub const MAX_DEVICES: usize = 32;
/// Deepest Scope/Device nesting read (each level is a stack frame; real tables use 2 or 3).
const MAX_DEPTH: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AmlDevice {
    pub name: [u8; 4],
    /// `_HID`, as text: an EISA id decoded ("PNP0501") or the string ("LNRO0005").
    hid: [u8; 8],
    hid_len: usize,
    pub uid: Option<u64>,
    /// From `_CRS`: the first of each resource kind.
    pub memory: Option<(u32, u32)>,
    /// The first SystemMemory OperationRegion declared in the device: (offset, length). A
    /// GED's event register is described this way, not in its `_CRS` (Linux's acpi-ged
    /// accepts only interrupts there).
    pub region: Option<(u64, u64)>,
    pub io: Option<(u16, u16)>,
    pub irq: Option<u32>,
    /// `_CCA` is present and says cache-coherent.
    pub coherent: bool,
    /// Has a `_EVT` method (a Generic Event Device's handler).
    pub has_evt: bool,
}

impl AmlDevice {
    pub fn hid(&self) -> &str {
        core::str::from_utf8(&self.hid[..self.hid_len]).unwrap_or("?")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Dsdt {
    devices: [AmlDevice; MAX_DEVICES],
    count: usize,
    pub dropped: usize,
    /// SLP_TYPa from `\_S5_`.
    pub s5: Option<u8>,
}

impl Dsdt {
    pub fn devices(&self) -> &[AmlDevice] {
        &self.devices[..self.count]
    }

    pub fn find<'a>(&'a self, hid: &'a str) -> impl Iterator<Item = &'a AmlDevice> + 'a {
        self.devices().iter().filter(move |d| d.hid() == hid)
    }
}

/// A data object's value, as far as the device scan cares.
enum Value<'a> {
    Integer(u64),
    String(&'a [u8]),
    Buffer(&'a [u8]),
    Package(Option<u64>),
}

struct Reader<'a> {
    aml: &'a [u8],
    pos: usize,
}

type Result<T> = core::result::Result<T, &'static str>;

const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const STRING_PREFIX: u8 = 0x0d;
const QWORD_PREFIX: u8 = 0x0e;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const METHOD_OP: u8 = 0x14;
const DUAL_NAME_PREFIX: u8 = 0x2e;
const MULTI_NAME_PREFIX: u8 = 0x2f;
const EXT_OP_PREFIX: u8 = 0x5b;
const ONES_OP: u8 = 0xff;
const EXT_MUTEX_OP: u8 = 0x01;
const EXT_OP_REGION_OP: u8 = 0x80;
/// OperationRegion space 0.
const SYSTEM_MEMORY_SPACE: u8 = 0;
const EXT_FIELD_OP: u8 = 0x81;
const EXT_DEVICE_OP: u8 = 0x82;

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.aml.get(self.pos).ok_or("AML ends inside an object")?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or("AML length overflows")?;
        let s = self
            .aml
            .get(self.pos..end)
            .ok_or("AML ends inside an object")?;
        self.pos = end;
        Ok(s)
    }

    fn le(&mut self, n: usize) -> Result<u64> {
        Ok(self
            .bytes(n)?
            .iter()
            .rev()
            .fold(0u64, |v, b| v << 8 | u64::from(*b)))
    }

    /// PkgLength (20.2.4): returns the end offset of the package it starts.
    fn pkg_end(&mut self) -> Result<usize> {
        let start = self.pos;
        let lead = self.byte()?;
        let follow = usize::from(lead >> 6);
        let mut len = if follow == 0 {
            usize::from(lead & 0x3f)
        } else {
            usize::from(lead & 0x0f)
        };
        for i in 0..follow {
            len |= usize::from(self.byte()?) << (4 + 8 * i);
        }
        let end = start.checked_add(len).ok_or("package length overflows")?;
        if end > self.aml.len() || end < self.pos {
            return Err("package length runs past its parent");
        }
        Ok(end)
    }

    /// NameString: root/parent prefixes, then one, two or n segments. Returns the last
    /// segment (what a device or name is called locally).
    fn name_string(&mut self) -> Result<[u8; 4]> {
        while matches!(self.aml.get(self.pos), Some(b'\\') | Some(b'^')) {
            self.pos += 1;
        }
        let segments = match self.byte()? {
            ZERO_OP => return Ok([0; 4]),
            DUAL_NAME_PREFIX => 2,
            MULTI_NAME_PREFIX => usize::from(self.byte()?),
            _ => {
                self.pos -= 1;
                1
            }
        };
        let mut last = [0u8; 4];
        for _ in 0..segments {
            last.copy_from_slice(self.bytes(4)?);
            let lead_ok = last[0] == b'_' || last[0].is_ascii_uppercase();
            if !lead_ok || !last.iter().all(|c| *c == b'_' || c.is_ascii_alphanumeric()) {
                return Err("bad name segment");
            }
        }
        Ok(last)
    }

    fn integer(&mut self) -> Result<u64> {
        match self.data_object()? {
            Value::Integer(v) => Ok(v),
            _ => Err("expected an integer"),
        }
    }

    fn data_object(&mut self) -> Result<Value<'a>> {
        Ok(match self.byte()? {
            ZERO_OP => Value::Integer(0),
            ONE_OP => Value::Integer(1),
            ONES_OP => Value::Integer(u64::MAX),
            BYTE_PREFIX => Value::Integer(self.le(1)?),
            WORD_PREFIX => Value::Integer(self.le(2)?),
            DWORD_PREFIX => Value::Integer(self.le(4)?),
            QWORD_PREFIX => Value::Integer(self.le(8)?),
            STRING_PREFIX => {
                let start = self.pos;
                let len = self.aml[start..]
                    .iter()
                    .position(|b| *b == 0)
                    .ok_or("unterminated string")?;
                self.pos = start + len + 1;
                Value::String(&self.aml[start..start + len])
            }
            BUFFER_OP => {
                let end = self.pkg_end()?;
                let size = usize::try_from(self.integer()?).map_err(|_| "buffer too large")?;
                let data = self
                    .aml
                    .get(self.pos..end)
                    .ok_or("buffer runs past its package")?;
                self.pos = end;
                // Bytes past the initializer read as zero; the scan only needs the initializer.
                Value::Buffer(&data[..size.min(data.len())])
            }
            PACKAGE_OP => {
                let end = self.pkg_end()?;
                let count = self.byte()?;
                let first = if count > 0 && self.pos < end {
                    Some(self.integer()?)
                } else {
                    None
                };
                self.pos = end;
                Value::Package(first)
            }
            _ => return Err("unsupported data object"),
        })
    }
}

/// EISA id (a compressed DWORD) as its seven characters, "PNP0C0C".
pub fn eisa_id_text(id: u32) -> [u8; 7] {
    let v = id.swap_bytes();
    let letter = |shift: u32| b'@' + ((v >> shift) & 0x1f) as u8;
    let hex = |shift: u32| b"0123456789ABCDEF"[((v >> shift) & 0xf) as usize];
    [
        letter(26),
        letter(21),
        letter(16),
        hex(12),
        hex(8),
        hex(4),
        hex(0),
    ]
}

/// Resource descriptors (ACPI 6.5, 6.4): small I/O (tag 8), large Memory32Fixed (6) and
/// Extended Interrupt (9); others are skipped by their length.
fn decode_resources(buf: &[u8], dev: &mut AmlDevice) -> Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let tag = buf[at];
        let (kind, body, len) = if tag & 0x80 == 0 {
            ((tag >> 3) & 0x0f, at + 1, usize::from(tag & 7))
        } else {
            let len = buf
                .get(at + 1..at + 3)
                .ok_or("resource runs past its buffer")?;
            (
                tag,
                at + 3,
                usize::from(u16::from_le_bytes([len[0], len[1]])),
            )
        };
        let data = buf
            .get(body..body + len)
            .ok_or("resource runs past its buffer")?;
        let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        match kind {
            0x0f => return Ok(()), // end tag
            0x08 if len >= 7 => {
                dev.io.get_or_insert((u16_at(1), u16::from(data[6])));
            }
            0x86 if len >= 9 => {
                dev.memory.get_or_insert((u32_at(1), u32_at(5)));
            }
            0x89 if len >= 6 && data[1] >= 1 => {
                dev.irq.get_or_insert(u32_at(2));
            }
            _ => {}
        }
        at = body + len;
    }
    Err("resource template without an end tag")
}

/// Walks the DSDT's definition block (the bytes after its 36-byte header).
pub fn parse(aml: &[u8]) -> Result<Dsdt> {
    let mut dsdt = Dsdt {
        devices: [AmlDevice::default(); MAX_DEVICES],
        count: 0,
        dropped: 0,
        s5: None,
    };
    let mut r = Reader { aml, pos: 0 };
    term_list(&mut r, aml.len(), None, &mut dsdt, 0)?;
    Ok(dsdt)
}

fn term_list(
    r: &mut Reader,
    end: usize,
    mut device: Option<&mut AmlDevice>,
    out: &mut Dsdt,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err("AML nested too deeply");
    }
    while r.pos < end {
        match r.byte()? {
            SCOPE_OP => {
                let scope_end = r.pkg_end()?;
                r.name_string()?;
                term_list(r, scope_end, None, out, depth + 1)?;
            }
            NAME_OP => {
                let name = r.name_string()?;
                let value = r.data_object()?;
                match device.as_deref_mut() {
                    Some(dev) => describe(dev, &name, value)?,
                    None if &name == b"_S5_" => {
                        if let Value::Package(Some(typ)) = value {
                            out.s5 = Some(typ as u8);
                        }
                    }
                    None => {}
                }
            }
            METHOD_OP => {
                let method_end = r.pkg_end()?;
                let name = r.name_string()?;
                if let (Some(dev), b"_EVT") = (device.as_deref_mut(), &name) {
                    dev.has_evt = true;
                }
                r.pos = method_end;
            }
            EXT_OP_PREFIX => match r.byte()? {
                EXT_DEVICE_OP => {
                    let dev_end = r.pkg_end()?;
                    let mut dev = AmlDevice {
                        name: r.name_string()?,
                        ..AmlDevice::default()
                    };
                    term_list(r, dev_end, Some(&mut dev), out, depth + 1)?;
                    if out.count < MAX_DEVICES {
                        out.devices[out.count] = dev;
                        out.count += 1;
                    } else {
                        out.dropped += 1;
                    }
                }
                EXT_OP_REGION_OP => {
                    r.name_string()?;
                    let space = r.byte()?;
                    let offset = r.integer()?;
                    let length = r.integer()?;
                    if let Some(dev) = device.as_deref_mut() {
                        if space == SYSTEM_MEMORY_SPACE && dev.region.is_none() {
                            dev.region = Some((offset, length));
                        }
                    }
                }
                EXT_FIELD_OP => {
                    r.pos = r.pkg_end()?;
                }
                EXT_MUTEX_OP => {
                    r.name_string()?;
                    r.byte()?;
                }
                _ => return Err("unsupported extended opcode"),
            },
            _ => return Err("unsupported opcode"),
        }
    }
    if r.pos != end {
        return Err("object runs past its package");
    }
    Ok(())
}

fn describe(dev: &mut AmlDevice, name: &[u8; 4], value: Value) -> Result<()> {
    match (name, value) {
        (b"_HID", Value::Integer(id)) => {
            let text = eisa_id_text(id as u32);
            dev.hid[..7].copy_from_slice(&text);
            dev.hid_len = 7;
        }
        (b"_HID", Value::String(s)) => {
            let n = s.len().min(dev.hid.len());
            dev.hid[..n].copy_from_slice(&s[..n]);
            dev.hid_len = n;
        }
        (b"_UID", Value::Integer(uid)) => dev.uid = Some(uid),
        (b"_CCA", Value::Integer(cca)) => dev.coherent = cca == 1,
        (b"_CRS", Value::Buffer(buf)) => decode_resources(buf, dev)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eisa_ids_decode() {
        // EISAID("PNP0C0C") = 0x0C0CD041 as AML stores it.
        assert_eq!(&eisa_id_text(0x0c0c_d041), b"PNP0C0C");
        assert_eq!(&eisa_id_text(0x0105_d041), b"PNP0501");
    }

    /// Scope(\_SB) { Device(VR00) { Name(_HID, "LNRO0005") Name(_UID, 0)
    ///   Name(_CRS, ResourceTemplate { Memory32Fixed(RW, 0xd0000000, 0x1000)
    ///   Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { 5 } }) } }
    /// Name(_S5, Package { 5, 0 })
    fn sample() -> [u8; 79] {
        [
            0x10, 0x43, 0x04, b'\\', b'_', b'S', b'B', b'_', // Scope, two-byte length 67
            0x5b, 0x82, 0x3a, b'V', b'R', b'0', b'0', // Device, len 58
            0x08, b'_', b'H', b'I', b'D', 0x0d, b'L', b'N', b'R', b'O', b'0', b'0', b'0', b'5',
            0x00, // _HID string
            0x08, b'_', b'U', b'I', b'D', 0x00, // _UID 0
            0x08, b'_', b'C', b'R', b'S', 0x11, 0x1a, 0x0a, 0x17, // Buffer, len 26, size 23
            0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00,
            0x00, // Mem32Fixed
            0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, // Extended interrupt 5
            0x79, 0x00, // end tag
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00, // _S5_
        ]
    }

    #[test]
    fn finds_a_virtio_device_and_s5() {
        let dsdt = parse(&sample()).unwrap();
        assert_eq!(dsdt.devices().len(), 1);
        let dev = dsdt.devices()[0];
        assert_eq!(&dev.name, b"VR00");
        assert_eq!(dev.hid(), "LNRO0005");
        assert_eq!(dev.uid, Some(0));
        assert_eq!(dev.memory, Some((0xd000_0000, 0x1000)));
        assert_eq!(dev.irq, Some(5));
        assert_eq!(dsdt.s5, Some(5));
        assert_eq!(dsdt.find("LNRO0005").count(), 1);
    }

    #[test]
    fn truncated_or_corrupt_aml_is_an_error() {
        let aml = sample();
        for cut in 1..aml.len() - 1 {
            // Every prefix either parses (a cut between objects) or says why not; none panics.
            let _ = parse(&aml[..cut]);
        }
        assert!(parse(&aml[..20]).is_err());
        // Scopes nested beyond any real table: refused, not a stack overflow.
        let mut deep: Vec<u8> = Vec::new();
        for _ in 0..40 {
            let mut scope = b"\\_SB_".to_vec();
            scope.extend_from_slice(&deep);
            let total = scope.len() + 2; // two-byte PkgLength, counting itself
            deep = vec![0x10, 0x40 | (total & 0xf) as u8, (total >> 4) as u8];
            deep.extend_from_slice(&scope);
        }
        assert_eq!(parse(&deep).err(), Some("AML nested too deeply"));
        let mut bad = aml;
        bad[1] = 0x3f; // the scope claims more bytes than there are
        assert!(parse(&bad).is_err());
        let mut no_end = aml;
        let end_tag = aml.iter().position(|b| *b == 0x79).unwrap();
        no_end[end_tag] = 0x22; // an unknown small descriptor instead of the end tag
        assert!(parse(&no_end).is_err());
    }
}
