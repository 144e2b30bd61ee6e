//! GDT entries for the boot CPU and their KVM segment form.

use kvm_bindings::kvm_segment;

/// A GDT descriptor from flags (G, D/B, L, AVL in bits 15:12 of the flags word, access byte in
/// bits 7:0), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let raw = (((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0xffff)) as u32;
    if (entry >> 55) & 1 == 1 {
        (raw << 12) | 0xfff // 4 KiB granularity
    } else {
        raw
    }
}

/// The KVM segment register value for descriptor `entry` at GDT index `index`.
pub fn kvm_segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: ((entry >> 55) & 1) as u8,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from((entry >> 47) & 1 == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_segment() {
        let e = gdt_entry(0xa09b, 0, 0xfffff);
        let s = kvm_segment_from_gdt(e, 1);
        assert_eq!(
            (s.selector, s.type_, s.present, s.l, s.db, s.g, s.s, s.dpl),
            (8, 0xb, 1, 1, 0, 1, 1, 0)
        );
        assert_eq!(s.limit, 0xffff_ffff);
        assert_eq!(s.base, 0);
    }

    #[test]
    fn base_and_byte_limit_round_trip() {
        let e = gdt_entry(0x008b, 0x1234_5678, 0x67);
        let s = kvm_segment_from_gdt(e, 3);
        assert_eq!(
            (s.base, s.limit, s.type_, s.g, s.s),
            (0x1234_5678, 0x67, 0xb, 0, 0)
        );
        assert_eq!(kvm_segment_from_gdt(0, 0).unusable, 1);
    }
}
