//! The named checks of `test=...`. Each prints exactly one `TEST <name> PASS|FAIL <detail>`.

use core::fmt::Write;

use crate::boot::BootInfo;
use crate::io::{self, Console, COM1, LSR_THR_EMPTY, UART_LSR, UART_SCRATCH};
use crate::physmem::IdentityMap;
use crate::virtio::{self, Segment};
use crate::{cpu, irq, mptable};

/// Survives a reset (the VMM keeps RAM, like QEMU): lets `reset` know it already rebooted.
/// A magic word, then a count of reboots asked for.
const RESET_MARKER: *mut u64 = 0x80000 as *mut u64;
const RESET_COUNTER: *mut u64 = 0x80008 as *mut u64;
const RESET_MAGIC: u64 = 0x7465_7365_7276_6d6d; // "vmmreset"
const IMAGE_START: u64 = 0x10_0000;

#[derive(Default)]
pub struct Tally {
    pub pass: u32,
    pub fail: u32,
}

fn report(t: &mut Tally, name: &str, ok: bool, detail: core::fmt::Arguments) {
    if ok {
        t.pass += 1
    } else {
        t.fail += 1
    }
    let _ = writeln!(
        Console,
        "TEST {name} {} {detail}",
        if ok { "PASS" } else { "FAIL" }
    );
}

pub fn run(boot: &BootInfo, name: &str, t: &mut Tally) {
    match name {
        "serial" => serial(t),
        "e820" => e820(boot, t),
        "cpus" => cpus(boot, t),
        "acpi" => acpi(boot, t),
        "cpuid" => cpuid(t),
        "cpuid-cpl3" => cpuid_cpl3(boot, t),
        "reset" => reset(t),
        "pio-bench" => pio_bench(boot, t),
        "ticker" => ticker(boot, t),
        "rng" => rng(boot, t),
        "virtio-irq" => virtio_irq(boot, t),
        "net" => net(boot, t),
        "net-rx" => net_rx(boot, t),
        "blk-bench" => blk_bench(boot, t),
        "net-bench" => net_bench(boot, t),
        "blk" => blk(boot, t),
        "blk-write" => blk_write(boot, t),
        "blk-ro" => blk_ro(boot, t),
        "blk-stream" => blk_stream(boot, t),
        "virtio" => virtio(boot, t),
        _ => report(t, name, false, format_args!("unknown test")),
    }
}

/// The UART's scratch register holds what was written, and the transmitter is ready.
fn serial(t: &mut Tally) {
    let scratch_ok = [0x55u8, 0xaa, 0x00, 0xff, 0x5a].iter().all(|&p| {
        io::outb(COM1 + UART_SCRATCH, p);
        io::inb(COM1 + UART_SCRATCH) == p
    });
    let lsr = io::inb(COM1 + UART_LSR);
    let ok = scratch_ok && lsr != 0xff && lsr & LSR_THR_EMPTY != 0;
    report(
        t,
        "serial",
        ok,
        format_args!(
            "scratch={} lsr={lsr:#04x}",
            if scratch_ok { "ok" } else { "bad" }
        ),
    );
}

/// A map exists, its entries do not overlap, and one RAM entry covers the guest image.
fn e820(boot: &BootInfo, t: &mut Tally) {
    let map = &boot.memmap;
    if map.entries().is_empty() {
        report(t, "e820", false, format_args!("no memory map given"));
        return;
    }
    let non_overlapping = map.non_overlapping();
    let covers_image = map.ram_covers(IMAGE_START, crate::image_end());
    report(
        t,
        "e820",
        non_overlapping && covers_image,
        format_args!(
            "entries={} ram={}MiB order={} non_overlapping={non_overlapping} covers_image={covers_image} empty={} dropped={}",
            map.entries().len(),
            map.ram_mib(),
            if map.given_sorted { "sorted" } else { "unsorted" },
            map.empty,
            map.dropped
        ),
    );
}

