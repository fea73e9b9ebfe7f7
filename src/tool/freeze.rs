//! `export --freeze`: writes `frozen = "sha256:…"` into a pin set's TOML file, keeping every
//! comment and the layout the operator wrote, and replaces the file atomically so the proxy's
//! watcher never sees half a file.

use std::io::Write as _;
use std::path::Path;

use super::ToolError;
use crate::pin::PinSet;

/// Records `set.frozen` in `set.file`. A no-op when the file already says the same.
pub(super) fn freeze(set: &PinSet) -> Result<(), ToolError> {
    let Some(digest) = &set.frozen else {
        return Ok(());
    };
    let path = &set.file;
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read {
        path: path.clone(),
        source,
    })?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|source| ToolError::FreezeParse {
            pin_set: set.name.clone(),
            path: path.clone(),
            source: Box::new(source),
        })?;
    if doc.get("frozen").and_then(|v| v.as_str()) == Some(digest.as_str()) {
        return Ok(());
    }
    doc["frozen"] = toml_edit::value(digest.as_str());
    write_atomically(path, doc.to_string().as_bytes())
}

/// Writes a hidden sibling (the pin loader skips dot files) and renames it over `path`.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), ToolError> {
    let fail = |source| ToolError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.freeze-tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(data).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}
