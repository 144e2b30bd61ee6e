//! The RPC server, shaped like libvirtd's (src/rpc/virnetserver*.c, virthreadpool.c):
//! an event-loop thread that owns every socket, a worker pool woken by the `job` condition,
//! clients with rx / dx / tx queues and a cap on requests in flight, dispatch tables per
//! program.
//!
//! Lock order (from libvirtd, kept here):
//! 1. The server lock (`Shared::state`) is the top-level lock and is taken before any client
//!    lock.
//! 2. Once a client lock is held, the server lock may be dropped; never take the server lock
//!    while holding a client lock.
//! 3. The event loop keeps its own state on its thread; other threads reach it only through
//!    its wakeup eventfd, the `dirty` list and the `events` queue, leaf locks taken with no
//!    other lock held.
//! 4. No lock is held while a handler runs; a worker keeps its client alive with an `Arc`.

mod client;
mod event_loop;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use client::{Callback, Client};

use crate::dispatch;
use crate::domain::DomainRef;
use crate::hypervisor::Hypervisor;
use crate::protocol::{
    procedure, Lifecycle, EVENT_ID_LIFECYCLE, EVENT_ID_REBOOT, REMOTE_PROGRAM, REMOTE_VERSION,
};
use crate::wire::{self, Frame, Header, MessageType, Status};
use crate::xdr::XdrWriter;

/// Limits and sockets (libvirtd's defaults where it has them).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub socket: PathBuf,
    pub readonly_socket: Option<PathBuf>,
    /// Permission bits of the socket files.
    pub socket_mode: u32,
    pub max_clients: usize,
    pub min_workers: usize,
    pub max_workers: usize,
    pub prio_workers: usize,
    pub max_client_requests: usize,
    /// Seconds of silence before the server pings a client that asked for keepalive; 0 = off.
    pub keepalive_interval: u64,
    /// Unanswered pings before the client is dropped.
    pub keepalive_count: u32,
    /// Bytes of unsent replies and events a client may accumulate before it is dropped.
    pub max_client_backlog: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket: PathBuf::from("vmm-libvirt.sock"),
            readonly_socket: None,
            socket_mode: 0o600,
            max_clients: 5000,
            min_workers: 5,
            max_workers: 20,
            prio_workers: 5,
            max_client_requests: 5,
            keepalive_interval: 5,
            keepalive_count: 5,
            max_client_backlog: 16 << 20,
        }
    }
}

/// An event to send: its body after the callback id is encoded once, for every client.
pub(crate) struct PendingEvent {
    event_id: i32,
    procedure: i32,
    domain_uuid: [u8; 16],
    body: Vec<u8>,
}

/// Events waiting for the event loop; past this the oldest are dropped (with a warning),
/// so a main loop emitting faster than the loop sends cannot grow the server.
const MAX_PENDING_EVENTS: usize = 1024;

/// A call waiting for a worker.
pub(crate) struct Job {
    client: Arc<Client>,
    frame: Frame,
}

/// Guarded by the server lock.
pub(crate) struct ServerState {
    clients: HashMap<u64, Arc<Client>>,
    jobs: VecDeque<Job>,
    prio_jobs: VecDeque<Job>,
    workers: usize,
    idle_workers: usize,
    quit: bool,
}

pub(crate) struct Shared {
    config: ServerConfig,
    hypervisor: Arc<dyn Hypervisor>,
    state: Mutex<ServerState>,
    /// Signalled when a job is queued (libvirt's `job` condition); priority workers wait on
    /// their own so that a wakeup is never spent on a worker that cannot take the job.
    job: Condvar,
    prio_job: Condvar,
    /// Wakes the event loop: a client's interest must change, it must be dropped, or the
    /// server stops.
    wakeup: EventFd,
    /// Clients the event loop must look at when woken. A leaf lock: nothing else is taken
    /// while it is held.
    dirty: Mutex<Vec<u64>>,
    /// Events emitted and not yet sent: the event loop sends them, so whoever emits (the
    /// VMM's main loop) never takes a client lock or writes a socket. A leaf lock, bounded.
    events: Mutex<VecDeque<PendingEvent>>,
    worker_threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_loop(&self) {
        let _ = self.wakeup.write(1);
    }

