//! `emporium features` (issue 26, ADR 0016): the built-in declaration lists and describes its
//! views, and a bad declaration is refused with its file, line and what is wrong.

use std::process::Command;

fn emporium(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .args(args)
        .env_remove("EMPORIUM_FEATURES_FILE")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run emporium");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_built_in_views_are_listed_and_described() {
    let (ok, out, err) = emporium(&["features", "list"]);
    assert!(ok, "{err}");
    let user = out
        .lines()
        .find(|l| l.starts_with("user "))
        .unwrap_or_else(|| panic!("no user view in\n{out}"));
    for word in [
        "user_id",
        "user_activity",
        "30d",
        "orders_7d",
        "returns_30d",
    ] {
        assert!(user.contains(word), "{word} missing from {user:?}");
    }
    let (ok, out, err) = emporium(&["features", "describe", "user"]);
    assert!(ok, "{err}");
    assert!(out.contains("spend_7d_minor   int64"), "{out}");
    assert!(out.contains("ttl: 30d"), "{out}");
    let (ok, _, err) = emporium(&["features", "describe", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("no feature view \"nope\"") && err.contains("declared: user"),
        "{err}"
    );
}

#[test]
fn a_bad_declaration_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("features.toml");
    std::fs::write(
        &path,
        "[[view]]\nname = \"user\"\nentity = \"user\"\ndataflow = \"user_activity\"\nttl = \"30d\"\ndescription = \"d\"\n\n  [[view.feature]]\n  name = \"orders_7d\"\n  type = \"float64\"\n  description = \"d\"\n",
    )
    .expect("write");
    let file = path.to_str().expect("utf-8 path");
    let (ok, _, err) = emporium(&["features", "--features-file", file, "list"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("{file}:10:10: feature \"orders_7d\" of dataflow \"user_activity\" is of type int64, not float64")),
        "{err}"
    );
}
