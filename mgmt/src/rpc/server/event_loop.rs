//! The event-loop thread (libvirtd's virEventPoll / virNetServer loop) on event-manager: one
//! subscriber owns the listening sockets, every client socket and the wakeup eventfd, and
//! changes each client's interest as its queues fill and drain. Keepalive pings go out from
//! the loop's periodic timeout.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};

use super::client::{Client, ClientState, ReadOutcome, READ_CHUNK};
use super::keepalive;
use super::socket::{Listener, SocketFiles};
use super::{Job, Shared};
use crate::rpc::error::{code, domain, RemoteError};
use crate::rpc::stream::StreamWaker;
use crate::rpc::wire::{Frame, Header, MessageType, Status};

const WAKEUP: u32 = 0;
const FIRST_LISTENER: u32 = 1;
const FIRST_CLIENT: u32 = 16;
/// How often the loop wakes by itself to check keepalive deadlines.
const TICK: Duration = Duration::from_secs(1);

struct LoopSubscriber<D: Send + 'static> {
    shared: Arc<Shared<D>>,
    listeners: Vec<Listener>,
    listening: bool,
    next_client_id: u32,
    /// Every socket read lands here first (one buffer for all clients, loop thread only).
    scratch: Vec<u8>,
}

pub(crate) fn spawn<D: Default + Send + 'static>(
    shared: Arc<Shared<D>>,
    listeners: Vec<Listener>,
    sockets: Arc<Mutex<SocketFiles>>,
) -> Result<JoinHandle<()>, String> {
    let mut manager =
        EventManager::<LoopSubscriber<D>>::new().map_err(|e| format!("epoll: {e:?}"))?;
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
            crate::thread_hook::thread_started("mgmt-loop");
            let mut last_tick = Instant::now();
            while !shared.lock().quit {
                if let Err(e) = manager.run_with_timeout(TICK.as_millis() as i32) {
                    log::error!("management event loop: {e:?}");
                }
                if last_tick.elapsed() >= TICK {
                    last_tick = Instant::now();
                    keepalive::tick(&shared);
                    sockets.lock().unwrap_or_else(|p| p.into_inner()).check();
                }
            }
        })
        .map_err(|e| format!("cannot start the management loop thread: {e}"))
}

fn rpc_error(header: &Header, message: String) -> Vec<u8> {
    RemoteError::new(code::RPC, domain::RPC, message).reply_to(header)
}

/// Parses buffered input for as long as the client has request slots free.
fn drain_input<D: Send + 'static>(
    shared: &Shared<D>,
    c: &mut ClientState<D>,
    jobs: &mut Vec<(Frame, usize)>,
) -> Result<(), ()> {
    let limit = shared.config.max_client_requests;
    while c.wants_parse(limit) {
        let frames = c.parse(limit, &|h| shared.is_barrier(h)).map_err(|_| ())?;
        if frames.is_empty() {
            break;
        }
        jobs.extend(frames.into_iter().filter_map(|f| triage(shared, c, f)));
    }
    Ok(())
}

/// Queues a reply the event loop makes itself. It holds a request slot until written, as a
/// worker's reply does, so a client that sends without reading stops being read.
fn answer<D>(c: &mut ClientState<D>, reply: Vec<u8>) {
    c.nrequests += 1;
    c.push(reply, true);
}

