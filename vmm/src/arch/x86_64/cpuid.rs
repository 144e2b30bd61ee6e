//! Per-vCPU CPUID: KVM's supported set with this vCPU's APIC id and the VM's topology (one
//! thread per core, all cores in one package), the hypervisor bit, no PMU or power features.

use kvm_bindings::CpuId;

use super::Result;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_POWER: u32 = 0x6;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;
const CLFLUSH_LINE_8_BYTES: u32 = 8; // 64-byte cache lines
const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;

/// Bits needed to hold ids 0..count-1.
fn id_bits(count: u8) -> u32 {
    u32::from(count).next_power_of_two().trailing_zeros()
}

/// Rewrites `cpuid` (KVM_GET_SUPPORTED_CPUID's answer) for vCPU `index` of `count`.
pub fn filter_cpuid(cpuid: &mut CpuId, index: u8, count: u8) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0,
            edx: 0,
            ..Default::default()
        }
    }

    fn synthetic() -> CpuId {
        CpuId::from_entries(&[
            entry(0, 0),
            entry(1, 0),
            entry(4, 0),
            entry(6, 0),
            entry(0xa, 0),
            entry(0xb, 0),
            entry(0xb, 1),
            entry(0xb, 2),
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
    fn apic_id_and_topology_per_vcpu() {
        let mut c = synthetic();
        filter_cpuid(&mut c, 3, 4).unwrap();
        let leaf1 = find(&c, 1, 0);
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_ne!(leaf1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(leaf1.edx & EDX_HTT, 0);
        assert_eq!(find(&c, 4, 0).eax >> 26, 3);
        assert_eq!(find(&c, 6, 0).eax, 0);
        assert_eq!(find(&c, 0xa, 0).eax, 0);
        let core = find(&c, 0xb, 1);
        assert_eq!(
            (core.eax, core.ebx, core.ecx >> 8, core.edx),
            (2, 4, TOPOLOGY_LEVEL_CORE, 3)
        );
        assert_eq!(find(&c, 0xb, 0).edx, 3);
        assert_eq!(
            find(&c, 0xb, 2).ecx >> 8,
            0,
            "invalid level terminates the list"
        );
        assert_eq!(find(&c, 0, 0).eax, 0xffff_ffff, "other leaves untouched");
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let mut c = synthetic();
        filter_cpuid(&mut c, 0, 1).unwrap();
        assert_eq!(find(&c, 1, 0).edx & EDX_HTT, 0);
        assert_eq!(find(&c, 1, 0).ebx >> 24, 0);
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
        assert_eq!(find(&c, 1, 0).ebx >> 24, 1);
        assert!(
            c.as_slice().iter().any(|e| e.function == 0x4000_0000),
            "KVM hypervisor leaf kept"
        );
    }
}
