//! Where the VM's threads run on the host, like libvirt's `<cputune>` (vcpupin, emulatorpin)
//! and Cloud Hypervisor's `--cpus affinity=`: the user's pins, the automatic policy, and the
//! rule that keeps each vCPU on exactly one host CPU where KVM needs it.
//!
//! On kvm_pvm a vCPU thread that moves to another host CPU can lose its vCPU state (the next
//! KVM_RUN fails at the reset vector), so there every vCPU is pinned to one host CPU before its
//! first KVM_RUN, and a set of several CPUs is narrowed to one of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use mgmt::cpuset::CpuSet;

use crate::affinity::{self, ThreadStats};
use crate::vcpu::VcpuThreads;

/// How vCPUs without a pin of their own are placed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VcpuPlacement {
    /// `spread` where KVM needs it (kvm_pvm), `none` elsewhere.
    #[default]
    Auto,
    /// Each vCPU on one host CPU, round-robin over the CPUs the process may use.
    Spread,
    /// vCPUs run wherever the scheduler puts them (within their pin, if any).
    None,
}

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTune {
    pub placement: VcpuPlacement,
    /// Host CPUs per vCPU index.
    pub vcpu_pins: BTreeMap<u8, CpuSet>,
    /// Host CPUs for every other thread of the VMM.
    pub emulator_pin: Option<CpuSet>,
}

/// The plan a `CpuTune` resolves to on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementPolicy {
    /// Every vCPU stays on exactly one host CPU.
    pub one_cpu_per_vcpu: bool,
    /// Why, when it is because of kvm_pvm rather than `--vcpu-placement spread`.
    pub kvm_is_pvm: bool,
    /// The CPUs this process may use; every pin must stay within them.
    pub allowed: CpuSet,
    /// The affinity each vCPU thread sets on itself before its first KVM_RUN.
    pub vcpus: Vec<CpuSet>,
    pub emulator: Option<CpuSet>,
}

/// Why vCPUs are pinned one per host CPU without being asked (logged at info level).
const PVM_REASON: &str = "KVM here is kvm_pvm, where a vCPU thread that moves between host \
                          CPUs can lose its vCPU state";

impl CpuTune {
    /// Checks the pins against the vCPU count and the CPUs this process may use, and applies
    /// the automatic policy. Errors name the flag.
    pub fn resolve(
        &self,
        vcpu_count: u8,
        allowed: &CpuSet,
        kvm_is_pvm: bool,
    ) -> Result<PlacementPolicy, String> {
        let one_cpu_per_vcpu = match self.placement {
            VcpuPlacement::Auto => kvm_is_pvm,
            VcpuPlacement::Spread => true,
            VcpuPlacement::None => false,
        };
        let mut policy = PlacementPolicy {
            one_cpu_per_vcpu,
            kvm_is_pvm,
            allowed: allowed.clone(),
            vcpus: Vec::new(),
            emulator: None,
        };
        for (&vcpu, cpus) in &self.vcpu_pins {
            if vcpu >= vcpu_count {
                return Err(format!(
                    "--vcpu-pin {vcpu}={cpus}: there is no vCPU {vcpu} (--cpus {vcpu_count})"
                ));
            }
            policy
                .check(cpus)
                .map_err(|e| format!("--vcpu-pin {vcpu}={cpus}: {e}"))?;
        }
        if let Some(cpus) = &self.emulator_pin {
            policy
                .check(cpus)
                .map_err(|e| format!("--emulator-pin {cpus}: {e}"))?;
            policy.emulator = Some(cpus.clone());
        }
        for vcpu in 0..vcpu_count {
            let wanted = self.vcpu_pins.get(&vcpu).unwrap_or(allowed);
            policy
                .vcpus
                .push(policy.narrow(usize::from(vcpu), wanted, None));
        }
        Ok(policy)
    }
}

