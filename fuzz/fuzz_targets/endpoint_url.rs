//! URL normalisation and the SSRF classifier: an endpoint URL as given (its shape, then the guard
//! on its host, without resolving any name), and 16 bytes read as an IPv6 and 4 as an IPv4
//! address for the address classifier.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hookline::outbound::endpoint_url_shape;
use hookline::outbound::ssrf::{Policy, forbidden_reason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 16 {
        let v6: [u8; 16] = data[..16].try_into().expect("16 bytes");
        let v6 = Ipv6Addr::from(v6);
        let _ = forbidden_reason(IpAddr::V6(v6));
        let v4: [u8; 4] = data[..4].try_into().expect("4 bytes");
        let _ = forbidden_reason(IpAddr::V4(Ipv4Addr::from(v4)));
        if let Some(mapped) = v6.to_ipv4_mapped() {
            let _ = forbidden_reason(IpAddr::V4(mapped));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = Policy::new(&[]).expect("the empty policy");
    for allow_http in [false, true] {
        if let Ok(url) = endpoint_url_shape(text, allow_http) {
            let _ = policy.check_url_host(&url);
            // Normalising twice changes nothing.
            let again = endpoint_url_shape(url.as_str(), allow_http).expect("a normalised URL");
            assert_eq!(url, again);
        }
    }
    if let Some(host) = text.split('/').next() {
        let _ = policy.check_name(host);
    }
});
