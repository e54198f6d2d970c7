//! Where a backend's tokenizer comes from when the model folder does not
//! hold it where exports put it: `model.tokenizer` in the backend config,
//! as a path inside the model folder, an MLflow URI, or an http(s) URL.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use url::Url;

use super::source::{ModelUri, redact_url_text};

/// The forms `model.tokenizer` accepts, for error messages.
const FORMS: &str = "use a path inside the model folder (e.g. tokenizer/tokenizer.json), \
     an MLflow URI of a folder holding tokenizer.json (models:/<name>/<version>, \
     runs:/<run_id>/<path>, mlflow-artifacts:/<path>) or of the file itself \
     (runs:/<run_id>/<path>/tokenizer.json), or an http(s) URL of the file \
     (e.g. https://huggingface.co/<repo>/resolve/main/tokenizer.json)";

/// `model.tokenizer`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// A file (or a folder holding `tokenizer.json`) inside the model
    /// folder, relative to it.
    InModel(PathBuf),
    /// A file downloaded into the model cache.
    Remote(RemoteTokenizer),
}

/// A tokenizer outside the model folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteTokenizer {
    /// A folder in MLflow (any registry, run or artifact URI) holding
    /// `tokenizer.json` where exports put it, or `file` in it.
    Mlflow {
        folder: ModelUri,
        file: Option<String>,
    },
    /// The file at an http(s) URL.
    Url(Url),
}

/// A `model.tokenizer` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model.tokenizer {given:?}: {reason}")]
pub struct InvalidTokenizerSource {
    given: String,
    reason: String,
}

impl TokenizerSource {
    /// Parses `model.tokenizer`.
    pub fn parse(text: &str) -> Result<Self, InvalidTokenizerSource> {
        let text = text.trim();
        let is_url = text.starts_with("http://") || text.starts_with("https://");
        let shown = if is_url {
            redact_url_text(text)
        } else {
            text.to_owned()
        };
        let invalid = |reason: String| InvalidTokenizerSource {
            given: shown.chars().take(200).collect(),
            reason,
        };
        if is_url {
            let url = Url::parse(text).map_err(|e| invalid(format!("not a URL ({e})")))?;
            if !url.username().is_empty() || url.password().is_some() {
                // The URL is part of the stored config, shown by GET /backends.
                return Err(invalid(
                    "credentials in the URL would be stored and shown with the config; \
                     serve the file without them"
                        .into(),
                ));
            }
            return Ok(Self::Remote(RemoteTokenizer::Url(url)));
        }
        if text.contains(':') {
            return Self::parse_mlflow(text).map_err(invalid);
        }
        Self::parse_in_model(text).map_err(invalid)
    }

    fn parse_mlflow(text: &str) -> Result<Self, String> {
        // A URI ending in a .json file names the file; the rest is its folder.
        let (folder, file) = match text.rsplit_once('/') {
            Some((folder, file)) if file.ends_with(".json") && !folder.ends_with(':') => {
                (folder, Some(file.to_owned()))
            }
            _ => (text, None),
        };
        let folder = ModelUri::parse(folder).map_err(|e| format!("{e}; {FORMS}"))?;
        if !folder.needs_tracking_server() {
            return Err(format!("not an MLflow URI; {FORMS}"));
        }
        Ok(Self::Remote(RemoteTokenizer::Mlflow { folder, file }))
    }

    fn parse_in_model(text: &str) -> Result<Self, String> {
        let path = Path::new(text);
        let inside = !text.is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if inside {
            Ok(Self::InModel(path.to_owned()))
        } else {
            Err(format!("a path must stay inside the model folder; {FORMS}"))
        }
    }
}

impl fmt::Display for TokenizerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InModel(path) => write!(f, "{} in the model folder", path.display()),
            Self::Remote(remote) => remote.fmt(f),
        }
    }
}

impl fmt::Display for RemoteTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mlflow { folder, file } => match file {
                Some(file) => write!(f, "{}/{file}", folder.to_string().trim_end_matches('/')),
                None => folder.fmt(f),
            },
            Self::Url(url) => url.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_parses_to_its_source() {
        assert_eq!(
            TokenizerSource::parse("tokenizer/tokenizer.json"),
            Ok(TokenizerSource::InModel("tokenizer/tokenizer.json".into()))
        );
        let run = TokenizerSource::parse("runs:/0a1b/tok/tokenizer.json").expect("runs:/ file");
        assert_eq!(run.to_string(), "runs:/0a1b/tok/tokenizer.json");
        assert!(
            matches!(run, TokenizerSource::Remote(RemoteTokenizer::Mlflow { file: Some(ref f), .. }) if f == "tokenizer.json")
        );
        assert!(matches!(
            TokenizerSource::parse("models:/bert-base/3"),
            Ok(TokenizerSource::Remote(RemoteTokenizer::Mlflow {
                file: None,
                ..
            }))
        ));
        assert!(matches!(
            TokenizerSource::parse("https://huggingface.co/x/resolve/main/tokenizer.json"),
            Ok(TokenizerSource::Remote(RemoteTokenizer::Url(_)))
        ));
    }

    #[test]
    fn paths_leaving_the_model_folder_and_secret_urls_are_refused_by_name() {
        for (given, says) in [
            ("../other/tokenizer.json", "inside the model folder"),
            ("/etc/tokenizer.json", "inside the model folder"),
            ("", "inside the model folder"),
            ("https://user:pw@host/tokenizer.json", "credentials"),
            ("s3:/bucket/tokenizer.json", "invalid model URI"),
        ] {
            let err = TokenizerSource::parse(given).expect_err(given).to_string();
            assert!(err.contains(says), "{given}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }
}
