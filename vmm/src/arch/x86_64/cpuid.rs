//! Per-vCPU CPUID: KVM's supported set with this vCPU's APIC id and the VM's topology (one
//! thread per core, all cores in one package), the hypervisor bit, no PMU or power features.

use kvm_bindings::CpuId;

use super::{Error, Result};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_POWER: u32 = 0x6;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

const LEAF_HYPERVISOR: u32 = 0x4000_0000;
/// The timing leaf of the VMware convention QEMU (vmware-cpuid-freq) and Cloud Hypervisor
/// also fill: EAX = TSC kHz, EBX = local APIC bus kHz.
const LEAF_HYPERVISOR_TIMING: u32 = 0x4000_0010;
/// KVM's local APIC timer runs at 1 GHz.
const APIC_BUS_KHZ: u32 = 1_000_000;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const CLFLUSH_LINE_8_BYTES: u32 = 8; // 64-byte cache lines
const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;

/// Bits needed to hold ids 0..count-1.
fn id_bits(count: u8) -> u32 {
    u32::from(count).next_power_of_two().trailing_zeros()
}

/// Rewrites `cpuid` (KVM_GET_SUPPORTED_CPUID's answer) for vCPU `index` of `count`. Leaves
/// not named here (the vendor, features, KVM's 0x40000000 signature leaf...) are kept.
pub fn filter_cpuid(cpuid: &mut CpuId, index: u8, count: u8) -> Result<()> {
    if index >= count {
        return Err(Error::InvalidVcpu { index, count });
    }
    let apic_id = u32::from(index);
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx =
                    (apic_id << 24) | (u32::from(count) << 16) | (CLFLUSH_LINE_8_BYTES << 8);
                entry.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    entry.edx |= EDX_HTT;
                } else {
                    entry.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE_PARAMS => {
                // EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing this cache - 1
                // (one per core for L1/L2, the whole package for L3).
                if entry.eax & 0x1f == 0 {
                    continue; // cache type 0: the end of the list
                }
                let level = (entry.eax >> 5) & 0x7;
                let sharing = if level >= 3 { u32::from(count) - 1 } else { 0 };
                entry.eax = (entry.eax & 0x3fff) | (sharing << 14) | ((u32::from(count) - 1) << 26);
            }
            LEAF_POWER | LEAF_PMU => {
                (entry.eax, entry.ebx, entry.ecx, entry.edx) = (0, 0, 0, 0);
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                let (shift, logical, level) = match entry.index {
                    0 => (0, 1, TOPOLOGY_LEVEL_SMT),
                    1 => (id_bits(count), u32::from(count), TOPOLOGY_LEVEL_CORE),
                    _ => (0, 0, 0),
                };
                entry.eax = shift;
                entry.ebx = logical;
                entry.ecx = (level << 8) | (entry.index & 0xff);
                entry.edx = apic_id;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Publishes the TSC frequency (KVM_GET_TSC_KHZ) in leaf 0x40000010 and raises the
/// hypervisor leaves' maximum to reach it, so a guest can time itself without calibrating.
pub fn add_timing_leaf(cpuid: &mut CpuId, tsc_khz: u32) -> Result<()> {
    let slice = cpuid.as_mut_slice();
    let Some(signature) = slice.iter_mut().find(|e| e.function == LEAF_HYPERVISOR) else {
        return Ok(()); // no hypervisor leaves to extend
    };
    signature.eax = signature.eax.max(LEAF_HYPERVISOR_TIMING);
    let timing = kvm_bindings::kvm_cpuid_entry2 {
        function: LEAF_HYPERVISOR_TIMING,
        eax: tsc_khz,
        ebx: APIC_BUS_KHZ,
        ..Default::default()
    };
    match slice
        .iter_mut()
        .find(|e| e.function == LEAF_HYPERVISOR_TIMING)
    {
        Some(existing) => *existing = timing,
        None => cpuid
            .push(timing)
            .map_err(|_| Error::Table("CPUID (no room for the timing leaf)"))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32, eax: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx: 0xffff_ffff,
            ecx: 0,
            edx: 0,
            ..Default::default()
        }
    }

    /// Leaf 4 EAX for a cache: type (1 data, 3 unified), level, self-initializing.
    fn cache(kind: u32, level: u32) -> u32 {
        kind | (level << 5) | (1 << 8)
    }

    fn synthetic() -> CpuId {
        CpuId::from_entries(&[
            entry(0, 0, 0x1f),
            entry(1, 0, 0x906ea),
            entry(4, 0, cache(1, 1)),
            entry(4, 1, cache(3, 3)),
            entry(4, 2, 0),
            entry(6, 0, 0xffff_ffff),
            entry(0xa, 0, 0xffff_ffff),
            entry(0xb, 0, 0xffff_ffff),
            entry(0xb, 1, 0xffff_ffff),
            entry(0xb, 2, 0xffff_ffff),
            entry(0x1f, 1, 0xffff_ffff),
            entry(0x4000_0000, 0, 0x4000_0001),
        ])
        .unwrap()
    }

    fn find(c: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn timing_leaf_carries_the_tsc_frequency() {
        let mut c = synthetic();
        add_timing_leaf(&mut c, 2_500_000).unwrap();
        assert_eq!(find(&c, LEAF_HYPERVISOR, 0).eax, LEAF_HYPERVISOR_TIMING);
        let timing = find(&c, LEAF_HYPERVISOR_TIMING, 0);
        assert_eq!((timing.eax, timing.ebx), (2_500_000, APIC_BUS_KHZ));
        add_timing_leaf(&mut c, 3_000_000).unwrap();
        let count = c
            .as_slice()
            .iter()
            .filter(|e| e.function == LEAF_HYPERVISOR_TIMING)
            .count();
        assert_eq!(count, 1, "replaced, not added twice");
        assert_eq!(find(&c, LEAF_HYPERVISOR_TIMING, 0).eax, 3_000_000);
    }

    #[test]
    fn apic_id_and_topology_per_vcpu() {
        let mut c = synthetic();
        filter_cpuid(&mut c, 3, 4).unwrap();
        let leaf1 = find(&c, 1, 0);
        assert_eq!(leaf1.ebx, (3 << 24) | (4 << 16) | (8 << 8));
        assert_eq!(leaf1.eax, 0x906ea, "signature kept");
        assert_ne!(leaf1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(leaf1.edx & EDX_HTT, 0);
        // L1: 4 cores, cache per core; L3 shared by all 4; the terminator stays zero.
        assert_eq!(find(&c, 4, 0).eax, cache(1, 1) | (3 << 26));
        assert_eq!(find(&c, 4, 1).eax, cache(3, 3) | (3 << 26) | (3 << 14));
        assert_eq!(find(&c, 4, 2).eax, 0);
        let zero = |e: kvm_cpuid_entry2| (e.eax, e.ebx, e.ecx, e.edx) == (0, 0, 0, 0);
        assert!(zero(find(&c, 6, 0)), "no thermal/power features");
        assert!(zero(find(&c, 0xa, 0)), "no PMU");
        let smt = find(&c, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 3));
        let core = find(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 4, 0x201, 3));
        let end = find(&c, 0xb, 2);
        assert_eq!((end.eax, end.ebx, end.ecx, end.edx), (0, 0, 2, 3));
        let v2 = find(&c, 0x1f, 1);
        assert_eq!((v2.eax, v2.ebx, v2.ecx, v2.edx), (2, 4, 0x201, 3));
        assert_eq!(find(&c, 0, 0).eax, 0x1f, "other leaves untouched");
        assert_eq!(
            find(&c, 0x4000_0000, 0).eax,
            0x4000_0001,
            "hypervisor leaf kept"
        );
    }

    #[test]
    fn each_vcpu_gets_its_own_apic_id() {
        for index in 0..8u8 {
            let mut c = synthetic();
            filter_cpuid(&mut c, index, 8).unwrap();
            assert_eq!(find(&c, 1, 0).ebx >> 24, u32::from(index));
            assert_eq!(find(&c, 0xb, 1).edx, u32::from(index));
            assert_eq!(find(&c, 0xb, 1).eax, 3, "8 cores need 3 id bits");
        }
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let mut c = synthetic();
        filter_cpuid(&mut c, 0, 1).unwrap();
        assert_eq!(find(&c, 1, 0).edx & EDX_HTT, 0);
        assert_eq!(find(&c, 1, 0).ebx, (1 << 16) | (8 << 8));
        assert_eq!(find(&c, 4, 1).eax, cache(3, 3));
        assert_eq!((find(&c, 0xb, 1).eax, find(&c, 0xb, 1).ebx), (0, 1));
    }

    #[test]
    fn index_outside_the_count_is_refused() {
        let mut c = synthetic();
        assert!(matches!(
            filter_cpuid(&mut c, 2, 2),
            Err(Error::InvalidVcpu { index: 2, count: 2 })
        ));
        assert!(filter_cpuid(&mut c, 0, 0).is_err());
    }

    #[test]
    fn real_kvm_cpuid() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            eprintln!("skipped: /dev/kvm is not usable");
            return;
        };
        let mut c = kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .unwrap();
        filter_cpuid(&mut c, 1, 2).unwrap();
        let leaf1 = find(&c, 1, 0);
        assert_eq!(leaf1.ebx >> 16, (1 << 8) | 2);
        assert_ne!(leaf1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(leaf1.edx & EDX_HTT, 0);
        let kvm_leaf = find(&c, 0x4000_0000, 0);
        let mut signature = Vec::new();
        for reg in [kvm_leaf.ebx, kvm_leaf.ecx, kvm_leaf.edx] {
            signature.extend_from_slice(&reg.to_le_bytes());
        }
        assert_eq!(&signature, b"KVMKVMKVM\0\0\0", "KVM hypervisor leaf kept");
        if c.as_slice().iter().any(|e| e.function == 0xb) {
            assert_eq!(find(&c, 0xb, 0).edx, 1);
        }
        // KVM accepts the result for a vCPU.
        let vm = kvm.create_vm().unwrap();
        let vcpu = vm.create_vcpu(1).unwrap();
        vcpu.set_cpuid2(&c).unwrap();
    }
}
