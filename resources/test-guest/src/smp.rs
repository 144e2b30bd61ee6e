//! Starts the application processors the MADT lists, the way an OS does: INIT, then two
//! STARTUP IPIs through the local APIC's interrupt command register. Each AP begins in real
//! mode at the trampoline below, records its initial APIC id (CPUID) and halts; the boot CPU
//! counts who arrived. APs never leave real mode: all the test needs is proof they ran.

use crate::{cpu, io};

const LAPIC: usize = 0xfee0_0000;
const LAPIC_SVR: usize = 0xf0;
const LAPIC_ICR_LOW: usize = 0x300;
const LAPIC_ICR_HIGH: usize = 0x310;
const ICR_INIT: u32 = 0x0000_4500; // INIT, level assert
const ICR_STARTUP: u32 = 0x0000_4600; // STARTUP; the low byte is the start page
const ICR_PENDING: u32 = 1 << 12;

/// The trampoline's page (below 1 MiB, page aligned, outside every boot structure and the
/// image): STARTUP vector 0x10 starts the AP at 0x1000:0000.
const TRAMPOLINE: usize = 0x10000;
const VECTOR: u32 = (TRAMPOLINE >> 12) as u32;
/// Offsets in the trampoline page: arrival counter, done counter, APIC id slots.
const ARRIVED: usize = 0x100;
const DONE: usize = 0x102;
const IDS: usize = 0x200;
/// How long the boot CPU waits for stragglers (each AP is a host thread to schedule).
const WAIT_MS: u64 = 2000;

/// Real-mode code (CS = 0x1000, IP = 0):
///   cli; mov ax, cs; mov ds, ax
///   mov eax, 1; cpuid; shr ebx, 24          ; initial APIC id in bl
///   mov ax, 1; lock xadd [ARRIVED], ax; mov si, ax
///   mov [si + IDS], bl; lock inc word [DONE]
///   1: cli; hlt; jmp 1b
const CODE: [u8; 45] = [
    0xfa, 0x8c, 0xc8, 0x8e, 0xd8, // cli; mov ax, cs; mov ds, ax
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0x0f, 0xa2, // cpuid
    0x66, 0xc1, 0xeb, 0x18, // shr ebx, 24
    0xb8, 0x01, 0x00, // mov ax, 1
    0xf0, 0x0f, 0xc1, 0x06, 0x00, 0x01, // lock xadd [0x100], ax
    0x89, 0xc6, // mov si, ax
    0x88, 0x9c, 0x00, 0x02, // mov [si + 0x200], bl
    0xf0, 0xff, 0x06, 0x02, 0x01, // lock inc word [0x102]
    0xfa, 0xf4, 0xeb, 0xfc, // 1: cli; hlt; jmp 1b
    0x90, 0x90, 0x90, 0x90, // padding
];

pub const MAX_CPUS: usize = 256;

/// Who came up: the boot CPU first, then the APs in arrival order.
pub struct Started {
    ids: [u8; MAX_CPUS],
    count: usize,
    /// APs the MADT listed that never arrived.
    pub missing: usize,
}

impl Started {
    pub fn ids(&self) -> &[u8] {
        &self.ids[..self.count]
    }
}

fn mmio_write(offset: usize, value: u32) {
    // SAFETY: the LAPIC page is mapped uncached and user accessible (entry.rs).
    unsafe { core::ptr::write_volatile((LAPIC + offset) as *mut u32, value) };
}

fn mmio_read(offset: usize) -> u32 {
    // SAFETY: as in mmio_write.
    unsafe { core::ptr::read_volatile((LAPIC + offset) as *const u32) }
}

fn page_u16(offset: usize) -> u16 {
    // SAFETY: the trampoline page is identity-mapped RAM this module owns; APs write it.
    unsafe { core::ptr::read_volatile((TRAMPOLINE + offset) as *const u16) }
}

fn send_ipi(apic_id: u8, command: u32) {
    mmio_write(LAPIC_ICR_HIGH, u32::from(apic_id) << 24);
    mmio_write(LAPIC_ICR_LOW, command);
    for _ in 0..1000 {
        if mmio_read(LAPIC_ICR_LOW) & ICR_PENDING == 0 {
            break;
        }
        core::hint::spin_loop();
    }
}

/// Starts every AP in `madt_ids` (the boot CPU's own id is skipped) and waits for them.
pub fn start_aps(madt_ids: &[u8]) -> Started {
    let me = cpu::apic_id() as u8;
    let mut started = Started {
        ids: [0; MAX_CPUS],
        count: 1,
        missing: 0,
    };
    started.ids[0] = me;
    let aps = madt_ids.iter().filter(|&&id| id != me).count();
    if aps == 0 {
        return started;
    }
    // SAFETY: the page is free low RAM (see TRAMPOLINE); nothing else uses it after boot.
    unsafe {
        core::ptr::copy_nonoverlapping(CODE.as_ptr(), TRAMPOLINE as *mut u8, CODE.len());
        core::ptr::write_bytes((TRAMPOLINE + ARRIVED) as *mut u8, 0, 4);
        core::ptr::write_bytes((TRAMPOLINE + IDS) as *mut u8, 0, MAX_CPUS);
    }
    mmio_write(LAPIC_SVR, mmio_read(LAPIC_SVR) | 0x100);
    for &id in madt_ids.iter().filter(|&&id| id != me) {
        send_ipi(id, ICR_INIT);
    }
    io::wait_ms(10);
    for _ in 0..2 {
        for &id in madt_ids.iter().filter(|&&id| id != me) {
            send_ipi(id, ICR_STARTUP | VECTOR);
        }
        io::wait_ms(1);
    }
    let start = cpu::rdtsc();
    let limit = WAIT_MS.saturating_mul(cpu::tsc_per_ms());
    while usize::from(page_u16(DONE)) < aps && cpu::rdtsc().wrapping_sub(start) < limit {
        core::hint::spin_loop();
    }
    let done = usize::from(page_u16(DONE)).min(aps).min(MAX_CPUS - 1);
    for i in 0..done {
        // SAFETY: as in page_u16; slot i was written before DONE counted it.
        started.ids[1 + i] =
            unsafe { core::ptr::read_volatile((TRAMPOLINE + IDS + i) as *const u8) };
    }
    started.count = 1 + done;
    started.missing = aps - done;
    started
}
