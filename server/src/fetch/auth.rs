//! Label Studio credentials: which `Authorization` header an API key
//! becomes, and the short-lived access tokens a personal access token is
//! exchanged for (cached until shortly before they expire, refreshed once
//! under a lock however many downloads need one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use reqwest::header::HeaderValue;
use sha2::{Digest, Sha256};
use url::Url;

use super::error::{FetchError, causes};
use super::http::detail;
use super::source::base;
use crate::secret::Secret;

/// Access tokens are refreshed this long before their `exp`, so a token
/// never expires between being picked and being checked by Label Studio.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// What an API key is, decided by its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// No key configured: requests go out without `Authorization`.
    None,
    /// A legacy token (anything that is not a JWT): `Authorization: Token <key>`.
    Legacy(Secret),
    /// A personal access token (a JWT with `token_type: refresh`): exchanged
    /// at `/api/token/refresh/` for access tokens sent as `Bearer`.
    Pat(Secret),
    /// Some other JWT, taken to be an access token: `Authorization: Bearer <key>`.
    Access(Secret),
}

impl Credential {
    /// Classifies a configured key.
    pub(crate) fn from_key(key: Option<&Secret>) -> Self {
        let Some(key) = key else {
            return Self::None;
        };
        match jwt_payload(key.expose()) {
            None => Self::Legacy(key.clone()),
            Some(payload)
                if payload.get("token_type").and_then(|t| t.as_str()) == Some("refresh") =>
            {
                Self::Pat(key.clone())
            }
            Some(_) => Self::Access(key.clone()),
        }
    }

    /// A short, stable, non-reversible identity for the key: it keys the
    /// in-flight map and marks cache entries, so one backend's downloads are
    /// never served to a backend holding another key.
    pub(crate) fn fingerprint(&self) -> String {
        match self {
            Self::None => "anonymous".to_owned(),
            Self::Legacy(k) | Self::Pat(k) | Self::Access(k) => fingerprint(k),
        }
    }

    /// Whether any key is configured.
    pub(crate) fn is_some(&self) -> bool {
        !matches!(self, Self::None)
    }
}

fn fingerprint(key: &Secret) -> String {
    let digest = Sha256::digest(format!("cls-fetch-credential\n{}", key.expose()));
    hex::encode(&digest[..8])
}

