//! The whole stack in-process (the RPC server carrying the REMOTE program) with a fake
//! hypervisor: dispatch, client cleanup, keepalive, limits.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cpuset::CpuSet;
use crate::remote::protocol::{procedure as p, DomainState, Lifecycle, REMOTE_PROGRAM};
use crate::remote::{
    CpuTimes, DiskStats, DomainRef, DomainStatus, Hypervisor, InterfaceStats,
    RemoteServer as Server, VcpuInfo,
};
use crate::rpc::wire::{self, FrameReader, Header};
use crate::rpc::xdr::{Decode, Encode, XdrReader, XdrWriter};
use crate::rpc::{RemoteError, ServerConfig};

mod console_stream;
mod host_data;

/// libvirt's keepalive program number.
const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;

struct FakeVm {
    suspends: AtomicUsize,
    nmis: AtomicUsize,
    /// Two vCPUs' affinities.
    pins: Mutex<Vec<CpuSet>>,
    /// While true, suspend blocks (a call stuck on a worker).
    hold_suspend: Mutex<bool>,
    suspend_released: Condvar,
    console: Arc<console_stream::FakeConsole>,
}

impl FakeVm {
    fn new() -> FakeVm {
        FakeVm {
            suspends: AtomicUsize::new(0),
            nmis: AtomicUsize::new(0),
            pins: Mutex::new(vec![CpuSet::single(0), CpuSet::single(1)]),
            hold_suspend: Mutex::new(false),
            suspend_released: Condvar::new(),
            console: Arc::new(console_stream::FakeConsole::default()),
        }
    }

    fn hold_suspend(&self, hold: bool) {
        *self.hold_suspend.lock().unwrap() = hold;
        self.suspend_released.notify_all();
    }
}

fn domain() -> DomainRef {
    DomainRef {
        name: "fake".into(),
        uuid: [9; 16],
        id: 1,
    }
}

