//! The operator's toolkit, end to end: `pinproxy pin` over files and live servers, `pinproxy
//! export` to the six client formats, and `pinproxy keygen`. Expected pins come from openssl or
//! from rcgen's SPKI bytes, never from the code under test; client formats are parsed by real
//! parsers (python3's XML and plist readers, curl) as well as compared with golden files.

#[path = "common/toolkit_support.rs"]
mod support;

#[path = "toolkit/connect.rs"]
mod connect;
#[path = "toolkit/export_cli.rs"]
mod export_cli;
#[path = "toolkit/export_golden.rs"]
mod export_golden;
#[path = "toolkit/keygen.rs"]
mod keygen;
#[path = "toolkit/pin_files.rs"]
mod pin_files;
#[path = "toolkit/properties.rs"]
mod properties;
