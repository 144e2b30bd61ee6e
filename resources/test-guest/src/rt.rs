//! What a freestanding Rust program must provide itself: the memory functions the compiler
//! calls, the panic handler, and the personality symbol libcore's prebuilt objects name.
//! The memory functions use rep-string instructions, so the compiler cannot turn their
//! bodies back into calls to themselves.

use core::arch::asm;
use core::fmt::Write;

use crate::io::{self, Console};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Console, "PANIC {info}");
    io::exit(2)
}

/// libcore is prebuilt with unwinding tables; with panic=abort nothing calls this, but the
/// linker wants the symbol.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and do not overlap; DF is clear
    // (the SysV ABI, and entry.rs never sets it).
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _, options(nostack, preserves_flags))
    };
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n == 0 || (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is right when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: dst starts inside src: copy backwards (DF=1) from the last byte, then clear DF
    // again as the ABI requires.
    unsafe {
        asm!("std", "rep movsb", "cld", inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _, inout("rcx") n => _, options(nostack));
    }
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") value as u8, options(nostack, preserves_flags))
    };
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let (left, right): (u32, u32);
    // SAFETY: the caller guarantees both ranges are valid for n bytes. `repe cmpsb` stops
    // after the first differing pair; the bytes just before rsi/rdi are that pair (or the
    // last, equal, pair).
    unsafe {
        asm!(
            "repe cmpsb",
            "movzx {l:e}, byte ptr [rsi - 1]",
            "movzx {r:e}, byte ptr [rdi - 1]",
            inout("rsi") a => _, inout("rdi") b => _, inout("rcx") n => _,
            l = out(reg) left, r = out(reg) right,
            options(nostack, readonly),
        );
    }
    left as i32 - right as i32
}

#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
