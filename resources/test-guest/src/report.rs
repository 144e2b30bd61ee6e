//! The boot report, printed first and by the prompt's `info`. Outside checks grep its lines
//! (`cpus: N`, `memory: N MiB`), so each item keeps its one-line shape.

use core::fmt::Write;

use crate::boot::BootInfo;
use crate::io::Console;
use crate::memmap::Kind;
use crate::{cpu, entry};

pub fn print(boot: &BootInfo) {
    let mut out = Console;
    match boot.problem {
        Some(problem) => {
            let _ = writeln!(out, "boot: {} ({problem})", boot.protocol);
        }
        None => {
            let _ = writeln!(out, "boot: {}", boot.protocol);
        }
    }
    let _ = writeln!(out, "cmdline: {}", boot.cmdline());
    let (mut vendor, mut sig) = ([0u8; 12], [0u8; 12]);
    let _ = writeln!(
        out,
        "cpuid: vendor={} hypervisor={}",
        cpu::vendor(&mut vendor),
        cpu::hypervisor(&mut sig).unwrap_or("none")
    );
    if boot.e820().is_empty() {
        let _ = writeln!(out, "e820: none given");
    }
    for e in boot.e820() {
        let _ = writeln!(out, "e820: {:#x}-{:#x} {}", e.addr, e.end(), Kind(e.kind));
    }
    let _ = writeln!(out, "memory: {} MiB", boot.ram_mib());
    // CPUs that actually came up (the boot CPU and every AP that answered its STARTUP IPI).
    match &boot.started {
        Some(started) => {
            let _ = writeln!(out, "cpus: {}", started.ids().len());
            let _ = write!(out, "apic ids:");
            for id in started.ids() {
                let _ = write!(out, " {id}");
            }
            let _ = writeln!(out);
        }
        None => {
            let _ = writeln!(out, "cpus: 1");
        }
    }
    match &boot.acpi {
        Ok(Some(t)) => {
            let _ = writeln!(
                out,
                "acpi: rsdp={:#x} tables={} devices={} lapics={}",
                t.rsdp,
                t.checked,
                t.dsdt.devices().len(),
                t.madt.apic_ids().len()
            );
        }
        Ok(None) => {
            let _ = writeln!(out, "acpi: none");
        }
        Err(why) => {
            let _ = writeln!(out, "acpi: broken ({why})");
        }
    }
    match boot.initrd {
        Some((addr, size)) => {
            let _ = writeln!(out, "initrd: {addr:#x} {size}");
        }
        None => {
            let _ = writeln!(out, "initrd: none");
        }
    }
    let (khz, source) = cpu::tsc_khz();
    let _ = writeln!(out, "tsc: {khz} kHz ({source})");
    let (total, timing) = entry::cpl0_ticks();
    let (works, cs) = entry::probe_cpl0();
    let from_cpl3 = if works { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "cpl0: from_cpl3={from_cpl3} syscall_cs={cs:#x} entry_tsc={total} timing_tsc={timing}"
    );
}
