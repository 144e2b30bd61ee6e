//! CPUID and the TSC. CPUID comes from what the boot CPU read at CPL0 (entry.rs) where it
//! can: at CPL3 it traps to the VMM only where the host intercepts it (always with VMX/SVM,
//! but under PVM only with CPUID faulting, which AMD hosts lack).

use core::arch::x86_64::{__cpuid, _rdtsc, CpuidResult};

use core::sync::atomic::{AtomicU64, Ordering};

const HYPERVISOR_BIT: u32 = 1 << 31;
const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// The VMware/KVM timing leaf: EAX = TSC frequency in kHz (QEMU fills it with invtsc).
const HYPERVISOR_TIMING_LEAF: u32 = 0x4000_0010;
const TSC_CRYSTAL_LEAF: u32 = 0x15;
const FREQUENCY_LEAF: u32 = 0x16;
/// Assumed when CPUID does not say (KVM's defaults leave 0x15/0x16 empty): a typical server
/// TSC, so waits are right within a factor of ~1.5.
pub const FALLBACK_TSC_KHZ: u64 = 3_000_000;

#[allow(unused_unsafe)]
fn cpuid(leaf: u32) -> CpuidResult {
    if let Some([eax, ebx, ecx, edx]) = crate::entry::cpl0_cpuid(leaf) {
        return CpuidResult { eax, ebx, ecx, edx };
    }
    // SAFETY: CPUID is always available on x86_64.
    unsafe { __cpuid(leaf) }
}

/// Whether a CPUID executed here, at CPL3, gets the VMM's answer: the hypervisor leaf
/// (subleaf 0) as the boot CPU read it at CPL0.
#[allow(unused_unsafe)]
pub fn cpl3_cpuid_reaches_vmm() -> bool {
    // SAFETY: CPUID is always available on x86_64.
    let native = unsafe { __cpuid(HYPERVISOR_LEAF) };
    crate::entry::cpl0_cpuid(HYPERVISOR_LEAF).is_some_and(|[eax, ebx, ecx, edx]| {
        [native.eax, native.ebx, native.ecx, native.edx] == [eax, ebx, ecx, edx]
    })
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is allowed at CPL3 (CR4.TSD clear).
    unsafe { _rdtsc() }
}

/// The 12 signature bytes of three registers, up to the first NUL ("" if none printable).
fn text(regs: [u32; 3], buf: &mut [u8; 12]) -> &str {
    for (chunk, r) in buf.chunks_exact_mut(4).zip(regs) {
        chunk.copy_from_slice(&r.to_le_bytes());
    }
    crate::cmdline::from_bytes(buf)
}

pub fn vendor(buf: &mut [u8; 12]) -> &str {
    let r = cpuid(0);
    text([r.ebx, r.edx, r.ecx], buf)
}

/// The hypervisor signature (leaf 0x40000000) if CPUID.1:ECX[31] says there is one;
/// "unnamed" if its signature is blank (QEMU's kvm=off).
pub fn hypervisor(buf: &mut [u8; 12]) -> Option<&str> {
    if cpuid(1).ecx & HYPERVISOR_BIT == 0 {
        return None;
    }
    let r = cpuid(HYPERVISOR_LEAF);
    let sig = text([r.ebx, r.ecx, r.edx], buf);
    Some(if sig.is_empty() { "unnamed" } else { sig })
}

/// Where a TSC frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscSource {
    HypervisorLeaf,
    CrystalLeaf,
    FrequencyLeaf,
    Assumed,
}

