//! The idle console: a tiny shell on COM1, polled at CPL3 (no interrupts), paced so an idle
//! guest makes about a thousand port reads a second rather than an exit storm.

use core::fmt::Write;

use crate::boot::BootInfo;
use crate::io::{self, Console, COM1};

const LSR_DATA_READY: u8 = 1;

fn read_byte() -> u8 {
    loop {
        if io::inb(COM1 + 5) & LSR_DATA_READY != 0 {
            return io::inb(COM1);
        }
        io::spin(1_000_000); // ~1 ms
    }
}

pub fn run(boot: &BootInfo) -> ! {
    let _ = writeln!(Console, "vmm-test-guest ready (commands: help, info, poweroff, reboot)");
    let mut line = [0u8; 128];
    loop {
        let _ = write!(Console, "guest> ");
        let mut len = 0;
        loop {
            match read_byte() {
                b'\r' | b'\n' => break,
                0x08 | 0x7f if len > 0 => {
                    len -= 1;
                    let _ = write!(Console, "\x08 \x08");
                }
                b if (0x20..0x7f).contains(&b) && len < line.len() => {
                    line[len] = b;
                    len += 1;
                    io::outb(COM1, b);
                }
                _ => {}
            }
        }
        let _ = writeln!(Console);
        match core::str::from_utf8(&line[..len]).unwrap_or("").trim() {
            "" => {}
            "help" => {
                let _ = writeln!(Console, "help      this list\ninfo      the boot report\npoweroff  power the VM off\nreboot    reset the VM");
            }
            "info" => crate::print_report(boot),
            "poweroff" => {
                let _ = writeln!(Console, "powering off");
                io::exit(0);
            }
            "reboot" => {
                let _ = writeln!(Console, "rebooting");
                io::reset();
            }
            other => {
                let _ = writeln!(Console, "unknown command: {other}");
            }
        }
    }
}
