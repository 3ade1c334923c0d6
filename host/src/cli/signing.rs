//! `plugin keygen`, `plugin sign`, `plugin verify`: the signatures that
//! `plugin.trusted_keys` asks of every plugin file (see `signature`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::signature::{self, TrustedKeys};

pub fn keygen(secret: &Path, public: &Path) -> anyhow::Result<()> {
    signature::keygen(secret, public)?;
    eprintln!(
        "wrote the secret key {} (keep it off the workers) and the public key {} (list it in plugin.trusted_keys)",
        secret.display(),
        public.display()
    );
    Ok(())
}

pub fn sign(key: &Path, file: &Path, output: &Path) -> anyhow::Result<()> {
    let key = signature::secret_key(key)?;
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let signed = signature::sign(&key, &wasm).with_context(|| format!("signing {}", file.display()))?;
    crate::engine::write_atomically(output, &signed).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("signed {} -> {}", file.display(), output.display());
    Ok(())
}

pub fn verify(config: &Config, keys: &[PathBuf], file: &Path) -> anyhow::Result<()> {
    let files = if keys.is_empty() { config.plugin.trusted_keys.clone() } else { keys.to_vec() };
    anyhow::ensure!(!files.is_empty(), "no key to verify with: give --key PUBLIC_KEY (or set plugin.trusted_keys)");
    let trusted = TrustedKeys::load(&files)?;
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let signers = trusted.verify(&wasm).with_context(|| format!("{} refused", file.display()))?;
    println!("{}", serde_json::json!({"ok": true, "file": file, "signed_by_trusted_keys": signers}));
    Ok(())
}
