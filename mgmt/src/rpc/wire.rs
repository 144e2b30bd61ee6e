//! libvirt's RPC framing: a 4-byte big-endian length (which counts itself), a 24-byte header,
//! an XDR payload. Frames are validated before anything is allocated for them: a length below
//! the header or above the maximum closes that client (libvirtd does the same), never the
//! server.

use std::fmt;

use super::xdr::{XdrError, XdrReader, XdrWriter};

/// Largest header + payload (libvirt 9.x, VIR_NET_MESSAGE_MAX).
pub const MESSAGE_MAX: usize = 33_554_432;
pub const LEN_SIZE: usize = 4;
pub const HEADER_SIZE: usize = 24;
/// Smallest frame: length word + header, empty payload.
pub const FRAME_MIN: usize = LEN_SIZE + HEADER_SIZE;
/// Largest frame: the length word may count up to MESSAGE_MAX + 4.
pub const FRAME_MAX: usize = MESSAGE_MAX + LEN_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Call,
    Reply,
    Message,
    Stream,
    CallWithFds,
    ReplyWithFds,
    StreamHole,
}

impl MessageType {
    pub fn from_raw(v: i32) -> Option<MessageType> {
        Some(match v {
            0 => MessageType::Call,
            1 => MessageType::Reply,
            2 => MessageType::Message,
            3 => MessageType::Stream,
            4 => MessageType::CallWithFds,
            5 => MessageType::ReplyWithFds,
            6 => MessageType::StreamHole,
            _ => return None,
        })
    }

    pub fn raw(self) -> i32 {
        self as i32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Error = 1,
    Continue = 2,
}

/// The 24-byte header. `kind` and `status` stay raw so that a frame with unknown values can
/// still be answered (or ignored) the way libvirtd does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub program: u32,
    pub version: u32,
    pub procedure: i32,
    pub kind: i32,
    pub serial: u32,
    pub status: i32,
}

impl Header {
    pub fn decode(bytes: &[u8]) -> Result<Header, XdrError> {
        let mut r = XdrReader::new(bytes);
        Ok(Header {
            program: r.get_u32()?,
            version: r.get_u32()?,
            procedure: r.get_i32()?,
            kind: r.get_i32()?,
            serial: r.get_u32()?,
            status: r.get_i32()?,
        })
    }

    pub fn encode(&self, w: &mut XdrWriter) {
        w.put_u32(self.program);
        w.put_u32(self.version);
        w.put_i32(self.procedure);
        w.put_i32(self.kind);
        w.put_u32(self.serial);
        w.put_i32(self.status);
    }

    /// The header of the answer to this call.
    pub fn reply(&self, status: Status) -> Header {
        Header {
            kind: MessageType::Reply.raw(),
            status: status as i32,
            ..*self
        }
    }
}

/// Starts a frame: length placeholder + header. Append the payload, then `finish_frame`.
pub fn start_frame(header: &Header) -> XdrWriter {
    let mut w = XdrWriter::from_vec(Vec::with_capacity(256));
    w.put_u32(0);
    header.encode(&mut w);
    w
}

/// Fills in the length word.
pub fn finish_frame(w: XdrWriter) -> Vec<u8> {
    let mut bytes = w.into_inner();
    let len = (bytes.len() as u32).to_be_bytes();
    bytes[..LEN_SIZE].copy_from_slice(&len);
    bytes
}

/// A whole frame with an already encoded `payload`.
pub fn frame(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut w = start_frame(header);
    w.put_raw(payload);
    finish_frame(w)
}

/// Why a client's byte stream cannot be read further.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    TooShort(usize),
    TooLong(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort(n) => write!(
                f,
                "frame length {n} is shorter than the {FRAME_MIN}-byte minimum"
            ),
            FrameError::TooLong(n) => {
                write!(f, "frame length {n} exceeds the {FRAME_MAX}-byte maximum")
            }
        }
    }
}

