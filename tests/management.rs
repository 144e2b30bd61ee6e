//! The management socket driven by real clients: Debian's virsh and libvirt-python.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::managed::{
    clients_available, python_available, run_python, stop_watching, Managed, NAME, UUID,
};
use common::raw_rpc::{closed_without_reply, error_message, exchange, frame, REMOTE};
use common::skip;

/// The guest of most tests: ticking at CPL3, too busy to look at the power button.
const TICKING: &str = "quiet test=ticker ticker.count=1000000";
/// A guest idling at its prompt, which powers off when the power button is pressed.
const IDLE: &str = "quiet";

/// The test guest as these tests run it: 64 MiB, ticking or idle.
impl Managed {
    fn start(tag: &str) -> Managed {
        Self::start_with(tag, TICKING)
    }

    fn start_with(tag: &str, cmdline: &str) -> Managed {
        Self::spawn(tag, &["--memory", "64M", "--cmdline", cmdline], &[])
    }
}

#[test]
fn virsh_queries() {
    if !clients_available("virsh_queries") {
        return;
    }
    let vm = Managed::start("virsh-queries");
    assert!(vm.virsh(&["version"]).contains("Running hypervisor: VMM"));
    let list = vm.virsh(&["list", "--all"]);
    assert!(list.contains(NAME) && list.contains("running"), "{list}");
    let info = vm.virsh(&["dominfo", NAME]);
    for expected in [
        "Id:             1",
        UUID,
        "State:          running",
        "CPU(s):         1",
        "Max memory:     65536 KiB",
        "OS Type:        hvm",
    ] {
        assert!(
            info.contains(expected),
            "dominfo lacks {expected:?}:\n{info}"
        );
    }
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "running (booted)"
    );
    assert_eq!(vm.virsh(&["domid", NAME]).trim(), "1");
    assert_eq!(vm.virsh(&["domuuid", NAME]).trim(), UUID);
    assert_eq!(vm.virsh(&["domname", UUID]).trim(), NAME);
    let xml = vm.virsh(&["dumpxml", NAME]);
    let parsed = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E; d = E.fromstring(sys.stdin.read()); print(d.find('name').text, d.find('uuid').text, d.find('memory').text, d.find('vcpu').text, d.find('os/cmdline').text)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            p.stdin.take().unwrap().write_all(xml.as_bytes())?;
            p.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        format!("{NAME} {UUID} 65536 1 quiet test=ticker ticker.count=1000000")
    );
    // Whatever URI name the client sends: qemu:///system, qemu:///session, or our own scheme.
    for uri in ["qemu+unix:///session", "vmm+unix:///system"] {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(format!("{uri}?socket={}", vm.socket.display()))
            .args(["domstate", NAME])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "running",
            "{uri}"
        );
    }
    // No QEMU monitor here: libvirt's "not supported", as from any driver without one.
    let (ok, _, err) = vm.virsh_on(
        &vm.socket,
        &[
            "qemu-monitor-command",
            NAME,
            r#"{"execute":"query-status"}"#,
        ],
    );
    assert!(
        !ok && err.contains("not supported") && err.contains("virDomainQemuMonitorCommand"),
        "{err}"
    );
    // The VMM's own vCPU limit (its MP table's), through the hypervisor, not a copy in mgmt.
    assert_eq!(vm.virsh(&["maxvcpus"]).trim(), "254");
    assert!(vm.virsh(&["nodeinfo"]).contains("CPU(s):"));
    assert!(!vm.virsh(&["hostname"]).trim().is_empty());
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["dominfo", "nosuchdomain"]);
    assert!(
        !ok && err.contains("failed to get domain 'nosuchdomain'"),
        "{err}"
    );
    vm.assert_guest_runs();
}

