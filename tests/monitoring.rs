//! What operators and monitoring systems read, with real clients: the devices in the domain
//! XML (checked against libvirt's schema), statistics counted by the devices (the guest does
//! a known amount of I/O), the list filters, and two unmodified monitoring agents, collectd's
//! virt plugin and prometheus-libvirt-exporter, exporting disk and network series.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::managed::{clients_available, python_available, run_python, Managed, NAME};
use common::{kill_and_reap, read_lossy, skip, NetNs, TempDir};

/// What the guest does before it idles at its prompt: 64 KiB reads and 64-byte frames.
const READS: u64 = 37;
const FRAMES: u64 = 23;
const FRAME_BYTES: u64 = 64;
const DISK_BYTES: u64 = 1 << 20;
const MAC: &str = "52:54:00:12:34:56";

/// A VM with a disk, an interface on `tap0` in `ns` and an rng, whose guest reads READS
/// blocks and sends FRAMES frames, then idles. Returns it once the guest is done.
fn start_with_devices(tag: &str, ns: &NetNs, disk_dir: &TempDir) -> Managed {
    let disk = disk_dir.path("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(DISK_BYTES))
        .unwrap();
    let cmdline =
        format!("test=blk-bench,net-bench bench.seq={READS} bench.rand=0 bench.frames={FRAMES}");
    let vm = Managed::spawn(
        tag,
        &[
            "--memory",
            "64M",
            "--disk",
            &format!("path={},id=disk0", disk.display()),
            "--net",
            &format!("tap=tap0,mac={MAC}"),
            "--rng",
            "--cmdline",
            &cmdline,
        ],
        &["ip", "netns", "exec", &ns.name],
    );
    vm.wait_for_console("RESULT", 1);
    let console = vm.console();
    assert!(
        console.contains("TEST blk-bench PASS") && console.contains("TEST net-bench PASS"),
        "{console}"
    );
    vm
}

/// virt-xml-validate from libvirt-clients; CI must have it.
fn validate(xml: &str, schema: &str, dir: &TempDir) {
    let file = dir.path(&format!("{schema}.xml"));
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&file)
        .arg(schema)
        .output()
        .expect("virt-xml-validate (libvirt-clients)");
    assert!(
        out.status.success(),
        "{xml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `KEY VALUE` lines (domblkstat, domifstat, dommemstat) as a lookup.
fn value_of(out: &str, key: &str) -> Option<u64> {
    out.lines().find_map(|line| {
        let mut words = line.split_whitespace().rev();
        let value = words.next()?.parse().ok()?;
        (words.next()? == key).then_some(value)
    })
}

#[test]
fn the_xml_lists_the_devices_and_their_counters_count_the_guests_io() {
    if !python_available("the_xml_lists_the_devices_and_their_counters_count_the_guests_io") {
        return;
    }
    let Some(ns) = NetNs::new("stats") else {
        return;
    };
    let disk_dir = TempDir::new("stats-disk");
    let vm = start_with_devices("stats", &ns, &disk_dir);
    let disk = disk_dir.path("disk.img").display().to_string();

    // The XML: valid, with every device, and no id in the inactive form.
    let xml = vm.virsh(&["dumpxml", NAME]);
    validate(&xml, "domain", &disk_dir);
    for want in [
        "<target dev='vda' bus='virtio'/>",
        "<serial>disk0</serial>",
        "<interface type='ethernet'>",
        "<target dev='tap0' managed='no'/>",
        "<rng model='virtio'>",
        "<console type='file'>",
        "<acpi/>",
    ] {
        assert!(xml.contains(want), "dumpxml lacks {want}:\n{xml}");
    }
    let inactive = vm.virsh(&["dumpxml", NAME, "--inactive"]);
    validate(&inactive, "domain", &disk_dir);
    assert!(!inactive.contains(" id='"), "{inactive}");
    let blklist = vm.virsh(&["domblklist", NAME, "--details"]);
    assert!(
        blklist.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w == ["file", "disk", "vda", disk.as_str()]
        }),
        "{blklist}"
    );
    let iflist = vm.virsh(&["domiflist", NAME]);
    assert!(
        iflist.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w == ["tap0", "ethernet", "-", "virtio", MAC]
        }),
        "{iflist}"
    );

    // The counters: exactly what the guest did.
    let blk = vm.virsh(&["domblkstat", NAME, "vda"]);
    assert_eq!(value_of(&blk, "rd_req"), Some(READS), "{blk}");
    assert_eq!(value_of(&blk, "rd_bytes"), Some(READS * 65536), "{blk}");
    assert_eq!(value_of(&blk, "wr_req"), Some(0), "{blk}");
    let by_path = vm.virsh(&["domblkstat", NAME, &disk]);
    assert_eq!(value_of(&by_path, "rd_req"), Some(READS), "{by_path}");
    let net = vm.virsh(&["domifstat", NAME, "tap0"]);
    assert_eq!(value_of(&net, "tx_packets"), Some(FRAMES), "{net}");
    assert_eq!(
        value_of(&net, "tx_bytes"),
        Some(FRAMES * FRAME_BYTES),
        "{net}"
    );
    let info = vm.virsh(&["domblkinfo", NAME, "vda"]);
    assert!(
        info.contains(&format!("Capacity:       {DISK_BYTES}")),
        "{info}"
    );
    let stats = vm.virsh(&["domstats", NAME]);
    for want in [
        format!("block.0.rd.reqs={READS}"),
        "block.0.name=vda".to_string(),
        format!("net.0.tx.pkts={FRAMES}"),
        "net.0.name=tap0".to_string(),
        "state.state=1".to_string(),
        "vcpu.0.state=1".to_string(),
        "balloon.current=65536".to_string(),
    ] {
        assert!(stats.contains(&want), "domstats lacks {want}:\n{stats}");
    }
    let only_block = vm.virsh(&["domstats", NAME, "--block"]);
    assert!(only_block.contains("block.count=1") && !only_block.contains("net.count"));
    let mem = vm.virsh(&["dommemstat", NAME]);
    assert_eq!(value_of(&mem, "actual"), Some(65536), "{mem}");
    assert!(value_of(&mem, "rss").is_some_and(|kib| kib > 0), "{mem}");
    assert!(vm.virsh(&["domjobinfo", NAME]).contains("None"));
    assert_eq!(vm.virsh(&["domcontrol", NAME]).trim(), "ok");
    assert!(vm.virsh(&["domblkerror", NAME]).contains("No errors found"));
    assert!(vm
        .virsh(&["cpu-stats", NAME, "--total"])
        .contains("cpu_time"));
    let (ok, _, err) = vm.virsh_on(&vm.socket, &["domblkstat", NAME, "vdz"]);
    assert!(!ok && err.contains("invalid path"), "{err}");

    // The same through libvirt-python, including the grouped call and its ENFORCE flag.
    run_python(
        &format!(
            r#"
import libvirt
conn = libvirt.open("{uri}")
dom = conn.lookupByName("{NAME}")
rd_req, rd_bytes, wr_req, wr_bytes, errs = dom.blockStats("vda")
assert (rd_req, rd_bytes, wr_req) == ({READS}, {READS} * 65536, 0), dom.blockStats("vda")
flags = dom.blockStatsFlags("vda")
assert flags["rd_operations"] == {READS}, flags
rx = dom.interfaceStats("tap0")
assert (rx[5], rx[4]) == ({FRAMES}, {FRAMES} * {FRAME_BYTES}), rx
assert dom.interfaceStats("{MAC}")[5] == {FRAMES}
mem = dom.memoryStats()
assert set(mem) == {{"actual", "rss"}} and mem["actual"] == 65536, mem
records = conn.getAllDomainStats(0, 0)
assert len(records) == 1 and records[0][1]["block.0.rd.reqs"] == {READS}, records
assert conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_INTERFACE)[0][1]["net.0.tx.pkts"] == {FRAMES}
try:
    conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_PERF, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS)
    raise SystemExit("ENFORCE_STATS accepted a group this VMM lacks")
