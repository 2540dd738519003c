//! The key store: one file per key under a directory, `NAME.key`, holding
//! the name, public key and the 32-byte ed25519 seed in hex, created with
//! mode 0600 (owner only) and never overwritten. Secrets leave the store
//! only through [`KeyStore::export_seed`], which the CLI calls only when
//! asked explicitly.

use std::io::Write;
use std::path::{Path, PathBuf};

use commons_types::{PublicKey, SecretKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::limits;

#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

/// A key's public side, for listing.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub name: String,
    pub public_key: PublicKey,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    name: String,
    public_key: PublicKey,
    seed: String,
}

pub fn check_name(name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MAX_KEY_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "key name {name:?}: use 1 to {} letters, digits, '-' or '_'",
            limits::MAX_KEY_NAME_BYTES
        )))
    }
}

/// Parses a 32-byte seed in hex (surrounding whitespace allowed).
pub fn parse_seed(text: &str) -> Result<SecretKey, ClientError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| ClientError::Usage(format!("secret key is not hex: {e}")))?;
    let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        ClientError::Usage(format!(
            "secret key must be 32 bytes (64 hex digits), got {}",
            bytes.len()
        ))
    })?;
    Ok(SecretKey::from_seed(seed))
}

/// Writes `contents` to a new file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClientError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ClientError::Usage(format!(
                "{} exists; refusing to overwrite it",
                path.display()
            ))
        } else {
            ClientError::io(path, e)
        }
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| ClientError::io(path, e))
}

pub fn read_limited(path: &Path) -> Result<String, ClientError> {
    let meta = std::fs::metadata(path).map_err(|e| ClientError::io(path, e))?;
    if meta.len() > limits::MAX_FILE_BYTES {
        return Err(ClientError::Usage(format!(
            "{}: {} bytes exceeds the limit of {}",
            path.display(),
            meta.len(),
            limits::MAX_FILE_BYTES
        )));
    }
    std::fs::read_to_string(path).map_err(|e| ClientError::io(path, e))
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        KeyStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn ensure_dir(&self) -> Result<(), ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ClientError::io(&self.dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ClientError::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// Generates a key from the OS's randomness and stores it.
    pub fn generate(&self, name: &str) -> Result<KeyInfo, ClientError> {
        self.add(name, &SecretKey::generate(OsRng))
    }

    /// Stores `key` under `name`; refuses an existing name.
    pub fn add(&self, name: &str, key: &SecretKey) -> Result<KeyInfo, ClientError> {
        check_name(name)?;
        self.ensure_dir()?;
        let file = KeyFile {
            name: name.to_string(),
            public_key: key.public_key(),
            seed: hex::encode(key.to_seed()),
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| ClientError::Usage(format!("encoding key file: {e}")))?;
        let path = self.path(name);
        if path.exists() {
            return Err(ClientError::Usage(format!(
                "a key named {name:?} exists ({}); choose another name",
                path.display()
            )));
        }
        write_private(&path, text.as_bytes())?;
        Ok(KeyInfo {
            name: name.to_string(),
            public_key: key.public_key(),
        })
    }

    fn load_file(&self, name: &str) -> Result<KeyFile, ClientError> {
        check_name(name)?;
        let path = self.path(name);
        if !path.exists() {
            return Err(ClientError::UnknownKey {
                name: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map_err(|e| ClientError::io(&path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(ClientError::Usage(format!(
                    "{} is readable by others (mode {:o}); run `chmod 600` on it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        let text = read_limited(&path)?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Usage(format!("{}: not a key file: {e}", path.display())))
    }

    /// The secret key named `name`; checks the file's public key matches.
    pub fn load(&self, name: &str) -> Result<SecretKey, ClientError> {
        let file = self.load_file(name)?;
        let key = parse_seed(&file.seed)?;
        if key.public_key() != file.public_key {
            return Err(ClientError::Usage(format!(
                "key file {name:?} is damaged: its seed does not give its public key"
            )));
        }
        Ok(key)
    }

    pub fn info(&self, name: &str) -> Result<KeyInfo, ClientError> {
        let file = self.load_file(name)?;
        Ok(KeyInfo {
            name: file.name,
            public_key: file.public_key,
        })
    }

    /// The seed, in hex: the secret. Callers show it only when asked.
    pub fn export_seed(&self, name: &str) -> Result<String, ClientError> {
        Ok(hex::encode(self.load(name)?.to_seed()))
    }

    pub fn list(&self) -> Result<Vec<KeyInfo>, ClientError> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| ClientError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ClientError::io(&self.dir, e))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file_name.strip_suffix(".key") {
                out.push(self.info(name)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A public key given as 64 hex digits, or the name of a stored key.
    pub fn resolve(&self, name_or_key: &str) -> Result<PublicKey, ClientError> {
        if name_or_key.len() == 64
            && let Ok(k) = PublicKey::from_hex(name_or_key)
        {
            return Ok(k);
        }
        Ok(self.info(name_or_key)?.public_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_files_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys"));
        let info = store.generate("alice").unwrap();
        let key = store.load("alice").unwrap();
        assert_eq!(key.public_key(), info.public_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys/alice.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(store.generate("alice").is_err(), "no overwrite");
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(store.resolve("alice").unwrap(), info.public_key);
        assert_eq!(
            store.resolve(&info.public_key.to_hex()).unwrap(),
            info.public_key
        );
        assert!(matches!(
            store.resolve("bob"),
            Err(ClientError::UnknownKey { .. })
        ));
    }

    #[test]
    fn import_export_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let key = SecretKey::from_seed([7; 32]);
        store.add("k1", &key).unwrap();
        assert_eq!(store.export_seed("k1").unwrap(), hex::encode([7u8; 32]));
        assert!(store.add("../evil", &key).is_err());
        assert!(store.add("", &key).is_err());
        assert!(parse_seed("zz").is_err());
        assert!(parse_seed(&"ab".repeat(31)).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        store.add("k", &SecretKey::from_seed([1; 32])).unwrap();
        std::fs::set_permissions(
            dir.path().join("k.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = store.load("k").unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
    }
}
