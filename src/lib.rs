//! pinproxy: a certificate-pinning TLS reverse proxy for mobile app backends.
//!
//! Layers, each using only its own or lower ones (DESIGN.md §9):
//! - L0 [`cli`], [`diag`], [`files`], [`logfmt`], [`metrics`], [`config`], [`pin`], [`export`], [`body`], [`sync`], [`path`]: pure building blocks
//! - L1 [`tls`]: rustls server configs under the pin rules, upstream verifiers; [`auth`]: route
//!   token policies built from their key files
//! - L2 [`upstream`], [`tool`], [`adoption`]: pooled upstream clients; pin computation and keygen;
//!   requests counted per pin set their app version ships
//! - L3 [`snapshot`], [`routes`]: everything one config generation needs to serve, built whole
//! - L4 [`proxy`], [`admin`] (with its status page), [`reload`], [`expiry`], [`inventory`],
//!   [`check`] (with `probe`, `remote` — what the CLI asks a running proxy —, `service` —
//!   systemd notify and the health probe — and `key_mode`): readers of the current snapshot
//! - L5 [`run`]: wiring, start-up and shutdown

pub mod admin;
pub mod adoption;
pub mod auth;
pub mod body;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod diag;
pub mod expiry;
pub mod export;
pub mod files;
pub mod inventory;
pub mod logfmt;
pub mod metrics;
pub mod path;
pub mod pin;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod run;
pub mod snapshot;
pub mod sync;
pub mod tls;
pub mod tomlfile;
pub mod tool;
pub mod upstream;
