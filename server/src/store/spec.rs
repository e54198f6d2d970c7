//! A backend as the stores keep it: its config (secrets apart, in clear)
//! and the sha256 of each file it was built from. The files themselves are
//! stored once each, by content, beside the specs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::{BackendConfig, BackendName, PersistedBackend};
use crate::secret::Secret;

/// One backend's stored form. No `Debug`: it holds credentials in clear.
#[derive(Serialize, Deserialize)]
pub struct Spec {
    #[serde(flatten)]
    config: StoredConfig,
    post_hook: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pre_hook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_upload: Option<UploadRef>,
}

/// An uploaded model in a spec.
#[derive(Debug, Serialize, Deserialize)]
struct UploadRef {
    file_name: String,
    sha256: String,
}

/// A file a spec refers to, with its content address.
pub struct Blob<'a> {
    pub sha256: String,
    pub bytes: &'a [u8],
}

impl<'a> Blob<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        Self {
            sha256: sha256_hex(bytes),
            bytes,
        }
    }
}

impl Spec {
    /// The spec of `backend` and the files it refers to.
    pub fn of(backend: &PersistedBackend) -> Result<(Self, Vec<Blob<'_>>), serde_json::Error> {
        let post = Blob::of(&backend.post_hook);
        let pre = backend.pre_hook.as_deref().map(Blob::of);
        let upload = backend
            .model_upload
            .as_ref()
            .map(|(file_name, bytes)| (file_name.clone(), Blob::of(bytes)));
        let spec = Self {
            config: StoredConfig::new(&backend.config)?,
            post_hook: post.sha256.clone(),
            pre_hook: pre.as_ref().map(|b| b.sha256.clone()),
            model_upload: upload.as_ref().map(|(file_name, blob)| UploadRef {
                file_name: file_name.clone(),
                sha256: blob.sha256.clone(),
            }),
        };
        let blobs = std::iter::once(post)
            .chain(pre)
            .chain(upload.map(|(_, blob)| blob))
            .collect();
        Ok((spec, blobs))
    }

    /// Every blob this spec refers to.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.post_hook.as_str())
            .chain(self.pre_hook.as_deref())
            .chain(self.model_upload.as_ref().map(|u| u.sha256.as_str()))
    }

    /// The first blob reference that is not a sha256, if any: a tampered
    /// spec must not name paths or keys outside the blob store.
    pub fn invalid_blob(&self) -> Option<&str> {
        self.blobs().find(|b| !is_blob_name(b))
    }

    /// Rebuilds the backend, reading each blob with `read` (which must
    /// return bytes whose sha256 is the name it was given; checked here).
    pub fn into_backend(
        self,
        name: BackendName,
        mut read: impl FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<PersistedBackend, String> {
        let mut read_checked = |sha256: &str| -> Result<Vec<u8>, String> {
            let bytes = read(sha256)?;
            if sha256_hex(&bytes) != sha256 {
                return Err(format!(
                    "blob {sha256} is damaged (its sha256 does not match its name)"
                ));
            }
            Ok(bytes)
        };
        let config = BackendConfig::try_from(self.config).map_err(|e| format!("config: {e}"))?;
        Ok(PersistedBackend {
            name,
            config,
            pre_hook: self
                .pre_hook
                .as_deref()
                .map(&mut read_checked)
                .transpose()?,
            post_hook: read_checked(&self.post_hook)?,
            model_upload: match &self.model_upload {
                Some(upload) => Some((upload.file_name.clone(), read_checked(&upload.sha256)?)),
                None => None,
            },
        })
    }
}

/// The sha256 of `bytes`, as lowercase hex: a blob's name.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Whether `name` is a sha256 in lowercase hex.
pub fn is_blob_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The config as stored. Unlike the API form, secrets are kept in clear: a
/// restarted server (or another replica) must be able to reach MLflow and
/// Label Studio. The stores keep them private (`0600` files, or the
/// database's own access control).
#[derive(Serialize, Deserialize)]
pub struct StoredConfig {
    config: serde_json::Value,
    secrets: BTreeMap<String, String>,
}

impl StoredConfig {
    /// The stored form of `config`.
    pub fn new(config: &BackendConfig) -> Result<Self, serde_json::Error> {
        let mut secrets = BTreeMap::new();
        let mut keep = |key: &str, secret: &Option<Secret>| {
            if let Some(s) = secret {
                secrets.insert(key.to_owned(), s.expose().to_owned());
            }
        };
        keep("model.password", &config.model.password);
        keep("model.token", &config.model.token);
        keep("fetch.api_key", &config.fetch.api_key);
        Ok(Self {
            config: serde_json::to_value(config)?,
            secrets,
        })
    }
}

impl TryFrom<StoredConfig> for BackendConfig {
    type Error = serde_json::Error;

    fn try_from(p: StoredConfig) -> Result<Self, Self::Error> {
        let mut config: BackendConfig = serde_json::from_value(p.config)?;
        let secret = |key: &str| p.secrets.get(key).map(Secret::new);
        config.model.password = secret("model.password");
        config.model.token = secret("model.token");
        config.fetch.api_key = secret("fetch.api_key");
        Ok(config)
    }
}