impl Hypervisor for FakeVm {
    fn max_vcpus(&self) -> u32 {
        254
    }
    fn status(&self) -> Option<DomainStatus> {
        Some(DomainStatus {
            domain: domain(),
            state: DomainState::Running,
            reason: 1,
            max_memory_kib: 1024,
            memory_kib: 1024,
            vcpus: 2,
            persistent: true,
        })
    }
    fn cpu_time_ns(&self) -> u64 {
        5
    }
    fn xml(&self, _inactive: bool) -> String {
        "<domain/>".into()
    }
    fn suspend(&self) -> Result<(), RemoteError> {
        self.suspends.fetch_add(1, Ordering::SeqCst);
        let held = self.hold_suspend.lock().unwrap();
        drop(
            self.suspend_released
                .wait_while(held, |held| *held)
                .unwrap(),
        );
        Ok(())
    }
    fn resume(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn shutdown(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn reboot(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn reset(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn inject_nmi(&self) -> Result<(), RemoteError> {
        self.nmis.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn destroy(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn create(&self, _: bool) -> Result<(), RemoteError> {
        Ok(())
    }
    fn create_xml(&self, _: &str, _: bool) -> Result<DomainRef, RemoteError> {
        Ok(domain())
    }
    fn define_xml(&self, _: &str) -> Result<DomainRef, RemoteError> {
        Ok(domain())
    }
    fn undefine(&self) -> Result<(), RemoteError> {
        Ok(())
    }
    fn vcpu_info(&self) -> Result<Vec<VcpuInfo>, RemoteError> {
        let pins = self.vcpu_affinities()?;
        Ok((0..2)
            .map(|n| VcpuInfo {
                number: n,
                cpu: n as i32,
                cpu_time_ns: 7,
                affinity: pins[n as usize].clone(),
            })
            .collect())
    }
    fn vcpu_affinities(&self) -> Result<Vec<CpuSet>, RemoteError> {
        Ok(self.pins.lock().unwrap().clone())
    }
    fn pin_vcpu(&self, vcpu: u32, cpus: &CpuSet) -> Result<(), RemoteError> {
        self.pins.lock().unwrap()[vcpu as usize] = cpus.clone();
        Ok(())
    }
    fn emulator_affinity(&self) -> Result<CpuSet, RemoteError> {
        Ok(CpuSet::single(3))
    }
    fn pin_emulator(&self, _: &CpuSet) -> Result<(), RemoteError> {
        Ok(())
    }
    fn disks(&self) -> Vec<DiskStats> {
        vec![DiskStats {
            target: "vda".into(),
            path: "/disk.img".into(),
            rd_reqs: 3,
            rd_bytes: 1536,
            wr_reqs: 2,
            wr_bytes: 1024,
            errors: 1,
            capacity: 1 << 20,
            ..DiskStats::default()
        }]
    }
    fn interfaces(&self) -> Vec<InterfaceStats> {
        vec![InterfaceStats {
            target: "tap0".into(),
            mac: "52:54:00:00:00:01".into(),
            tx_packets: 4,
            ..InterfaceStats::default()
        }]
    }
    fn cpu_times(&self) -> CpuTimes {
        CpuTimes {
            total_ns: 5,
            user_ns: 3,
            system_ns: 2,
        }
    }
    fn rss_kib(&self) -> u64 {
        640
    }
    fn open_console(
        &self,
        device: Option<&str>,
        _force: bool,
        waker: crate::rpc::StreamWaker,
    ) -> Result<Arc<dyn crate::rpc::StreamEndpoint>, RemoteError> {
        self.console.open(device, waker)?;
        Ok(self.console.clone())
    }
}

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mgmt-test-{tag}-{}.sock", std::process::id()))
}

fn start(tag: &str, tweak: impl FnOnce(&mut ServerConfig)) -> (Server, Arc<FakeVm>, PathBuf) {
    let path = socket_path(tag);
    let mut config = ServerConfig {
        socket: path.clone(),
        min_workers: 2,
        prio_workers: 1,
        ..ServerConfig::default()
    };
    tweak(&mut config);
    let vm = Arc::new(FakeVm::new());
    let server = Server::start(config, vm.clone()).unwrap();
    (server, vm, path)
}

/// A raw protocol client.
struct Peer {
    stream: UnixStream,
    reader: FrameReader,
    serial: u32,
}

impl Peer {
    fn connect(path: &PathBuf) -> Peer {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer {
            stream,
            reader: FrameReader::new(),
            serial: 0,
        }
    }

    fn send(&mut self, program: u32, procedure: i32, kind: i32, payload: &[u8]) {
        self.serial += 1;
        let h = Header {
            program,
            version: 1,
            procedure,
            kind,
            serial: self.serial,
            status: 0,
        };
        self.stream.write_all(&wire::frame(&h, payload)).unwrap();
    }

    fn next(&mut self) -> Option<wire::Frame> {
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {
                    if let (_, Some(frame)) = self.reader.push(&byte).ok()? {
                        return Some(frame);
                    }
                }
            }
        }
    }

    /// Calls a REMOTE procedure; returns (status, payload).
    fn call(&mut self, procedure: i32, payload: &[u8]) -> (i32, Vec<u8>) {
        self.send(REMOTE_PROGRAM, procedure, 0, payload);
        loop {
            let f = self.next().expect("reply");
            if f.header.kind == 1 {
                return (f.header.status, f.payload);
            }
        }
    }

    /// Registers for event `event_id` on every domain; returns the reply's status.
    fn register_event(&mut self, event_id: i32) -> i32 {
        let mut w = XdrWriter::new();
        w.put_i32(event_id);
        w.put_u32(0); // no domain filter
        self.call(
            p::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
            &w.into_inner(),
        )
        .0
    }

    fn open(&mut self) {
        let mut w = XdrWriter::new();
        w.put_optional(Some("vmm:///"), |w, s| w.put_string(s));
        w.put_u32(0);
        assert_eq!(self.call(p::CONNECT_OPEN, &w.into_inner()).0, 0);
    }
}

fn dom_arg() -> Vec<u8> {
    let mut w = XdrWriter::new();
    domain().encode(&mut w);
    w.into_inner()
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn dispatches_and_checks_open_and_domain() {
    let (_server, vm, path) = start("dispatch", |_| {});
    let mut peer = Peer::connect(&path);
    let (status, _) = peer.call(p::DOMAIN_GET_INFO, &dom_arg());
    assert_eq!(status, 1, "needs CONNECT_OPEN first");
    let (status, ret) = peer.call(p::AUTH_LIST, &[]);
    assert_eq!((status, ret), (0, vec![0, 0, 0, 1, 0, 0, 0, 0]));
    peer.open();
    let (status, ret) = peer.call(p::DOMAIN_GET_INFO, &dom_arg());
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&ret);
    assert_eq!(
        (
            r.get_u32(),
            r.get_u64(),
            r.get_u64(),
            r.get_u32(),
            r.get_u64()
        ),
        (Ok(1), Ok(1024), Ok(1024), Ok(2), Ok(5))
    );
    assert_eq!(ret.len(), 32, "the protocol notes' 32-byte payload");
    assert_eq!(peer.call(p::DOMAIN_SUSPEND, &dom_arg()).0, 0);
    assert_eq!(vm.suspends.load(Ordering::SeqCst), 1);
    let nmi = |flags: u32| [dom_arg(), flags.to_be_bytes().to_vec()].concat();
    assert_eq!(peer.call(p::DOMAIN_INJECT_NMI, &nmi(0)).0, 0);
    assert_eq!(
        peer.call(p::DOMAIN_INJECT_NMI, &nmi(1)).0,
        1,
        "no flags exist"
    );
    assert_eq!(vm.nmis.load(Ordering::SeqCst), 1);
    let mut other = DomainRef {
        uuid: [1; 16],
        ..domain()
    };
    let mut w = XdrWriter::new();
    other.id = 7;
    other.encode(&mut w);
    let (status, payload) = peer.call(p::DOMAIN_SUSPEND, &w.into_inner());
    assert_eq!(status, 1);
    assert_eq!(
        RemoteError::decode(&mut XdrReader::new(&payload))
            .unwrap()
            .code,
        42
    );
    let (status, payload) = peer.call(p::DOMAIN_GET_INFO, &[0, 0]);
    assert_eq!(status, 1);
    assert_eq!(
        RemoteError::decode(&mut XdrReader::new(&payload))
            .unwrap()
            .message,
        "Unable to decode message payload"
    );
}

#[test]
fn snapshot_reads_and_destroy_are_answered_while_every_worker_is_busy() {
    let (_server, vm, path) = start("inline", |c| {
        c.min_workers = 1;
        c.max_workers = 1;
    });
    vm.hold_suspend(true);
    let mut stuck = Peer::connect(&path);
    stuck.open();
    stuck.send(REMOTE_PROGRAM, p::DOMAIN_SUSPEND, 0, &dom_arg());
    wait_until("the suspend to occupy the only worker", || {
        vm.suspends.load(Ordering::SeqCst) == 1
    });
    let mut reader = Peer::connect(&path);
    reader.open();
    assert_eq!(reader.call(p::DOMAIN_GET_INFO, &dom_arg()).0, 0);
    assert_eq!(
        reader
            .call(p::DOMAIN_GET_STATE, &[dom_arg(), vec![0; 4]].concat())
            .0,
        0
    );
    assert_eq!(
        reader.call(p::DOMAIN_DESTROY, &dom_arg()).0,
        0,
        "destroy runs on a priority worker, not behind the stuck call"
    );
    vm.hold_suspend(false);
    let reply = stuck.next().expect("the suspend's reply");
    assert_eq!(
        (reply.header.procedure, reply.header.status),
        (p::DOMAIN_SUSPEND, 0)
    );
}

/// DOMAIN_GET_VCPUS / GET_VCPU_PIN_INFO arguments: dom, count, maplen (and flags).
fn vcpu_query(count: i32, maplen: i32, flags: Option<u32>) -> Vec<u8> {
    let mut w = XdrWriter::from_vec(dom_arg());
    w.put_i32(count);
    w.put_i32(maplen);
    if let Some(flags) = flags {
        w.put_u32(flags);
    }
    w.into_inner()
}

#[test]
fn vcpu_placement_calls_check_sizes_and_lay_out_cpumaps() {
    let (_server, vm, path) = start("vcpus", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let (status, ret) = peer.call(p::DOMAIN_GET_VCPUS, &vcpu_query(4, 1, None));
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&ret);
    assert_eq!(r.get_u32(), Ok(2), "two vCPUs even when 4 are asked for");
    for n in 0..2 {
        assert_eq!(r.get_u32(), Ok(n));
        assert_eq!(
            (r.get_i32(), r.get_u64(), r.get_i32()),
            (Ok(1), Ok(7), Ok(n as i32))
        );
    }
    assert_eq!(r.get_opaque(16), Ok(&[0b01, 0b10][..]), "one byte per vCPU");
    // Sizes a client may not ask for are refused; the connection stays usable.
    for (count, maplen) in [(-1, 1), (1, -1), (20_000, 1), (1, 4096)] {
        let (status, _) = peer.call(p::DOMAIN_GET_VCPUS, &vcpu_query(count, maplen, None));
        assert_eq!(status, 1, "maxinfo={count} maplen={maplen}");
        let (status, _) = peer.call(
            p::DOMAIN_GET_VCPU_PIN_INFO,
            &vcpu_query(count, maplen, Some(0)),
        );
        assert_eq!(status, 1, "ncpumaps={count} maplen={maplen}");
    }
    let (status, _) = peer.call(p::DOMAIN_GET_VCPU_PIN_INFO, &vcpu_query(2, 1, Some(3)));
    assert_eq!(status, 1, "live and config at once");

    let mut w = XdrWriter::from_vec(dom_arg());
    w.put_u32(1);
    w.put_opaque(&[0b100]);
    w.put_u32(0);
    assert_eq!(peer.call(p::DOMAIN_PIN_VCPU_FLAGS, &w.into_inner()).0, 0);
    assert_eq!(vm.pins.lock().unwrap()[1], CpuSet::single(2));
    for (vcpu, map) in [(2u32, &[1u8][..]), (0, &[0][..])] {
        let mut w = XdrWriter::from_vec(dom_arg());
        w.put_u32(vcpu);
        w.put_opaque(map);
        assert_eq!(
            peer.call(p::DOMAIN_PIN_VCPU, &w.into_inner()).0,
            1,
            "vcpu {vcpu} map {map:?}"
        );
    }
    let (status, ret) = peer.call(p::DOMAIN_GET_VCPU_PIN_INFO, &vcpu_query(2, 2, Some(0)));
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&ret);
    assert_eq!(r.get_opaque(16), Ok(&[1, 0, 4, 0][..]));
    assert_eq!(r.get_i32(), Ok(2));

    let mut w = XdrWriter::new();
    w.put_i32(1);
    w.put_i32(1);
    w.put_u32(0);
    let (status, ret) = peer.call(p::NODE_GET_CPU_MAP, &w.into_inner());
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&ret);
    let map = CpuSet::from_map(r.get_opaque(2048).unwrap());
    let online = r.get_u32().unwrap();
    let count = r.get_i32().unwrap();
    assert_eq!(map.len(), online as usize);
    assert!(count >= 1 && map.last() < Some(count as usize));
}

#[test]
fn read_only_connections_cannot_change_state() {
    let (_server, vm, path) = start("ro", |_| {});
    let mut peer = Peer::connect(&path);
    let mut w = XdrWriter::new();
    w.put_optional(None::<&str>, |w, s| w.put_string(s));
    w.put_u32(crate::remote::protocol::CONNECT_RO);
    assert_eq!(peer.call(p::CONNECT_OPEN, &w.into_inner()).0, 0);
    let (status, payload) = peer.call(p::DOMAIN_SUSPEND, &dom_arg());
    assert_eq!(status, 1);
    let e = RemoteError::decode(&mut XdrReader::new(&payload)).unwrap();
    assert_eq!(e.code, 29);
    assert_eq!(vm.suspends.load(Ordering::SeqCst), 0);
    assert_eq!(
        peer.call(p::DOMAIN_GET_STATE, &[dom_arg(), vec![0; 4]].concat())
            .0,
        0
    );
}

#[test]
fn events_reach_subscribers_and_disconnects_clean_up() {
    let (server, _vm, path) = start("events", |_| {});
    let mut peer = Peer::connect(&path);
    peer.open();
    let mut w = XdrWriter::new();
    w.put_i32(0);
    w.put_u32(0); // all domains
    let (status, ret) = peer.call(
        p::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
        &w.into_inner(),
    );
    assert_eq!(status, 0);
    let callback = XdrReader::new(&ret).get_i32().unwrap();
    server.emit_lifecycle(&domain(), Lifecycle::SuspendedPaused);
    let event = peer.next().unwrap();
    assert_eq!(
        (event.header.procedure, event.header.kind),
        (p::DOMAIN_EVENT_CALLBACK_LIFECYCLE, 2)
    );
    let mut r = XdrReader::new(&event.payload);
    assert_eq!(r.get_i32(), Ok(callback));
    assert_eq!(DomainRef::decode(&mut r).unwrap(), domain());
    assert_eq!((r.get_i32(), r.get_i32()), (Ok(3), Ok(0)));
    assert_eq!(
        event.payload.len() + 28,
        68,
        "the protocol notes' 68-byte packet for this event"
    );

    assert_eq!(peer.register_event(27), 1); // beyond VIR_DOMAIN_EVENT_ID_LAST

    assert_eq!(server.client_count(), 1);
    drop(peer); // mid-session disconnect, callbacks still registered
    wait_until("the client to be dropped", || server.client_count() == 0);
    server.emit_lifecycle(&domain(), Lifecycle::ResumedUnpaused); // nobody left: no panic
}

#[test]
fn a_client_that_never_reads_events_is_dropped_not_buffered_forever() {
    let (server, _vm, path) = start("backlog", |c| c.max_client_backlog = 64 * 1024);
    let mut peer = Peer::connect(&path);
    peer.open();
    assert_eq!(peer.register_event(0), 0);
    // The peer stops reading; the socket buffer fills, then the server's backlog.
    for _ in 0..20_000 {
        server.emit_lifecycle(&domain(), Lifecycle::SuspendedPaused);
        if server.client_count() == 0 {
            break;
        }
    }
    wait_until("the slow client to be dropped", || {
        server.client_count() == 0
    });
}

#[test]
fn keepalive_pings_and_reaps_silent_clients() {
    let (server, _vm, path) = start("keepalive", |c| {
        c.keepalive_interval = 1;
        c.keepalive_count = 1;
    });
    let mut peer = Peer::connect(&path);
    let mut w = XdrWriter::new();
    w.put_i32(crate::remote::protocol::FEATURE_PROGRAM_KEEPALIVE);
    let (_, ret) = peer.call(p::CONNECT_SUPPORTS_FEATURE, &w.into_inner());
    assert_eq!(ret, vec![0, 0, 0, 1]);
    let ping = peer.next().expect("a ping after a second of silence");
    assert_eq!(
        (ping.header.program, ping.header.procedure),
        (KEEPALIVE_PROGRAM, 1)
    );
    // Never answer: the client is dropped after `count` unanswered pings.
    wait_until("the silent client to be reaped", || {
        server.client_count() == 0
    });
    // A client that answers survives.
    let mut good = Peer::connect(&path);
    let mut w = XdrWriter::new();
    w.put_i32(crate::remote::protocol::FEATURE_PROGRAM_KEEPALIVE);
    good.call(p::CONNECT_SUPPORTS_FEATURE, &w.into_inner());
    for _ in 0..3 {
        let ping = good.next().unwrap();
        assert_eq!(ping.header.procedure, 1);
        good.send(KEEPALIVE_PROGRAM, 2, 2, &[]);
    }
    assert_eq!(server.client_count(), 1);
}

#[test]
fn max_clients_stops_accepting_until_one_leaves() {
    let (server, _vm, path) = start("maxclients", |c| c.max_clients = 2);
    let mut a = Peer::connect(&path);
    let mut b = Peer::connect(&path);
    assert_eq!(a.call(p::AUTH_LIST, &[]).0, 0);
    assert_eq!(b.call(p::AUTH_LIST, &[]).0, 0);
    let mut c = Peer::connect(&path); // queued in the listen backlog, not served yet
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.send(REMOTE_PROGRAM, p::AUTH_LIST, 0, &[]);
    assert!(
        c.next().is_none(),
        "a third client was served beyond max_clients"
    );
    drop(a);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(c.next().is_some(), "served once a slot freed");
    assert_eq!(server.client_count(), 2);
}

#[test]
fn a_live_socket_is_not_taken_over_but_a_stale_one_is() {
    let (server, _vm, path) = start("takeover", |_| {});
    let second = Server::start(
        ServerConfig {
            socket: path.clone(),
            ..ServerConfig::default()
        },
        Arc::new(FakeVm::new()),
    );
    assert!(second
        .err()
        .is_some_and(|e| e.contains("already listening")));
    drop(server); // removes the socket file
                  // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let (_again, _vm, _) = start("takeover", |_| {});
    let mode = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.unwrap(), 0o600);
}

