//! The idle console (end=idle): a tiny shell on COM1, polled at CPL3 with interrupts off.
//! Polls are paced with ~1 ms of native TSC spinning, so an idle guest makes about a thousand
//! exits a second rather than an exit storm. With ACPI, the power button (the GED's event
//! register) is polled too, and a press powers the VM off through S5, as an OS would.

use core::fmt::Write;

use crate::boot::BootInfo;
use crate::io::{self, Console, COM1, LSR_DATA_READY, UART_LSR};
use crate::power;

const LINE_MAX: usize = 128;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;

/// Polls of the UART per poll of the power button (each poll is an exit).
const BUTTON_POLL_EVERY: u32 = 16;

/// The next byte from the UART. An LSR of 0xff is a floating bus (no UART), not data.
fn read_byte(boot: &BootInfo) -> u8 {
    let button = power::has_power_button(boot);
    let mut polls = 0u32;
    loop {
        let lsr = io::inb(COM1 + UART_LSR);
        if lsr != 0xff && lsr & LSR_DATA_READY != 0 {
            return io::inb(COM1);
        }
        polls = polls.wrapping_add(1);
        if button && polls.is_multiple_of(BUTTON_POLL_EVERY) && power::power_button_pressed(boot) {
            let irq = if power::interrupt_pending() { "yes" } else { "no" };
            let _ = writeln!(
                Console,
                "\npower button pressed: powering off (interrupt pending: {irq})"
            );
            power::poweroff(boot);
        }
        io::wait_ms(1);
    }
}

/// What a line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Empty,
    Help,
    Info,
    Poweroff,
    Reboot,
    /// `flood N`: N numbered lines as fast as the UART takes them, for tests of a console
    /// client that stops reading.
    Flood(u32),
    Unknown(&'a str),
}

/// The most lines one `flood` prints.
const FLOOD_MAX: u32 = 10_000_000;

pub fn parse(line: &str) -> Command<'_> {
    match line.trim() {
        "" => Command::Empty,
        "help" => Command::Help,
        "info" => Command::Info,
        "poweroff" => Command::Poweroff,
        "reboot" => Command::Reboot,
        other => match other.strip_prefix("flood ").map(|n| n.trim().parse::<u32>()) {
            Some(Ok(lines)) if lines <= FLOOD_MAX => Command::Flood(lines),
            _ => Command::Unknown(other),
        },
    }
}

/// Reads one line, echoing it; backspace/delete erase, CR or LF ends it.
fn read_line(boot: &BootInfo, line: &mut [u8; LINE_MAX]) -> usize {
    let mut len = 0;
    loop {
        match read_byte(boot) {
            b'\r' | b'\n' => return len,
            BACKSPACE | DELETE if len > 0 => {
                len -= 1;
                let _ = write!(Console, "\x08 \x08");
            }
            b if (0x20..0x7f).contains(&b) && len < LINE_MAX => {
                line[len] = b;
                len += 1;
                io::outb(COM1, b);
            }
            _ => {}
        }
    }
}

pub fn run(boot: &BootInfo) -> ! {
    power::watch_power_button(boot);
    let _ = writeln!(Console, "vmm-test-guest ready");
    let mut line = [0u8; LINE_MAX];
    loop {
        let _ = write!(Console, "guest> ");
        let len = read_line(boot, &mut line);
        let _ = writeln!(Console);
        match parse(core::str::from_utf8(&line[..len]).unwrap_or("")) {
            Command::Empty => {}
            Command::Help => {
                let _ = writeln!(Console, "help      this list\ninfo      the boot report\nflood N   N numbered lines\npoweroff  power the VM off\nreboot    reset the VM");
            }
            Command::Info => crate::report::print(boot),
            Command::Poweroff => {
                let _ = writeln!(Console, "powering off");
                power::poweroff(boot);
            }
            Command::Reboot => {
                let _ = writeln!(Console, "rebooting");
                io::reset();
            }
            Command::Flood(lines) => {
                for line in 1..=lines {
                    let _ = writeln!(Console, "flood {line}");
                }
                let _ = writeln!(Console, "flood done: {lines} lines");
            }
            Command::Unknown(other) => {
                let _ = writeln!(Console, "unknown command: {other}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse("  help "), Command::Help);
        assert_eq!(parse("info"), Command::Info);
        assert_eq!(parse("poweroff"), Command::Poweroff);
        assert_eq!(parse("reboot"), Command::Reboot);
        assert_eq!(parse(""), Command::Empty);
        assert_eq!(parse("flood 100000"), Command::Flood(100000));
        assert_eq!(parse("flood 10000001"), Command::Unknown("flood 10000001"));
        assert_eq!(parse("flood x"), Command::Unknown("flood x"));
        assert_eq!(parse("halt now"), Command::Unknown("halt now"));
    }
}