/// The CPUs that came up, the MADT's and the MP table's counts agree (each table where
/// present); with `cpus=N` they must all be N.
fn cpus(boot: &BootInfo, t: &mut Tally) {
    let (mp, source) = match mptable::cpu_count(&IdentityMap) {
        Err(why) => return report(t, "cpus", false, format_args!("MP table: {why}")),
        Ok(found) => found,
    };
    let started = boot.started.as_ref().map_or(1, |s| s.ids().len() as u64);
    let missing = boot.started.as_ref().map_or(0, |s| s.missing);
    let madt = boot.tables().map(|a| a.madt.apic_ids().len() as u64);
    let expected = boot.number("cpus").unwrap_or(started);
    let ok = missing == 0
        && started == expected
        && u64::from(mp) == expected
        && madt.is_none_or(|m| m == expected);
    report(
        t,
        "cpus",
        ok,
        format_args!(
            "started={started} missing={missing} madt={} mp={mp} ({source}) expected={expected}",
            madt.unwrap_or(0)
        ),
    );
}

/// Every ACPI table is there with a good checksum (checked while loading), and says what
/// this machine has: hardware-reduced FADT with sleep and reset registers, a local APIC per
/// CPU and one IOAPIC, and a DSDT with COM1, the power button behind a GED, `_S5`, and one
/// LNRO0005 device per virtio-mmio window, each answering at its address.
fn acpi(boot: &BootInfo, t: &mut Tally) {
    let tables = match &boot.acpi {
        Ok(Some(tables)) => tables,
        Ok(None) => return report(t, "acpi", false, format_args!("no RSDP")),
        Err(why) => return report(t, "acpi", false, format_args!("{why}")),
    };
    let dsdt = &tables.dsdt;
    let fadt_ok = tables.fadt.hw_reduced
        && tables.fadt.sleep_control.is_some()
        && tables.fadt.sleep_status.is_some()
        && tables.fadt.reset.is_some();
    let started = boot.started.as_ref().map_or(1, |s| s.ids().len());
    let madt_ok = tables.madt.apic_ids().len() == started && tables.madt.ioapics == 1;
    let com1 = dsdt
        .find("PNP0501")
        .any(|d| d.io.map(|(port, _)| port) == Some(io::COM1));
    let button = dsdt.find("PNP0C0C").count() == 1;
    let ged = dsdt
        .find("ACPI0013")
        .any(|d| (d.region.is_some() || d.memory.is_some()) && d.irq.is_some() && d.has_evt);
    let listed = dsdt.find(virtio::ACPI_HID).count();
    let answering = virtio::devices(boot).count();
    let ok = fadt_ok
        && madt_ok
        && com1
        && button
        && ged
        && dsdt.s5.is_some()
        && listed == answering
        && dsdt.dropped == 0;
    report(
        t,
        "acpi",
        ok,
        format_args!(
            "rsdp={:#x} tables={} fadt={fadt_ok} lapics={} cpus={started} ioapics={} com1={com1} power_button={button} ged={ged} s5={:?} virtio={listed} answering={answering}",
            tables.rsdp,
            tables.checked,
            tables.madt.apic_ids().len(),
            tables.madt.ioapics,
            dsdt.s5,
        ),
    );
}

fn cpuid(t: &mut Tally) {
    let mut vendor = [0u8; 12];
    let v = cpu::vendor(&mut vendor);
    let mut sig = [0u8; 12];
    let hv = cpu::hypervisor(&mut sig);
    let ok = !v.is_empty() && hv.is_some();
    report(
        t,
        "cpuid",
        ok,
        format_args!(
            "vendor={v} hypervisor={} apic_id={}",
            hv.unwrap_or("none"),
            cpu::apic_id()
        ),
    );
}

/// `cpuid.count` CPUIDs at CPL3 (default 100), 5 ms apart: where they reach the VMM (VMX,
/// SVM, PVM with CPUID faulting) and where the host runs them natively (PVM on AMD). Either
/// passes; the check is that the vCPU survives them while the host scheduler moves threads
/// about (on this machine kind, an unpinned vCPU thread lost its state here).
fn cpuid_cpl3(boot: &BootInfo, t: &mut Tally) {
    let n = boot.number("cpuid.count").unwrap_or(100);
    let mut reached_vmm = 0;
    for _ in 0..n {
        io::wait_ms(5);
        if cpu::cpl3_cpuid_reaches_vmm() {
            reached_vmm += 1;
        }
    }
    let answered_by = match reached_vmm {
        0 => "host",
        r if r == n => "vmm",
        _ => "both",
    };
    report(
        t,
        "cpuid-cpl3",
        true,
        format_args!("n={n} answered_by={answered_by}"),
    );
}