/// The TSC frequency from the CPUID leaves a VMM may fill, best first. `leaf` answers
/// CPUID; `hypervisor_max` is EAX of 0x40000000 (0 without a hypervisor).
fn tsc_khz_from(
    leaf: impl Fn(u32) -> CpuidResult,
    basic_max: u32,
    hypervisor_max: u32,
) -> (u64, TscSource) {
    if hypervisor_max >= HYPERVISOR_TIMING_LEAF {
        let khz = u64::from(leaf(HYPERVISOR_TIMING_LEAF).eax);
        if khz != 0 {
            return (khz, TscSource::HypervisorLeaf);
        }
    }
    if basic_max >= TSC_CRYSTAL_LEAF {
        let r = leaf(TSC_CRYSTAL_LEAF);
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return (
                u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax) / 1000,
                TscSource::CrystalLeaf,
            );
        }
    }
    if basic_max >= FREQUENCY_LEAF {
        let mhz = u64::from(leaf(FREQUENCY_LEAF).eax & 0xffff);
        if mhz != 0 {
            return (mhz * 1000, TscSource::FrequencyLeaf);
        }
    }
    (FALLBACK_TSC_KHZ, TscSource::Assumed)
}

impl core::fmt::Display for TscSource {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str(match self {
            TscSource::HypervisorLeaf => "cpuid 0x40000010",
            TscSource::CrystalLeaf => "cpuid 0x15",
            TscSource::FrequencyLeaf => "cpuid 0x16",
            TscSource::Assumed => "assumed",
        })
    }
}

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);

/// The TSC frequency in kHz and where it came from (CPUID once; each CPUID is an exit).
pub fn tsc_khz() -> (u64, TscSource) {
    let hypervisor_max = if cpuid(1).ecx & HYPERVISOR_BIT != 0 {
        cpuid(HYPERVISOR_LEAF).eax
    } else {
        0
    };
    let found = tsc_khz_from(cpuid, cpuid(0).eax, hypervisor_max);
    TSC_KHZ.store(found.0, Ordering::Relaxed);
    found
}

/// TSC ticks per millisecond, cached after the first call.
pub fn tsc_per_ms() -> u64 {
    match TSC_KHZ.load(Ordering::Relaxed) {
        0 => tsc_khz().0,
        khz => khz,
    }
}

/// The initial APIC id, CPUID.1:EBX[31:24].
pub fn apic_id() -> u32 {
    cpuid(1).ebx >> 24
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(table: &'static [(u32, [u32; 4])]) -> impl Fn(u32) -> CpuidResult {
        move |leaf| {
            let r = table
                .iter()
                .find(|(l, _)| *l == leaf)
                .map(|(_, r)| *r)
                .unwrap_or([0; 4]);
            CpuidResult {
                eax: r[0],
                ebx: r[1],
                ecx: r[2],
                edx: r[3],
            }
        }
    }

    #[test]
    fn tsc_frequency_sources_in_order() {
        let all = leaves(&[
            (0x4000_0010, [2_600_000, 0, 0, 0]),
            (0x15, [2, 200, 24_000_000, 0]),
            (0x16, [2100, 0, 0, 0]),
        ]);
        assert_eq!(
            tsc_khz_from(&all, 0x16, 0x4000_0010),
            (2_600_000, TscSource::HypervisorLeaf)
        );
        assert_eq!(
            tsc_khz_from(&all, 0x16, 0x4000_0001),
            (2_400_000, TscSource::CrystalLeaf)
        );
        assert_eq!(
            tsc_khz_from(&all, 0x14, 0),
            (FALLBACK_TSC_KHZ, TscSource::Assumed)
        );
        let base_only = leaves(&[(0x16, [2100, 0, 0, 0])]);
        assert_eq!(
            tsc_khz_from(&base_only, 0x16, 0x4000_0010),
            (2_100_000, TscSource::FrequencyLeaf)
        );
        assert_eq!(
            tsc_khz_from(leaves(&[]), 0x24, 0x4000_0010),
            (FALLBACK_TSC_KHZ, TscSource::Assumed)
        );
    }

    #[test]
    fn signatures_read_little_endian_and_stop_at_nul() {
        let mut buf = [0u8; 12];
        // "KVMKVMKVM\0\0\0" as KVM returns it in ebx, ecx, edx.
        assert_eq!(
            text([0x4b4d_564b, 0x564b_4d56, 0x0000_004d], &mut buf),
            "KVMKVMKVM"
        );
        assert_eq!(
            text([0x756e_6547, 0x4965_6e69, 0x6c65_746e], &mut buf),
            "GenuineIntel"
        );
        assert_eq!(text([0, 0, 0], &mut buf), "");
    }
}
