//! vCPU placement: guests boot while the host is busy, and each thread runs where it was
//! asked to, read back from /proc (`Cpus_allowed_list`).

mod common;

use common::{
    allowed_cpus, allowed_cpus_text, cpu_list, kvm_available, kvm_is_pvm, run_to_end, tasks,
    vcpu_tasks, CpuHog, VmmRun,
};

/// Every boot passes with every host CPU kept busy by a hog. Before vCPUs were pinned, a
/// vCPU thread moved by the scheduler lost its state on kvm_pvm: up to 22 boots in 30 failed.
#[test]
fn guests_boot_while_a_hog_keeps_every_cpu_busy() {
    if !kvm_available("guests_boot_while_a_hog_keeps_every_cpu_busy") {
        return;
    }
    let _hog = CpuHog::start();
    for cpus in ["1", "2", "4"] {
        for round in 0..8 {
            let r = run_to_end(
                "hog",
                &[
                    "--cpus",
                    cpus,
                    "--memory",
                    "64M",
                    "--cmdline",
                    &format!("end=exit test=serial,cpus,cpuid-cpl3 cpus={cpus} cpuid.count=10"),
                ],
            );
            assert!(
                r.status.success() && r.serial.contains("RESULT PASS"),
                "{cpus} vCPUs, boot {round}: {:?}\nconsole:\n{}\nstderr:\n{}",
                r.status,
                r.serial,
                r.stderr
            );
        }
    }
}

/// A ticking guest with these placement flags; returns the run once its vCPUs run.
fn ticking(tag: &str, cpus: &str, flags: &[&str]) -> VmmRun {
    let mut args = vec![
        "--cpus",
        cpus,
        "--memory",
        "64M",
        "--cmdline",
        "quiet test=ticker ticker.count=1000000",
    ];
    args.extend_from_slice(flags);
    let mut run = VmmRun::start(tag, &args);
    run.wait_for_serial("TICK", 1);
    run
}

#[test]
fn threads_run_where_they_were_pinned() {
    if !kvm_available("threads_run_where_they_were_pinned") {
        return;
    }
    let allowed = allowed_cpus();
    let (first, last) = (
        allowed[0].to_string(),
        allowed[allowed.len() - 1].to_string(),
    );
    let run = ticking(
        "pinned",
        "2",
        &[
            "--vcpu-pin",
            &format!("0={last}"),
            "--vcpu-pin",
            &format!("1={first}"),
            "--emulator-pin",
            &first,
        ],
    );
    let pid = run.child.id();
    let vcpus = vcpu_tasks(pid);
    assert_eq!(vcpus.len(), 2, "{:?}", tasks(pid));
    assert_eq!(vcpus[0].cpus_allowed, last);
    assert_eq!(vcpus[1].cpus_allowed, first);
    for task in tasks(pid).iter().filter(|t| !t.name.starts_with("vcpu")) {
        assert_eq!(task.cpus_allowed, first, "emulator thread {task:?}");
    }
}

/// Without pins: one host CPU per vCPU, round-robin, where KVM is kvm_pvm; elsewhere every
/// vCPU may run on every CPU the process may use. `spread` asks for the former anywhere.
#[test]
fn automatic_placement_follows_the_host() {
    if !kvm_available("automatic_placement_follows_the_host") {
        return;
    }
    let allowed = allowed_cpus();
    let round_robin: Vec<String> = (0..3)
        .map(|i| allowed[i % allowed.len()].to_string())
        .collect();
    let everywhere = allowed_cpus_text();

    let auto = ticking("auto", "3", &[]);
    let got: Vec<String> = vcpu_tasks(auto.child.id())
        .into_iter()
        .map(|t| t.cpus_allowed)
        .collect();
    if kvm_is_pvm() {
        assert_eq!(got, round_robin);
        let stderr = common::read_lossy(&auto.stderr);
        assert!(!stderr.contains("kvm_pvm"), "info, not a warning: {stderr}");
    } else {
        assert_eq!(got, vec![everywhere.clone(); 3]);
    }
    drop(auto);

    let spread = ticking("spread", "3", &["--vcpu-placement", "spread"]);
    let got: Vec<String> = vcpu_tasks(spread.child.id())
        .into_iter()
        .map(|t| t.cpus_allowed)
        .collect();
    assert_eq!(got, round_robin);
}

/// Where each vCPU must keep one CPU (kvm_pvm, or `spread`), a pin to several is narrowed to
/// one of them, with a warning; with `none` the set is kept as asked.
#[test]
fn a_set_is_narrowed_only_where_one_cpu_per_vcpu_is_the_rule() {
    if !kvm_available("a_set_is_narrowed_only_where_one_cpu_per_vcpu_is_the_rule") {
        return;
    }
    let allowed = allowed_cpus();
    let all = allowed_cpus_text();
    let pin = format!("0={all}");
    let narrowed = ticking(
        "narrow",
        "1",
        &["--vcpu-placement", "spread", "--vcpu-pin", &pin],
    );
    assert_eq!(
        cpu_list(&vcpu_tasks(narrowed.child.id())[0].cpus_allowed),
        vec![allowed[0]]
    );
    drop(narrowed);
    let kept = ticking(
        "kept",
        "1",
        &["--vcpu-placement", "none", "--vcpu-pin", &pin],
    );
    assert_eq!(vcpu_tasks(kept.child.id())[0].cpus_allowed, all);
}

fn refused(args: &[&str], code: i32, expected: &str) {
    let out = std::process::Command::new(common::VMM)
        .arg("run")
        .args(args)
        .output()
        .expect("run vmm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: want {expected:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_placements_are_refused_clearly() {
    let allowed = allowed_cpus();
    let outside = allowed[allowed.len() - 1] + 1;
    refused(
        &["--vcpu-pin", &format!("0={outside}")],
        1,
        &format!("vmm: --vcpu-pin 0={outside}: host CPU {outside} is not available to this process (it may use "),
    );
    refused(
        &["--emulator-pin", &format!("0-{outside}")],
        1,
        "is not available to this process",
    );
    refused(
        &["--cpus", "2", "--vcpu-pin", "2=0"],
        1,
        "vmm: --vcpu-pin 2=0: there is no vCPU 2 (--cpus 2)",
    );
    refused(&["--vcpu-pin", "0=1-0"], 2, "runs backwards");
    refused(&["--vcpu-pin", "0:1"], 2, "is not VCPU=CPULIST");
    refused(&["--vcpu-pin", "0=5000"], 2, "above 1023");
    refused(
        &["--vcpu-placement", "pack"],
        2,
        "is not one of auto, spread, none",
    );
}