impl PlacementPolicy {
    /// Says at start-up what the automatic policy decided and which pins it narrowed.
    pub fn log_choices(&self, tune: &CpuTune) {
        for (&vcpu, wanted) in &tune.vcpu_pins {
            let got = &self.vcpus[usize::from(vcpu)];
            if got != wanted {
                log::warn!(
                    "vCPU {vcpu}: pinned to host CPU {got} of {wanted}: {}",
                    self.one_cpu_reason()
                );
            }
        }
        if self.kvm_is_pvm && self.one_cpu_per_vcpu && tune.placement == VcpuPlacement::Auto {
            log::info!("each vCPU thread is pinned to one host CPU: {PVM_REASON}");
        }
        if self.kvm_is_pvm && !self.one_cpu_per_vcpu {
            log::warn!("--vcpu-placement none: {PVM_REASON}");
        }
    }

    fn one_cpu_reason(&self) -> &'static str {
        if self.kvm_is_pvm {
            PVM_REASON
        } else {
            "--vcpu-placement spread keeps each vCPU on one host CPU"
        }
    }

    /// A set of host CPUs is usable if this process may run on all of them.
    pub fn check(&self, cpus: &CpuSet) -> Result<(), String> {
        let outside = cpus.difference(&self.allowed);
        if !outside.is_empty() {
            let (what, verb) = if outside.len() == 1 {
                ("host CPU", "is")
            } else {
                ("host CPUs", "are")
            };
            return Err(format!(
                "{what} {outside} {verb} not available to this process (it may use {})",
                self.allowed
            ));
        }
        Ok(())
    }

    /// The affinity vCPU `vcpu` gets when `wanted` is asked for: all of it, or where one CPU
    /// per vCPU is the rule, the one it is on now if `wanted` has it, else one chosen
    /// round-robin by vCPU index.
    pub fn narrow(&self, vcpu: usize, wanted: &CpuSet, now_on: Option<usize>) -> CpuSet {
        if !self.one_cpu_per_vcpu || wanted.len() <= 1 {
            return wanted.clone();
        }
        match now_on.filter(|&cpu| wanted.contains(cpu)) {
            Some(cpu) => CpuSet::single(cpu),
            None => wanted
                .nth_cyclic(vcpu)
                .map_or_else(|| wanted.clone(), CpuSet::single),
        }
    }
}

/// The running VM's placement, for management calls: reads the threads' real affinities and
/// moves them (a vCPU moves on its own thread, between two KVM_RUNs).
pub struct CpuPinning {
    policy: PlacementPolicy,
    vcpus: VcpuThreads,
}

impl CpuPinning {
    /// The other threads belong on the emulator pin, or else wherever the process may run.
    pub fn new(policy: PlacementPolicy, vcpus: VcpuThreads) -> Arc<CpuPinning> {
        vcpus.set_emulator_cpus(policy.emulator.as_ref().unwrap_or(&policy.allowed));
        Arc::new(CpuPinning { policy, vcpus })
    }

    pub fn policy(&self) -> &PlacementPolicy {
        &self.policy
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.tids().len()
    }

    /// The real affinity of vCPU `index`'s thread.
    pub fn vcpu_affinity(&self, index: usize) -> Result<CpuSet, String> {
        let tid = self.vcpu_tid(index)?;
        affinity::thread_affinity(tid)
    }

    pub fn vcpu_stats(&self, index: usize) -> Result<ThreadStats, String> {
        let tid = self.vcpu_tid(index)?;
        affinity::thread_stats(tid).ok_or_else(|| format!("no statistics for vCPU {index}"))
    }

    fn vcpu_tid(&self, index: usize) -> Result<affinity::Tid, String> {
        self.vcpus
            .tids()
            .get(index)
            .copied()
            .ok_or_else(|| format!("there is no vCPU {index}"))
    }

    /// Moves vCPU `index` onto `wanted` (narrowed to one CPU where that is the rule);
    /// returns the affinity it got.
    pub fn pin_vcpu(&self, index: usize, wanted: &CpuSet) -> Result<CpuSet, String> {
        self.policy.check(wanted)?;
        let now_on = self
            .vcpu_affinity(index)
            .ok()
            .filter(|set| set.len() == 1)
            .and_then(|set| set.first());
        let cpus = self.policy.narrow(index, wanted, now_on);
        if cpus != *wanted {
            log::warn!(
                "vCPU {index}: pinned to host CPU {cpus} of {wanted}: {}",
                self.policy.one_cpu_reason()
            );
        }
        self.vcpus.pin(index, &cpus)?;
        Ok(cpus)
    }