#[test]
fn virsh_lifecycle_with_events() {
    if !clients_available("virsh_lifecycle_with_events") {
        return;
    }
    let vm = Managed::start("virsh-lifecycle");
    let events = vm.watch_events();

    assert!(vm.virsh(&["suspend", NAME]).contains("suspended"));
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "paused (user)"
    );
    let paused_ticks = vm.ticks();
    common::wait_until_vcpus_sleep(vm.child.id());
    assert_eq!(vm.ticks(), paused_ticks, "guest ran while suspended");
    vm.virsh(&["resume", NAME]);
    assert_eq!(vm.virsh(&["domstate", NAME]).trim(), "running");
    vm.assert_guest_runs();

    vm.virsh(&["reset", NAME]);
    // This guest is too busy to look at its power button: shutdown and reboot are accepted,
    // the guest keeps running, and destroy still ends it.
    assert!(vm.virsh(&["shutdown", NAME]).contains("is being shutdown"));
    assert!(vm.virsh(&["reboot", NAME]).contains("is being rebooted"));
    vm.assert_guest_runs();
    assert_eq!(vm.virsh(&["domstate", NAME]).trim(), "running");

    vm.virsh(&["destroy", NAME]);
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "shut off (destroyed)"
    );
    assert_eq!(vm.virsh(&["domid", NAME]).trim(), "-");
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["suspend", NAME]);
    assert!(!ok && err.contains("not running"), "{err}");

    vm.virsh(&["start", NAME]);
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "running (booted)"
    );
    assert_eq!(vm.virsh(&["domid", NAME]).trim(), "2");
    vm.assert_guest_runs();

    vm.virsh(&["destroy", NAME]);
    vm.virsh(&["start", NAME, "--paused"]);
    assert_eq!(vm.virsh(&["domstate", NAME]).trim(), "paused");
    vm.virsh(&["resume", NAME]);
    vm.assert_guest_runs();

    let text = stop_watching(events);
    for expected in [
        "Suspended Paused",
        "Resumed Unpaused",
        "Stopped Destroyed",
        "Started Booted",
        "event 'reboot'",
    ] {
        assert!(text.contains(expected), "no {expected:?} event:\n{text}");
    }
    let order: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("lifecycle"))
        .map(|l| l.rsplit(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        vec![
            "Suspended Paused",
            "Resumed Unpaused",
            "Stopped Destroyed",
            "Started Booted",
            "Stopped Destroyed",
            "Started Booted",
            "Suspended Paused",
            "Resumed Unpaused",
        ]
    );
}

#[test]
fn shutdown_and_reboot_press_the_power_button() {
    if !clients_available("shutdown_and_reboot_press_the_power_button") {
        return;
    }
    let vm = Managed::start_with("virsh-acpi", IDLE);
    let events = vm.watch_events();
    vm.wait_for_console("vmm-test-guest ready", 1);

    // libvirt's QEMU driver reboots through ACPI: the guest powers off and starts again in
    // the same run (same id, a reboot event, no stop).
    assert!(vm.virsh(&["reboot", NAME]).contains("is being rebooted"));
    // The press also reached the LAPIC: GED -> irqfd -> IOAPIC pin's MSI route.
    vm.wait_for_console(
        "power button pressed: powering off (interrupt pending: yes)",
        1,
    );
    vm.wait_for_console("vmm-test-guest ready", 2);
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "running (booted)"
    );
    assert_eq!(vm.virsh(&["domid", NAME]).trim(), "1");

    // Only the power button exists: other modes are refused and nothing happens.
    for mode in ["agent", "initctl"] {
        let (ok, _, err) = vm.virsh_on(&vm.socket, &["reboot", NAME, "--mode", mode]);
        assert!(!ok && err.contains("unsupported flags"), "{mode}: {err}");
    }
    assert_eq!(vm.console().matches("power button pressed").count(), 1);

    // Shutdown: the guest powers off through S5; the domain is shut off and still served.
    assert!(vm.virsh(&["shutdown", NAME]).contains("is being shutdown"));
    vm.wait_for_state("shut off (shutdown)");
    assert_eq!(vm.console().matches("power button pressed").count(), 2);
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["shutdown", NAME]);
    assert!(!ok && err.contains("not running"), "{err}");
    vm.virsh(&["start", NAME]);
    vm.wait_for_console("vmm-test-guest ready", 3);
    assert_eq!(vm.virsh(&["domid", NAME]).trim(), "2");

    let text = stop_watching(events);
    let lifecycle: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("lifecycle"))
        .map(|l| l.rsplit(": ").next().unwrap_or(""))
        .collect();
    let reboot = text.find("event 'reboot'");
    assert!(
        reboot.is_some() && reboot < text.find("Shutdown Finished"),
        "the reboot comes first, as one event:\n{text}"
    );
    assert_eq!(
        lifecycle,
        vec!["Shutdown Finished", "Stopped Shutdown", "Started Booted"],
        "events:\n{text}"
    );
}

