//! vmm-test-guest: a tiny kernel that proves a VMM on hosts where guest kernel code is
//! emulated (PVM): a few dozen CPL0 instructions (entry.rs), then everything at CPL3 in Rust.
//!
//! Command line: `end=exit|reset|idle|halt|triple-fault` (default idle), `test=a,b,...`,
//! `quiet` (no report), check parameters (`cpus=N`, `pio.count=N`, `ticker.count=N`).

#![no_std]
#![no_main]

mod boot;
mod checks;
mod cpu;
mod entry;
mod io;
mod mptable;
mod prompt;
mod virtio;

use core::fmt::Write;

use boot::BootInfo;
use io::Console;

extern "C" {
    static guest_image_end: u8;
}

/// First byte past the guest image (the linker's `guest_image_end`).
pub fn image_end() -> u64 {
    core::ptr::addr_of!(guest_image_end) as u64
}

pub fn print_report(boot: &BootInfo) {
    let mut out = Console;
    let _ = writeln!(out, "boot: {}", boot.protocol);
    let _ = writeln!(out, "cmdline: {}", boot.cmdline);
    let (mut vendor, mut sig) = ([0u8; 12], [0u8; 12]);
    let _ = writeln!(out, "cpuid: vendor={} hypervisor={}", cpu::vendor(&mut vendor), cpu::hypervisor(&mut sig).unwrap_or("none"));
    if boot.e820().is_empty() {
        let _ = writeln!(out, "e820: none given");
    }
    for e in boot.e820() {
        let _ = writeln!(out, "e820: {:#x}-{:#x} {}", e.addr, e.addr + e.size, boot::e820_kind(e.kind));
    }
    let _ = writeln!(out, "memory: {} MiB", boot.ram_mib());
    match checks::cpu_count(boot) {
        Ok((n, _)) => {
            let _ = writeln!(out, "cpus: {n}");
        }
        Err(why) => {
            let _ = writeln!(out, "cpus: 1 ({why})");
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
}

#[no_mangle]
pub extern "C" fn rust_start(kind: u64, info: u64) -> ! {
    let _ = writeln!(Console, "vmm-test-guest: hello");
    let boot = BootInfo::parse(kind, info);
    if !boot.has_word("quiet") {
        print_report(&boot);
    }
    let mut tally = checks::Tally { pass: 0, fail: 0 };
    for name in boot.arg("test").unwrap_or("").split(',').filter(|n| !n.is_empty()) {
        checks::run(&boot, name, &mut tally);
    }
    let verdict = if tally.fail == 0 { "PASS" } else { "FAIL" };
    let _ = writeln!(Console, "RESULT {verdict} pass={} fail={}", tally.pass, tally.fail);
    match boot.arg("end").unwrap_or("idle") {
        "exit" => io::exit(u8::from(tally.fail > 0)),
        "reset" => io::reset(),
        "halt" => io::halt_forever(),
        "triple-fault" => io::triple_fault(),
        "idle" => prompt::run(&boot),
        other => {
            let _ = writeln!(Console, "unknown end={other}: idling");
            prompt::run(&boot)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Console, "PANIC {info}");
    io::exit(2)
}

/// libcore is prebuilt with unwinding; with panic=abort nothing calls this, but the linker
/// wants the symbol.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

// Freestanding: the compiler emits calls to these; rep-string instructions keep them from
// calling themselves.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and do not overlap.
    unsafe { core::arch::asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _, options(nostack, preserves_flags)) };
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: forward copy is safe when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backward copy (DF=1) for overlapping ranges with dst above src.
    unsafe {
        core::arch::asm!("std", "rep movsb", "cld", inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _, inout("rcx") n => _, options(nostack));
    }
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe { core::arch::asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") value as u8, options(nostack, preserves_flags)) };
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges are valid for n bytes.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
