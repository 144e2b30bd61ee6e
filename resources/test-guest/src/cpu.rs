//! CPUID and the TSC, read at CPL3.

use core::arch::x86_64::{CpuidResult, __cpuid, _rdtsc};

#[allow(unused_unsafe)]
fn cpuid(leaf: u32) -> CpuidResult {
    // SAFETY: CPUID is always available on x86_64.
    unsafe { __cpuid(leaf) }
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is allowed at CPL3 (CR4.TSD clear).
    unsafe { _rdtsc() }
}

fn text<'a>(regs: [u32; 3], buf: &'a mut [u8; 12]) -> &'a str {
    for (i, r) in regs.iter().enumerate() {
        buf[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(12);
    core::str::from_utf8(&buf[..len]).unwrap_or("?")
}

pub fn vendor(buf: &mut [u8; 12]) -> &str {
    let r = cpuid(0);
    text([r.ebx, r.edx, r.ecx], buf)
}

/// The hypervisor signature (leaf 0x40000000) if CPUID says there is a hypervisor.
pub fn hypervisor(buf: &mut [u8; 12]) -> Option<&str> {
    if cpuid(1).ecx & (1 << 31) == 0 {
        return None;
    }
    let r = cpuid(0x4000_0000);
    Some(text([r.ebx, r.ecx, r.edx], buf))
}

pub fn apic_id() -> u32 {
    cpuid(1).ebx >> 24
}