#[test]
fn read_only_socket_refuses_changes() {
    if !clients_available("read_only_socket_refuses_changes") {
        return;
    }
    let vm = Managed::start("virsh-ro");
    for args in [
        ["suspend", NAME],
        ["destroy", NAME],
        ["reset", NAME],
        ["reboot", NAME],
    ] {
        let (ok, _, err) = vm.virsh_on(&vm.ro_socket, &args);
        assert!(!ok, "{args:?} allowed on the read-only socket");
        assert!(
            err.contains("read only access prevents") || err.contains("read-only"),
            "{args:?}: {err}"
        );
    }
    let (ok, out, _) = vm.virsh_on(&vm.ro_socket, &["domstate", NAME]);
    assert!(ok && out.trim() == "running");
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["-r", "suspend", NAME]);
    assert!(!ok, "virsh -r must not suspend: {err}");
    let mode = std::fs::metadata(&vm.socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o600);
    vm.assert_guest_runs();
}

#[test]
fn libvirt_python_drives_the_vm() {
    if !python_available("libvirt_python_drives_the_vm") {
        return;
    }
    let vm = Managed::start("python");
    let script = format!(
        r#"
import libvirt, threading, time
libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
events = []
conn = libvirt.open("{uri}")
conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda c, d, e, det, o: events.append((e, det)), None)
dom = conn.lookupByName("{name}")
assert dom.UUIDString() == "{uuid}"
assert conn.lookupByUUIDString("{uuid}").name() == "{name}"
assert conn.lookupByID(dom.ID()).name() == "{name}"
state, maxmem, mem, vcpus, cputime = dom.info()
assert (state, maxmem, vcpus) == (libvirt.VIR_DOMAIN_RUNNING, 65536, 1), dom.info()
assert cputime > 0, cputime
assert "<name>{name}</name>" in dom.XMLDesc(0)
dom.suspend(); assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
dom.resume(); assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
dom.reset(0); dom.shutdown(); dom.reboot(0)
assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # the ticking guest ignores the button
dom.destroy(); assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED]
assert conn.listDefinedDomains() == ["{name}"] and conn.numOfDomains() == 0
dom.create(); assert dom.isActive() == 1 and dom.ID() == 2
try:
    conn.lookupByName("nosuch"); raise SystemExit("lookup of a missing domain succeeded")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
# Flags this VMM does not know are refused, as libvirt's drivers refuse them (virCheckFlags).
for call, name in [(lambda: dom.reset(1), "virDomainReset"), (lambda: dom.state(4), "virDomainGetState"),
                   (lambda: dom.XMLDesc(0x100), "virDomainGetXMLDesc")]:
    try:
        call(); raise SystemExit(name + " took unknown flags")
    except libvirt.libvirtError as e:
        assert e.get_error_code() == libvirt.VIR_ERR_INVALID_ARG, (name, e.get_error_code())
        assert "unsupported flags" in str(e) and name in str(e), str(e)
assert dom.isActive() == 1  # the refused reset did nothing
deadline = time.time() + 10
want = [(3, 0), (4, 0), (5, 1), (2, 0)]
while events[:4] != want and time.time() < deadline:
    time.sleep(0.05)
assert events[:4] == want, events
print("PYTHON-OK")
"#,
        uri = Managed::uri(&vm.socket),
        name = NAME,
        uuid = UUID
    );
    run_python(&script, "PYTHON-OK");
    vm.assert_guest_runs();
}

#[test]
fn thirty_two_clients_at_once() {
    if !clients_available("thirty_two_clients_at_once") {
        return;
    }
    let vm = Managed::start("many");
    let children: Vec<Child> = (0..32)
        .map(|_| {
            Command::new("virsh")
                .arg("-c")
                .arg(Managed::uri(&vm.socket))
                .args(["dominfo", NAME])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("running"));
    }
    vm.assert_guest_runs();
}

