//! The platform's secrets: the keys that sign shopper and producer tokens, and the operator key.
//!
//! Taken from the environment when set — `EMPORIUM_TOKEN_KEYS` (`kid:secret,…`, the signing key
//! first: rotate by rolling restarts), or `EMPORIUM_TOKEN_SECRET` (one key), and
//! `EMPORIUM_OPERATOR_KEY` — as the distributed deployment needs (every process must share
//! them); otherwise made on first start and kept in `<data dir>/auth.json`, readable by the owner
//! only, where `emporium token --rotate` adds a new signing key. A running `emporium run` or
//! `emporium serve` reads a rotated `auth.json` within seconds ([`watch`]). An empty or short
//! secret is refused at start.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use emporium_serving::auth::{Authenticator, KeySet, random_key};
use serde::{Deserialize, Serialize};

/// `auth.json`.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    #[serde(flatten)]
    token_keys: KeySet,
    operator_key: String,
}

/// `auth.json` as the first version wrote it: one secret, no key id. Read once, then rewritten.
#[derive(Deserialize)]
struct KeyFileV1 {
    token_secret: String,
    operator_key: String,
}

/// Where the keys live in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth.json")
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The keys of this deployment, and where they came from (for the start-up banner).
pub struct Keys {
    pub token_keys: KeySet,
    pub operator_key: String,
    pub source: String,
    /// Set when the keys come from `auth.json` (and can be rotated there).
    pub file: Option<PathBuf>,
}

impl Keys {
    pub fn authenticator(&self) -> anyhow::Result<Authenticator> {
        Authenticator::new(&self.token_keys, &self.operator_key)
            .with_context(|| format!("the keys in {}", self.source))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The keys from the environment, or from (a new) `auth.json` in `data_dir`.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keys> {
    let env_keys = match (env("EMPORIUM_TOKEN_KEYS"), env("EMPORIUM_TOKEN_SECRET")) {
        (Some(list), _) => Some((
            KeySet::parse_list(&list).context("EMPORIUM_TOKEN_KEYS")?,
            "EMPORIUM_TOKEN_KEYS",
        )),
        (None, Some(secret)) => Some((KeySet::single("env", &secret), "EMPORIUM_TOKEN_SECRET")),
        (None, None) => None,
    };
    let operator = env("EMPORIUM_OPERATOR_KEY");
    if let (Some((token_keys, name)), Some(operator_key)) = (&env_keys, &operator) {
        let keys = Keys {
            token_keys: token_keys.clone(),
            operator_key: operator_key.clone(),
            source: format!("{name} / EMPORIUM_OPERATOR_KEY"),
            file: None,
        };
        keys.authenticator()?;
        return Ok(keys);
    }
    let file = path(data_dir);
    let mut stored = read_or_create(&file, data_dir)?;
    stored.token_keys.prune(now_secs());
    let from_env = env_keys.is_some() || operator.is_some();
    let keys = Keys {
        token_keys: env_keys.map_or(stored.token_keys, |(k, _)| k),
        operator_key: operator.unwrap_or(stored.operator_key),
        source: if from_env {
            format!("{} and the environment", file.display())
        } else {
            file.display().to_string()
        },
        file: (!from_env).then_some(file),
    };
    keys.authenticator()?;
    Ok(keys)
}

fn read_or_create(file: &Path, data_dir: &Path) -> anyhow::Result<KeyFile> {
    match std::fs::read(file) {
        Ok(bytes) => {
            if let Ok(keys) = serde_json::from_slice::<KeyFile>(&bytes) {
                return Ok(keys);
            }
            let old = serde_json::from_slice::<KeyFileV1>(&bytes).with_context(|| {
                format!(
                    "{}: expected {{\"keys\": [{{\"kid\", \"secret\", \"created_at\"}}], \"operator_key\"}}",
                    file.display()
                )
            })?;
            // The first format's secret keeps signing under a key id of its own; its old-format
            // tokens are no longer read (mint new ones).
            let keys = KeyFile {
                token_keys: KeySet::single("k0", &old.token_secret),
                operator_key: old.operator_key,
            };
            write(file, &keys, true)?;
            Ok(keys)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = KeyFile {
                token_keys: KeySet::generate(now_secs()),
                operator_key: random_key(),
            };
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            write(file, &keys, false)?;
            Ok(keys)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Adds a new signing key to `auth.json`; the older keys keep checking tokens for `keep`.
/// Returns the new key's id and when the older ones retire.
pub fn rotate(data_dir: &Path, keep: Duration) -> anyhow::Result<(String, i64)> {
    if env("EMPORIUM_TOKEN_KEYS").is_some() || env("EMPORIUM_TOKEN_SECRET").is_some() {
        anyhow::bail!(
            "the token keys come from the environment: rotate by putting a new `kid:secret` first \
             in EMPORIUM_TOKEN_KEYS (keep the old pair after it until its tokens expire) and \
             restarting the processes one by one"
        );
    }
    let file = path(data_dir);
    let mut keys = read_or_create(&file, data_dir)?;
    let now = now_secs();
    keys.token_keys.prune(now);
    let keep_secs = keep.as_secs() as i64;
    let kid = keys.token_keys.rotate(now, keep_secs).kid.clone();
    write(&file, &keys, true)?;
    Ok((kid, now + keep_secs))
}

fn write(file: &Path, keys: &KeyFile, replace: bool) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(keys)?;
    let target = if replace {
        file.with_extension("json.tmp")
    } else {
        file.to_owned()
    };
    if replace {
        let _ = std::fs::remove_file(&target);
    }
    write_private(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
    if replace {
        std::fs::rename(&target, file).with_context(|| format!("replacing {}", file.display()))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Re-reads `auth.json` every few seconds while `keys` came from it, and hands a changed set to
/// `auth` (a rotation takes effect without a restart; tokens of the keys still in it keep
/// working). Runs until the process ends.
pub fn watch(keys: &Keys, auth: Authenticator) {
    let Some(file) = keys.file.clone() else {
        return;
    };
    let mut current = (keys.token_keys.clone(), keys.operator_key.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let Ok(bytes) = tokio::fs::read(&file).await else {
                continue;
            };
            let Ok(mut stored) = serde_json::from_slice::<KeyFile>(&bytes) else {
                continue;
            };
            stored.token_keys.prune(now_secs());
            let next = (stored.token_keys, stored.operator_key);
            if next == current {
                continue;
            }
            match auth.replace_keys(&next.0, &next.1) {
                Ok(()) => {
                    tracing::info!(
                        file = %file.display(),
                        signing = next.0.signing().map(|k| k.kid.as_str()).unwrap_or(""),
                        keys = next.0.keys.len(),
                        "token keys reloaded"
                    );
                    current = next;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "auth.json changed but is not usable; keeping the keys in use")
                }
            }
        }
    });
}
