//! The declared feature views: one TOML file (`features/features.toml`, built into the binary;
//! another with `--features-file`) whose every view names an entity, the feature dataflow that
//! computes its features (`emporium_dataflows::features::DATAFLOWS`), a ttl and the features it
//! serves with their types. [`parse`] refuses a bad declaration with its file, line and column
//! and what is wrong: an unknown key, entity, dataflow or feature, a type that is not the
//! dataflow's, a bad ttl, a name used twice.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use emporium_dataflows::features::{self, Computed, Entity, FeatureDataflow, FeatureType};
use serde::Deserialize;
use toml::Spanned;

/// The declaration built into the binary: this crate's `features.toml`.
pub const BUILT_IN: &str = include_str!("../features.toml");
/// The name [`BUILT_IN`] goes by in errors and listings.
pub const BUILT_IN_NAME: &str = "features/features.toml (built in)";

/// The longest name of a view or a feature.
const MAX_NAME: usize = 63;

/// Every declared view, in the file's order.
#[derive(Debug, Clone)]
pub struct Declarations {
    /// Where they were read from.
    pub source: String,
    pub views: Vec<FeatureView>,
}

/// A declared feature view.
#[derive(Debug, Clone)]
pub struct FeatureView {
    pub name: String,
    pub entity: Entity,
    pub dataflow: &'static FeatureDataflow,
    /// How long a value stays fresh after its event time.
    pub ttl: Duration,
    /// The ttl as declared (`30d`).
    pub ttl_text: String,
    pub description: String,
    pub features: Vec<Feature>,
}

/// A declared feature of a view.
#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub ty: FeatureType,
    pub description: String,
    /// What the dataflow computes for it.
    pub computed: &'static Computed,
}

impl Declarations {
    /// The view named `name`.
    pub fn view(&self, name: &str) -> Option<&FeatureView> {
        self.views.iter().find(|v| v.name == name)
    }