#[test]
fn malformed_input_never_hurts_the_server_or_the_guest() {
    if !clients_available("malformed_input_never_hurts_the_server_or_the_guest") {
        return;
    }
    let vm = Managed::start("malformed");
    let sock = vm.socket.clone();
    // After each kind of abuse: a fresh virsh is served and the guest still runs.
    let still_fine = |what: &str| {
        let (ok, out, err) = vm.virsh_on(&vm.socket, &["domstate", NAME]);
        assert!(
            ok && out.trim() == "running",
            "after {what}: fresh virsh failed: {err}"
        );
        vm.assert_guest_runs();
    };

    // Bad lengths close that connection only.
    for len in [0u32, 3, 27, 33_554_437, u32::MAX] {
        assert!(
            closed_without_reply(&sock, &len.to_be_bytes()),
            "length {len}"
        );
    }
    still_fine("bad lengths");
    assert!(closed_without_reply(
        &sock,
        b"GET / HTTP/1.1\r\n\r\n garbage garbage garbage"
    ));
    still_fine("garbage");

    // Unknown program, version and procedure: an error reply, as libvirtd gives.
    let (status, payload) = exchange(&sock, &frame(0x1234, 1, 1, 0, 1, 0, &[])).unwrap();
    assert_eq!(status, 1);
    assert_eq!(
        error_message(&payload),
        "Cannot find program 4660 version 1"
    );
    let (_, payload) = exchange(&sock, &frame(REMOTE, 9, 1, 0, 1, 0, &[])).unwrap();
    assert!(error_message(&payload).starts_with("Cannot find program"));
    let (_, payload) = exchange(&sock, &frame(REMOTE, 1, 9999, 0, 1, 0, &[])).unwrap();
    assert_eq!(error_message(&payload), "unknown procedure: 9999");
    let (_, payload) = exchange(&sock, &frame(REMOTE, 1, -5, 0, 1, 0, &[])).unwrap();
    assert_eq!(error_message(&payload), "unknown procedure: -5");
    still_fine("unknown program, version and procedures");
    // A call before CONNECT_OPEN, a call with a bad status, a truncated body.
    let (_, payload) = exchange(&sock, &frame(REMOTE, 1, 3, 0, 1, 0, &[])).unwrap();
    assert!(error_message(&payload).contains("connection not open"));
    let (_, payload) = exchange(&sock, &frame(REMOTE, 1, 66, 0, 1, 1, &[])).unwrap();
    assert_eq!(error_message(&payload), "Unexpected message status 1");
    let mut open_then_truncated = frame(REMOTE, 1, 1, 0, 1, 0, &[0, 0, 0, 0, 0, 0, 0, 0]);
    open_then_truncated.extend(frame(REMOTE, 1, 23, 0, 2, 0, &[0, 0, 0, 200, b'x']));
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&open_then_truncated).unwrap();
    // Both replies, however the socket splits them: read until the error text is there.
    let needle = "Unable to decode message payload";
    let mut replies = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&replies).contains(needle) && replies.len() < 4096 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => replies.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(
        String::from_utf8_lossy(&replies).contains(needle),
        "{replies:?}"
    );
    still_fine("early calls, bad status, truncated body");
    // Wrong message types are ignored; the connection stays usable afterwards.
    let mut ignored = frame(REMOTE, 1, 66, 1, 1, 0, &[]); // a REPLY from a client
    ignored.extend(frame(REMOTE, 1, 66, 7, 2, 0, &[])); // an undefined type
    ignored.extend(frame(REMOTE, 1, 66, 3, 3, 2, b"data")); // STREAM for no stream
    ignored.extend(frame(REMOTE, 1, 66, 0, 4, 0, &[])); // AUTH_LIST, answered
    let (status, payload) = exchange(&sock, &ignored).unwrap();
    assert_eq!((status, payload), (0, vec![0, 0, 0, 1, 0, 0, 0, 0]));
    // Keepalive PING as a MESSAGE gets a PONG.
    let ping = frame(0x6b65_6570, 1, 1, 2, 0, 0, &[]);
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&ping).unwrap();
    let mut pong = [0u8; 28];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong[12..16], &[0, 0, 0, 2]);
    still_fine("wrong message types and keepalive");

    // Half a frame, then silence: that client waits, nobody else does.
    let mut stalled = UnixStream::connect(&sock).unwrap();
    stalled
        .write_all(&frame(REMOTE, 1, 66, 0, 1, 0, &[])[..10])
        .unwrap();
    // A client that sends many calls and never reads its replies.
    let mut greedy = UnixStream::connect(&sock).unwrap();
    greedy.set_nonblocking(true).unwrap();
    let flood: Vec<u8> = (0..20_000)
        .flat_map(|i| frame(REMOTE, 1, 66, 0, i, 0, &[]))
        .collect();
    let _ = greedy.write(&flood);

    still_fine("a stalled half frame and a client that never reads");
    drop((stalled, greedy));
}