/// First run: leave a marker in RAM and reset (no TEST line yet). After the reboot: the
/// marker is there, so the reset came back; clear it and pass.
fn reset(t: &mut Tally) {
    // SAFETY: 0x80000 is low RAM outside the image that the VMMs leave alone; only this
    // check uses it.
    let marker = unsafe { core::ptr::read_volatile(RESET_MARKER) };
    if marker == RESET_MAGIC {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(RESET_MARKER, 0) };
        report(t, "reset", true, format_args!("rebooted"));
    } else {
        // SAFETY: as above.
        unsafe {
            let count = core::ptr::read_volatile(RESET_COUNTER);
            core::ptr::write_volatile(RESET_COUNTER, count.wrapping_add(1));
            core::ptr::write_volatile(RESET_MARKER, RESET_MAGIC);
        }
        let _ = writeln!(Console, "reset: rebooting");
        io::reset();
    }
}

/// `pio.count` writes to the no-op port, each one an exit, timed in TSC ticks.
fn pio_bench(boot: &BootInfo, t: &mut Tally) {
    let n = boot.number("pio.count").unwrap_or(100_000).max(1);
    let start = cpu::rdtsc();
    for _ in 0..n {
        io::outb(io::NOOP_PORT, 0);
    }
    let ticks = cpu::rdtsc().wrapping_sub(start);
    report(
        t,
        "pio-bench",
        true,
        format_args!("n={n} tsc={ticks} per_exit={}", ticks / n),
    );
}

/// `ticker.count` lines `TICK k`, ~50 ms of native CPL3 spinning apart.
fn ticker(boot: &BootInfo, t: &mut Tally) {
    let count = boot.number("ticker.count").unwrap_or(20);
    for k in 1..=count {
        io::wait_ms(50);
        let _ = writeln!(Console, "TICK {k}");
    }
    report(t, "ticker", true, format_args!("ticks={count}"));
}

fn rng(boot: &BootInfo, t: &mut Tally) {
    let Some(dev) = virtio::devices(boot).find(|d| d.device_id == virtio::TYPE_RNG) else {
        report(t, "rng", false, format_args!("no virtio-rng device"));
        return;
    };
    if let Err(why) = virtio::bring_up(&dev) {
        report(t, "rng", false, format_args!("{why}"));
        return;
    }
    let buf = virtio::buffer();
    // SAFETY: the driver's buffer page.
    unsafe { core::ptr::write_bytes(buf as *mut u8, 0, 64) };
    match virtio::request(
        &dev,
        &[Segment {
            addr: buf,
            len: 64,
            device_writes: true,
        }],
        0,
    ) {
        Ok(len) => {
            // SAFETY: as above; the device wrote it.
            let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, 64) };
            let varied = bytes.iter().any(|b| *b != bytes[0]);
            let irq = virtio::take_interrupt_status(&dev) & 1 != 0;
            report(
                t,
                "rng",
                len == 64 && varied && irq,
                format_args!(
                    "len={len} varied={varied} interrupt_status={irq} irq={}",
                    dev.irq
                ),
            );
        }
        Err(why) => report(t, "rng", false, format_args!("{why}")),
    }
}

/// Every check that applies to the virtio devices present.
fn virtio(boot: &BootInfo, t: &mut Tally) {
    let mut any = false;
    for dev in virtio::devices(boot) {
        any = true;
        match dev.device_id {
            virtio::TYPE_RNG => rng(boot, t),
            virtio::TYPE_NET => net(boot, t),
            virtio::TYPE_BLOCK if virtio::device_features(&dev) & virtio::BLK_F_RO != 0 => {
                blk_ro(boot, t)
            }
            virtio::TYPE_BLOCK => {
                blk(boot, t);
                blk_write(boot, t);
            }
            other => report(
                t,
                "virtio",
                false,
                format_args!("device type {other} has no check"),
            ),
        }
    }
    if !any {
        report(
            t,
            "virtio",
            false,
            format_args!("no virtio devices in the DSDT or on the command line"),
        );
    }
}

const BLK_T_IN: u32 = 0;
const BLK_T_OUT: u32 = 1;
const BLK_T_FLUSH: u32 = 4;
const BLK_T_GET_ID: u32 = 8;
const SECTOR: usize = 512;

