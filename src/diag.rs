//! Problems found while loading or validating: one type for `check`, start-up and reload.
//!
//! Every problem names the file and the dotted field it is about, so an operator knows what to
//! edit. A problem carries a kind that becomes the `reason` label of a failed reload. This module
//! knows nothing about what is being validated.

use std::fmt;
use std::path::{Path, PathBuf};

/// What a problem is about; the `reason` label of `pinproxy_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The TOML could not be read as the expected structure.
    Parse,
    /// A value is out of range or refers to something that does not exist.
    Validation,
    /// A file could not be read or holds no usable material.
    File,
    /// One of the rules that protect the apps (DESIGN.md §4) is broken.
    PinRules,
    /// A TLS configuration could not be built from otherwise valid parts.
    Tls,
    /// A certificate and the key beside it do not match (counted as `tls`): during an in-place
    /// rotation this is the moment between the two writes, so reload waits for it to settle.
    KeyMismatch,
}

impl Kind {
    pub fn as_label(self) -> &'static str {
        match self {
            Kind::Parse => "parse",
            Kind::Validation => "validation",
            Kind::File => "file",
            Kind::PinRules => "pin_rules",
            Kind::Tls | Kind::KeyMismatch => "tls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One thing wrong (or worth a warning) in one file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub kind: Kind,
    pub file: PathBuf,
    /// Dotted path of the field, e.g. `listener.mobile.cert[0].key`; empty for the whole file.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn error(
        kind: Kind,
        file: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            kind,
            file: file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn warning(
        kind: Kind,
        file: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(kind, file, field, message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.field.is_empty() {
            write!(f, "`{}`: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// The problems found in one load; an `Err` when at least one of them is an error.
#[derive(Debug, Clone, Default, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Warning)
    }

    /// The kind of the first error: the reason a reload is counted under.
    pub fn first_error_kind(&self) -> Option<Kind> {
        self.errors().next().map(|p| p.kind)
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// `Ok(warnings)` when there are no errors.
    pub fn into_result(self) -> Result<Problems, Problems> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(self)
        }
    }
}

impl From<Problem> for Problems {
    fn from(p: Problem) -> Self {
        Problems(vec![p])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in self.errors() {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{p}")?;
        }
        if first {
            f.write_str("no errors")?;
        }
        Ok(())
    }
}

/// An error and its causes, outermost first. `io::Error` hides a wrapped error from
/// `source()` (it returns the wrapped error's own source), so it is unwrapped by hand.
pub fn error_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        out.push(e);
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    out
}

/// An error and its causes as one line of text for a log's `cause` field: each level's
/// `Display`, joined by ": ", never `Debug`. rustls prints a custom certificate error in its
/// Debug form (`Other(OtherError(…))`), so that level is replaced by the error it carries.
pub struct ErrorText<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last: Option<String> = None;
        for e in error_chain(self.0) {
            // An io::Error carrying an error prints that error's text: the next level says it.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.get_ref().is_some())
            {
                continue;
            }
            let text = match e.downcast_ref::<rustls::Error>() {
                Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
                    format!("invalid peer certificate: {}", o.0)
                }
                _ => e.to_string(),
            };
            // Wrappers often repeat their source's text (hyper-util, io::Error): say it once.
            if last
                .as_ref()
                .is_some_and(|l| l.ends_with(&text) || l == &text)
            {
                continue;
            }
            if last.is_some() {
                f.write_str(": ")?;
            }
            f.write_str(&text)?;
            last = Some(text);
        }
        Ok(())
    }
}

/// The log filter when `RUST_LOG` is not set: pinproxy at info, and of the libraries only what
/// an operator acts on. rustls warns once per odd handshake (an IP address as SNI, …), which
/// anyone could turn into a log flood; its failures reach pinproxy as errors and are counted
/// in `pinproxy_tls_handshake_errors_total`. The file watcher's internals name cargo paths.
pub const DEFAULT_LOG_FILTER: &str =
    "info,rustls=off,notify=off,notify_debouncer_full=off,inotify=off";

static DROPPED_LOG_LINES: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> =
    std::sync::OnceLock::new();

/// Registers the non-blocking log writer's drop counter (once, at start).
pub fn set_dropped_log_lines(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = DROPPED_LOG_LINES.set(counter);
}

/// Log lines the non-blocking writer dropped so far (0 without one).
pub fn dropped_log_lines() -> u64 {
    DROPPED_LOG_LINES
        .get()
        .map_or(0, |c| c.dropped_lines() as u64)
}

/// A duration as milliseconds with three decimals, for log fields (`took_ms = 2.489`):
/// a number in JSON logs, never `2.4889970000000003` or `0ns`.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
