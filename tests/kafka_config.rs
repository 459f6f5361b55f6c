//! `--kafka-config KEY=VALUE` and `--kafka-config-file` reach every Kafka client of every
//! subcommand that talks to Kafka: a property librdkafka does not know is refused by librdkafka
//! itself, naming it, so the flag demonstrably got there. Properties Emporium's guarantees
//! depend on are refused before any client is made.

use std::process::Command;

fn emporium(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_emporium"));
    command.args(args);
    if ["run", "pipeline", "lakehouse"].contains(&args[0]) {
        command.arg("--data-dir").arg(dir.path());
    }
    let out = command
        .env_remove("EMPORIUM_KAFKA")
        .output()
        .expect("run emporium");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_kafka_subcommand_passes_client_properties_to_librdkafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("client.properties");
    std::fs::write(&file, "# from a file\nno.such.file.property=1\n").expect("write");
    let file = file.to_str().expect("utf-8 path");
    let brokers = "127.0.0.1:1";
    let subcommands: [&[&str]; 5] = [
        &["run", "--listen", "127.0.0.1:0", "--kafka", brokers],
        &["pipeline", "--kafka", brokers],
        &["lakehouse", "--kafka", brokers],
        &["dlq", "--kafka", brokers],
        &["generate", "--events", "10", "--kafka", brokers],
    ];
    for base in subcommands {
        for (flag, value, property) in [
            ("--kafka-config", "no.such.property=1", "no.such.property"),
            ("--kafka-config-file", file, "no.such.file.property"),
        ] {
            let mut args = base.to_vec();
            args.extend([flag, value]);
            let (ok, stderr) = emporium(&args);
            assert!(!ok, "{args:?} must fail");
            assert!(
                stderr.contains(property),
                "{args:?}: librdkafka names the property: {stderr}"
            );
        }
    }
    let (ok, stderr) = emporium(&[
        "pipeline",
        "--kafka",
        brokers,
        "--kafka-config",
        "auto.offset.reset=earliest",
    ]);
    assert!(!ok);
    assert!(stderr.contains("must fail, never skip"), "{stderr}");
}
