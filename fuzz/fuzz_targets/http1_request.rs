//! Any bytes as what a client sends on a connection: the head parser returns a head or the status
//! to answer with (a 4xx, or 505 for an unknown version), the framing check a framing or a refusal,
//! and the chunked-body decoder, fed the bytes in two reads split where the first byte says,
//! returns a body, a request for more, or an error: never a panic, and never a body over its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servesim_sim::server::http1::{ChunkedDecoder, framing, parse_head};

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        match parse_head(&data[..end + 4]) {
            Ok(head) => {
                let _ = framing(&head.headers);
            }
            Err(status) => {
                let code = status.as_u16();
                assert!((400..500).contains(&code) || code == 505, "status {code}");
            }
        }
    }
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut decoder = ChunkedDecoder::default();
    let mut buf = data[..split].to_vec();
    if decoder.feed(&mut buf, LIMIT) == Ok(false) {
        buf.extend_from_slice(&data[split..]);
        let _ = decoder.feed(&mut buf, LIMIT);
    }
    assert!(decoder.into_body().len() <= LIMIT);
});