/// Checks a length word.
pub fn check_frame_len(len: u32) -> Result<usize, FrameError> {
    let len = len as usize;
    if len < FRAME_MIN {
        Err(FrameError::TooShort(len))
    } else if len > FRAME_MAX {
        Err(FrameError::TooLong(len))
    } else {
        Ok(len)
    }
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces. Memory held is at
/// most one frame, allocated only once its length word has been validated.
#[derive(Default)]
pub struct FrameReader {
    len_word: Vec<u8>,
    body: Vec<u8>,
    /// Total length of the frame being read, once known.
    frame_len: Option<usize>,
}

/// One complete message: header and payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Bytes the reader wants next, at most (lets the caller read exactly one frame at a time).
    pub fn wanted(&self) -> usize {
        match self.frame_len {
            None => LEN_SIZE - self.len_word.len(),
            Some(total) => total - LEN_SIZE - self.body.len(),
        }
    }

    /// Consumes bytes from `input`; returns how many were used and a frame if one completed.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        let mut used = 0;
        if self.frame_len.is_none() {
            let take = (LEN_SIZE - self.len_word.len()).min(input.len());
            self.len_word.extend_from_slice(&input[..take]);
            used += take;
            if self.len_word.len() < LEN_SIZE {
                return Ok((used, None));
            }
            let word = [
                self.len_word[0],
                self.len_word[1],
                self.len_word[2],
                self.len_word[3],
            ];
            let total = check_frame_len(u32::from_be_bytes(word))?;
            self.frame_len = Some(total);
            self.body = Vec::with_capacity((total - LEN_SIZE).min(64 * 1024));
        }
        let want = self.wanted();
        let take = want.min(input.len() - used);
        self.body.extend_from_slice(&input[used..used + take]);
        used += take;
        if self.wanted() > 0 {
            return Ok((used, None));
        }
        let body = std::mem::take(&mut self.body);
        self.len_word.clear();
        self.frame_len = None;
        let header =
            Header::decode(&body[..HEADER_SIZE]).map_err(|_| FrameError::TooShort(body.len()))?;
        Ok((
            used,
            Some(Frame {
                header,
                payload: body[HEADER_SIZE..].to_vec(),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: [u8; 28] = [
        0, 0, 0, 0x1c, 0x6b, 0x65, 0x65, 0x70, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0,
        0, 0, 0,
    ];

    #[test]
    fn keepalive_ping_decodes() {
        let mut reader = FrameReader::new();
        let (used, frame) = reader.push(&PING).unwrap();
        assert_eq!(used, 28);
        let frame = frame.unwrap();
        assert_eq!(
            frame.header,
            Header {
                program: 0x6b65_6570,
                version: 1,
                procedure: 1,
                kind: 2,
                serial: 0,
                status: 0
            }
        );
        assert!(frame.payload.is_empty());
        assert_eq!(
            super::frame(&frame.header, &[]),
            PING.to_vec(),
            "encodes back to the same bytes"
        );
    }

    #[test]
    fn frames_arrive_in_pieces_and_back_to_back() {
        let h = Header {
            program: 0x2000_8086,
            version: 1,
            procedure: 66,
            kind: 0,
            serial: 7,
            status: 0,
        };
        let mut stream = frame(&h, &[1, 2, 3, 4]);
        stream.extend_from_slice(&frame(&Header { serial: 8, ..h }, &[]));
        let mut reader = FrameReader::new();
        let mut frames = Vec::new();
        for byte in &stream {
            let (used, f) = reader.push(std::slice::from_ref(byte)).unwrap();
            assert_eq!(used, 1);
            frames.extend(f);
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].payload, vec![1, 2, 3, 4]);
        assert_eq!(frames[1].header.serial, 8);

        // Both at once: the reader stops after the first frame.
        let (used, f) = reader.push(&stream).unwrap();
        assert_eq!(used, 32);
        assert_eq!(f.unwrap().header.serial, 7);
    }

    #[test]
    fn bad_lengths_are_refused_before_allocating() {
        for len in [0u32, 3, 27] {
            let mut reader = FrameReader::new();
            assert_eq!(
                reader.push(&len.to_be_bytes()),
                Err(FrameError::TooShort(len as usize))
            );
        }
        let mut reader = FrameReader::new();
        let too_long = (FRAME_MAX + 1) as u32;
        assert_eq!(
            reader.push(&too_long.to_be_bytes()),
            Err(FrameError::TooLong(FRAME_MAX + 1))
        );
        assert_eq!(check_frame_len(FRAME_MAX as u32), Ok(FRAME_MAX));
        assert_eq!(check_frame_len(28), Ok(28));
        // A maximal length word is accepted but allocates only what arrives.
        let mut reader = FrameReader::new();
        let (_, none) = reader.push(&(FRAME_MAX as u32).to_be_bytes()).unwrap();
        assert!(none.is_none());
        assert!(reader.body.capacity() <= 64 * 1024);
        assert_eq!(reader.wanted(), FRAME_MAX - 4);
    }

    #[test]
    fn message_types() {
        assert_eq!(MessageType::from_raw(3), Some(MessageType::Stream));
        assert_eq!(MessageType::from_raw(7), None);
        assert_eq!(MessageType::from_raw(-1), None);
        assert_eq!(MessageType::CallWithFds.raw(), 4);
    }
}