/// The first disk that is (or is not) read-only, brought up.
fn disk(boot: &BootInfo, readonly: bool) -> Result<virtio::Device, &'static str> {
    let dev = virtio::devices(boot)
        .find(|d| {
            d.device_id == virtio::TYPE_BLOCK
                && (virtio::device_features(d) & virtio::BLK_F_RO != 0) == readonly
        })
        .ok_or(if readonly {
            "no read-only virtio-blk disk"
        } else {
            "no writable virtio-blk disk"
        })?;
    virtio::bring_up(&dev)?;
    Ok(dev)
}

/// One request: header at the buffer page's start, status byte after it, data at +512.
/// Returns the status byte and the data area's address.
fn blk_request(
    dev: &virtio::Device,
    kind: u32,
    sector: u64,
    data_len: u32,
    slot: u16,
) -> Result<(u8, usize), &'static str> {
    blk_request_at(dev, kind, sector, virtio::buffer() + SECTOR, data_len, slot)
}

/// Like `blk_request`, with the data at `data` (for requests larger than the driver's page).
fn blk_request_at(
    dev: &virtio::Device,
    kind: u32,
    sector: u64,
    data: usize,
    data_len: u32,
    slot: u16,
) -> Result<(u8, usize), &'static str> {
    let page = virtio::buffer();
    let (header, status) = (page, page + 16);
    // SAFETY: the driver's buffer page.
    unsafe {
        core::ptr::write_volatile(header as *mut u32, kind);
        core::ptr::write_volatile((header + 4) as *mut u32, 0);
        core::ptr::write_volatile((header + 8) as *mut u64, sector);
        core::ptr::write_volatile(status as *mut u8, 0xff);
    }
    let device_writes = kind != BLK_T_OUT;
    let mut segs = [Segment {
        addr: header,
        len: 16,
        device_writes: false,
    }; 3];
    let mut n = 1;
    if data_len > 0 {
        segs[n] = Segment {
            addr: data,
            len: data_len,
            device_writes,
        };
        n += 1;
    }
    segs[n] = Segment {
        addr: status,
        len: 1,
        device_writes: true,
    };
    virtio::request(dev, &segs[..=n], slot)?;
    // SAFETY: as above; the device wrote it.
    Ok((
        unsafe { core::ptr::read_volatile(status as *const u8) },
        data,
    ))
}

fn bytes_at(addr: usize, len: usize) -> &'static [u8] {
    // SAFETY: inside the driver's buffer page.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// Reads the id and sector 0, which the host filled with `VMM-DISK` followed by the id.
fn blk(boot: &BootInfo, t: &mut Tally) {
    let result = (|| {
        let dev = disk(boot, false).or_else(|_| disk(boot, true))?;
        let (status, data) = blk_request(&dev, BLK_T_GET_ID, 0, 20, 0)?;
        if status != 0 {
            return Err("GET_ID failed");
        }
        let mut id = [0u8; 20];
        id.copy_from_slice(bytes_at(data, 20));
        let id_len = id.iter().position(|b| *b == 0).unwrap_or(20);
        let (status, data) = blk_request(&dev, BLK_T_IN, 0, SECTOR as u32, 1)?;
        if status != 0 {
            return Err("reading sector 0 failed");
        }
        let sector0 = bytes_at(data, 8 + id_len);
        if &sector0[..8] != b"VMM-DISK" || sector0[8..] != id[..id_len] {
            return Err("sector 0 does not hold VMM-DISK and the disk's id");
        }
        Ok(id)
    })();
    match result {
        Ok(id) => {
            let len = id.iter().position(|b| *b == 0).unwrap_or(20);
            report(
                t,
                "blk",
                true,
                format_args!("id={}", core::str::from_utf8(&id[..len]).unwrap_or("?")),
            );
        }
        Err(why) => report(t, "blk", false, format_args!("{why}")),
    }
}

