//! The `pinproxy` binary: parse the command line, set up logging, dispatch. Exit codes: 0
//! success, 1 problems found or runtime failure, 2 usage error (clap's own).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};

use pinproxy::cli::{Cli, Command};
use pinproxy::config::LogFormat;

// glibc's malloc showed up at ~15% of a request's CPU time in profiles; mimalloc halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_OK: u8 = 0;
const EXIT_PROBLEMS: u8 = 1;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(a) => run(&a.config),
        Command::Check(a) => check(&a.config),
        Command::Pin(a) => tool(pinproxy::tool::pin_command(
            &a,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Export(a) => tool(pinproxy::tool::export_command(
            &a,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Keygen(a) => tool(pinproxy::tool::keygen_command(
            &a,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_PROBLEMS)
        }
    }
}

/// mimalloc asks for transparent huge pages on its arenas, so each first touch of a 2 MiB
/// range makes all of it resident: 12 MiB of the proxy's 22 MiB RSS at start-up, and more under
/// load (BENCHMARKS.md). A proxy's heap is small and churns; 4 KiB pages keep RSS to what is used.
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
    // Failure (an old kernel) only leaves huge pages allowed.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn tool(result: Result<(), pinproxy::tool::ToolError>) -> anyhow::Result<u8> {
    result.map(|()| EXIT_OK).map_err(Into::into)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// The async runtime: one worker per CPU this process may use (affinity and cgroup quota
/// included, as `available_parallelism` reports them), or `PINPROXY_WORKERS`. With a single
/// worker the current-thread scheduler does the same work without cross-thread wake-ups
/// (BENCHMARKS.md has the numbers).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("PINPROXY_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(config: &Path) -> anyhow::Result<u8> {
    init_logging(pinproxy::config::peek_log_format(config));
    let rt = runtime()?;
    rt.block_on(async {
        // Installed first, so a signal during start-up is handled rather than fatal.
        let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let running = pinproxy::run::start(config)
            .await
            .with_context(|| format!("{}: not starting", config.display()))?;
        loop {
            tokio::select! {
                _ = hup.recv() => running.reload(),
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        let drain = running.shutdown();
        tokio::pin!(drain);
        tokio::select! {
            _ = &mut drain => Ok(EXIT_OK),
            _ = term.recv() => { tracing::warn!("second signal: exiting at once"); Ok(EXIT_PROBLEMS) }
            _ = int.recv() => { tracing::warn!("second signal: exiting at once"); Ok(EXIT_PROBLEMS) }
        }
    })
}

fn check(config: &Path) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let report = rt.block_on(async { pinproxy::check::check(config) });
    print!("{}", report.text);
    Ok(if report.ok { EXIT_OK } else { EXIT_PROBLEMS })
}
