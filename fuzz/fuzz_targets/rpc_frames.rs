//! A client's byte stream, cut into pieces as a socket might deliver it: frame reassembly,
//! the length word's limits and header decoding, then each call's arguments as the REMOTE
//! dispatcher would decode them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mgmt::rpc::wire::FrameReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    // Piece sizes 1..=256 bytes, varying with the first byte.
    let piece = usize::from(cut) + 1;
    let mut reader = FrameReader::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let take = piece.min(rest.len()).min(reader.wanted().max(1));
        match reader.push(&rest[..take]) {
            Ok((used, frame)) => {
                assert!(used <= take, "push used more than it was given");
                if let Some(frame) = frame {
                    let _ = mgmt::remote::check_call_args(frame.header.procedure, &frame.payload);
                }
                if used == 0 {
                    break;
                }
                rest = &rest[used..];
            }
            // The server closes the connection here.
            Err(_) => break,
        }
    }
});