/// Writes a pattern to sector 1, flushes, reads it back.
fn blk_write(boot: &BootInfo, t: &mut Tally) {
    let stamp = cpu::rdtsc();
    let result = (|| {
        let dev = disk(boot, false)?;
        let data = virtio::buffer() + SECTOR;
        for i in 0..SECTOR {
            // SAFETY: the driver's buffer page.
            unsafe {
                core::ptr::write_volatile(
                    (data + i) as *mut u8,
                    (stamp >> ((i % 8) * 8)) as u8 ^ i as u8,
                )
            };
        }
        let (status, _) = blk_request(&dev, BLK_T_OUT, 1, SECTOR as u32, 0)?;
        if status != 0 {
            return Err("write failed");
        }
        let (status, _) = blk_request(&dev, BLK_T_FLUSH, 0, 0, 1)?;
        if status != 0 {
            return Err("flush failed");
        }
        // SAFETY: as above: clear, then let the device fill it again.
        unsafe { core::ptr::write_bytes(data as *mut u8, 0, SECTOR) };
        let (status, data) = blk_request(&dev, BLK_T_IN, 1, SECTOR as u32, 2)?;
        if status != 0 {
            return Err("read back failed");
        }
        let ok = bytes_at(data, SECTOR)
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (stamp >> ((i % 8) * 8)) as u8 ^ i as u8);
        if ok {
            Ok(())
        } else {
            Err("read back differs from what was written")
        }
    })();
    match result {
        Ok(()) => report(
            t,
            "blk-write",
            true,
            format_args!("sector=1 flushed stamp={stamp:#x}"),
        ),
        Err(why) => report(t, "blk-write", false, format_args!("{why}")),
    }
}

/// A write to a read-only disk must fail with IOERR, and the device must go on working.
fn blk_ro(boot: &BootInfo, t: &mut Tally) {
    let result = (|| {
        let dev = disk(boot, true)?;
        let (status, _) = blk_request(&dev, BLK_T_OUT, 1, SECTOR as u32, 0)?;
        if status != 1 {
            return Err("write to a read-only disk did not fail with IOERR");
        }
        let (status, _) = blk_request(&dev, BLK_T_IN, 0, SECTOR as u32, 1)?;
        if status != 0 {
            return Err("read after the refused write failed");
        }
        Ok(())
    })();
    match result {
        Ok(()) => report(
            t,
            "blk-ro",
            true,
            format_args!("write refused with IOERR, reads work"),
        ),
        Err(why) => report(t, "blk-ro", false, format_args!("{why}")),
    }
}

const IRQ_VECTOR: u32 = crate::entry::IRQ_VECTOR;

/// Interrupt delivery from the virtio-rng: route its IOAPIC pin to a vector, software-enable
/// the LAPIC and make a request. Where CPL3 can enter CPL0 (`path=interrupt`) with IF=1: the
/// gate takes the interrupt, EOIs, and nothing is left pending. Elsewhere (PVM, where an
/// interrupt at CPL3 ends the VM; `path=irr`) with IF=0: the vector becomes pending in the
/// LAPIC's IRR. Both prove device -> irqfd -> MSI route -> LAPIC.
fn virtio_irq(boot: &BootInfo, t: &mut Tally) {
    let Some(dev) = virtio::devices(boot).find(|d| d.device_id == virtio::TYPE_RNG) else {
        report(
            t,
            "virtio-irq",
            false,
            format_args!("needs a virtio-rng device"),
        );
        return;
    };
    if let Err(why) = virtio::bring_up(&dev) {
        report(t, "virtio-irq", false, format_args!("{why}"));
        return;
    }
    irq::route(dev.irq, IRQ_VECTOR);
    let before = irq::pending(IRQ_VECTOR);
    let buf = virtio::buffer();
    let ask = || {
        virtio::request(
            &dev,
            &[Segment {
                addr: buf,
                len: 16,
                device_writes: true,
            }],
            0,
        )
    };
    if crate::entry::probe_cpl0().0 {
        let count = irq::delivered();
        let (answered, delivered) = irq::with_interrupts(|| {
            let answered = ask();
            (answered, irq::wait_delivered(count, 2000))
        });
        let pending = irq::pending(IRQ_VECTOR);
        report(
            t,
            "virtio-irq",
            answered.is_ok() && !before && delivered && !pending,
            format_args!(
                "pin={} vector={IRQ_VECTOR:#x} path=interrupt pending_before={before} delivered={delivered} pending_after={pending}",
                dev.irq
            ),
        );
        return;
    }
    let answered = ask();
    let pending = irq::wait_pending(IRQ_VECTOR, 1_000_000);
    report(
        t,
        "virtio-irq",
        answered.is_ok() && !before && pending,
        format_args!(
            "pin={} vector={IRQ_VECTOR:#x} path=irr pending_before={before} pending_after={pending}",
            dev.irq
        ),
    );
}

fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut parts = text.split('.');
    for byte in ip.iter_mut() {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(ip)
}

const NET_HDR: usize = 12;

/// ARP who-has `net.peer` from `net.ip` out of the virtio-net device; the host (the tap's
/// kernel side) answers. Retries a few times: the link may come up just after we boot.
fn net(boot: &BootInfo, t: &mut Tally) {
    let result = (|| -> Result<([u8; 6], [u8; 6]), &'static str> {
        let ip = boot
            .arg("net.ip")
            .and_then(parse_ipv4)
            .ok_or("needs net.ip=A.B.C.D")?;
        let peer = boot
            .arg("net.peer")
            .and_then(parse_ipv4)
            .ok_or("needs net.peer=A.B.C.D")?;
        let dev = virtio::devices(boot)
            .find(|d| d.device_id == virtio::TYPE_NET)
            .ok_or("no virtio-net device")?;
        virtio::bring_up_queues(&dev, 2)?;
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = virtio::config_byte(&dev, i);
        }
        // The ARP request, after virtio's 12-byte header.
        let tx = virtio::buffer_of(1);
        let mut frame = [0u8; NET_HDR + 42];
        let eth = &mut frame[NET_HDR..];
        eth[..6].copy_from_slice(&[0xff; 6]);
        eth[6..12].copy_from_slice(&mac);
        eth[12..14].copy_from_slice(&[0x08, 0x06]);
        eth[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
        eth[22..28].copy_from_slice(&mac);
        eth[28..32].copy_from_slice(&ip);
        eth[38..42].copy_from_slice(&peer);
        // SAFETY: the TX queue's data page.
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), tx as *mut u8, frame.len()) };
        let rx = virtio::buffer_of(0);
        let mut rx_slot = 0u16;
        virtio::post(
            &dev,
            0,
            &[Segment {
                addr: rx,
                len: 2048,
                device_writes: true,
            }],
            rx_slot,
        );
        for attempt in 0..10u16 {
            virtio::post(
                &dev,
                1,
                &[Segment {
                    addr: tx,
                    len: frame.len() as u32,
                    device_writes: false,
                }],
                attempt,
            );
            virtio::wait_used(&dev, 1, attempt, 2_000_000)?;
            // Frames other than the reply (IPv6 neighbour discovery, ...) are skipped.
            for _ in 0..8 {
                if virtio::wait_used(&dev, 0, rx_slot, 3_000_000).is_err() {
                    break; // nothing yet: ask again
                }
                let got = bytes_at(rx + NET_HDR, 42);
                let is_reply = got[12..14] == [0x08, 0x06]
                    && got[20..22] == [0, 2]
                    && got[28..32] == peer
                    && got[38..42] == ip;
                if is_reply && got[..6] == mac {
                    let mut peer_mac = [0u8; 6];
                    peer_mac.copy_from_slice(&got[22..28]);
                    return Ok((mac, peer_mac));
                }
                rx_slot = rx_slot.wrapping_add(1);
                virtio::post(
                    &dev,
                    0,
                    &[Segment {
                        addr: rx,
                        len: 2048,
                        device_writes: true,
                    }],
                    rx_slot,
                );
            }
        }
        Err("no ARP reply from the peer")
    })();
    match result {
        Ok((mac, peer)) => report(
            t,
            "net",
            true,
            format_args!(
                "mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} peer_mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], peer[0], peer[1], peer[2], peer[3], peer[4], peer[5]
            ),
        ),
        Err(why) => report(t, "net", false, format_args!("{why}")),
    }
}

