//! What the VMM told us at entry: command line, memory map, initrd. From hvm_start_info (PVH)
//! or boot_params (Linux 64-bit). Either may be missing pieces; absent means empty.

const MAX_E820: usize = 32;
const CMDLINE_MAX: usize = 4096;
const PVH_MAGIC: u32 = 0x336e_c578;

#[derive(Clone, Copy)]
pub struct E820 {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

pub struct BootInfo {
    pub protocol: &'static str,
    pub cmdline: &'static str,
    pub e820: [E820; MAX_E820],
    pub e820_len: usize,
    pub initrd: Option<(u64, u64)>,
}

fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: the page tables identity-map 0..4 GiB and the VMM put its tables in RAM there.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// The NUL-terminated string at `addr` (bounded; non-UTF-8 reads as empty).
fn c_string(addr: u64) -> &'static str {
    if addr == 0 {
        return "";
    }
    // SAFETY: as in `read`; we stop at CMDLINE_MAX bytes.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, CMDLINE_MAX) };
    let len = bytes.iter().position(|b| *b == 0).unwrap_or(0);
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

impl BootInfo {
    pub fn e820(&self) -> &[E820] {
        &self.e820[..self.e820_len]
    }

    pub fn parse(kind: u64, info: u64) -> BootInfo {
        let mut boot = BootInfo {
            protocol: "unknown",
            cmdline: "",
            e820: [E820 { addr: 0, size: 0, kind: 0 }; MAX_E820],
            e820_len: 0,
            initrd: None,
        };
        match kind {
            1 if read::<u32>(info) == PVH_MAGIC => {
                boot.protocol = "pvh";
                boot.cmdline = c_string(read::<u64>(info + 24));
                let (map, count) = (read::<u64>(info + 40), read::<u32>(info + 48) as usize);
                for i in 0..count.min(MAX_E820) {
                    let e = map + 24 * i as u64;
                    boot.push(E820 { addr: read(e), size: read(e + 8), kind: read(e + 16) });
                }
                let (modules, list) = (read::<u32>(info + 12), read::<u64>(info + 16));
                if modules > 0 && list != 0 {
                    boot.initrd = Some((read(list), read(list + 8)));
                }
            }
            1 => boot.protocol = "pvh",
            2 => {
                boot.protocol = "linux64";
                boot.cmdline = c_string(u64::from(read::<u32>(info + 0x228)));
                let count = read::<u8>(info + 0x1e8) as usize;
                for i in 0..count.min(MAX_E820) {
                    let e = info + 0x2d0 + 20 * i as u64;
                    boot.push(E820 { addr: read(e), size: read(e + 8), kind: read(e + 16) });
                }
                let (image, size) = (read::<u32>(info + 0x218), read::<u32>(info + 0x21c));
                if size > 0 {
                    boot.initrd = Some((u64::from(image), u64::from(size)));
                }
            }
            _ => {}
        }
        boot
    }

    fn push(&mut self, e: E820) {
        if self.e820_len < MAX_E820 {
            self.e820[self.e820_len] = e;
            self.e820_len += 1;
        }
    }

    /// RAM in the map, rounded to the nearest MiB.
    pub fn ram_mib(&self) -> u64 {
        let bytes: u64 = self.e820().iter().filter(|e| e.kind == 1).map(|e| e.size).sum();
        (bytes + (1 << 19)) >> 20
    }

    /// The value of `key=` on the command line.
    pub fn arg(&self, key: &str) -> Option<&'static str> {
        self.cmdline.split(' ').find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    }

    pub fn has_word(&self, word: &str) -> bool {
        self.cmdline.split(' ').any(|w| w == word)
    }
}

pub fn e820_kind(kind: u32) -> &'static str {
    match kind {
        1 => "ram",
        2 => "reserved",
        3 => "acpi",
        4 => "nvs",
        5 => "unusable",
        _ => "other",
    }
}