    /// Writes what `client` has queued as far as its socket takes it, from the calling thread
    /// (a worker, or whoever emits an event), as libvirtd's workers do. The event loop is
    /// woken only when the client's interest must change (output left over, reading to
    /// resume), buffered input can now be parsed, or the client must go.
    fn flush(&self, client: &Arc<Client>) {
        let needs_loop = {
            let mut c = client.lock();
            if !c.closed && !c.tx.is_empty() && c.write_to(&client.stream).is_err() {
                c.closed = true;
            }
            let want = (
                c.nrequests < self.config.max_client_requests,
                !c.tx.is_empty(),
            );
            c.closed || want != c.interest || c.wants_parse(self.config.max_client_requests)
        };
        if needs_loop {
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(client.id);
            self.wake_loop();
        }
    }

    /// The clients marked dirty since the last call.
    fn take_dirty(&self) -> Vec<u64> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn hypervisor(&self) -> &dyn Hypervisor {
        self.hypervisor.as_ref()
    }

    /// Queues a call for the workers; starts another worker if all are busy.
    fn queue_job(self: &Arc<Self>, client: Arc<Client>, frame: Frame) {
        let priority = dispatch::is_priority(&frame.header);
        let mut state = self.lock();
        let job = Job { client, frame };
        if priority {
            state.prio_jobs.push_back(job);
        } else {
            state.jobs.push_back(job);
        }
        let waiting = state.jobs.len() + state.prio_jobs.len();
        if state.idle_workers < waiting && state.workers < self.config.max_workers {
            state.workers += 1;
            drop(state);
            workers::spawn(self, false);
        } else {
            drop(state);
        }
        if priority {
            self.prio_job.notify_one();
        }
        self.job.notify_one();
    }

    /// Queues an event for the event loop to send.
    fn post_event(&self, event: PendingEvent) {
        {
            let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
            if events.len() >= MAX_PENDING_EVENTS {
                log::warn!("management events are not going out fast enough; dropping the oldest");
                events.pop_front();
            }
            events.push_back(event);
        }
        self.wake_loop();
    }

    fn take_events(&self) -> VecDeque<PendingEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends an event message to every client with a matching registration, one message per
    /// callback (each carries its callback id). Runs on the event loop.
    fn broadcast(&self, event: &PendingEvent) {
        let clients: Vec<Arc<Client>> = self.lock().clients.values().cloned().collect();
        for client in clients {
            {
                let mut c = client.lock();
                let ids: Vec<i32> = c
                    .callbacks
                    .iter()
                    .filter(|cb| {
                        cb.event_id == event.event_id
                            && cb.domain_uuid.is_none_or(|u| u == event.domain_uuid)
                    })
                    .map(|cb| cb.id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                for id in ids {
                    let mut w = event_frame(event.procedure);
                    w.put_i32(id);
                    w.put_raw(&event.body);
                    c.push(wire::finish_frame(w), false);
                }
                if c.tx_bytes > self.config.max_client_backlog {
                    log::warn!(
                        "management client {} is not reading; dropping it",
                        client.id
                    );
                    c.closed = true;
                }
            }
            self.flush(&client);
        }
    }
}

/// Handle to the running server; dropping it stops the threads and removes the sockets.
pub struct Server {
    shared: Arc<Shared>,
    event_loop: Option<JoinHandle<()>>,
    sockets: Vec<PathBuf>,
}

/// Whether a server listens on the socket file at `path`. The connect is non-blocking: a live
/// server that is not accepting (its backlog full, or stopped) makes a blocking connect wait
/// for good, and this runs where the host's signals are already blocked.
fn someone_listens(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return false; // bind will report the name as too long
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the descriptor is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return true; // cannot tell: never take the path
    }
    // SAFETY: addr is a valid sockaddr_un and the length given is its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    let error = std::io::Error::last_os_error().raw_os_error();
    // SAFETY: fd is ours and still open.
    unsafe { libc::close(fd) };
    // Connected, or refused only because the backlog is full (EAGAIN): a server is there.
    // ECONNREFUSED: the file is stale.
    rc == 0 || error != Some(libc::ECONNREFUSED)
}

