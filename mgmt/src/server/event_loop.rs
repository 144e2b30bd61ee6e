//! The event-loop thread (libvirtd's virEventPoll / virNetServer loop) on event-manager: one
//! subscriber owns the listening sockets, every client socket and the wakeup eventfd, and
//! changes each client's interest as its queues fill and drain. Keepalive pings go out from
//! the loop's periodic timeout.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};

use super::client::{Client, ClientState, ReadOutcome, READ_CHUNK};
use super::Shared;
use crate::dispatch;
use crate::protocol::{error_code, error_domain};
use crate::protocol::{
    KEEPALIVE_PING, KEEPALIVE_PONG, KEEPALIVE_PROGRAM, KEEPALIVE_VERSION, QEMU_PROGRAM,
    REMOTE_PROGRAM, REMOTE_VERSION,
};
use crate::wire::{self, Frame, Header, MessageType, RemoteError, Status};

const WAKEUP: u32 = 0;
const FIRST_LISTENER: u32 = 1;
const FIRST_CLIENT: u32 = 16;
/// How often the loop wakes by itself to check keepalive deadlines.
const TICK: Duration = Duration::from_secs(1);

struct LoopSubscriber {
    shared: Arc<Shared>,
    listeners: Vec<(UnixListener, bool)>,
    listening: bool,
    next_client_id: u32,
    /// Every socket read lands here first (one buffer for all clients, loop thread only).
    scratch: Vec<u8>,
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    listeners: Vec<(UnixListener, bool)>,
) -> Result<JoinHandle<()>, String> {
    let mut manager = EventManager::<LoopSubscriber>::new().map_err(|e| format!("epoll: {e:?}"))?;
    let subscriber = LoopSubscriber {
        shared: shared.clone(),
        listeners,
        listening: true,
        next_client_id: FIRST_CLIENT,
        scratch: vec![0; READ_CHUNK],
    };
    manager.add_subscriber(subscriber);
    std::thread::Builder::new()
        .name("mgmt-loop".into())
        .spawn(move || {
            super::lower_thread_priority();
            while !shared.lock().quit {
                if let Err(e) = manager.run_with_timeout(TICK.as_millis() as i32) {
                    log::error!("management event loop: {e:?}");
                }
                keepalive_tick(&shared);
            }
        })
        .map_err(|e| format!("cannot start the management loop thread: {e}"))
}

/// Pings clients that asked for keepalive and have been silent; drops the unresponsive.
fn keepalive_tick(shared: &Shared) {
    let interval = shared.config.keepalive_interval;
    if interval == 0 {
        return;
    }
    let clients: Vec<Arc<Client>> = shared.lock().clients.values().cloned().collect();
    for client in clients {
        {
            let mut c = client.lock();
            if !c.keepalive || c.closed {
                continue;
            }
            let silent = c.last_heard.elapsed().as_secs();
            if silent < interval * u64::from(c.pings_unanswered + 1) {
                continue;
            }
            if c.pings_unanswered >= shared.config.keepalive_count {
                log::info!(
                    "management client {} stopped answering keepalive pings",
                    client.id
                );
                c.closed = true;
            } else {
                c.pings_unanswered += 1;
                c.push(keepalive_message(KEEPALIVE_PING), false);
            }
        }
        shared.flush(&client);
    }
}

fn keepalive_message(procedure: i32) -> Vec<u8> {
    let header = Header {
        program: KEEPALIVE_PROGRAM,
        version: KEEPALIVE_VERSION,
        procedure,
        kind: MessageType::Message.raw(),
        serial: 0,
        status: Status::Ok as i32,
    };
    wire::frame(&header, &[])
}

fn rpc_error(header: &Header, message: String) -> Vec<u8> {
    RemoteError::new(error_code::RPC, error_domain::RPC, message).reply_to(header)
}

