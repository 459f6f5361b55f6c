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
    } = support::start_run(dir.path(), &[], "Press Ctrl-C");
    let operator = support::token(&["--operator"], dir.path());
    let producer = support::producer_token(dir.path());
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

fn python() -> PathBuf {
    venv().join("bin/python")
}

fn roundtrip(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract/schema_roundtrip.py");
    Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run schema_roundtrip.py")
}

/// The JSON Schema producers validate against and the validator ingest runs agree, both ways:
/// every event generated from the schema (hypothesis-jsonschema) is accepted — but for the rules
/// a JSON Schema cannot say, each named here — and every event the validator accepts (the
/// generator's traffic, every example) is valid against the schema.
#[test]
#[ignore = "needs hypothesis-jsonschema from PyPI: scripts/test installs it and runs this with --ignored"]
fn the_json_schema_and_the_validator_agree_both_ways() {
    use emporium_schemas::{Event, EventKind, RejectReason, ValidationContext};
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/event.schema.json");
    let dir = tempfile::tempdir().expect("tempdir");

    // Schema → validator.
    let generated = dir.path().join("generated.ndjson");
    let out = roundtrip(&[
        "generate".as_ref(),
        schema.as_os_str(),
        "25".as_ref(),
        generated.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&generated).expect("generated events");
    // Far enough ahead that no generated time is in the future: "not in the future" is a rule of
    // the clock, not of the schema.
    let ctx =
        ValidationContext::at(chrono::DateTime::<chrono::Utc>::MAX_UTC - chrono::Duration::days(1));
    let mut refused = Vec::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        if let Err(e) = Event::parse(line.as_bytes(), &ctx) {
            // What a JSON Schema cannot say: no card number in any string, and one currency for
            // all the lines of an order.
            let unsayable = |f: &emporium_schemas::FieldError| {
                f.reason == RejectReason::CardNumber
                    || f.message
                        .starts_with("expected every line in the order's currency")
            };
            if e.errors.iter().all(unsayable) {
                continue;
            }
            refused.push(format!("{e} <- {line}"));
        }
    }
    assert!(
        lines >= 25 * EventKind::ALL.len(),
        "{lines} events generated"
    );
    assert!(
        refused.is_empty(),
        "{} of {lines} schema-valid events refused by the validator:\n{}",
        refused.len(),
        refused
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Validator → schema: the generator's traffic (every type it makes, 20k events, the ones the
    // validator accepts) and every example.
    let accepted = dir.path().join("accepted.ndjson");
    let mut generator = support::shop(200);
    let now = chrono::Utc::now() + chrono::Duration::days(3650);
    let ctx = ValidationContext::at(now);
    let mut body = String::new();
    let mut kept = 0;
    for event in (0..20_000).map(|_| generator.next_event()).chain(
        EventKind::ALL
            .iter()
            .map(|&k| emporium_schemas::examples::example(k, 1)),
    ) {
        let line = String::from_utf8(event.to_json()).expect("utf-8");
        if Event::parse(line.as_bytes(), &ctx).is_ok() {
            body.push_str(&line);
            body.push('\n');
            kept += 1;
        }
    }
    assert!(kept > 19_000, "{kept} accepted");
    std::fs::write(&accepted, body).expect("write");
    let out = roundtrip(&["check".as_ref(), schema.as_os_str(), accepted.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failures = String::from_utf8_lossy(&out.stdout);
    assert!(
        failures.trim().is_empty(),
        "accepted events the JSON Schema refuses:\n{}",
        failures.lines().take(20).collect::<Vec<_>>().join("\n")
    );
}
