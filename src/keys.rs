//! The platform's secrets for the read API: the key that signs shopper tokens and the operator
//! key. Taken from `EMPORIUM_TOKEN_SECRET` / `EMPORIUM_OPERATOR_KEY` when set (the distributed
//! deployment, where every `emporium serve` must share them); otherwise made on first start and
//! kept in `<data dir>/auth.json`, readable by the owner only.

use std::path::{Path, PathBuf};

use anyhow::Context;
use emporium_serving::auth::{Authenticator, random_key};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Keys {
    token_secret: String,
    operator_key: String,
}

/// Where the keys live in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("auth.json")
}

/// The authenticator of this deployment, and where its keys came from (for the start-up banner).
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(Authenticator, String)> {
    let secret = std::env::var("EMPORIUM_TOKEN_SECRET").ok();
    let operator = std::env::var("EMPORIUM_OPERATOR_KEY").ok();
    if let (Some(secret), Some(operator)) = (&secret, &operator) {
        return Ok((
            Authenticator::new(secret.as_bytes(), operator.clone()),
            "EMPORIUM_TOKEN_SECRET / EMPORIUM_OPERATOR_KEY".into(),
        ));
    }
    let file = path(data_dir);
    let keys = match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice::<Keys>(&bytes).with_context(|| {
            format!(
                "{}: expected {{\"token_secret\", \"operator_key\"}}",
                file.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = Keys {
                token_secret: random_key(),
                operator_key: random_key(),
            };
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            write_private(&file, &serde_json::to_vec_pretty(&keys)?)
                .with_context(|| format!("writing {}", file.display()))?;
            keys
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let auth = Authenticator::new(
        secret.unwrap_or(keys.token_secret).into_bytes(),
        operator.unwrap_or(keys.operator_key),
    );
    Ok((auth, file.display().to_string()))
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
