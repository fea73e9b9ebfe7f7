//! TOML files into serde types, with the file and the dotted path of the failing field in the
//! error: shared by config.toml and the pin set files, below both.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::diag::{Kind, Problem};

/// Deserializes TOML with the dotted path of the failing field in the message.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, Problem> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| Problem::error(Kind::Parse, file, "", one_line(&e.to_string())))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        Problem::error(
            Kind::Parse,
            file,
            field,
            one_line(&e.into_inner().to_string()),
        )
    })
}

/// toml's messages span several lines with a source excerpt; keep the first and the note.
fn one_line(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = lines.first().copied().unwrap_or_default().to_string();
    if let Some(last) = lines.last().filter(|_| lines.len() > 1) {
        let note = last.trim_start_matches(['|', '^', ' ']).trim();
        if !note.is_empty() && note != out {
            out.push_str(": ");
            out.push_str(note);
        }
    }
    out
}