/// Receives `net.count` numbered frames (ethertype 0x88b5, sequence number big-endian after
/// the Ethernet header) through a single RX buffer that is re-posted slowly, and checks that
/// none was lost or duplicated. The host sends them in a burst once it sees `net-rx: ready`.
fn net_rx(boot: &BootInfo, t: &mut Tally) {
    let count: u32 = boot
        .arg("net.count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let result = (|| -> Result<u32, &'static str> {
        let dev = virtio::devices(boot)
            .find(|d| d.device_id == virtio::TYPE_NET)
            .ok_or("no virtio-net device")?;
        virtio::bring_up_queues(&dev, 2)?;
        let rx = virtio::buffer_of(0);
        let mut slot = 0u16;
        virtio::post(
            &dev,
            0,
            &[Segment {
                addr: rx,
                len: 2048,
                device_writes: true,
            }],
            slot,
        );
        let _ = writeln!(Console, "net-rx: ready");
        let mut expected = 0u32;
        let mut misses = 0;
        while expected < count {
            if virtio::wait_used(&dev, 0, slot, 20_000_000).is_err() {
                misses += 1;
                if misses > 5 {
                    return Err("frames stopped arriving");
                }
                continue;
            }
            let eth = bytes_at(rx + NET_HDR, 18);
            if eth[12..14] == [0x88, 0xb5] {
                let seq = u32::from_be_bytes([eth[14], eth[15], eth[16], eth[17]]);
                if seq != expected {
                    return Err(if seq < expected {
                        "a frame arrived twice"
                    } else {
                        "a frame was lost"
                    });
                }
                expected += 1;
            }
            io::wait_ms(2); // a slow driver: the host's burst has to wait
            slot = slot.wrapping_add(1);
            virtio::post(
                &dev,
                0,
                &[Segment {
                    addr: rx,
                    len: 2048,
                    device_writes: true,
                }],
                slot,
            );
        }
        Ok(expected)
    })();
    match result {
        Ok(n) => report(t, "net-rx", true, format_args!("frames={n} in_order=true")),
        Err(why) => report(t, "net-rx", false, format_args!("{why}")),
    }
}

/// 64 KiB of contiguous guest memory for benchmark reads (identity mapped: physically
/// contiguous too).
#[repr(C, align(4096))]
struct BenchBuffer([u8; 65536]);
static mut BENCH_BUFFER: BenchBuffer = BenchBuffer([0; 65536]);

/// Sequential 64 KiB reads and random 4 KiB reads from the first disk, one request in flight,
/// timed in TSC ticks (the host converts). `bench.seq=N`, `bench.rand=N` set the counts.
fn blk_bench(boot: &BootInfo, t: &mut Tally) {
    let seq_n: u64 = boot
        .arg("bench.seq")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let rand_n: u64 = boot
        .arg("bench.rand")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let result = (|| -> Result<(u64, u64, u64), &'static str> {
        let dev = disk(boot, false).or_else(|_| disk(boot, true))?;
        let mut cap = [0u8; 8];
        for (i, b) in cap.iter_mut().enumerate() {
            *b = virtio::config_byte(&dev, i);
        }
        let sectors = u64::from_le_bytes(cap);
        if sectors < 128 {
            return Err("disk smaller than 64 KiB");
        }
        let buf = core::ptr::addr_of!(BENCH_BUFFER) as usize;
        let mut slot = 0u16;
        let start = cpu::rdtsc();
        for i in 0..seq_n {
            let sector = (i * 128) % (sectors - 127);
            if blk_request_at(&dev, BLK_T_IN, sector, buf, 65536, slot)?.0 != 0 {
                return Err("sequential read failed");
            }
            slot = slot.wrapping_add(1);
        }
        let seq_ticks = cpu::rdtsc() - start;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let start = cpu::rdtsc();
        for _ in 0..rand_n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let sector = (x % (sectors / 8)) * 8;
            if blk_request_at(&dev, BLK_T_IN, sector, buf, 4096, slot)?.0 != 0 {
                return Err("random read failed");
            }
            slot = slot.wrapping_add(1);
        }
        Ok((seq_ticks, cpu::rdtsc() - start, sectors))
    })();
    match result {
        Ok((seq, rand, sectors)) => report(
            t,
            "blk-bench",
            true,
            format_args!("sectors={sectors} seq64k_n={seq_n} seq64k_tsc={seq} rand4k_n={rand_n} rand4k_tsc={rand}"),
        ),
        Err(why) => report(t, "blk-bench", false, format_args!("{why}")),
    }
}

/// What stopped a `blk-stream`: the request, the status the device gave (0xff: none) and the
/// first sector it covered.
struct StreamError {
    what: &'static str,
    status: u8,
    sector: u64,
}

impl From<&'static str> for StreamError {
    fn from(what: &'static str) -> StreamError {
        StreamError {
            what,
            status: 0xff,
            sector: 0,
        }
    }
}

