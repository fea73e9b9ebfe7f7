//! The `pinproxy` binary: parse the command line, set up logging, dispatch. Exit codes: 0
//! success, 1 problems found or runtime failure, 2 usage error (clap's own).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::signal::unix::{SignalKind, signal};

use pinproxy::check::service;
use pinproxy::cli::{Cli, Command};
use pinproxy::config::LogFormat;

// glibc's malloc showed up at ~15% of a request's CPU time in profiles; mimalloc halves that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_OK: u8 = 0;
const EXIT_PROBLEMS: u8 = 1;
/// Log lines queued for stderr before new ones are dropped (and counted). The queue's slots
/// are allocated up front: 128,000 cost ~10 MiB of peak RSS under load; 8,192 is ~1.6 MiB of
/// log lines at 200 bytes each, seconds of a busy access log.
const LOG_BUFFER_LINES: usize = 8192;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(a) => run(&a.config),
        Command::Check(a) => check(&a.config.config, a.probe),
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
        Command::Healthcheck(a) => healthcheck(&a),
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

/// Logs go to stderr through a non-blocking writer: a slow terminal, pipe or journald never
/// stalls a request. Lines that do not fit its buffer are dropped and counted, and the
/// returned guard flushes what is queued when it is dropped at exit.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    // An empty RUST_LOG counts as unset, not as "log nothing".
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| pinproxy::diag::DEFAULT_LOG_FILTER.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!(
            "RUST_LOG: {e}; using {}",
            pinproxy::diag::DEFAULT_LOG_FILTER
        );
        tracing_subscriber::EnvFilter::new(pinproxy::diag::DEFAULT_LOG_FILTER)
    });
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(
            std::env::var("PINPROXY_LOG_BUFFER_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(LOG_BUFFER_LINES),
        )
        .lossy(true)
        .finish(std::io::stderr());
    pinproxy::diag::set_dropped_log_lines(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => {
            pinproxy::logfmt::json_lists();
            builder
                .with_writer(pinproxy::logfmt::JsonLists(writer))
                .json()
                .flatten_event(true)
                .init()
        }
        LogFormat::Text => builder.with_writer(writer).init(),
    }
    guard
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
    let _flush_on_exit = init_logging(pinproxy::config::peek_log_format(config));
    let rt = runtime()?;
    let result = rt.block_on(async {
        // Installed first, so a signal during start-up is handled rather than fatal.
        let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let running = pinproxy::run::start(config)
            .await
            .with_context(|| format!("{}: not starting", config.display()))?;
        // Every listener is bound and accepting: systemd may start what depends on us.
        service::ready();
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    service::reloading();
                    // Subscribed before the trigger, so the finish cannot be missed.
                    let done = running.reload_status.subscribe();
                    let target = running.reload_status.started() + 1;
                    tokio::spawn(ready_after_reload(done, target));
                    running.reload();
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        service::stopping();
        let drain = running.shutdown();
        tokio::pin!(drain);
        tokio::select! {
            _ = &mut drain => Ok(EXIT_OK),
            _ = term.recv() => { tracing::warn!("second signal: exiting at once"); Ok(EXIT_PROBLEMS) }
            _ = int.recv() => { tracing::warn!("second signal: exiting at once"); Ok(EXIT_PROBLEMS) }
        }
    });
    // Dropping a runtime waits for every blocking task still running (a DNS lookup for an
    // upstream, a reload being validated): once the drain is done nothing of that matters, so
    // exit without waiting, as nginx and HAProxy do.
    rt.shutdown_timeout(EXIT_WAIT);
    result
}

/// How long exiting waits for blocking tasks after the drain.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// `READY=1` once a reload that began after the signal has completed, whatever its outcome (a
/// rejected reload leaves the old config serving, which is ready too). Reloads run one at a
/// time, so the next one to begin sees every file as it was at the signal.
async fn ready_after_reload(
    mut done: tokio::sync::watch::Receiver<pinproxy::reload::Finished>,
    target: u64,
) {
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        done.wait_for(|f| f.n >= target),
    )
    .await;
    service::ready();
}

fn healthcheck(a: &pinproxy::cli::HealthcheckArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let status = rt.block_on(service::probe(
        a.addr,
        &a.path,
        std::time::Duration::from_secs(5),
    ))?;
    println!("{} {status}", a.path);
    Ok(if status == 200 {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    })
}

fn check(config: &Path, probe: bool) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let report = rt.block_on(pinproxy::check::check(config, probe));
    print!("{}", report.text);
    Ok(if report.ok { EXIT_OK } else { EXIT_PROBLEMS })
}
