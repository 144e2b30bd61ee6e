//! The RPC server, shaped like libvirtd's (src/rpc/virnetserver*.c, virthreadpool.c):
//! an event-loop thread that owns every socket, a worker pool woken by the `job` condition,
//! clients with rx / dx / tx queues and a cap on requests in flight, and the programs it
//! routes calls to. It knows no program's procedures.
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
//! 5. Stream endpoints are called with their client locked, so whatever they lock comes after
//!    the client lock and must never reach a client or server lock; they call back only
//!    through their `StreamWaker`, which takes the leaf `dirty` lock.
//! 6. The socket files' lock is a leaf too: the loop checks them on its tick, and the handle
//!    removes them once the loop has stopped.

mod client;
mod event_loop;
mod keepalive;
mod socket;
mod streams;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use client::Client;

use super::program::{Broadcast, Program, Scheduling};
use super::wire::{self, Frame, Header, MessageType, Status};

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

/// Events waiting for the event loop; past this the oldest are dropped (with a warning),
/// so a main loop emitting faster than the loop sends cannot grow the server.
const MAX_PENDING_EVENTS: usize = 1024;

/// A call waiting for a worker.
pub(crate) struct Job<D> {
    client: Arc<Client<D>>,
    frame: Frame,
    /// Index of its program in `Shared::programs`.
    program: usize,
}

/// Guarded by the server lock.
pub(crate) struct ServerState<D> {
    clients: HashMap<u64, Arc<Client<D>>>,
    jobs: VecDeque<Job<D>>,
    prio_jobs: VecDeque<Job<D>>,
    workers: usize,
    idle_workers: usize,
    quit: bool,
}

pub(crate) struct Shared<D> {
    config: ServerConfig,
    programs: Vec<Arc<dyn Program<D>>>,
    state: Mutex<ServerState<D>>,
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
    /// Events posted and not yet sent: the event loop sends them, so whoever posts (the
    /// VMM's main loop) never takes a client lock or writes a socket. A leaf lock, bounded.
    events: Mutex<VecDeque<Box<dyn Broadcast<D>>>>,
    worker_threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<D: Send + 'static> Shared<D> {
    fn lock(&self) -> MutexGuard<'_, ServerState<D>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_loop(&self) {
        let _ = self.wakeup.write(1);
    }

    /// Writes what `client` has queued as far as its socket takes it, from the calling thread
    /// (a worker, or the event loop), as libvirtd's workers do. The event loop is woken only
    /// when the client's interest must change (output left over, reading to resume),
    /// buffered input can now be parsed, or the client must go.
    fn flush(&self, client: &Arc<Client<D>>) {
        self.flush_reply(client, false);
    }

    /// `flush`, after a reply that may have started a stream (`started`): then the event
    /// loop must look at the client in any case, to send the stream's data.
    fn flush_reply(&self, client: &Arc<Client<D>>, started: bool) {
        let needs_loop = {
            let mut c = client.lock();
            if !c.closed && !c.tx.is_empty() && c.write_to(&client.stream).is_err() {
                c.closed = true;
            }
            let want = (
                c.nrequests < self.config.max_client_requests,
                !c.tx.is_empty(),
            );
            started
                || c.closed
                || want != c.interest
                || c.wants_parse(self.config.max_client_requests)
        };
        if needs_loop {
            self.mark_dirty(client.id);
        }
    }

    /// Has the event loop look at client `id` (settle it) when it next wakes.
    fn mark_dirty(&self, id: u64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
        self.wake_loop();
    }

    /// The clients marked dirty since the last call.
    fn take_dirty(&self) -> Vec<u64> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The program a message is for, by number and version.
    fn program_of(&self, header: &Header) -> Option<usize> {
        self.programs
            .iter()
            .position(|p| p.number() == header.program && p.version() == header.version)
    }

    fn scheduling(&self, header: &Header) -> Scheduling {
        self.program_of(header)
            .map(|i| self.scheduling_in(i, header))
            .unwrap_or_default()
    }

    /// Scheduling of a call already routed to `program`.
    fn scheduling_in(&self, program: usize, header: &Header) -> Scheduling {
        self.programs[program].scheduling(header.procedure)
    }

    /// A call its client's later calls must wait for (see `Scheduling::barrier`).
    fn is_barrier(&self, header: &Header) -> bool {
        header.kind == MessageType::Call.raw()
            && header.status == Status::Ok as i32
            && self.scheduling(header).barrier
    }

    /// Queues a call for the workers; starts another worker if all are busy.
    fn queue_job(
        self: &Arc<Self>,
        client: Arc<Client<D>>,
        frame: Frame,
        program: usize,
        priority: bool,
    ) {
        let mut state = self.lock();
        let job = Job {
            client,
            frame,
            program,
        };
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

    /// Runs one call and returns the whole reply frame.
    fn run_call(&self, job: &Job<D>) -> Vec<u8> {
        let header = &job.frame.header;
        let mut reply = wire::start_frame(&header.reply(Status::Ok));
        match self.programs[job.program].dispatch(
            &job.client,
            header,
            &job.frame.payload,
            &mut reply,
        ) {
            Ok(()) => wire::finish_frame(reply),
            Err(e) => e.reply_to(header),
        }
    }

    /// Queues an event for the event loop to send.
    fn post(&self, event: Box<dyn Broadcast<D>>) {
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

    fn take_events(&self) -> VecDeque<Box<dyn Broadcast<D>>> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Sends an event to every client whose data asks for it. Runs on the event loop.
    fn broadcast(&self, event: &dyn Broadcast<D>) {
        let clients: Vec<Arc<Client<D>>> = self.lock().clients.values().cloned().collect();
        let mut messages = Vec::new();
        for client in clients {
            {
                let mut c = client.lock();
                // A client being dropped gets nothing more (and is warned about once).
                if c.closed {
                    continue;
                }
                event.messages_for(&c.data, &mut messages);
                if messages.is_empty() {
                    continue;
                }
                for message in messages.drain(..) {
                    c.push(message, false);
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
pub struct Server<D: Send + 'static> {
    shared: Arc<Shared<D>>,
    event_loop: Option<JoinHandle<()>>,
    sockets: Arc<Mutex<socket::SocketFiles>>,
}

impl<D: Default + Send + 'static> Server<D> {
    /// Binds the sockets and starts the event loop and the minimum of workers.
    pub fn start(
        config: ServerConfig,
        programs: Vec<Arc<dyn Program<D>>>,
    ) -> Result<Server<D>, String> {
        let (listeners, sockets) = socket::listen(
            &config.socket,
            config.readonly_socket.as_deref(),
            config.socket_mode,
        )?;
        let wakeup = EventFd::new(EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            programs,
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
        let sockets = Arc::new(Mutex::new(socket::SocketFiles::new(sockets)));
        let event_loop = event_loop::spawn(shared.clone(), listeners, sockets.clone())?;
        Ok(Server {
            shared,
            event_loop: Some(event_loop),
            sockets,
        })
    }
}

impl<D: Send + 'static> Server<D> {
    /// Sends an event to the clients that want it, from the server's event loop.
    pub fn post(&self, event: Box<dyn Broadcast<D>>) {
        self.shared.post(event);
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

impl<D: Send + 'static> Drop for Server<D> {
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
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove();
    }
}
