//! The API contract, machine-checked: schemathesis (PyPI) generates requests from the served
//! `/openapi.json` — valid and invalid ones, for every route — against a running `emporium run`,
//! and checks every answer against the document: status codes, content types, headers and
//! bodies. `scripts/test` installs schemathesis into a venv (`EMPORIUM_CONTRACT_VENV`, default
//! `~/.cache/emporium/contract-venv`) and runs this test with `--ignored`; without the venv it
//! cannot run, hence the `ignore`.

mod support;

use std::path::PathBuf;
use std::process::Command;

fn venv() -> PathBuf {
    std::env::var_os("EMPORIUM_CONTRACT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/emporium/contract-venv")
        })
}

fn token(args: &[&str], data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emporium"))
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("emporium token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[test]
#[ignore = "needs schemathesis from PyPI: scripts/test installs it and runs this with --ignored"]
fn schemathesis_finds_no_response_that_breaks_the_openapi_document() {
    let schemathesis = venv().join("bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run scripts/test, or pip install schemathesis==4.32.5 into {}",
        schemathesis.display(),
        venv().display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let support::Run {
        mut child, base, ..
    } = support::start_run(dir.path(), &["--no-dataflow"], "Press Ctrl-C");
    let operator = token(&["--operator"], dir.path());
    let producer = token(
        &[
            "--producer",
            "schemathesis",
            "--scope",
            "storefront,orders,catalog",
        ],
        dir.path(),
    );
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract/schemathesis.toml");
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        // Every check (schemathesis runs them all by default; the config turns off one per route
        // where it cannot apply, with the reason).
        .args(["run", &format!("{base}/openapi.json")])
        .env("EMPORIUM_CONTRACT_OPERATOR", &operator)
        .env("EMPORIUM_CONTRACT_PRODUCER", &producer)
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let _ = child.kill();
    let _ = child.wait();
    let report = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = report.lines().rev().take(30).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