    /// The affinity of the VMM's other threads, as the main thread has it.
    pub fn emulator_affinity(&self) -> Result<CpuSet, String> {
        affinity::thread_affinity(std::process::id() as affinity::Tid)
    }

    /// Moves every thread of the process that is not a vCPU onto `cpus`; threads started
    /// later inherit it from the thread that starts them. KVM's own helper thread, which
    /// the first KVM_RUN starts from a vCPU thread, is moved when the vCPUs first exit.
    pub fn pin_emulator(&self, cpus: &CpuSet) -> Result<(), String> {
        self.policy.check(cpus)?;
        self.vcpus.set_emulator_cpus(cpus);
        affinity::set_affinity_except(&self.vcpus.tids(), cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(text: &str) -> CpuSet {
        CpuSet::parse(text).unwrap()
    }

    fn tune(placement: VcpuPlacement, pins: &[(u8, &str)]) -> CpuTune {
        CpuTune {
            placement,
            vcpu_pins: pins.iter().map(|&(v, c)| (v, cpus(c))).collect(),
            emulator_pin: None,
        }
    }

    #[test]
    fn auto_spreads_only_on_pvm() {
        let auto = tune(VcpuPlacement::Auto, &[]);
        let on_pvm = auto.resolve(3, &cpus("0-1"), true).unwrap();
        assert!(on_pvm.one_cpu_per_vcpu);
        assert_eq!(on_pvm.vcpus, vec![cpus("0"), cpus("1"), cpus("0")]);
        let elsewhere = auto.resolve(2, &cpus("0-1"), false).unwrap();
        assert!(!elsewhere.one_cpu_per_vcpu);
        assert_eq!(elsewhere.vcpus, vec![cpus("0-1"), cpus("0-1")]);
        let spread = tune(VcpuPlacement::Spread, &[]);
        assert_eq!(
            spread.resolve(2, &cpus("2-3"), false).unwrap().vcpus,
            vec![cpus("2"), cpus("3")]
        );
        let none = tune(VcpuPlacement::None, &[]);
        assert!(
            !none
                .resolve(1, &cpus("0-1"), true)
                .unwrap()
                .one_cpu_per_vcpu
        );
    }

    #[test]
    fn pins_are_kept_or_narrowed_to_one_cpu() {
        let pinned = tune(VcpuPlacement::Auto, &[(0, "1"), (1, "0-1")]);
        assert_eq!(
            pinned.resolve(2, &cpus("0-1"), false).unwrap().vcpus,
            vec![cpus("1"), cpus("0-1")]
        );
        let policy = pinned.resolve(2, &cpus("0-1"), true).unwrap();
        assert_eq!(policy.vcpus, vec![cpus("1"), cpus("1")]);
        // A live repin keeps the CPU a vCPU is on when the new set has it.
        assert_eq!(policy.narrow(1, &cpus("0-1"), Some(0)), cpus("0"));
        assert_eq!(policy.narrow(1, &cpus("0-1"), Some(5)), cpus("1"));
    }

    #[test]
    fn bad_pins_are_refused_with_the_flag() {
        let allowed = cpus("0-1");
        let e = tune(VcpuPlacement::Auto, &[(0, "2")])
            .resolve(1, &allowed, false)
            .unwrap_err();
        assert_eq!(
            e,
            "--vcpu-pin 0=2: host CPU 2 is not available to this process (it may use 0-1)"
        );
        let e = tune(VcpuPlacement::Auto, &[(2, "0")])
            .resolve(2, &allowed, false)
            .unwrap_err();
        assert_eq!(e, "--vcpu-pin 2=0: there is no vCPU 2 (--cpus 2)");
        let mut emulator = tune(VcpuPlacement::Auto, &[]);
        emulator.emulator_pin = Some(cpus("1-3"));
        let e = emulator.resolve(1, &allowed, false).unwrap_err();
        assert_eq!(
            e,
            "--emulator-pin 1-3: host CPUs 2-3 are not available to this process (it may use 0-1)"
        );
    }
}