fn bind(path: &PathBuf, mode: u32) -> std::io::Result<UnixListener> {
    // A socket file left by an earlier run would make bind fail: remove it, but only if it is
    // a socket nobody listens on (never take a live server's path).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            if someone_listens(path) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "a server is already listening there",
                ));
            }
            std::fs::remove_file(path)?;
        }
    }
    // Create the socket file with its final permissions: no moment with the default ones.
    // SAFETY: umask only changes this process's file-creation mask; it is restored at once.
    let old_mask = unsafe { libc::umask(!mode & 0o777) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old_mask) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl Server {
    /// Binds the sockets and starts the event loop and the minimum of workers.
    pub fn start(config: ServerConfig, hypervisor: Arc<dyn Hypervisor>) -> Result<Server, String> {
        let name = |p: &PathBuf| p.display().to_string();
        let mut listeners = vec![(
            bind(&config.socket, config.socket_mode)
                .map_err(|e| format!("{}: {e}", name(&config.socket)))?,
            false,
        )];
        let mut sockets = vec![config.socket.clone()];
        if let Some(ro) = &config.readonly_socket {
            match bind(ro, config.socket_mode) {
                Ok(listener) => listeners.push((listener, true)),
                Err(e) => {
                    // Leave nothing behind: the read-write socket was created just now.
                    let _ = std::fs::remove_file(&config.socket);
                    return Err(format!("{}: {e}", name(ro)));
                }
            }
            sockets.push(ro.clone());
        }
        let wakeup = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            hypervisor,
            state: Mutex::new(ServerState {
                clients: HashMap::new(),
                jobs: VecDeque::new(),
                prio_jobs: VecDeque::new(),
                workers: config.min_workers,
                idle_workers: 0,
                quit: false,
            }),
            job: Condvar::new(),
            prio_job: Condvar::new(),
            wakeup,
            dirty: Mutex::new(Vec::new()),
            events: Mutex::new(VecDeque::new()),
            worker_threads: Mutex::new(Vec::new()),
        });
        for _ in 0..config.min_workers {
            workers::spawn(&shared, false);
        }
        for _ in 0..config.prio_workers {
            workers::spawn(&shared, true);
        }
        let event_loop = event_loop::spawn(shared.clone(), listeners)?;
        Ok(Server {
            shared,
            event_loop: Some(event_loop),
            sockets,
        })
    }

    /// Sends a lifecycle event to every subscribed client, from the server's event loop.
    pub fn emit_lifecycle(&self, domain: &DomainRef, event: Lifecycle) {
        let (event, detail) = event.wire();
        let mut body = XdrWriter::new();
        domain.encode(&mut body);
        body.put_i32(event);
        body.put_i32(detail);
        self.shared.post_event(PendingEvent {
            event_id: EVENT_ID_LIFECYCLE,
            procedure: procedure::DOMAIN_EVENT_CALLBACK_LIFECYCLE,
            domain_uuid: domain.uuid,
            body: body.into_inner(),
        });
    }

    /// Sends a reboot event (the guest reset) to every subscribed client.
    pub fn emit_reboot(&self, domain: &DomainRef) {
        let mut body = XdrWriter::new();
        domain.encode(&mut body);
        self.shared.post_event(PendingEvent {
            event_id: EVENT_ID_REBOOT,
            procedure: procedure::DOMAIN_EVENT_CALLBACK_REBOOT,
            domain_uuid: domain.uuid,
            body: body.into_inner(),
        });
    }

    /// Connected clients (for tests and logs).
    pub fn client_count(&self) -> usize {
        self.shared.lock().clients.len()
    }
}

/// Management threads run at a lower priority than the vCPUs: under load, answering clients
/// must not take CPU time from the guest.
const MANAGEMENT_NICE: libc::c_int = 10;

pub(crate) fn lower_thread_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id changes only this
    // thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, MANAGEMENT_NICE);
    }
}

/// An async event message: type MESSAGE, serial 1 (as libvirtd sends).
fn event_frame(proc_number: i32) -> XdrWriter {
    wire::start_frame(&Header {
        program: REMOTE_PROGRAM,
        version: REMOTE_VERSION,
        procedure: proc_number,
        kind: MessageType::Message.raw(),
        serial: 1,
        status: Status::Ok as i32,
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.lock().quit = true;
        self.shared.job.notify_all();
        self.shared.prio_job.notify_all();
        self.shared.wake_loop();
        if let Some(handle) = self.event_loop.take() {
            let _ = handle.join();
        }
        let workers = std::mem::take(
            &mut *self
                .shared
                .worker_threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for worker in workers {
            let _ = worker.join();
        }
        for path in &self.sockets {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests;
