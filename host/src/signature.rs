//! Plugin signatures: the WebAssembly tool-conventions format (`wasmsign2`),
//! Ed25519 signatures embedded in a custom section at the front of the
//! component.
//!
//! The format hashes the component's sections, not its 8-byte preamble
//! (magic + version + layer): a file whose preamble was changed after
//! signing still carries a valid signature. The host only ever runs
//! components, so [`TrustedKeys::verify`] accepts the component preamble
//! alone and refuses anything else before it looks at the signature; a core
//! module signed as such is refused the same way. What is verified must be
//! what is compiled: callers read a file once and hand the verified buffer
//! on (see `registry` and `source`), never the path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use wasmsign2::{KeyPair, PublicKey, PublicKeySet, SecretKey, WSError};

/// The preamble of a WebAssembly component (magic, version 0x0d, layer 1).
pub const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Why a component was refused: each has a label for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The preamble is not a component's (not covered by the signature: a
    /// swapped preamble, a core module, not wasm at all).
    #[error("not a WebAssembly component (its 8-byte preamble is {0}; the signature does not cover it, so only a component's is accepted)")]
    NotAComponent(String),
    #[error("the component is not signed")]
    Unsigned,
    /// Signed, but by no trusted key, or changed after it was signed (the
    /// format cannot tell the two apart).
    #[error("no valid signature from a trusted key (signed by another key, or changed after signing)")]
    Untrusted,
    #[error("its signature section is malformed: {0}")]
    Malformed(String),
}

impl Refusal {
    /// A label for `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAComponent(_) => "not_a_component",
            Refusal::Unsigned => "unsigned",
            Refusal::Untrusted => "untrusted",
            Refusal::Malformed(_) => "malformed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not an Ed25519 {what} key (raw, DER or PEM): {source}")]
    Parse { path: String, what: &'static str, source: WSError },
    #[error("plugin.trusted_keys is set but empty")]
    Empty,
    #[error("signing failed: {0}")]
    Sign(WSError),
    #[error("{path} already exists: not overwriting a key")]
    Exists { path: String },
}

/// The public keys a component must be signed by (`plugin.trusted_keys`).
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: PublicKeySet,
    files: Vec<PathBuf>,
}

impl TrustedKeys {
    /// Reads every key file (raw, DER or PEM, as `wasmsign2` writes them).
    pub fn load(files: &[PathBuf]) -> Result<TrustedKeys, KeyError> {
        if files.is_empty() {
            return Err(KeyError::Empty);
        }
        let mut keys = HashSet::new();
        for path in files {
            let bytes = std::fs::read(path).map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
            let key = PublicKey::from_any(&bytes)
                .map_err(|source| KeyError::Parse { path: path.display().to_string(), what: "public", source })?;
            // Signatures are made without a key id (see `sign`): a key with
            // one would ignore them.
            keys.insert(key);
        }
        Ok(TrustedKeys { keys: PublicKeySet::new(keys), files: files.to_vec() })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Checks that `wasm` is a component signed by one of the keys; returns
    /// how many of them signed it.
    pub fn verify(&self, wasm: &[u8]) -> Result<usize, Refusal> {
        let preamble = wasm.get(..8).unwrap_or(wasm);
        if preamble != COMPONENT_PREAMBLE {
            return Err(Refusal::NotAComponent(hex::encode(preamble)));
        }
        match self.keys.verify(&mut std::io::Cursor::new(wasm), None) {
            Ok(signers) => Ok(signers.len()),
            Err(WSError::NoSignatures) => Err(Refusal::Unsigned),
            Err(WSError::VerificationFailed) => Err(Refusal::Untrusted),
            Err(e) => Err(Refusal::Malformed(e.to_string())),
        }
    }
}

/// Accepts `wasm` when no keys are configured or one of `keys` signed it; a
/// refusal is logged and counted (`llma_sentiment_plugin_refused_total`).
pub fn enforce(keys: Option<&TrustedKeys>, wasm: &[u8]) -> Result<(), Refusal> {
    let Some(keys) = keys else { return Ok(()) };
    match keys.verify(wasm) {
        Ok(signers) => {
            tracing::debug!(signers, "plugin signature verified");
            Ok(())
        }
        Err(refusal) => {
            crate::metrics::record_plugin_refused(refusal.reason());
            tracing::warn!(reason = refusal.reason(), error = %refusal, "plugin refused: no valid signature from plugin.trusted_keys");
            Err(refusal)
        }
    }
}

/// Writes a new key pair: the secret key to `secret` (mode 0600) and the
/// public key to `public`; never over an existing file.
pub fn keygen(secret: &Path, public: &Path) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pair = KeyPair::generate();
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists { path: path.display().to_string() }
            } else {
                io(e)
            }
        })?;
        file.write_all(bytes).map_err(io)
    };
    write(secret, &pair.sk.to_bytes(), 0o600)?;
    write(public, &pair.pk.to_bytes(), 0o644)
}

/// Reads a secret key file (raw, DER or PEM).
pub fn secret_key(path: &Path) -> Result<SecretKey, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
    SecretKey::from_any(&bytes).map_err(|source| KeyError::Parse { path: path.display().to_string(), what: "secret", source })
}

/// `wasm` with a signature by `key` embedded; signatures already there stay
/// (a component signed with the old and the new key verifies under either
/// during a key rotation).
pub fn sign(key: &SecretKey, wasm: &[u8]) -> Result<Vec<u8>, KeyError> {
    let module = wasmsign2::Module::deserialize(&mut std::io::Cursor::new(wasm)).map_err(KeyError::Sign)?;
    let (signed, _) = key.sign_multi(module, None, false, false).map_err(KeyError::Sign)?;
    let mut out = Vec::with_capacity(wasm.len() + 256);
    signed.serialize(&mut out).map_err(KeyError::Sign)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: its preamble and nothing else.
    fn component() -> Vec<u8> {
        let mut c = COMPONENT_PREAMBLE.to_vec();
        // A custom section `x` with one byte, so there is something to hash.
        c.extend_from_slice(&[0x00, 0x03, 0x01, b'x', 0x2a]);
        c
    }

    fn pair(dir: &Path, name: &str) -> (SecretKey, TrustedKeys) {
        let (sk, pk) = (dir.join(format!("{name}.sk")), dir.join(format!("{name}.pk")));
        keygen(&sk, &pk).unwrap();
        (secret_key(&sk).unwrap(), TrustedKeys::load(&[pk]).unwrap())
    }

    #[test]
    fn signed_verifies_and_every_tampering_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, trusted) = pair(dir.path(), "a");
        let (other, _) = pair(dir.path(), "b");
        let signed = sign(&sk, &component()).unwrap();
        assert_eq!(trusted.verify(&signed), Ok(1));
        assert_eq!(trusted.verify(&component()), Err(Refusal::Unsigned));
        assert_eq!(trusted.verify(&sign(&other, &component()).unwrap()), Err(Refusal::Untrusted));
        let mut flipped = signed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(trusted.verify(&flipped), Err(Refusal::Untrusted));
        let mut core_module = signed.clone();
        core_module[4..8].copy_from_slice(&[1, 0, 0, 0]);
        assert_eq!(trusted.verify(&core_module).unwrap_err().reason(), "not_a_component");
    }

    #[test]
    fn a_key_file_is_never_overwritten_and_the_secret_one_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        pair(dir.path(), "k");
        let mode = std::fs::metadata(dir.path().join("k.sk")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = keygen(&dir.path().join("k.sk"), &dir.path().join("k2.pk"));
        assert!(matches!(again, Err(KeyError::Exists { .. })), "{again:?}");
    }
}