/// What to do with one frame from a client: answer at once, hand to a worker (with the
/// index of its program), or ignore.
fn triage<D: Send + 'static>(
    shared: &Shared<D>,
    c: &mut ClientState<D>,
    frame: Frame,
) -> Option<(Frame, usize)> {
    let h = frame.header;
    let kind = MessageType::from_raw(h.kind);
    if h.program == keepalive::PROGRAM && kind == Some(MessageType::Message) {
        match h.procedure {
            keepalive::PING => answer(c, keepalive::message(keepalive::PONG)),
            keepalive::PONG => c.pings_unanswered = 0,
            _ => {}
        }
        return None;
    }
    match kind {
        Some(MessageType::Call) => {}
        Some(MessageType::Stream) => {
            c.stream_packet(frame);
            return None;
        }
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
    let Some(program) = shared.program_of(&h) else {
        answer(
            c,
            rpc_error(
                &h,
                format!("Cannot find program {} version {}", h.program, h.version),
            ),
        );
        return None;
    };
    if h.status != Status::Ok as i32 {
        answer(
            c,
            rpc_error(&h, format!("Unexpected message status {}", h.status)),
        );
        return None;
    }
    c.nrequests += 1;
    Some((frame, program))
}

impl<D: Default + Send + 'static> LoopSubscriber<D> {
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
            let shared = Arc::downgrade(&self.shared);
            let waker = StreamWaker::new(move || {
                if let Some(shared) = shared.upgrade() {
                    shared.mark_dirty(u64::from(id));
                }
            });
            let client = Arc::new(Client::new(u64::from(id), stream, readonly, waker));
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
                let shared = &self.shared;
                match c.read_from(
                    &client.stream,
                    limit,
                    &|h| shared.is_barrier(h),
                    &mut self.scratch,
                ) {
                    ReadOutcome::Frames(frames) => {
                        jobs.extend(frames.into_iter().filter_map(|f| triage(shared, &mut c, f)));
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
        self.hand_over(&client, jobs);
        self.settle(&client, ops);
    }

    /// Moves stream data, parses what the client has buffered while it has request slots,
    /// and makes the registered interest match its queues, or drops a closed client. Loops
    /// because the workers may answer the jobs it queues before it looks again, and an
    /// endpoint taking stream input frees slots: input left buffered with a slot free and
    /// nobody to parse it would wait for good (the socket has no new bytes).
    fn settle(&mut self, client: &Arc<Client<D>>, ops: &mut EventOps) {
        let limit = self.shared.config.max_client_requests;
        loop {
            let mut jobs = Vec::new();
            let more_input;
            {
                let mut c = client.lock();
                if c.closed {
                    break;
                }
                c.pump_streams();
                if drain_input(&self.shared, &mut c, &mut jobs).is_err() {
                    c.closed = true;
                    break;
                }
                c.pump_streams();
                more_input = c.wants_parse(limit);
            }
            let handed_over = !jobs.is_empty();
            if handed_over {
                self.hand_over(client, jobs);
            }
            if !handed_over && !more_input {
                break;
            }
        }
        self.update(client, ops);
    }

    /// Answers the calls marked inline here and queues the rest for the workers. Inline
    /// replies are written at once; `update` watches for what the socket did not take.
    fn hand_over(&mut self, client: &Arc<Client<D>>, jobs: Vec<(Frame, usize)>) {
        let mut answered = false;
        for (frame, program) in jobs {
            let scheduling = self.shared.scheduling_in(program, &frame.header);
            if scheduling.inline {
                let job = Job {
                    client: client.clone(),
                    frame,
                    program,
                };
                let reply = self.shared.run_call(&job);
                client.lock().push_reply(&job.frame.header, reply);
                answered = true;
            } else {
                self.shared
                    .queue_job(client.clone(), frame, program, scheduling.priority);
            }
        }
        if answered {
            let mut c = client.lock();
            if !c.closed && c.write_to(&client.stream).is_err() {
                c.closed = true;
            }
        }
    }

    /// Makes the registered interest match the client's queues, or drops a closed client.
    fn update(&mut self, client: &Arc<Client<D>>, ops: &mut EventOps) {
        let limit = self.shared.config.max_client_requests;
        let mut c = client.lock();
        if c.closed {
            c.close_streams();
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
            self.shared.broadcast(event.as_ref());
        }
        for id in self.shared.take_dirty() {
            let Some(client) = self.shared.lock().clients.get(&id).cloned() else {
                continue;
            };
            self.settle(&client, ops);
        }
    }
}

impl<D: Default + Send + 'static> MutEventSubscriber for LoopSubscriber<D> {
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