except libvirt.libvirtError as e:
    assert e.get_error_code() == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, e
total = dom.getCPUStats(True)[0]
assert total["cpu_time"] > 0 and "user_time" in total, total
assert dom.vcpus()[0][0][2] > 0, dom.vcpus()
capacity, allocation, physical = dom.blockInfo("vda")
assert capacity == physical == {DISK_BYTES} and allocation <= {DISK_BYTES}, dom.blockInfo("vda")
print("STATS-OK")
"#,
            uri = Managed::uri(&vm.socket),
        ),
        "STATS-OK",
    );
    assert_eq!(vm.virsh(&["domstate", NAME]).trim(), "running");
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// A tool from a Debian package: its absence skips outside CI and fails in CI.
fn tool(test: &str, path: &str, package: &str) -> Option<PathBuf> {
    if Path::new(path).exists() {
        return Some(PathBuf::from(path));
    }
    skip(
        test,
        &format!("{path} is missing (apt-get install {package})"),
    );
    None
}

/// One value of a Prometheus series whose labels include `label`.
fn series(metrics: &str, name: &str, label: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        labels.contains(label).then(|| value.trim().parse().ok())?
    })
}

#[test]
fn monitoring_agents_export_disk_and_network_series() {
    let test = "monitoring_agents_export_disk_and_network_series";
    if !clients_available(test) {
        return;
    }
    let (Some(exporter), Some(collectd)) = (
        tool(
            test,
            "/usr/bin/prometheus-libvirt-exporter",
            "prometheus-libvirt-exporter",
        ),
        tool(test, "/usr/sbin/collectd", "collectd-core"),
    ) else {
        return;
    };
    let Some(ns) = NetNs::new("agents") else {
        return;
    };
    let dir = TempDir::new("agents");
    let vm = start_with_devices("agents", &ns, &dir);
    let uri = Managed::uri(&vm.socket);

    // prometheus-libvirt-exporter: block and interface series with the guest's numbers.
    let port = free_port();
    let mut exporter = Command::new(exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--libvirt.uri={uri}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        match http_get(port, "/metrics") {
            Some(m) if m.contains("libvirt_domain_block_stats") => break m,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("no block series from the exporter: {other:?}"),
        }
    };
    kill_and_reap(&mut exporter);
    let vda = "target_device=\"vda\"";
    let tap = "target_device=\"tap0\"";
    assert_eq!(
        series(
            &metrics,
            "libvirt_domain_block_stats_read_requests_total",
            vda
        ),
        Some(READS as f64),
        "{metrics}"
    );
    assert_eq!(
        series(
            &metrics,
            "libvirt_domain_interface_stats_transmit_packets_total",
            tap
        ),
        Some(FRAMES as f64),
        "{metrics}"
    );

    // collectd's virt plugin writing CSV: one file per disk and interface series.
    let conf = dir.path("collectd.conf");
    let base = dir.path("collectd");
    std::fs::write(
        &conf,
        format!(
            "Interval 1\nBaseDir \"{base}\"\nPIDFile \"{base}/collectd.pid\"\n\
             PluginDir \"/usr/lib/collectd\"\nTypesDB \"/usr/share/collectd/types.db\"\n\
             LoadPlugin virt\nLoadPlugin csv\n\
             <Plugin virt>\n  Connection \"{uri}\"\n  RefreshInterval 1\n  HostnameFormat name\n  InterfaceFormat name\n</Plugin>\n\
             <Plugin csv>\n  DataDir \"{base}/csv\"\n</Plugin>\n",
            base = base.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&base).unwrap();
    let mut agent = Command::new(collectd)
        .arg("-C")
        .arg(&conf)
        .arg("-f")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let csv = base.join("csv").join(NAME).join("virt");
    let wanted = [
        "disk_octets-vda",
        "disk_ops-vda",
        "if_octets-tap0",
        "if_packets-tap0",
    ];
    let have = |name: &str| {
        std::fs::read_dir(&csv)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().starts_with(name))
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wanted.iter().all(|w| have(w)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    kill_and_reap(&mut agent);
    let listing: Vec<String> = std::fs::read_dir(&csv)
        .map(|e| {
            e.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for w in wanted {
        assert!(have(w), "collectd wrote no {w}: {listing:?}");
    }
    let ops = std::fs::read_dir(&csv)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("disk_ops-vda"))
        .map(|e| read_lossy(&e.path()))
        .unwrap_or_default();
    assert!(ops.lines().count() >= 2, "{ops}");
}

#[test]
fn list_filters_and_state_details_match_libvirt() {
    if !python_available("list_filters_and_state_details_match_libvirt") {
        return;
    }
    let vm = Managed::spawn("filters", &["--memory", "64M"], &[]);
    vm.wait_for_console("vmm-test-guest ready", 1);
    let listed = |args: &[&str]| {
        let out = vm.virsh(&[&["list", "--name"][..], args].concat());
        out.lines().any(|l| l.trim() == NAME)
    };
    assert!(listed(&["--state-running"]));
    assert!(listed(&["--persistent"]));
    for absent in [
        "--state-paused",
        "--state-shutoff",
        "--state-other",
        "--transient",
        "--autostart",
        "--with-snapshot",
        "--with-managed-save",
        "--with-checkpoint",
    ] {
        assert!(
            !listed(&["--all", absent]),
            "{absent} listed the running domain"
        );
    }
    assert!(!listed(&["--inactive"]));
    assert!(listed(&[
        "--all",
        "--no-autostart",
        "--without-snapshot",
        "--without-managed-save"
    ]));

    // Paused: only the paused filter matches; a reset succeeds and leaves it paused.
    vm.virsh(&["suspend", NAME]);
    assert!(listed(&["--state-paused"]) && !listed(&["--state-running"]));
    vm.virsh(&["reset", NAME]);
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "paused (user)"
    );
    vm.virsh(&["resume", NAME]);
    vm.wait_for_console("vmm-test-guest ready", 2);
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "running (unpaused)"
    );
    // A reboot (the idle guest powers off on the button and starts again) is "booted".
    vm.virsh(&["reboot", NAME]);
    vm.wait_for_console("vmm-test-guest ready", 3);
    assert_eq!(
        vm.virsh(&["domstate", NAME, "--reason"]).trim(),
        "running (booted)"
    );

    // The NMI button reaches the guest's CPU: the test guest has no NMI handler, so it
    // triple-faults and the machine resets, as a bare-metal board would. A paused guest
    // takes the NMI only when it resumes.
    vm.virsh(&["suspend", NAME]);
    vm.virsh(&["inject-nmi", NAME]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(vm.console().matches("vmm-test-guest ready").count(), 3);
    vm.virsh(&["resume", NAME]);
    vm.wait_for_console("vmm-test-guest ready", 4);
    let log = read_lossy(&vm.dir.path("stderr.log"));
    assert_eq!(log.matches("triple fault").count(), 1, "{log}");
    let (ok, _, err) = vm.virsh_on(&vm.ro_socket, &["inject-nmi", NAME]);
    assert!(!ok && err.contains("read only"), "{err}");

    for (args, what) in [
        (&["send-key", NAME, "KEY_A"][..], "virDomainSendKey"),
        (
            &["screenshot", NAME, "/dev/null"][..],
            "virDomainScreenshot",
        ),
    ] {
        let (ok, _, err) = vm.virsh_on(&vm.socket, args);
        assert!(
            !ok && err.contains("not supported") && err.contains(what),
            "{err}"
        );
    }

    // Shut off: the inactive filters match, and no CPU time is reported.
    vm.virsh(&["destroy", NAME]);
    assert!(listed(&["--inactive"]) && listed(&["--all", "--state-shutoff"]));
    assert!(!listed(&[]) && !listed(&["--all", "--state-running"]));
    let info = vm.virsh(&["dominfo", NAME]);
    assert!(!info.contains("CPU time"), "{info}");

    // The client's close callback fires when the VMM goes away.
    run_python(
        &format!(
            r#"
import libvirt, threading, time, os, signal
libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)], daemon=True).start()
conn = libvirt.open("{uri}")
assert conn.lookupByName("{NAME}").info()[4] == 0
fired = []
conn.registerCloseCallback(lambda c, reason, opaque: fired.append(reason), None)
os.kill({pid}, signal.SIGTERM)
deadline = time.time() + 20
while not fired and time.time() < deadline:
    time.sleep(0.05)
assert fired == [libvirt.VIR_CONNECT_CLOSE_REASON_EOF], fired
print("CLOSE-OK")
"#,
            uri = Managed::uri(&vm.socket),
            pid = vm.child.id()
        ),
        "CLOSE-OK",
    );
}
