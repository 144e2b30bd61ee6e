//! Domain events: what a client registers (CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY), and
//! the events the VMM posts, which the server's loop sends as one message per matching
//! callback (each carries its callback id).

use super::domain::DomainRef;
use super::errors::rpc_error;
use super::program::Call;
use super::protocol::{
    procedure, Lifecycle, EVENT_ID_LAST, EVENT_ID_LIFECYCLE, EVENT_ID_REBOOT, REMOTE_PROGRAM,
    REMOTE_VERSION, UUID_LEN,
};
use super::RemoteClient;
use crate::rpc::error::code;
use crate::rpc::wire::{self, Header, MessageType, Status};
use crate::rpc::xdr::{Encode, XdrWriter};
use crate::rpc::{Broadcast, RemoteError};

/// Event registrations one connection may hold: each costs a message per event, so an
/// unbounded number lets one client make every event slow and the server large.
pub const MAX_CALLBACKS_PER_CLIENT: usize = 256;

/// One registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub id: i32,
    pub event_id: i32,
    pub domain_uuid: Option<[u8; UUID_LEN]>,
}

/// `{eventID, dom *}` → `{callbackID}`.
pub fn register_any(
    call: &Call,
    (event_id, filter): (i32, Option<DomainRef>),
) -> Result<i32, RemoteError> {
    if !(0..EVENT_ID_LAST).contains(&event_id) {
        return Err(rpc_error(
            code::INVALID_ARG,
            format!("unsupported event ID {event_id}"),
        ));
    }
    let id = call.client.with_data(|d| {
        if d.callbacks.len() >= MAX_CALLBACKS_PER_CLIENT {
            return Err(rpc_error(
                code::OPERATION_FAILED,
                format!(
                    "too many event callbacks on this connection (at most {MAX_CALLBACKS_PER_CLIENT})"
                ),
            ));
        }
        let id = d.next_callback_id;
        d.next_callback_id = d.next_callback_id.wrapping_add(1);
        d.callbacks.push(Callback {
            id,
            event_id,
            domain_uuid: filter.map(|dom| dom.uuid),
        });
        Ok(id)
    })?;
    log::info!(
        "management client {}: event callback {id} registered (event {event_id})",
        call.client.id
    );
    Ok(id)
}

/// `{callbackID}`.
pub fn deregister_any(call: &Call, id: i32) -> Result<(), RemoteError> {
    let removed = call.client.with_data(|d| {
        let before = d.callbacks.len();
        d.callbacks.retain(|cb| cb.id != id);
        d.callbacks.len() != before
    });
    if !removed {
        return Err(rpc_error(
            code::INVALID_ARG,
            format!("callback {id} is not registered"),
        ));
    }
    Ok(())
}

/// An event to send. The body after the callback id is encoded once, for every client.
pub struct DomainEvent {
    event_id: i32,
    procedure: i32,
    domain_uuid: [u8; UUID_LEN],
    body: Vec<u8>,
}

impl DomainEvent {
    fn new(event_id: i32, procedure: i32, domain: &DomainRef, rest: impl Encode) -> DomainEvent {
        let mut body = XdrWriter::new();
        (domain, rest).encode(&mut body);
        DomainEvent {
            event_id,
            procedure,
            domain_uuid: domain.uuid,
            body: body.into_inner(),
        }
    }

    /// `{callbackID, {dom, event, detail}}`.
    pub fn lifecycle(domain: &DomainRef, event: Lifecycle) -> DomainEvent {
        let procedure = procedure::DOMAIN_EVENT_CALLBACK_LIFECYCLE;
        DomainEvent::new(EVENT_ID_LIFECYCLE, procedure, domain, event.wire())
    }

    /// `{callbackID, {dom}}`: the guest reset.
    pub fn reboot(domain: &DomainRef) -> DomainEvent {
        let procedure = procedure::DOMAIN_EVENT_CALLBACK_REBOOT;
        DomainEvent::new(EVENT_ID_REBOOT, procedure, domain, ())
    }

    fn wanted_by(&self, callback: &Callback) -> bool {
        callback.event_id == self.event_id
            && callback.domain_uuid.is_none_or(|u| u == self.domain_uuid)
    }
}

impl Broadcast<RemoteClient> for DomainEvent {
    fn messages_for(&self, data: &RemoteClient, out: &mut Vec<Vec<u8>>) {
        for callback in data.callbacks.iter().filter(|cb| self.wanted_by(cb)) {
            // An async event message: type MESSAGE, serial 1 (as libvirtd sends).
            let mut w = wire::start_frame(&Header {
                program: REMOTE_PROGRAM,
                version: REMOTE_VERSION,
                procedure: self.procedure,
                kind: MessageType::Message.raw(),
                serial: 1,
                status: Status::Ok as i32,
            });
            w.put_i32(callback.id);
            w.put_raw(&self.body);
            out.push(wire::finish_frame(w));
        }
    }
}
