//! Android's network security config: the `<domain-config>` an app uses for a domain, its
//! (possibly inherited) `<pin-set>`, and the trust anchors that may override the pins.

use quick_xml::events::Event as XmlEvent;
use roxmltree::{Document, Node, ParsingOptions};

use super::limits::{Bounds, MAX_OBJECTS};
use super::{AppFileError, AppFormat, AppPin, AppPins, label_and_kind, no_entry, parse_date};
use crate::pin::{Pin, PinKind};

pub(super) fn android(text: &str, domain: &str) -> Result<AppPins, AppFileError> {
    within_bounds(text)?;
    let options = ParsingOptions {
        nodes_limit: u32::try_from(MAX_OBJECTS).unwrap_or(u32::MAX),
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options)
        .map_err(|e| AppFileError::new("", format!("not well-formed XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "network-security-config" {
        return Err(AppFileError::new(
            "",
            format!(
                "the root element is <{}>, not <network-security-config>",
                root.tag_name().name()
            ),
        ));
    }
    let config = entry_for(root, domain)?;
    let entry = element_path(config);
    // A nested <domain-config> inherits what it does not set from the one around it.
    let Some(pin_set) = config
        .ancestors()
        .filter(|n| n.has_tag_name("domain-config"))
        .find_map(|c| c.children().find(|n| n.has_tag_name("pin-set")))
    else {
        return Err(AppFileError::new(
            entry,
            format!(
                "the <domain-config> for \"{domain}\" has no <pin-set>, nor has one around it: the app does not pin this domain"
            ),
        ));
    };
    let (pins, expires) = pin_set_pins(&doc, pin_set)?;
    Ok(AppPins {
        format: AppFormat::Android,
        element: format!("{entry} (line {})", line(&doc, config)),
        pins,
        expires,
        warnings: override_warnings(&doc, root, config),
    })
}

/// Streams the XML once (quick-xml keeps no tree and does not recurse), counting nesting and
/// nodes, so a file nested too deep is refused in linear time before roxmltree builds a tree
/// and before anything below walks ancestors (each walk is then at most [`MAX_DEPTH`] long).
fn within_bounds(text: &str) -> Result<(), AppFileError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut bounds = Bounds::default();
    loop {
        match reader.read_event() {
            Err(e) => {
                return Err(AppFileError::new("", format!("not well-formed XML: {e}")));
            }
            Ok(XmlEvent::Eof) => return Ok(()),
            Ok(XmlEvent::Start(_)) => bounds.value(true)?,
            Ok(XmlEvent::End(_)) => bounds.close(),
            Ok(_) => bounds.value(false)?,
        }
    }
}

/// The `<domain-config>` the app uses for `domain`: exact match first, then the longest
/// `includeSubdomains` parent; `<debug-overrides>` do not count.
fn entry_for<'a, 'i>(root: Node<'a, 'i>, domain: &str) -> Result<Node<'a, 'i>, AppFileError> {
    // (exact match, matched name length, the <domain-config>): exact beats subdomain, then longest.
    let mut best: Option<(bool, usize, Node<'_, '_>)> = None;
    let mut names = Vec::new();
    for config in root
        .descendants()
        .filter(|n| n.has_tag_name("domain-config"))
        .filter(|n| !n.ancestors().any(|a| a.has_tag_name("debug-overrides")))
    {
        for d in config.children().filter(|n| n.has_tag_name("domain")) {
            let name = d
                .text()
                .unwrap_or("")
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let subdomains = d.attribute("includeSubdomains") == Some("true");
            let exact = name == domain;
            let under = subdomains && domain.ends_with(&format!(".{name}"));
            names.push(name.clone());
            if !(exact || under) {
                continue;
            }
            let better = match &best {
                None => true,
                Some((e, len, _)) => (exact, name.len()) > (*e, *len),
            };
            if better {
                best = Some((exact, name.len(), config));
            }
        }
    }
    best.map(|(_, _, config)| config)
        .ok_or_else(|| no_entry(domain, &names, "<domain-config>"))
}

/// The pins of a `<pin-set>` with their labels, and its expiry.
fn pin_set_pins(
    doc: &Document<'_>,
    pin_set: Node<'_, '_>,
) -> Result<(Vec<AppPin>, Option<time::Date>), AppFileError> {
    let set_path = element_path(pin_set);
    let expires = match pin_set.attribute("expiration") {
        None => None,
        Some(v) => Some(parse_date(v).ok_or_else(|| {
            AppFileError::new(
                &set_path,
                format!("expiration=\"{v}\" is not a date like 2027-06-30"),
            )
        })?),
    };
    let mut pins = Vec::new();
    for (i, p) in pin_set
        .children()
        .filter(|n| n.has_tag_name("pin"))
        .enumerate()
    {
        // Counting siblings per pin would make a long pin set quadratic: the index is known.
        let at = format!("{set_path}.pin[{i}]");
        let digest = p.attribute("digest").unwrap_or("");
        if !digest.eq_ignore_ascii_case("SHA-256") {
            return Err(AppFileError::new(
                at,
                format!("digest=\"{digest}\": Android pins are SHA-256 only"),
            ));
        }
        let value = p.text().unwrap_or("").trim();
        let pin: Pin = value
            .parse()
            .map_err(|e| AppFileError::new(&at, format!("\"{value}\" {e}")))?;
        // `pinproxy export` writes "<!-- label (kind) -->" before each pin: take both back.
        let (label, kind) = preceding_comment(p)
            .and_then(|c| label_and_kind(c.trim()))
            .unwrap_or_else(|| (format!("pin[{i}] (line {})", line(doc, p)), PinKind::Key));
        pins.push(AppPin {
            pin,
            kind,
            label,
            element: at,
        });
    }
    if pins.is_empty() {
        return Err(AppFileError::new(set_path, "the <pin-set> holds no <pin>"));
    }
    Ok((pins, expires))
}

/// Warnings for trust anchors (of the entry, inherited, or the base config) that override pins.
fn override_warnings(doc: &Document<'_>, root: Node<'_, '_>, config: Node<'_, '_>) -> Vec<String> {
    let anchors = config
        .ancestors()
        .filter(|n| n.has_tag_name("domain-config"))
        .find_map(|c| c.children().find(|n| n.has_tag_name("trust-anchors")))
        .or_else(|| {
            root.children()
                .find(|n| n.has_tag_name("base-config"))
                .and_then(|b| b.children().find(|n| n.has_tag_name("trust-anchors")))
        });
    anchors
        .into_iter()
        .flat_map(|a| a.children())
        .filter(|n| n.has_tag_name("certificates"))
        .filter(|n| n.attribute("overridePins") == Some("true"))
        .map(|c| {
            format!(
                "{} (line {}): overridePins=\"true\": the app accepts chains to the CAs of src=\"{}\" without checking these pins",
                element_path(c),
                line(doc, c),
                c.attribute("src").unwrap_or("")
            )
        })
        .collect()
}

/// `network-security-config.domain-config[1].pin-set.pin[0]`: tag names with their index among
/// siblings of the same name where there can be several.
fn element_path(node: Node<'_, '_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for n in node.ancestors().filter(Node::is_element) {
        let tag = n.tag_name().name();
        let repeatable = matches!(tag, "domain-config" | "pin" | "certificates" | "domain");
        if repeatable {
            let i = n
                .prev_siblings()
                .filter(|s| s.is_element() && s.tag_name().name() == tag)
                .count()
                - 1;
            parts.push(format!("{tag}[{i}]"));
        } else {
            parts.push(tag.to_string());
        }
    }
    parts.reverse();
    parts.join(".")
}

fn line(doc: &Document<'_>, node: Node<'_, '_>) -> u32 {
    doc.text_pos_at(node.range().start).row
}

/// The comment right before `node`, whitespace between them skipped.
fn preceding_comment<'a>(node: Node<'a, 'a>) -> Option<&'a str> {
    node.prev_siblings()
        .skip(1)
        .find(|n| !(n.is_text() && n.text().is_some_and(|t| t.trim().is_empty())))
        .filter(Node::is_comment)
        .and_then(|n| n.text())
}
