//! Where the platform's keys come from, through the `emporium` binary: an empty or short secret
//! is refused at start (so no deployment runs with a guessable key), an `auth.json` of the first
//! format keeps its keys, and `emporium token --rotate` adds a signing key while the old one keeps
//! checking.

use std::process::{Command, Output};

fn emporium(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_emporium"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("EMPORIUM_TOKEN_SECRET")
        .env_remove("EMPORIUM_TOKEN_KEYS")
        .env_remove("EMPORIUM_OPERATOR_KEY");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run emporium")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn empty_or_short_secrets_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "an-operator-key-long-enough";
    for (env, needle) in [
        (
            vec![
                ("EMPORIUM_TOKEN_SECRET", ""),
                ("EMPORIUM_OPERATOR_KEY", long),
            ],
            "EMPORIUM_TOKEN_SECRET",
        ),
        (
            vec![
                ("EMPORIUM_TOKEN_SECRET", "short"),
                ("EMPORIUM_OPERATOR_KEY", long),
            ],
            "at least 16",
        ),
        (
            vec![
                ("EMPORIUM_TOKEN_SECRET", long),
                ("EMPORIUM_OPERATOR_KEY", ""),
            ],
            "operator key",
        ),
        (
            vec![
                ("EMPORIUM_TOKEN_KEYS", "k1:"),
                ("EMPORIUM_OPERATOR_KEY", long),
            ],
            "at least 16",
        ),
    ] {
        for args in [
            &["token", "--user", "u-1"][..],
            &["run", "--listen", "127.0.0.1:0"],
        ] {
            let out = emporium(args, dir.path(), &env);
            assert!(!out.status.success(), "{args:?} {env:?} started");
            assert!(
                stderr(&out).contains(needle),
                "{args:?} {env:?}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn a_first_format_auth_json_keeps_its_keys_and_rotation_adds_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("auth.json"),
        r#"{"token_secret": "the-old-secret-of-the-first-format", "operator_key": "the-old-operator-key"}"#,
    )
    .expect("write");
    let out = emporium(&["token", "--operator"], dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "the-old-operator-key"
    );
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("auth.json")).expect("read"))
            .expect("json");
    assert_eq!(keys["keys"][0]["kid"], "k0");
    assert_eq!(
        keys["keys"][0]["secret"],
        "the-old-secret-of-the-first-format"
    );

    let out = emporium(&["token", "--rotate", "--keep-old", "2h"], dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("auth.json")).expect("read"))
            .expect("json");
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(kids.len(), 2, "{keys}");
    assert_eq!(kids[1], "k0");
    assert!(keys["keys"][1]["retire_at"].is_i64(), "{keys}");
    // Tokens now name the new key.
    let out = emporium(&["token", "--user", "u-1"], dir.path(), &[]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let header = token.split('.').next().expect("a JWT");
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64");
    let header: serde_json::Value = serde_json::from_slice(&header).expect("json");
    assert_eq!(header["kid"], kids[0]);
    assert_eq!(header["alg"], "HS256");
}