fn dom_and(extra: impl FnOnce(&mut XdrWriter)) -> Vec<u8> {
    let mut w = XdrWriter::new();
    domain().encode(&mut w);
    extra(&mut w);
    w.into_inner()
}

#[test]
fn statistics_calls_answer_in_libvirts_layouts() {
    let (_server, _vm, path) = start("stats", |_| {});
    let mut c = Peer::connect(&path);
    c.open();
    // virDomainBlockStats by target: five hypers.
    let (status, body) = c.call(p::DOMAIN_BLOCK_STATS, &dom_and(|w| w.put_string("vda")));
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&body);
    let got: Vec<u64> = (0..5).map(|_| r.get_u64().unwrap()).collect();
    assert_eq!(got, [3, 1536, 2, 1024, 1]);
    // By host path too; an unknown disk is an error, not a zero.
    assert_eq!(
        c.call(
            p::DOMAIN_BLOCK_STATS,
            &dom_and(|w| w.put_string("/disk.img"))
        )
        .0,
        0
    );
    assert_eq!(
        c.call(p::DOMAIN_BLOCK_STATS, &dom_and(|w| w.put_string("vdz")))
            .0,
        1
    );
    // nparams 0 asks how many block parameters there are.
    let (status, body) = c.call(
        p::DOMAIN_BLOCK_STATS_FLAGS,
        &dom_and(|w| {
            w.put_string("vda");
            w.put_i32(0);
            w.put_u32(0);
        }),
    );
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&body);
    assert_eq!((r.get_u32().unwrap(), r.get_i32().unwrap()), (0, 9));
    // Interface stats by tap name: tx packets is the sixth hyper.
    let (status, body) = c.call(
        p::DOMAIN_INTERFACE_STATS,
        &dom_and(|w| w.put_string("tap0")),
    );
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&body);
    let got: Vec<u64> = (0..8).map(|_| r.get_u64().unwrap()).collect();
    assert_eq!(got[5], 4);
    // Memory: actual and rss, nothing invented.
    let (status, body) = c.call(
        p::DOMAIN_MEMORY_STATS,
        &dom_and(|w| {
            w.put_u32(16);
            w.put_u32(0);
        }),
    );
    assert_eq!(status, 0);
    let mut r = XdrReader::new(&body);
    assert_eq!(r.get_u32().unwrap(), 2);
    assert_eq!((r.get_i32().unwrap(), r.get_u64().unwrap()), (6, 1024));
    assert_eq!((r.get_i32().unwrap(), r.get_u64().unwrap()), (7, 640));
    // domstats: one record whose keys are libvirt's.
    let mut w = XdrWriter::new();
    w.put_u32(0); // no domains named: all
    w.put_u32(0); // every group
    w.put_u32(0);
    let (status, body) = c.call(p::CONNECT_GET_ALL_DOMAIN_STATS, &w.into_inner());
    assert_eq!(status, 0);
    let text = String::from_utf8_lossy(&body);
    for key in [
        "state.state",
        "cpu.time",
        "balloon.rss",
        "vcpu.1.time",
        "net.0.tx.pkts",
        "block.0.rd.reqs",
        "block.0.capacity",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
    // ENFORCE with a group this VMM lacks (perf) is refused.
    let mut w = XdrWriter::new();
    w.put_u32(0);
    w.put_u32(64);
    w.put_u32(1 << 31);
    assert_eq!(
        c.call(p::CONNECT_GET_ALL_DOMAIN_STATS, &w.into_inner()).0,
        1
    );
}