/// `virsh vcpupin DOM`'s table: the affinity of each vCPU, in order.
fn vcpupin_table(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.split_whitespace();
            cells.next()?;
            cells.next().map(str::to_string)
        })
        .collect()
}

/// What /proc says: each vCPU thread's affinity, and the other threads' (all the same).
fn proc_affinities(vm: &Managed) -> (Vec<String>, Vec<String>) {
    let pid = vm.child.id();
    let vcpus = common::vcpu_tasks(pid)
        .into_iter()
        .map(|t| t.cpus_allowed)
        .collect();
    let mut others: Vec<String> = common::tasks(pid)
        .into_iter()
        .filter(|t| !t.name.starts_with("vcpu"))
        .map(|t| t.cpus_allowed)
        .collect();
    others.dedup();
    (vcpus, others)
}

/// The clients, and the first and last of two or more host CPUs to move threads between.
fn two_host_cpus(test: &str) -> Option<(String, String)> {
    if !clients_available(test) {
        return None;
    }
    match common::allowed_cpus()[..] {
        [first, .., last] => Some((first.to_string(), last.to_string())),
        _ => {
            skip(test, "needs two host CPUs to move a vCPU between");
            None
        }
    }
}

#[test]
fn virsh_pins_vcpus_and_the_emulator() {
    let Some((a, b)) = two_host_cpus("virsh_pins_vcpus_and_the_emulator") else {
        return;
    };
    let vm = Managed::spawn(
        "pinning",
        &["--memory", "64M", "--cmdline", TICKING, "--cpus", "2"],
        &[],
    );
    vm.wait_for_console("TICK", 1);

    // The answers are the threads' real affinities.
    let (vcpus, _) = proc_affinities(&vm);
    assert_eq!(vcpupin_table(&vm.virsh(&["vcpupin", NAME])), vcpus);
    if common::kvm_is_pvm() {
        assert_eq!(
            vcpus,
            vec![a.clone(), b.clone()],
            "one CPU each, round-robin"
        );
    }
    let info = vm.virsh(&["vcpuinfo", NAME, "--pretty"]);
    assert_eq!(info.matches("VCPU:").count(), 2, "{info}");
    assert!(info.contains("State:          running"), "{info}");
    assert!(
        info.contains(&format!("CPU Affinity:   {} (out of", vcpus[0])),
        "{info}"
    );

    // Move vCPU 0: /proc, vcpupin and vcpuinfo agree, and the guest keeps running.
    vm.virsh(&["vcpupin", NAME, "0", &b]);
    assert_eq!(proc_affinities(&vm).0[0], b);
    assert_eq!(
        vcpupin_table(&vm.virsh(&["vcpupin", NAME, "0"])),
        vec![b.clone()]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = vm.virsh(&["vcpuinfo", NAME]);
        let first = info.split("\n\n").next().unwrap_or("");
        if first.contains(&format!("CPU:            {b}\n")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "vCPU 0 never ran on {b}:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    vm.assert_guest_runs();

    // A set: narrowed to one CPU where each vCPU must keep one (kvm_pvm), kept elsewhere.
    let both = format!("{a},{b}");
    vm.virsh(&["vcpupin", NAME, "1", &both, "--live"]);
    let got = common::cpu_list(&proc_affinities(&vm).0[1]);
    if common::kvm_is_pvm() {
        assert_eq!(got.len(), 1, "{got:?}");
    } else {
        assert_eq!(got, common::cpu_list(&both));
    }

    vm.virsh(&["emulatorpin", NAME, &a]);
    assert_eq!(proc_affinities(&vm).1, vec![a.clone()]);
    assert!(vm
        .virsh(&["emulatorpin", NAME])
        .contains(&format!("*: {a}")));
    let xml = vm.virsh(&["dumpxml", NAME]);
    for pin in [
        format!("<vcpupin vcpu='0' cpuset='{b}'/>"),
        format!("<emulatorpin cpuset='{a}'/>"),
    ] {
        assert!(xml.contains(&pin), "no {pin} in\n{xml}");
    }

    // The placement holds across pause/resume and reset. A destroy ends the machine: the
    // next start is a new one, placed from the configuration again (libvirt's live pins do
    // not outlive the run either).
    let before = proc_affinities(&vm);
    for op in ["suspend", "resume", "reset"] {
        vm.virsh(&[op, NAME]);
        assert_eq!(proc_affinities(&vm), before, "after {op}");
    }
    vm.assert_guest_runs();
    vm.virsh(&["destroy", NAME]);
    vm.virsh(&["start", NAME]);

    // Refusals, each with libvirt's kind of message; the VM keeps running.
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["vcpupin", NAME, "2", &a]);
    assert!(!ok && err.contains("out of range"), "{err}");
    let (ok, _, err) = vm.virsh_on(&vm.ro_socket, &["vcpupin", NAME, "0", &a]);
    assert!(!ok && err.contains("read only"), "{err}");
    let (ok, _, err) = vm.virsh_on(&vm.ro_socket, &["emulatorpin", NAME, &a]);
    assert!(!ok && err.contains("read only"), "{err}");
    vm.assert_guest_runs();
}

/// libvirt-python's view: vcpus(), vcpuPinInfo(), pinVcpu(), emulatorPinInfo(), getCPUMap().
#[test]
fn libvirt_python_reads_and_moves_vcpus() {
    if !python_available("libvirt_python_reads_and_moves_vcpus") {
        return;
    }
    let allowed = common::allowed_cpus();
    let last = allowed[allowed.len() - 1];
    let vm = Managed::spawn(
        "python-pin",
        &["--memory", "64M", "--cmdline", TICKING, "--cpus", "2"],
        &[],
    );
    let script = format!(
        r#"
import libvirt
conn = libvirt.open("{uri}")
ncpus, online_map, online = conn.getCPUMap()
assert ncpus >= 1 and sum(online_map) == online, (ncpus, online_map, online)
dom = conn.lookupByName("{name}")
info, maps = dom.vcpus()
assert [i[0] for i in info] == [0, 1] and all(i[1] == libvirt.VIR_VCPU_RUNNING for i in info), info
assert maps == dom.vcpuPinInfo(0), (maps, dom.vcpuPinInfo(0))
want = tuple(cpu == {last} for cpu in range(ncpus))
dom.pinVcpu(0, want)
assert dom.vcpuPinInfo(0)[0] == want, dom.vcpuPinInfo(0)
assert any(dom.emulatorPinInfo())
try:
    dom.pinVcpu(0, tuple(False for _ in range(ncpus))); raise SystemExit("empty pin accepted")
except libvirt.libvirtError as e:
    assert "Empty cpu list" in str(e), e
print("PYTHON-PIN-OK")
"#,
        uri = Managed::uri(&vm.socket),
        name = NAME,
    );
    run_python(&script, "PYTHON-PIN-OK");
    assert_eq!(proc_affinities(&vm).0[0], last.to_string());
    vm.assert_guest_runs();
}

/// A process confined (here by taskset) cannot be pinned outside its CPUs.
#[test]
fn pins_outside_the_process_cpus_are_refused() {
    let Some((a, b)) = two_host_cpus("pins_outside_the_process_cpus_are_refused") else {
        return;
    };
    let vm = Managed::spawn(
        "confined",
        &["--memory", "64M", "--cmdline", TICKING],
        &["taskset", "-c", &a],
    );
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["vcpupin", NAME, "0", &b]);
    assert!(
        !ok && err.contains(&format!(
            "host CPU {b} is not available to this process (it may use {a})"
        )),
        "{err}"
    );
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["emulatorpin", NAME, &b]);
    assert!(
        !ok && err.contains("not available to this process"),
        "{err}"
    );
    assert_eq!(proc_affinities(&vm), (vec![a.clone()], vec![a]));
    vm.assert_guest_runs();
}

