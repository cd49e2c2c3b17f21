//! The node's ed25519 key: created on first start in the data dir (mode 0600), loaded after.
//! The same secret is the libp2p identity and signs envelopes. A damaged key file is an error,
//! never silently replaced: replacing it would change who the node is.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// File name of the key inside the data dir.
pub const KEY_FILE: &str = "node_key.toml";

/// Why the identity could not be loaded or created.
#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot create key file {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is corrupted ({reason}); refusing to replace it: move it away to create a new identity")]
    Corrupt { path: PathBuf, reason: String },
    #[error("no key file in {0}; start a node with this data dir to create one")]
    Missing(PathBuf),
    #[error(
        "key file {path} is accessible to other users (mode {mode:03o}); like ssh, ifx refuses such a key \
         (anyone who read it can sign as this node): chmod 600 {path}"
    )]
    LoosePermissions { path: PathBuf, mode: u32 },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    secret: String,
    public: String,
}

/// Creates `path` (which must not exist) readable and writable by its owner only: the key file
/// and the API token are written through it.
pub(crate) fn create_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// A loaded node identity.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// Loads the key from `data_dir`, creating it (and the dir) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(KEY_FILE);
        match Self::load(data_dir) {
            Err(IdentityError::Missing(_)) => {}
            other => return other,
        }
        fs::create_dir_all(data_dir).map_err(|source| IdentityError::Create { path: path.clone(), source })?;
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let file = KeyFile {
            version: 1,
            secret: hex::encode(signing.to_bytes()),
            public: hex::encode(signing.verifying_key().to_bytes()),
        };
        let text = format!(
            "# ifx node key (ed25519). Keep it secret; losing it loses this node's identity.\n{}",
            toml::to_string(&file).expect("key file serialises")
        );
        // Written to a temporary file, synced, then renamed into place: a crash mid-write
        // leaves no half-written key that the next start would have to refuse as corrupt.
        let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
        let create = |source| IdentityError::Create { path: path.clone(), source };
        let _ = fs::remove_file(&tmp);
        let mut f = create_private(&tmp).map_err(create)?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(create)?;
        if path.exists() {
            // Another process created the key meanwhile: never overwrite an identity.
            let _ = fs::remove_file(&tmp);
            return Self::load(data_dir);
        }
        fs::rename(&tmp, &path).map_err(create)?;
        fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(create)?;
        Ok(Self { signing })
    }

    /// Loads an existing key; `Missing` if there is none.
    pub fn load(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(KEY_FILE);
        // Checked before the secret is read, as ssh does.
        if let Ok(meta) = fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            return Err(IdentityError::LoosePermissions { path, mode: meta.permissions().mode() & 0o777 });
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IdentityError::Missing(data_dir.to_path_buf()));
            }
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        let corrupt = |reason: String| IdentityError::Corrupt { path: path.clone(), reason };
        let file: KeyFile = toml::from_str(&text).map_err(|e| corrupt(e.message().to_owned()))?;
        if file.version != 1 {
            return Err(corrupt(format!("unknown key file version {}", file.version)));
        }
        let secret: [u8; 32] = hex::decode(&file.secret)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("secret is not 32 bytes of hex".into()))?;
        let signing = SigningKey::from_bytes(&secret);
        if hex::encode(signing.verifying_key().to_bytes()) != file.public {
            return Err(corrupt("public key does not match the secret".into()));
        }
        Ok(Self { signing })
    }

    /// The signing key for envelopes.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The ed25519 public key bytes (an envelope's `author`).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The same key as a libp2p keypair.
    pub fn libp2p_keypair(&self) -> libp2p::identity::Keypair {
        libp2p::identity::Keypair::ed25519_from_bytes(self.signing.to_bytes())
            .expect("32-byte ed25519 secret is always valid")
    }

    /// The libp2p peer id of this key.
    pub fn peer_id(&self) -> PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.peer_id(), b.peer_id());
        // The libp2p identity is the same ed25519 key.
        let lp = a.libp2p_keypair().public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(lp, a.public_key());
    }

    #[test]
    fn corrupted_key_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        // Flip one hex digit of the secret.
        let i = text.find("secret = \"").unwrap() + 10;
        let mut bytes = text.clone().into_bytes();
        bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
        fs::write(&path, &bytes).unwrap();
        let err = Identity::load_or_create(dir.path()).err().unwrap();
        assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "a corrupt key must never be replaced");
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(Identity::load(dir.path()), Err(IdentityError::Corrupt { .. })));
    }

    /// Issue #16: a key others could read only logged a warning.
    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = Identity::load(dir.path()).err().expect("refused").to_string();
            assert!(e.contains(&format!("chmod 600 {}", path.display())) && e.contains(&format!("{mode:03o}")), "{e}");
            // Not replaced by a new identity either.
            assert!(Identity::load_or_create(dir.path()).is_err());
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap().public_key(), id.public_key());
    }

    #[test]
    fn missing_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Identity::load(dir.path()), Err(IdentityError::Missing(_))));
    }
}
