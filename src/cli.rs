//! Command-line types for every subcommand (DESIGN.md §2); no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pinproxy",
    version,
    about = "A certificate-pinning TLS reverse proxy for mobile app backends",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: `run` with these arguments
    #[command(flatten)]
    pub run: ConfigArg,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default when no subcommand is given)
    Run(ConfigArg),
    /// Load and validate everything `run` would; exit 1 on errors
    Check(CheckArgs),
    /// Print the pin of every certificate, key or CSR in files, or of a live server's chain
    Pin(PinArgs),
    /// Render a pin set for an app's pinning configuration
    Export(ExportArgs),
    /// Make a new (backup) key and CSR and print its pin
    Keygen(KeygenArgs),
    /// GET /healthz on the admin listener; exit 0 on 200 (container HEALTHCHECK without curl)
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The admin listener (where `[admin] listen` is 0.0.0.0:9901, 127.0.0.1:9901 reaches it)
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:9901",
        env = "PINPROXY_ADMIN"
    )]
    pub addr: std::net::SocketAddr,
    #[arg(long, default_value = "/healthz")]
    pub path: String,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path to config.toml; pins/ and relative paths are beside it
    #[arg(
        short = 'c',
        long = "config",
        default_value = "config.toml",
        env = "PINPROXY_CONFIG"
    )]
    pub config: PathBuf,
}

impl Default for ConfigArg {
    fn default() -> Self {
        ConfigArg {
            config: PathBuf::from("config.toml"),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also connect to every HTTPS upstream with its configured trust and pin set and say
    /// whether the live chain verifies and which pin matches (a dry-run handshake)
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// PEM or DER files: certificates (whole chains), private keys, public keys, CSRs
    #[arg(required_unless_present = "connect", conflicts_with = "connect")]
    pub files: Vec<PathBuf>,
    /// Connect to HOST:PORT and print the pins of the chain it presents (no trust decision)
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// SNI to send with --connect (default: the host)
    #[arg(long, requires = "connect", value_name = "NAME")]
    pub servername: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Android,
    Trustkit,
    Apple,
    Okhttp,
    Curl,
    Envoy,
}

impl From<ExportFormat> for crate::export::Format {
    fn from(f: ExportFormat) -> Self {
        use crate::export::Format;
        match f {
            ExportFormat::Android => Format::Android,
            ExportFormat::Trustkit => Format::Trustkit,
            ExportFormat::Apple => Format::Apple,
            ExportFormat::Okhttp => Format::Okhttp,
            ExportFormat::Curl => Format::Curl,
            ExportFormat::Envoy => Format::Envoy,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The pin set to export (pins/NAME.toml)
    #[arg(long = "pin-set", value_name = "NAME")]
    pub pin_set: String,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The domain the app pins (default: the first server name of the listener using the pin set)
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Pin subdomains of the domain too
    #[arg(long)]
    pub include_subdomains: bool,
    /// The release step: also write `frozen = "sha256:…"` into pins/NAME.toml, so the set cannot
    /// change once shipped (the digest is printed in the exported file's comment)
    #[arg(long)]
    pub freeze: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithmArg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "rsa-2048")]
    Rsa2048,
    #[value(name = "rsa-3072")]
    Rsa3072,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write the key (mode 0600) and CSR into; existing files are never overwritten
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub algorithm: KeyAlgorithmArg,
    /// Common name (and DNS SAN) of the CSR
    #[arg(long, value_name = "CN", default_value = "pinproxy backup key")]
    pub name: String,
}