/// virt-xml-validate and the xmllint it runs; under CI their absence fails the test.
fn validator_available(test: &str) -> bool {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if !Path::new("/usr/bin/virt-xml-validate").exists() {
        return skip(test, "virt-xml-validate is not installed (libvirt-clients)");
    }
    runs("xmllint")
        || skip(
            test,
            "xmllint is not installed (apt-get install libxml2-utils)",
        )
}

/// Writes `xml` to the VM's directory and validates it against libvirt's schema `schema`.
fn assert_validates(vm: &Managed, name: &str, xml: &str, schema: &str) {
    let path = vm.dir.path(name);
    std::fs::write(&path, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&path)
        .arg(schema)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} does not validate as {schema}: {}{}\n{xml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `name: value` lines as virsh prints node stats (the value's first word, as a number).
fn stat_lines(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let value = value.split_whitespace().next()?.trim_end_matches('%');
            Some((name.trim().to_string(), value.parse().ok()?))
        })
        .collect()
}

fn stat_names(stats: &[(String, f64)]) -> Vec<&str> {
    stats.iter().map(|(n, _)| n.as_str()).collect()
}

/// A field of this host's /proc/meminfo, in KiB.
fn host_meminfo_kib(field: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The host's idle time (all CPUs) from /proc/stat, in nanoseconds.
fn host_idle_ns() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: f64 = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks * 1e9 / hz
}