    /// The views' names, joined by `, ` (for messages naming what is declared).
    pub fn names(&self) -> String {
        self.views
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FeatureView {
    /// The feature named `name`.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }

    /// Its features' names, joined by `, ` (for listings and messages).
    pub fn names(&self) -> String {
        self.features
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a declaration was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DeclarationError {
    /// The file (or the built-in declaration's name).
    pub file: String,
    /// 1-based; 0 when the file could not be read.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for DeclarationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    view: Vec<Spanned<ViewDecl>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewDecl {
    name: Spanned<String>,
    entity: Spanned<String>,
    dataflow: Spanned<String>,
    ttl: Spanned<String>,
    description: String,
    #[serde(default)]
    feature: Vec<Spanned<FeatureDecl>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureDecl {
    name: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    description: String,
}

/// The built-in declaration.
pub fn built_in() -> Result<Declarations, DeclarationError> {
    parse(BUILT_IN_NAME, BUILT_IN)
}

/// The declaration in `path`, or the built-in one.
pub fn load(path: Option<&Path>) -> Result<Declarations, DeclarationError> {
    let Some(path) = path else {
        return built_in();
    };
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DeclarationError {
        file: source.clone(),
        line: 0,
        column: 0,
        message: format!("cannot read the feature declaration: {e}"),
    })?;
    parse(&source, &text)
}

/// The declaration `text` (read from `source`), checked against the feature dataflows.
pub fn parse(source: &str, text: &str) -> Result<Declarations, DeclarationError> {
    let at = |span: Range<usize>, message: String| {
        let (line, column) = position(text, span.start);
        DeclarationError {
            file: source.to_owned(),
            line,
            column,
            message,
        }
    };
    let file: File = toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => at(span, message),
            None => DeclarationError {
                file: source.to_owned(),
                line: 0,
                column: 0,
                message,
            },
        }
    })?;
    let mut views: Vec<FeatureView> = Vec::with_capacity(file.view.len());
    for decl in file.view {
        let span = decl.span();
        let decl = decl.into_inner();
        let name = checked_name(&decl.name, "view").map_err(|m| at(decl.name.span(), m))?;
        if views.iter().any(|v| v.name == name) {
            return Err(at(
                decl.name.span(),
                format!("view {name:?} is declared twice"),
            ));
        }
        let entity = Entity::parse(decl.entity.get_ref()).ok_or_else(|| {
            at(
                decl.entity.span(),
                format!(
                    "unknown entity {:?}: expected one of {}",
                    decl.entity.get_ref(),
                    list(Entity::ALL.iter().map(|e| e.name()))
                ),
            )
        })?;
        let dataflow = features::dataflow(decl.dataflow.get_ref()).ok_or_else(|| {
            at(
                decl.dataflow.span(),
                format!(
                    "unknown dataflow {:?}: expected one of {}",
                    decl.dataflow.get_ref(),
                    list(features::DATAFLOWS.iter().map(|d| d.name))
                ),
            )
        })?;
        if dataflow.entity != entity {
            return Err(at(
                decl.entity.span(),
                format!(
                    "dataflow {:?} computes features of a {}, not of a {}",
                    dataflow.name,
                    dataflow.entity.name(),
                    entity.name()
                ),
            ));
        }
        let ttl = parse_ttl(decl.ttl.get_ref()).map_err(|m| at(decl.ttl.span(), m))?;
        if decl.feature.is_empty() {
            return Err(at(
                span,
                format!("view {name:?} serves no feature: add a [[view.feature]]"),
            ));
        }
        let mut served: Vec<Feature> = Vec::with_capacity(decl.feature.len());
        for feature in decl.feature {
            let feature = feature.into_inner();
            let fname =
                checked_name(&feature.name, "feature").map_err(|m| at(feature.name.span(), m))?;
            if served.iter().any(|f| f.name == fname) {
                return Err(at(
                    feature.name.span(),
                    format!("feature {fname:?} is declared twice in view {name:?}"),
                ));
            }
            let computed = dataflow.computed(&fname).ok_or_else(|| {
                at(
                    feature.name.span(),
                    format!(
                        "dataflow {:?} computes no feature {fname:?}: it computes {}",
                        dataflow.name,
                        list(dataflow.computes.iter().map(|c| c.name))
                    ),
                )
            })?;
            let ty = FeatureType::parse(feature.ty.get_ref()).ok_or_else(|| {
                at(
                    feature.ty.span(),
                    format!(
                        "unknown type {:?}: expected one of {}",
                        feature.ty.get_ref(),
                        list(FeatureType::ALL.iter().map(|t| t.name()))
                    ),
                )
            })?;
            if ty != computed.ty {
                return Err(at(
                    feature.ty.span(),
                    format!(
                        "feature {fname:?} of dataflow {:?} is of type {}, not {}",
                        dataflow.name,
                        computed.ty.name(),
                        ty.name()
                    ),
                ));
            }
            served.push(Feature {
                name: fname,
                ty,
                description: feature.description,
                computed,
            });
        }
        views.push(FeatureView {
            name,
            entity,
            dataflow,
            ttl,
            ttl_text: decl.ttl.into_inner(),
            description: decl.description,
            features: served,
        });
    }
    Ok(Declarations {
        source: source.to_owned(),
        views,
    })
}

/// `name` if it is a valid name of a `what`: lower-case letters, digits and `_`, starting with
/// a letter, at most [`MAX_NAME`] bytes.
fn checked_name(name: &Spanned<String>, what: &str) -> Result<String, String> {
    let name = name.get_ref();
    let valid = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(name.clone())
    } else {
        Err(format!(
            "{what} name {name:?}: expected lower-case letters, digits and '_', starting with a \
             letter, at most {MAX_NAME} bytes"
        ))
    }
}

