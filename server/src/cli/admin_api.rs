//! The client side of the server's admin routes (`/configure`,
//! `/backends`), shared by `configure` and `backends`: the `--server` and
//! `--admin-token` flags, URL joining, the bearer token, and turning an error
//! reply into the server's own message, verbatim.

use std::time::Duration;

use anyhow::Context as _;
use cls::api::ErrorResponse;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::non_empty;

/// The default `--server`: the server's default port on this machine.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:9090";
/// How long an admin call may take when the command sets no other limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server is and how to authenticate to its admin routes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// URL of the configurable-ls-backend server (a path prefix is kept).
    #[arg(long, env = "CLS_SERVER_URL", default_value = DEFAULT_SERVER_URL)]
    pub server: Url,
    /// Bearer token for the admin routes: the server's ADMIN_TOKEN. Without
    /// one, the server accepts admin calls from loopback clients only.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// An HTTP client for one server's admin routes.
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl AdminClient {
    /// A client whose calls time out after `timeout`.
    pub fn new(args: &ServerArgs, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "configurable-ls-backend-cli/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base: args.server.clone(),
            token: non_empty(&args.admin_token).map(str::to_owned),
        })
    }

    /// `path` under the server URL, keeping any path prefix it has.
    pub fn url(&self, path: &str) -> String {
        join(&self.base, path)
    }

    /// A request with the admin token attached.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and returns the reply's JSON body (`Null` for an
    /// empty one), or an error carrying the server's message verbatim.
    pub async fn send(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let response = request
            .send()
            .await
            .map_err(|e| connection_error(e, &self.base))
            .with_context(|| what.to_owned())?;
        reply_json(response, what).await
    }
}

/// `base` + `path`, with exactly one slash between them.
pub fn join(base: &Url, path: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Reads a reply: its JSON on success, the server's own error otherwise.
pub async fn reply_json(response: Response, what: &str) -> anyhow::Result<(StatusCode, Value)> {
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the reply"))?;
    if !status.is_success() {
        anyhow::bail!("{what}: {status}: {}", server_message(&text));
    }
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{what}: the reply is not JSON: {}", clip(&text)))?
    };
    Ok((status, value))
}

/// Reads a reply's JSON into the type the server builds it from; a body
/// that does not fit is an error naming the request.
pub fn typed<T: DeserializeOwned>(body: &Value, what: &str) -> anyhow::Result<T> {
    T::deserialize(body).with_context(|| {
        format!(
            "{what}: the reply lacks fields this command reads: {}",
            clip(&body.to_string())
        )
    })
}

/// The message of an error body: our servers' [`ErrorResponse`], Label
/// Studio's `{"detail": …}` or `{"validation_errors": …}`, or the text itself.
pub fn server_message(body: &str) -> String {
    if let Ok(ours) = serde_json::from_str::<ErrorResponse>(body) {
        return ours.error;
    }
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return clip(body);
    };
    for key in ["error", "detail", "message"] {
        if let Some(message) = value.get(key).and_then(Value::as_str) {
            let mut message = message.to_owned();
            if let Some(errors) = value.get("validation_errors").filter(|v| !v.is_null()) {
                message.push_str(&format!(" {errors}"));
            }
            return message;
        }
    }
    value.to_string()
}

/// Long bodies (an HTML error page) are cut to keep the error readable.
fn clip(text: &str) -> String {
    const MAX: usize = 2000;
    let text = text.trim();
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(MAX).collect::<String>())
}

/// Says which server could not be reached, and why, without the request's
/// headers (they carry the token).
pub fn connection_error(error: reqwest::Error, base: &Url) -> anyhow::Error {
    let why = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect (is it running? is the URL right?)".to_owned()
    } else {
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        chain
    };
    anyhow::anyhow!("{base}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_a_path_prefix_and_one_slash() {
        let base = Url::parse("http://h:1/prefix/").expect("url");
        assert_eq!(join(&base, "/backends"), "http://h:1/prefix/backends");
        let base = Url::parse("http://h:1").expect("url");
        assert_eq!(join(&base, "configure"), "http://h:1/configure");
    }

    #[test]
    fn server_message_takes_the_error_field_verbatim() {
        assert_eq!(
            server_message(r#"{"status":422,"error":"post_hook does not fit: x"}"#),
            "post_hook does not fit: x"
        );
        assert_eq!(server_message(r#"{"detail":"Not found."}"#), "Not found.");
        assert_eq!(server_message("plain text"), "plain text");
    }
}
