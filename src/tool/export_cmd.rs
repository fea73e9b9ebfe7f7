//! `pinproxy export`: loads the config, picks the domain, reads the chains the listeners serve
//! for it and hands everything to [`crate::export::render`]. The text goes to `out`, warnings to
//! `err`; refusals come back as errors.

use std::io::Write;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{ToolError, is_dns_name};
use crate::cli::ExportArgs;
use crate::config::{self, CertSpec, Listener};
use crate::export::{ExportInput, ServedChain, format_name, render};
use crate::files::Files;
use crate::pin::{CertInfo, MaterialError, cert_info};

pub(super) fn export(
    args: &ExportArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ToolError> {
    let path = &args.config.config;
    let (config, _warnings) =
        config::load(path, &mut Files::new()).map_err(|source| ToolError::Config {
            path: path.clone(),
            source,
        })?;
    let set = config
        .pin_sets
        .get(&args.pin_set)
        .ok_or_else(|| ToolError::NoPinSet {
            name: args.pin_set.clone(),
            available: list_or_none(config.pin_sets.keys().map(String::as_str)),
        })?;
    let listeners: Vec<&Listener> = config
        .listeners
        .iter()
        .filter(|l| l.pin_sets.contains(&args.pin_set))
        .collect();
    let domain = match &args.domain {
        Some(d) => {
            let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
            if !is_dns_name(&d) {
                return Err(ToolError::BadDomain { domain: d });
            }
            d
        }
        None => default_domain(&args.pin_set, &listeners)?,
    };
    let served = served_chains(&listeners, &domain, args.include_subdomains)?;
    let mut set = set.clone();
    if args.freeze {
        set.frozen = Some(set.digest());
    }
    let input = ExportInput {
        pin_set: &set,
        domain: &domain,
        include_subdomains: args.include_subdomains,
        served: &served,
    };
    let export = render(args.format.into(), &input).map_err(|source| ToolError::Export {
        pin_set: args.pin_set.clone(),
        format: format_name(args.format.into()),
        source,
    })?;
    if args.freeze {
        // Only once the export rendered: a refused export must not freeze the set.
        super::freeze::freeze(&set)?;
        writeln!(
            err,
            "froze pin set \"{}\" in {}: frozen = \"{}\"",
            set.name,
            set.file.display(),
            set.digest()
        )?;
    }
    out.write_all(export.text.as_bytes())?;
    for w in &export.warnings {
        writeln!(err, "warning: {w}")?;
    }
    Ok(())
}

/// The first `server_names` entry of each cert of the listeners naming the set; exactly one
/// distinct, non-wildcard name is a usable default.
fn default_domain(pin_set: &str, listeners: &[&Listener]) -> Result<String, ToolError> {
    let mut candidates: Vec<&str> = Vec::new();
    for name in listeners
        .iter()
        .flat_map(|l| &l.certs)
        .filter_map(|c| c.server_names.first())
    {
        if !candidates.contains(&name.as_str()) {
            candidates.push(name);
        }
    }
    match candidates.as_slice() {
        [] => Err(ToolError::NoDomain {
            pin_set: pin_set.to_string(),
        }),
        [one] => match one.strip_prefix("*.") {
            Some(base) => Err(ToolError::WildcardDomain {
                pin_set: pin_set.to_string(),
                name: one.to_string(),
                base: base.to_string(),
            }),
            None => Ok(one.to_string()),
        },
        many => Err(ToolError::AmbiguousDomain {
            pin_set: pin_set.to_string(),
            candidates: many.join(", "),
        }),
    }
}

/// The chains a client of `domain` may be served: the certs whose server names cover it (or,
/// with subdomains, a name under it), else the listener's first cert, which answers unknown SNI.
fn served_chains(
    listeners: &[&Listener],
    domain: &str,
    subdomains: bool,
) -> Result<Vec<ServedChain>, ToolError> {
    let mut out = Vec::new();
    for l in listeners {
        let mut certs: Vec<&CertSpec> = l
            .certs
            .iter()
            .filter(|c| c.server_names.iter().any(|n| serves(n, domain, subdomains)))
            .collect();
        if certs.is_empty() {
            certs.extend(l.certs.first());
        }
        for c in certs {
            out.push(served_chain(l, c)?);
        }
    }
    Ok(out)
}

fn serves(name: &str, domain: &str, subdomains: bool) -> bool {
    let covers = match name.strip_prefix("*.") {
        Some(suffix) => domain
            .split_once('.')
            .is_some_and(|(_, rest)| rest == suffix),
        None => name == domain,
    };
    let bare = name.strip_prefix("*.").unwrap_or(name);
    covers || (subdomains && (bare == domain || bare.ends_with(&format!(".{domain}"))))
}

fn served_chain(l: &Listener, c: &CertSpec) -> Result<ServedChain, ToolError> {
    let chain = read_certs(&c.field, &c.chain)?;
    let mut ca: Vec<_> = chain.iter().skip(1).map(|i| i.pin).collect();
    if let Some(anchor) = &c.anchor {
        let field = format!("{}.anchor", c.field);
        ca.extend(read_certs(&field, anchor)?.first().map(|a| a.pin));
    }
    let leaf = chain
        .first()
        .expect("read_certs returns at least one certificate");
    Ok(ServedChain {
        origin: format!(
            "`{}` (listener \"{}\", {})",
            c.field,
            l.name,
            c.chain.display()
        ),
        leaf: leaf.pin,
        leaf_algorithm: leaf.key_algorithm.clone(),
        ca,
    })
}

/// Every certificate of a PEM file (or the one of a DER file); never empty.
fn read_certs(field: &str, path: &Path) -> Result<Vec<CertInfo>, ToolError> {
    let parse_err = |source| ToolError::ChainParse {
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let data = std::fs::read(path).map_err(|source| ToolError::ChainRead {
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let ders: Vec<CertificateDer<'_>> = if data.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateDer::pem_slice_iter(&data)
            .collect::<Result<_, _>>()
            .map_err(|e| parse_err(MaterialError::Pem(e.to_string())))?
    } else {
        vec![CertificateDer::from(data.as_slice())]
    };
    if ders.is_empty() {
        return Err(parse_err(MaterialError::Nothing));
    }
    ders.iter()
        .map(|d| cert_info(d).map_err(parse_err))
        .collect()
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}
