//! Key file permissions: a private key that the group or everyone may read is one `cat` away
//! from every other account on the host. `check` says so; it is a warning, not an error,
//! because the proxy cannot know who else is in the group.

use std::os::unix::fs::PermissionsExt as _;

use crate::config::Config;
use crate::diag::{Kind, Problem};

/// A warning for every listener key file readable beyond its owner (symlinks followed, as
/// Kubernetes secret volumes and certbot's `live/` are links).
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for l in &config.listeners {
        for c in &l.certs {
            let Ok(meta) = std::fs::metadata(&c.key) else {
                // A missing key is an error the build already reported.
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o044 != 0 {
                let who = match (mode & 0o040 != 0, mode & 0o004 != 0) {
                    (true, true) => "the group and everyone",
                    (true, false) => "the group",
                    _ => "everyone",
                };
                out.push(Problem::warning(
                    Kind::File,
                    &config.file,
                    format!("{}.key", c.field),
                    format!(
                        "{} is readable by {who} (mode {mode:04o}); make it 0600 (Kubernetes: defaultMode 0400)",
                        c.key.display()
                    ),
                ));
            }
        }
    }
    out
}
