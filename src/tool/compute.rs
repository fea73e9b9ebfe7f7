//! `pinproxy pin FILE...`: one `sha256/<base64>` line for every certificate, private key,
//! public key and CSR in PEM or DER files, so an operator can fill a pin set from what is on disk.
//!
//! The pin is the first whitespace-separated token of each line (scripts use `awk '{print $1}'`).
//! A file that cannot be read or holds no key material is named on stderr and makes the command
//! fail, after every other file was printed.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::ToolError;
use crate::pin::{Material, material_from_bytes};

pub(super) fn pin_files(
    paths: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ToolError> {
    let mut failures = Vec::new();
    for path in paths {
        match read_material(path) {
            Ok(items) => {
                let numbered = items.len() > 1;
                for (i, m) in items.iter().enumerate() {
                    let at = if numbered {
                        format!("{}[{i}]", path.display())
                    } else {
                        path.display().to_string()
                    };
                    writeln!(out, "{}  {at}: {}", m.pin().to_prefixed(), m.describe())?;
                }
            }
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 if paths.len() == 1 => Err(failures.remove(0)),
        failed => {
            for e in &failures {
                writeln!(err, "error: {}", chain(e))?;
            }
            Err(ToolError::FilesFailed {
                failed,
                total: paths.len(),
            })
        }
    }
}

/// Every piece of key material in one file, in file order.
pub(super) fn read_material(path: &Path) -> Result<Vec<Material>, ToolError> {
    let data = std::fs::read(path).map_err(|source| ToolError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    material_from_bytes(&data).map_err(|source| ToolError::Material {
        path: path.to_path_buf(),
        source,
    })
}

/// `outer: inner: ...`, the way the binary prints an error.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
