//! rustls configurations: towards the apps (certificates chosen by SNI, under the pin rules of
//! DESIGN.md §4) and towards upstreams (verification first, then pins on the verified path).
//!
//! Builds configs from files; opens no sockets. One crypto provider, aws-lc-rs, passed
//! explicitly so no process-wide default is ever needed.

mod rules;
mod server;
pub mod tickets;
mod upstream;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use rules::{ChainMatch, MatchedPin, Position, check_pin_sources};
pub use server::{ListenerTls, LoadedCert, SniResolver, build_listener};
pub use upstream::{
    ObservedCert, UpstreamObserver, UpstreamTls, build_upstream_tls, is_pin_mismatch,
};

/// The crypto provider every config of the process uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Wraps SEQUENCE contents back into a DER SEQUENCE (webpki keeps trust anchor SPKIs unwrapped).
pub(crate) fn der_sequence(contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(0x30);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}