/// A header value marked sensitive, so `Debug` output of requests hides it.
pub(crate) fn header(scheme: &str, token: &Secret) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// JWTs are base64url without padding; be lenient about padding anyway.
const JWT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The payload of a JWT-shaped token (three base64url parts whose middle one
/// is a JSON object), without checking the signature: this module only
/// reads `token_type` and `exp` to decide how to use a token it was given.
pub(crate) fn jwt_payload(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.trim().split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || signature.is_empty() {
        return None;
    }
    let bytes = JWT_B64.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// When a token should be replaced: [`REFRESH_MARGIN`] before its `exp`;
/// `None` when it has no readable `exp` (then it is used until a 401).
fn refresh_at(token: &str) -> Option<SystemTime> {
    let exp = jwt_payload(token)?.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    let exp = UNIX_EPOCH + Duration::from_secs_f64(exp);
    Some(exp.checked_sub(REFRESH_MARGIN).unwrap_or(UNIX_EPOCH))
}

/// A cached access token.
#[derive(Clone)]
struct Access {
    token: Secret,
    refresh_at: Option<SystemTime>,
}

impl Access {
    fn usable(&self) -> bool {
        self.refresh_at.is_none_or(|at| SystemTime::now() < at)
    }
}

/// An access token handed to a download.
pub(crate) struct Issued {
    /// The token, for `Authorization: Bearer`.
    pub token: Secret,
    /// Whether it was obtained just now (a 401 with a fresh token is not
    /// worth another refresh).
    pub fresh: bool,
}

type Slot = Arc<tokio::sync::Mutex<Option<Access>>>;

/// Access tokens per (Label Studio, personal access token).
#[derive(Default)]
pub(crate) struct Tokens {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Tokens {
    /// An access token for `pat` on Label Studio `ls`: the cached one while
    /// usable, else a new one from `POST <ls>/api/token/refresh/`.
    ///
    /// `rejected` is a token Label Studio just answered 401 to: if it is
    /// still the cached one, it is replaced. Concurrent callers wait on one
    /// lock per slot, so a burst of downloads refreshes once.
    pub(crate) async fn access(
        &self,
        client: &reqwest::Client,
        ls: &Url,
        pat: &Secret,
        rejected: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Issued, FetchError> {
        let slot = {
            let key = format!("{}\n{}", base(ls), fingerprint(pat));
            // A poisoned map only means another task panicked mid-insert;
            // the map itself is still consistent.
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(access) = cached.as_ref()
            && access.usable()
            && rejected.is_none_or(|r| *r != access.token)
        {
            return Ok(Issued {
                token: access.token.clone(),
                fresh: false,
            });
        }
        let token = refresh(client, ls, pat, timeout).await?;
        *cached = Some(Access {
            refresh_at: refresh_at(token.expose()),
            token: token.clone(),
        });
        Ok(Issued { token, fresh: true })
    }
}

/// `POST <ls>/api/token/refresh/ {"refresh": "<PAT>"}` → `{"access": "…"}`.
async fn refresh(
    client: &reqwest::Client,
    ls: &Url,
    pat: &Secret,
    timeout: Duration,
) -> Result<Secret, FetchError> {
    let url = format!("{}/api/token/refresh/", base(ls));
    let fail = |reason: String| FetchError::TokenRefresh {
        url: url.clone(),
        reason,
    };
    tracing::debug!(%url, "exchanging the personal access token for an access token");
    let response = client
        .post(&url)
        .json(&serde_json::json!({ "refresh": pat.expose() }))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| fail(causes(&e.without_url())))?;
    let status = response.status();
    if !status.is_success() {
        // Read for the debug log only: error messages never quote bodies.
        if let Some(detail) = detail(response).await {
            tracing::debug!(%url, %status, detail, "Label Studio refused the token refresh");
        }
        let hint = match status.as_u16() {
            401 | 403 => {
                " — Label Studio rejected the token: it was revoked, or belongs to another Label Studio instance"
            }
            404 | 405 => " — this Label Studio has no personal access tokens; use a legacy token",
            _ => "",
        };
        return Err(fail(format!("{status} from Label Studio{hint}")));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| fail(format!("unreadable reply: {}", causes(&e.without_url()))))?;
    body.get("access")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .map(Secret::new)
        .ok_or_else(|| fail("the reply has no \"access\" token".into()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A JWT-shaped token (unsigned) with the given payload.
    pub(crate) fn jwt(payload: &serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64.encode(payload.to_string())
        )
    }

    #[test]
    fn keys_are_classified_by_shape() {
        let pat = jwt(&serde_json::json!({"token_type": "refresh", "exp": 9_999_999_999u64}));
        let access = jwt(&serde_json::json!({"token_type": "access", "exp": 1}));
        let s = |k: &str| Some(Secret::new(k));
        assert!(matches!(
            Credential::from_key(s(&pat).as_ref()),
            Credential::Pat(_)
        ));
        assert!(matches!(
            Credential::from_key(s(&access).as_ref()),
            Credential::Access(_)
        ));
        for legacy in [
            "0123456789abcdef0123456789abcdef01234567",
            "a.b",
            "a.b.c",
            "x..y",
        ] {
            assert!(
                matches!(
                    Credential::from_key(s(legacy).as_ref()),
                    Credential::Legacy(_)
                ),
                "{legacy}"
            );
        }
        assert_eq!(Credential::from_key(None), Credential::None);
    }

    #[test]
    fn fingerprints_differ_per_key_and_hide_it() {
        let a = Credential::Legacy(Secret::new("key-a")).fingerprint();
        let b = Credential::Legacy(Secret::new("key-b")).fingerprint();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(!a.contains("key"));
        assert_eq!(Credential::None.fingerprint(), "anonymous");
    }

    #[test]
    fn access_tokens_are_replaced_before_their_exp() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let long = jwt(&serde_json::json!({"exp": now + 300}));
        let short = jwt(&serde_json::json!({"exp": now + 10}));
        let usable = |t: &str| {
            Access {
                token: Secret::new(t),
                refresh_at: refresh_at(t),
            }
            .usable()
        };
        assert!(usable(&long));
        assert!(!usable(&short), "within the refresh margin");
        assert!(usable("no-exp"), "no exp: used until a 401");
    }

    #[test]
    fn header_values_are_sensitive() {
        let h = header("Token", &Secret::new("abc")).expect("ascii");
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().expect("ascii"), "Token abc");
    }
}
