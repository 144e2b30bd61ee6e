//! A client's open streams (see `rpc::stream`): packets in from the client, data out from
//! the endpoints, and the ends of a stream. Everything here runs with the client locked.

use std::collections::VecDeque;
use std::sync::Arc;

use super::client::ClientState;
use crate::rpc::error::{code, domain, RemoteError};
use crate::rpc::stream::{
    StreamEndpoint, StreamRead, MAX_STREAMS_PER_CLIENT, STREAM_BACKLOG, STREAM_CHUNK_MAX,
    STREAM_QUEUED_MAX,
};
use crate::rpc::wire::{self, Frame, Header, MessageType, Status};

pub struct OpenStream {
    /// The opening call's header: every packet of the stream carries its numbers.
    call: Header,
    endpoint: Arc<dyn StreamEndpoint>,
    /// The opening call's reply is queued, so data may follow it.
    started: bool,
    /// The endpoint's end was sent; the client's finish is awaited.
    eof_sent: bool,
    /// Data from the client the endpoint has not taken yet, each packet holding a request
    /// slot, with how much of the first was taken.
    incoming: VecDeque<Vec<u8>>,
    taken: usize,
}

fn packet(call: &Header, status: Status, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        kind: MessageType::Stream.raw(),
        status: status as i32,
        ..*call
    };
    wire::frame(&header, payload)
}

fn error_packet(call: &Header, error: &RemoteError) -> Vec<u8> {
    let mut w = wire::start_frame(&Header {
        kind: MessageType::Stream.raw(),
        status: Status::Error as i32,
        ..*call
    });
    error.encode(&mut w);
    wire::finish_frame(w)
}

fn same_stream(a: &Header, b: &Header) -> bool {
    a.program == b.program
        && a.version == b.version
        && a.procedure == b.procedure
        && a.serial == b.serial
}

impl<D> ClientState<D> {
    /// Binds a stream to the call `call` (from its handler, before the reply is queued).
    pub fn open_stream(
        &mut self,
        call: &Header,
        endpoint: Arc<dyn StreamEndpoint>,
    ) -> Result<(), RemoteError> {
        if self.streams.len() >= MAX_STREAMS_PER_CLIENT {
            endpoint.close();
            return Err(RemoteError::new(
                code::OPERATION_FAILED,
                domain::RPC,
                format!("operation failed: a connection may have at most {MAX_STREAMS_PER_CLIENT} streams open"),
            ));
        }
        self.streams.push(OpenStream {
            call: *call,
            endpoint,
            started: false,
            eof_sent: false,
            incoming: VecDeque::new(),
            taken: 0,
        });
        Ok(())
    }

    /// Queues the reply to the call with header `call`; a stream that call opened may now
    /// send. True when one did, so the event loop must look at this client.
    pub fn push_reply(&mut self, call: &Header, reply: Vec<u8>) -> bool {
        self.push(reply, true);
        let mut started = false;
        for stream in &mut self.streams {
            if !stream.started && same_stream(&stream.call, call) {
                stream.started = true;
                started = true;
            }
        }
        started
    }

    /// A STREAM packet from the client. Packets for no open stream are ignored, as libvirtd
    /// ignores them.
    pub fn stream_packet(&mut self, frame: Frame) {
        let Some(index) = self
            .streams
            .iter()
            .position(|s| s.started && same_stream(&s.call, &frame.header))
        else {
            return;
        };
        let status = frame.header.status;
        if status == Status::Continue as i32 {
            if frame.payload.len() > STREAM_CHUNK_MAX {
                let error = RemoteError::new(
                    code::RPC,
                    domain::RPC,
                    format!(
                        "stream packet of {} bytes is over the limit of {STREAM_CHUNK_MAX}",
                        frame.payload.len()
                    ),
                );
                let call = self.end_stream(index);
                self.push(error_packet(&call, &error), false);
            } else if !frame.payload.is_empty() {
                self.nrequests += 1;
                self.streams[index].incoming.push_back(frame.payload);
            }
            return;
        }
        // Finish (OK) or abort (ERROR): either way the stream is over and the client waits
        // for our OK, which holds a request slot until written, as any reply does.
        log::debug!(
            "stream of call {}: the client ends it ({status})",
            frame.header.serial
        );
        let call = self.end_stream(index);
        self.nrequests += 1;
        self.push(packet(&call, Status::Ok, &[]), true);
    }

    /// Closes stream `index` and frees the request slots its pending input held.
    fn end_stream(&mut self, index: usize) -> Header {
        let stream = self.streams.remove(index);
        stream.endpoint.close();
        self.nrequests = self.nrequests.saturating_sub(stream.incoming.len());
        stream.call
    }

    /// Closes every stream: the client is gone.
    pub fn close_streams(&mut self) {
        for stream in self.streams.drain(..) {
            stream.endpoint.close();
        }
    }

    /// Moves data both ways on every started stream, as far as the endpoints and the
    /// client's backlog allow.
    pub fn pump_streams(&mut self) {
        let mut streams = std::mem::take(&mut self.streams);
        streams.retain_mut(|stream| !stream.started || self.pump(stream));
        // Streams opened meanwhile cannot exist (the client is locked), but keep any.
        streams.append(&mut self.streams);
        self.streams = streams;
    }

    /// One stream's turn; false when it ended.
    fn pump(&mut self, stream: &mut OpenStream) -> bool {
        while let Some(front) = stream.incoming.front() {
            let rest = &front[stream.taken..];
            let n = stream.endpoint.write(rest).min(rest.len());
            stream.taken += n;
            if stream.taken < front.len() {
                break;
            }
            stream.incoming.pop_front();
            stream.taken = 0;
            self.nrequests = self.nrequests.saturating_sub(1);
        }
        while !stream.eof_sent
            && self.tx_bytes < STREAM_BACKLOG
            && self.tx_messages < STREAM_QUEUED_MAX
        {
            match stream.endpoint.read(STREAM_CHUNK_MAX) {
                StreamRead::Data(data) if data.is_empty() => break,
                StreamRead::Data(data) => {
                    self.push(packet(&stream.call, Status::Continue, &data), false)
                }
                StreamRead::Empty => break,
                StreamRead::Eof => {
                    // libvirt's end of stream: an empty data packet. The client answers
                    // with a finish, which `stream_packet` confirms.
                    self.push(packet(&stream.call, Status::Continue, &[]), false);
                    stream.eof_sent = true;
                }
                StreamRead::Failed(error) => {
                    log::debug!("stream of call {}: {}", stream.call.serial, error.message);
                    stream.endpoint.close();
                    self.nrequests = self.nrequests.saturating_sub(stream.incoming.len());
                    self.push(error_packet(&stream.call, &error), false);
                    return false;
                }
            }
        }
        true
    }
}
