//! Any bytes as the body of both generation endpoints, and as a `Content-Type`: parsing and
//! validation return a request or a 4xx [`ApiError`](servesim_server::ApiError), never
//! panic, and every error renders its message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servesim_server::api::{Endpoint, check_content_type, check_request};

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        match check_request(endpoint, data, &["local"]) {
            Ok(v) => {
                let _ = v.spec(v.max_tokens.unwrap_or(16));
            }
            Err(e) => {
                let status = e.status().as_u16();
                assert!((400..500).contains(&status), "status {status} for {e}");
                assert!(!e.to_string().is_empty());
            }
        }
    }
    if let Ok(ct) = std::str::from_utf8(data) {
        let _ = check_content_type(Some(ct));
    }
});