/// What a libvirt driver without a QEMU monitor answers (VIR_ERR_NO_SUPPORT, not an RPC
/// error), so virsh prints "not supported" for qemu-monitor-command and friends.
fn qemu_program_unsupported(header: &Header) -> Vec<u8> {
    let function = match header.procedure {
        1 => "virDomainQemuMonitorCommand".to_string(),
        6 => "virDomainQemuAgentCommand".to_string(),
        8 => "virDomainQemuMonitorCommandWithFiles".to_string(),
        n => format!("QEMU procedure {n}"),
    };
    RemoteError::new(
        error_code::NO_SUPPORT,
        error_domain::DOMAIN,
        format!("this function is not supported by the connection driver: {function}"),
    )
    .reply_to(header)
}

/// Parses buffered input for as long as the client has request slots free.
fn drain_input(c: &mut ClientState, limit: usize, jobs: &mut Vec<Frame>) -> Result<(), ()> {
    while c.wants_parse(limit) {
        let frames = c.parse(limit, dispatch::is_barrier).map_err(|_| ())?;
        if frames.is_empty() {
            break;
        }
        jobs.extend(frames.into_iter().filter_map(|f| triage(c, f)));
    }
    Ok(())
}

/// Queues a reply the event loop makes itself. It holds a request slot until written, as a
/// worker's reply does, so a client that sends without reading stops being read.
fn answer(c: &mut ClientState, reply: Vec<u8>) {
    c.nrequests += 1;
    c.push(reply, true);
}

/// What to do with one frame from a client: answer at once, hand to a worker, or ignore.
fn triage(c: &mut ClientState, frame: Frame) -> Option<Frame> {
    let h = frame.header;
    let kind = MessageType::from_raw(h.kind);
    if h.program == KEEPALIVE_PROGRAM && kind == Some(MessageType::Message) {
        match h.procedure {
            KEEPALIVE_PING => answer(c, keepalive_message(KEEPALIVE_PONG)),
            KEEPALIVE_PONG => c.pings_unanswered = 0,
            _ => {}
        }
        return None;
    }
    match kind {
        Some(MessageType::Call) => {}
        Some(MessageType::CallWithFds) => {
            answer(
                c,
                rpc_error(&h, "file descriptor passing is not supported".into()),
            );
            return None;
        }
        // Replies, events, streams for no open stream, unknown types: ignored, as libvirtd does.
        _ => return None,
    }
    if h.program == QEMU_PROGRAM {
        answer(c, qemu_program_unsupported(&h));
        return None;
    }
    if h.program != REMOTE_PROGRAM || h.version != REMOTE_VERSION {
        answer(
            c,
            rpc_error(
                &h,
                format!("Cannot find program {} version {}", h.program, h.version),
            ),
        );
        return None;
    }
    if h.status != Status::Ok as i32 {
        answer(
            c,
            rpc_error(&h, format!("Unexpected message status {}", h.status)),
        );
        return None;
    }
    c.nrequests += 1;
    Some(frame)
}

impl LoopSubscriber {
    fn accept(&mut self, index: usize, ops: &mut EventOps) {
        let Some((listener, readonly)) = self.listeners.get(index) else {
            return;
        };
        let readonly = *readonly;
        loop {
            if self.shared.lock().clients.len() >= self.shared.config.max_clients {
                // Full: stop listening until a client leaves (libvirtd does the same).
                self.set_listening(false, ops);
                return;
            }
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("management accept: {e}");
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(true) {
                log::warn!("management client: {e}");
                continue;
            }
            let id = self.next_client_id;
            self.next_client_id = self.next_client_id.checked_add(1).unwrap_or(FIRST_CLIENT);
            let client = Arc::new(Client::new(u64::from(id), stream, readonly));
            if let Err(e) = ops.add(Events::with_data(&client.stream, id, EventSet::IN)) {
                log::warn!("management client: cannot watch its socket: {e:?}");
                continue;
            }
            self.shared.lock().clients.insert(u64::from(id), client);
        }
    }

    fn set_listening(&mut self, on: bool, ops: &mut EventOps) {
        if self.listening == on {
            return;
        }
        self.listening = on;
        let set = if on { EventSet::IN } else { EventSet::empty() };
        for (i, (listener, _)) in self.listeners.iter().enumerate() {
            let _ = ops.modify(Events::with_data(listener, FIRST_LISTENER + i as u32, set));
        }
    }

