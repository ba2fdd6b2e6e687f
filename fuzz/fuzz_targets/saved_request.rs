//! `hookline verify --request`'s reader: a saved HTTP request split into headers and body.
#![no_main]

use hookline::cli::read_saved_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((headers, body)) = read_saved_request(data) {
        assert!(body.len() < data.len());
        for (name, _) in &headers {
            assert!(!name.is_empty() && !name.contains(' '));
        }
    }
});