/// A ttl: a positive whole number of days, hours, minutes or seconds (`30d`, `12h`, `15m`, `90s`).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "ttl {text:?}: expected a positive whole number of days, hours, minutes or seconds, \
             such as \"30d\", \"12h\", \"15m\" or \"90s\""
        )
    };
    let unit = match text.chars().last() {
        Some('d') => 86_400,
        Some('h') => 3_600,
        Some('m') => 60,
        Some('s') => 1,
        _ => return Err(expected()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let n: u64 = digits.parse().map_err(|_| expected())?;
    if n == 0 {
        return Err(expected());
    }
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(expected)
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_declaration_is_valid_and_serves_every_user_activity_feature() {
        let d = built_in().expect("the built-in declaration");
        let user = d.view("user").expect("the user view");
        assert_eq!(user.entity, Entity::User);
        assert_eq!(user.ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(user.features.len(), user.dataflow.computes.len());
        assert!(user.feature("orders_7d").is_some());
    }

    const GOOD: &str = r#"
[[view]]
name = "user"
entity = "user"
dataflow = "user_activity"
ttl = "7d"
description = "d"

  [[view.feature]]
  name = "orders_7d"
  type = "int64"
  description = "d"
"#;

    /// The error of `GOOD` with `from` replaced by `to`.
    fn refused(from: &str, to: &str) -> DeclarationError {
        assert!(GOOD.contains(from), "{from}");
        match parse("f.toml", &GOOD.replacen(from, to, 1)) {
            Ok(_) => panic!("{to:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_good_declaration_parses() {
        let d = parse("f.toml", GOOD).expect("good");
        assert_eq!(d.views.len(), 1);
        assert_eq!(d.views[0].ttl_text, "7d");
        assert_eq!(d.views[0].features[0].ty, FeatureType::Int64);
    }

    #[test]
    fn each_mistake_is_refused_at_its_line_with_what_is_wrong() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                r#"entity = "user""#,
                r#"entity = "shopper""#,
                4,
                "unknown entity \"shopper\"",
            ),
            (
                r#"entity = "user""#,
                r#"entity = "product""#,
                4,
                "computes features of a user, not of a product",
            ),
            (
                r#"dataflow = "user_activity""#,
                r#"dataflow = "nope""#,
                5,
                "unknown dataflow \"nope\": expected one of \"user_activity\"",
            ),
            (
                r#"ttl = "7d""#,
                r#"ttl = "7 days""#,
                6,
                "ttl \"7 days\": expected a positive whole number",
            ),
            (r#"ttl = "7d""#, r#"ttl = "0h""#, 6, "ttl \"0h\""),
            (
                r#"name = "orders_7d""#,
                r#"name = "orders_9d""#,
                10,
                "computes no feature \"orders_9d\": it computes \"orders_7d\"",
            ),
            (
                r#"type = "int64""#,
                r#"type = "float64""#,
                11,
                "is of type int64, not float64",
            ),
            (
                r#"type = "int64""#,
                r#"type = "integer""#,
                11,
                "unknown type \"integer\"",
            ),
            (
                r#"name = "user""#,
                r#"name = "User""#,
                3,
                "view name \"User\": expected lower-case",
            ),
            (
                r#"description = "d"

  [["#,
                r#"description = "d"
colour = "red"

  [["#,
                8,
                "unknown field `colour`",
            ),
            (r#"ttl = "7d""#, r#"ttl = 7"#, 6, "invalid type"),
        ];
        for (from, to, line, message) in cases {
            let e = refused(from, to);
            assert_eq!(e.line, *line, "{to}: {e}");
            assert!(e.message.contains(message), "{to}: {e}");
            assert!(e.to_string().starts_with(&format!("f.toml:{line}:")), "{e}");
        }
    }

    #[test]
    fn names_used_twice_and_views_without_features_are_refused() {
        let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[view]]").unwrap_or(0)..]);
        let e = parse("f.toml", &twice).expect_err("a view twice");
        assert!(e.message.contains("view \"user\" is declared twice"), "{e}");
        assert_eq!(e.line, 15, "{e}");
        let feature = &GOOD[GOOD.find("  [[view.feature]]").unwrap_or(0)..];
        let e = parse("f.toml", &format!("{GOOD}{feature}")).expect_err("a feature twice");
        assert!(
            e.message
                .contains("feature \"orders_7d\" is declared twice"),
            "{e}"
        );
        let bare = &GOOD[..GOOD.find("  [[view.feature]]").unwrap_or(GOOD.len())];
        let e = parse("f.toml", bare).expect_err("no feature");
        assert!(e.message.contains("serves no feature"), "{e}");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn ttls_parse_in_their_units() {
        assert_eq!(parse_ttl("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        for bad in ["", "d", "-1d", "1.5h", "1w", "99999999999999999999d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unreadable_file_says_so() {
        let e = load(Some(Path::new("/nonexistent/features.toml"))).expect_err("missing");
        assert_eq!(e.line, 0);
        assert!(
            e.to_string()
                .contains("cannot read the feature declaration"),
            "{e}"
        );
    }
}