    fn client_event(&mut self, id: u32, set: EventSet, ops: &mut EventOps) {
        let Some(client) = self.shared.lock().clients.get(&u64::from(id)).cloned() else {
            return;
        };
        let limit = self.shared.config.max_client_requests;
        let mut jobs = Vec::new();
        {
            let mut c = client.lock();
            if set.contains(EventSet::IN)
                || set.contains(EventSet::HANG_UP)
                || set.contains(EventSet::ERROR)
            {
                match c.read_from(
                    &client.stream,
                    limit,
                    dispatch::is_barrier,
                    &mut self.scratch,
                ) {
                    ReadOutcome::Frames(frames) => {
                        jobs.extend(frames.into_iter().filter_map(|f| triage(&mut c, f)));
                    }
                    ReadOutcome::Closed(why) => {
                        log::debug!("management client {id}: {why}");
                        c.closed = true;
                    }
                }
            }
            if set.contains(EventSet::OUT) && !c.closed && c.write_to(&client.stream).is_err() {
                c.closed = true;
            }
        }
        for frame in jobs {
            self.shared.queue_job(client.clone(), frame);
        }
        self.settle(&client, ops);
    }

    /// Parses what the client has buffered while it has request slots, and makes the
    /// registered interest match its queues, or drops a closed client. Loops because the
    /// workers may answer the jobs it queues before it looks again: input left buffered with
    /// a slot free and nobody to parse it would wait for good (the socket has no new bytes).
    fn settle(&mut self, client: &Arc<Client>, ops: &mut EventOps) {
        let limit = self.shared.config.max_client_requests;
        loop {
            let mut jobs = Vec::new();
            {
                let mut c = client.lock();
                if !c.closed && drain_input(&mut c, limit, &mut jobs).is_err() {
                    c.closed = true;
                }
            }
            if jobs.is_empty() {
                break;
            }
            for frame in jobs {
                self.shared.queue_job(client.clone(), frame);
            }
        }
        self.update(client, ops);
    }

    /// Makes the registered interest match the client's queues, or drops a closed client.
    fn update(&mut self, client: &Arc<Client>, ops: &mut EventOps) {
        let limit = self.shared.config.max_client_requests;
        let mut c = client.lock();
        if c.closed {
            drop(c);
            let _ = ops.remove(Events::empty(&client.stream));
            let _ = client.stream.shutdown(std::net::Shutdown::Both);
            let mut state = self.shared.lock();
            state.clients.remove(&client.id);
            let below_max = state.clients.len() < self.shared.config.max_clients;
            drop(state);
            if below_max {
                self.set_listening(true, ops);
            }
            return;
        }
        let want = (c.nrequests < limit, !c.tx.is_empty());
        if want != c.interest {
            let mut set = EventSet::empty();
            if want.0 {
                set |= EventSet::IN;
            }
            if want.1 {
                set |= EventSet::OUT;
            }
            if ops
                .modify(Events::with_data(&client.stream, client.id as u32, set))
                .is_ok()
            {
                c.interest = want;
            }
        }
    }

    /// Sends the events posted since the last wakeup; then, other threads changed some
    /// clients (output left over, input to parse, closed): settle each.
    fn refresh(&mut self, ops: &mut EventOps) {
        let _ = self.shared.wakeup.read();
        for event in self.shared.take_events() {
            self.shared.broadcast(&event);
        }
        for id in self.shared.take_dirty() {
            let Some(client) = self.shared.lock().clients.get(&id).cloned() else {
                continue;
            };
            self.settle(&client, ops);
        }
    }
}

impl MutEventSubscriber for LoopSubscriber {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            WAKEUP => self.refresh(ops),
            d if d < FIRST_CLIENT => self.accept((d - FIRST_LISTENER) as usize, ops),
            id => self.client_event(id, events.event_set(), ops),
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::with_data_raw(
            self.shared.wakeup.as_raw_fd(),
            WAKEUP,
            EventSet::IN,
        )) {
            log::error!("management loop: cannot watch its wakeup eventfd: {e:?}");
        }
        for (i, (listener, _)) in self.listeners.iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(
                listener,
                FIRST_LISTENER + i as u32,
                EventSet::IN,
            )) {
                log::error!("management loop: cannot watch a listening socket: {e:?}");
            }
        }
    }
}
