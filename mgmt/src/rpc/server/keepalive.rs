//! libvirt's keepalive program (src/rpc/virkeepalive.c): PING and PONG messages outside any
//! call. A client that said it speaks keepalive is pinged after `keepalive_interval` seconds
//! of silence and dropped after `keepalive_count` unanswered pings.

use std::sync::Arc;

use super::{Client, Shared};
use crate::rpc::wire::{self, Header, MessageType, Status};

pub const PROGRAM: u32 = 0x6b65_6570;
pub const VERSION: u32 = 1;
pub const PING: i32 = 1;
pub const PONG: i32 = 2;

/// Pings clients that asked for keepalive and have been silent; drops the unresponsive.
pub(super) fn tick<D: Send + 'static>(shared: &Shared<D>) {
    let interval = shared.config.keepalive_interval;
    if interval == 0 {
        return;
    }
    let clients: Vec<Arc<Client<D>>> = shared.lock().clients.values().cloned().collect();
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
                c.push(message(PING), false);
            }
        }
        shared.flush(&client);
    }
}

/// A keepalive message (type MESSAGE, serial 0).
pub(super) fn message(procedure: i32) -> Vec<u8> {
    let header = Header {
        program: PROGRAM,
        version: VERSION,
        procedure,
        kind: MessageType::Message.raw(),
        serial: 0,
        status: Status::Ok as i32,
    };
    wire::frame(&header, &[])
}