/// Python that parses XML on stdin: exits 1 unless it is well-formed.
fn python_xml(script: &str, xml: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            p.stdin.take().unwrap().write_all(xml.as_bytes())?;
            p.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// virsh capabilities, domcapabilities, freecell, nodecpustats, nodememstats and sysinfo.
#[test]
fn host_data_through_virsh() {
    if !clients_available("host_data_through_virsh")
        || !validator_available("host_data_through_virsh")
    {
        return;
    }
    let vm = Managed::start("host-data");

    let caps = vm.virsh(&["capabilities"]);
    assert_validates(&vm, "capabilities.xml", &caps, "capability");
    for part in [
        "<topology>",
        "<cells num=",
        "<machine maxCpus='254'>vmm</machine>",
        "<domain type='kvm'/>",
    ] {
        assert!(caps.contains(part), "capabilities lack {part}:\n{caps}");
    }
    let domcaps = vm.virsh(&["domcapabilities"]);
    assert_validates(&vm, "domcaps.xml", &domcaps, "domaincaps");
    assert!(domcaps.contains("<vcpu max='254'/>"), "{domcaps}");
    let ours = vm.virsh(&[
        "domcapabilities",
        "--virttype",
        "kvm",
        "--arch",
        "x86_64",
        "--machine",
        "vmm",
    ]);
    assert_eq!(ours, domcaps);
    for (option, value) in [
        ("--virttype", "qemu"),
        ("--arch", "aarch64"),
        ("--machine", "pc"),
        ("--emulatorbin", "/usr/bin/qemu-system-x86_64"),
    ] {
        let (ok, _, err) = vm.virsh_on(&vm.socket, &["domcapabilities", option, value]);
        assert!(
            !ok && err.contains(&format!("'{value}'")) && err.contains("not"),
            "{option} {value}: {err}"
        );
    }

    // freecell --all asks for each cell the capabilities list.
    let cells = caps.matches("<cell id=").count();
    let freecell = vm.virsh(&["freecell", "--all"]);
    let free = stat_lines(&freecell);
    assert_eq!(free.len(), cells + 1, "{freecell}");
    let total = free.iter().find(|(n, _)| n == "Total").map(|(_, v)| *v);
    assert!(total.is_some_and(|t| t > 0.0), "{freecell}");
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["freecell", "--cellno", "4000"]);
    assert!(!ok && err.contains("start cell 4000 out of range"), "{err}");

    // CPU time only grows: what the VMM reports is at least what the host said before. CPU 0
    // first: its idle time then cannot be above the later total, even on a one-CPU host.
    let idle_before = host_idle_ns();
    let one = stat_lines(&vm.virsh(&["nodecpustats", "--cpu", "0"]));
    let cpu = stat_lines(&vm.virsh(&["nodecpustats"]));
    assert_eq!(stat_names(&cpu), ["user", "system", "idle", "iowait"]);
    assert!(
        cpu[2].1 >= idle_before && cpu[0].1 > 0.0,
        "{cpu:?} vs idle {idle_before}"
    );
    assert!(one[2].1 <= cpu[2].1 && one[2].1 > 0.0, "{one:?} vs {cpu:?}");
    let percent = stat_lines(&vm.virsh(&["nodecpustats", "--percent"]));
    assert_eq!(
        stat_names(&percent),
        ["usage", "user", "system", "idle", "iowait"]
    );
    assert!(
        percent.iter().all(|(_, p)| (0.0..=100.0).contains(p)),
        "{percent:?}"
    );
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["nodecpustats", "--cpu", "4000"]);
    assert!(!ok && err.contains("Invalid cpuNum"), "{err}");

    let mem = stat_lines(&vm.virsh(&["nodememstats"]));
    assert_eq!(stat_names(&mem), ["total", "free", "buffers", "cached"]);
    assert_eq!(mem[0].1, host_meminfo_kib("MemTotal:"));
    assert!(mem[1].1 > 0.0 && mem[1].1 <= mem[0].1, "{mem:?}");
    let cell = stat_lines(&vm.virsh(&["nodememstats", "--cell", "0"]));
    assert_eq!(&stat_names(&cell)[..2], ["total", "free"]);
    assert!(cell[0].1 > 0.0 && cell[1].1 <= cell[0].1, "{cell:?}");
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["nodememstats", "--cell", "4000"]);
    assert!(!ok && err.contains("cellNum"), "{err}");

    // sysinfo is well-formed; its SMBIOS blocks are what a domain's <sysinfo> may hold.
    let sysinfo = vm.virsh(&["sysinfo"]);
    let as_domain = python_xml(
        "import sys, xml.etree.ElementTree as E\n\
         s = E.fromstring(sys.stdin.read()); assert s.tag == 'sysinfo' and s.get('type') == 'smbios'\n\
         for e in s.findall('processor') + s.findall('memory_device'): s.remove(e)\n\
         print(\"<domain type='kvm'><name>x</name><memory>65536</memory><os><type>hvm</type></os>\" + E.tostring(s, encoding='unicode') + '</domain>')",
        &sysinfo,
    );
    assert_validates(&vm, "sysinfo-domain.xml", &as_domain, "domain");
    vm.assert_guest_runs();
}