/// Writes the disk from sector 1 to its end, 4 KiB a request, and flushes after every
/// `stream.flush=N` writes (default 4). Once a flush completes it prints `FLUSHED <end>
/// stamp=<stamp>`: every sector in [1, end) is then on the host's disk, whatever becomes of
/// the VMM. Each sector holds the stamp, its own number, then `number ^ offset` bytes.
fn blk_stream(boot: &BootInfo, t: &mut Tally) {
    const CHUNK: u64 = 8;
    let every: u64 = boot
        .arg("stream.flush")
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4);
    let stamp = cpu::rdtsc();
    let result = (|| -> Result<u64, StreamError> {
        let dev = disk(boot, false)?;
        let mut cap = [0u8; 8];
        for (i, b) in cap.iter_mut().enumerate() {
            *b = virtio::config_byte(&dev, i);
        }
        let sectors = u64::from_le_bytes(cap);
        let buf = core::ptr::addr_of!(BENCH_BUFFER) as usize;
        let mut slot = 0u16;
        let mut sector = 1;
        let mut writes = 0;
        while sector + CHUNK <= sectors {
            for s in 0..CHUNK {
                let at = buf + (s as usize) * SECTOR;
                let number = sector + s;
                // SAFETY: inside BENCH_BUFFER (64 KiB); only this check uses it now.
                unsafe {
                    core::ptr::write_volatile(at as *mut u64, stamp);
                    core::ptr::write_volatile((at + 8) as *mut u64, number);
                    for i in 16..SECTOR {
                        core::ptr::write_volatile((at + i) as *mut u8, number as u8 ^ i as u8);
                    }
                }
            }
            let len = (CHUNK as usize * SECTOR) as u32;
            let status = blk_request_at(&dev, BLK_T_OUT, sector, buf, len, slot)?.0;
            slot = slot.wrapping_add(1);
            if status != 0 {
                return Err(StreamError { what: "write", status, sector });
            }
            sector += CHUNK;
            writes += 1;
            if writes % every == 0 || sector + CHUNK > sectors {
                let status = blk_request(&dev, BLK_T_FLUSH, 0, 0, slot)?.0;
                slot = slot.wrapping_add(1);
                if status != 0 {
                    return Err(StreamError { what: "flush", status, sector });
                }
                let _ = writeln!(Console, "FLUSHED {sector} stamp={stamp:#x}");
            }
        }
        Ok(sector)
    })();
    match result {
        Ok(end) => report(
            t,
            "blk-stream",
            true,
            format_args!("end={end} stamp={stamp:#x}"),
        ),
        Err(e) => report(
            t,
            "blk-stream",
            false,
            format_args!("{} status={} sector={}", e.what, e.status, e.sector),
        ),
    }
}

/// `bench.frames=N` broadcast frames of 64 bytes out the TX queue, one in flight, timed in
/// TSC ticks.
fn net_bench(boot: &BootInfo, t: &mut Tally) {
    let n: u16 = boot
        .arg("bench.frames")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let result = (|| -> Result<u64, &'static str> {
        let dev = virtio::devices(boot)
            .find(|d| d.device_id == virtio::TYPE_NET)
            .ok_or("no virtio-net device")?;
        virtio::bring_up_queues(&dev, 2)?;
        let tx = virtio::buffer_of(1);
        let mut frame = [0u8; NET_HDR + 64];
        frame[NET_HDR..NET_HDR + 6].copy_from_slice(&[0xff; 6]);
        frame[NET_HDR + 12..NET_HDR + 14].copy_from_slice(&[0x88, 0xb5]);
        // SAFETY: the TX queue's data page.
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), tx as *mut u8, frame.len()) };
        let start = cpu::rdtsc();
        for slot in 0..n {
            virtio::post(
                &dev,
                1,
                &[Segment {
                    addr: tx,
                    len: frame.len() as u32,
                    device_writes: false,
                }],
                slot,
            );
            virtio::wait_used(&dev, 1, slot, 20_000_000)?;
        }
        Ok(cpu::rdtsc() - start)
    })();
    match result {
        Ok(ticks) => report(t, "net-bench", true, format_args!("frames={n} tsc={ticks}")),
        Err(why) => report(t, "net-bench", false, format_args!("{why}")),
    }
}
