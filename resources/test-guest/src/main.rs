//! vmm-test-guest: a tiny kernel that proves a VMM on hosts where guest kernel code is
//! emulated (PVM): about 65 CPL0 instructions (entry.rs), then everything at CPL3 in Rust.
//!
//! Command line: `end=exit|poweroff|reset|idle|halt|triple-fault` (default idle), `test=a,b,...`,
//! `quiet` (no report), check parameters (`cpus=N`, `pio.count=N`, `ticker.count=N`, ...).
//!
//! Built for the host target without std (build.sh); `build.sh --test` compiles the same
//! modules as a normal host program and runs their unit tests.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

mod acpi;
mod aml;
mod boot;
mod checks;
mod cmdline;
mod cpu;
mod entry;
mod io;
mod irq;
mod memmap;
mod mptable;
mod physmem;
mod power;
mod prompt;
mod report;
#[cfg(not(test))]
mod rt;
mod smp;
mod virtio;

#[cfg(not(test))]
extern "C" {
    static guest_image_end: u8;
}

/// First byte past the guest image (the linker's `guest_image_end`).
#[cfg(not(test))]
pub fn image_end() -> u64 {
    core::ptr::addr_of!(guest_image_end) as u64
}

#[cfg(test)]
pub fn image_end() -> u64 {
    0x200000
}

/// Where entry.rs lands at CPL3: `kind` is boot::KIND_PVH or KIND_LINUX64, `info` the
/// hvm_start_info or boot_params address.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn rust_start(kind: u64, info: u64) -> ! {
    use core::fmt::Write;
    use io::Console;

    let _ = writeln!(Console, "vmm-test-guest: hello");
    // Can CPL3 get back to CPL0 here? Found out once, by a SYSCALL that is safe either way.
    entry::probe_cpl0();
    let mut boot = boot::BootInfo::parse(kind, info, &physmem::IdentityMap);
    // The MADT lists the CPUs; without ACPI, the MP table does.
    let mut mp_ids = [0u8; smp::MAX_CPUS];
    let listed = match boot.tables() {
        Some(t) => t.madt.apic_ids(),
        None => {
            let n = mptable::apic_ids(&physmem::IdentityMap, &mut mp_ids);
            &mp_ids[..n]
        }
    };
    boot.started = Some(smp::start_aps(listed));
    if !boot.has_word("quiet") {
        report::print(&boot);
    }
    let mut tally = checks::Tally::default();
    for name in cmdline::tests(boot.cmdline()) {
        checks::run(&boot, name, &mut tally);
    }
    let verdict = if tally.fail == 0 { "PASS" } else { "FAIL" };
    let _ = writeln!(
        Console,
        "RESULT {verdict} pass={} fail={}",
        tally.pass, tally.fail
    );
    match boot.arg("end").unwrap_or("idle") {
        "exit" => io::exit(u8::from(tally.fail > 0)),
        "poweroff" => power::poweroff(&boot),
        "reset" => io::reset(),
        "halt" => {
            let cpl0 = entry::probe_cpl0().0;
            let how = if cpl0 {
                "cpl0 (int 0x80, then cli; hlt)"
            } else {
                "spin (cpl0 entry unavailable: SYSCALL stays at CPL3)"
            };
            let _ = writeln!(Console, "halt: {how}");
            io::halt_forever(cpl0)
        }
        "triple-fault" => io::triple_fault(),
        "idle" => prompt::run(&boot),
        other => {
            let _ = writeln!(Console, "unknown end={other}: idling");
            prompt::run(&boot)
        }
    }
}