/// libvirt-python's getFreeMemory, getCellsFreeMemory, getCPUStats, getMemoryStats.
#[test]
fn host_data_through_libvirt_python() {
    if !python_available("host_data_through_libvirt_python") {
        return;
    }
    let vm = Managed::start("host-python");
    let script = format!(
        r#"
import libvirt, xml.etree.ElementTree as E
conn = libvirt.open("{uri}")
free = conn.getFreeMemory()
assert free > 0 and free % 1024 == 0, free
cells = conn.getCellsFreeMemory(0, 1)
assert len(cells) == 1 and cells[0] > 0, cells
ids = [int(c.get("id")) for c in E.fromstring(conn.getCapabilities()).iter("cell")]
every = conn.getCellsFreeMemory(0, 1024)
assert len(every) == max(ids) + 1, (ids, every)
# Free memory moves while we ask; the sum over the cells is the host's within 256 MiB.
assert abs(sum(every) - conn.getFreeMemory()) < 256 << 20, (every, free)
cpu = conn.getCPUStats(-1)
assert sorted(cpu) == ["idle", "iowait", "kernel", "user"] and cpu["idle"] + cpu["user"] > 0, cpu
assert conn.getCPUStats(0)["idle"] <= conn.getCPUStats(-1)["idle"]
mem = conn.getMemoryStats(-1)
assert sorted(mem) == ["buffers", "cached", "free", "total"] and 0 < mem["free"] <= mem["total"], mem
assert sorted(conn.getMemoryStats(0))[:2] == ["free", "total"], conn.getMemoryStats(0)
caps = E.fromstring(conn.getDomainCapabilities())
assert int(caps.find("vcpu").get("max")) == conn.getMaxVcpus(None), E.tostring(caps)
for call in [lambda: conn.getCellsFreeMemory(4000, 1), lambda: conn.getDomainCapabilities(None, "aarch64")]:
    try:
        call(); raise SystemExit("accepted")
    except libvirt.libvirtError as e:
        assert e.get_error_code() in (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_INVALID_ARG), e
assert E.fromstring(conn.getSysinfo(0)).tag == "sysinfo"
print("PYTHON-HOST-OK")
"#,
        uri = Managed::uri(&vm.socket),
    );
    run_python(&script, "PYTHON-HOST-OK");
    vm.assert_guest_runs();
}
