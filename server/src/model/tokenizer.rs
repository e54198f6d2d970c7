//! The model's own tokenizer: the `tokenizer.json` that transformer exports
//! keep beside the graph (Hugging Face Optimum, `torch.onnx`, MLflow's
//! transformers flavor), loaded once per backend and shared by every hook
//! call, so a text hook neither ships a vocabulary nor reloads one per task;
//! and the label names of its head (`config.json`'s `id2label`).
//!
//! Encodings give offsets in characters (Unicode code points) of the
//! original text, as Label Studio counts span `start`/`end`, and split a long
//! text into overlapping windows on request. Truncation and padding come
//! only from the caller's [`EncodeOptions`]; those saved in the file (often
//! a fixed padding to 512) are ignored, so one call means the same thing
//! for every model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use sha2::Digest as _;

use crate::size::human;

/// The file name transformer exports use.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A transformers model's configuration, with its head's `id2label`.
const CONFIG_FILE: &str = "config.json";

/// Where `config.json` is looked for after the ONNX file's folder.
const CONFIG_PLACES: [&str; 3] = [
    CONFIG_FILE,
    "extra_files/config.json",
    "components/config.json",
];

/// Largest `config.json` read (they are a few KiB).
const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;

/// Largest `tokenizer.json` loaded: the largest common vocabularies (e.g.
/// 256k-token SentencePiece models) take ~35 MB.
pub const MAX_TOKENIZER_FILE_BYTES: u64 = 64 << 20;

/// Where in a model folder a tokenizer is looked for, after the ONNX file's
/// own folder: the folder's root, where `extra_files` of `mlflow.onnx`
/// land, then MLflow's transformers flavor layout.
pub(crate) const TOKENIZER_PLACES: [&str; 4] = [
    TOKENIZER_FILE,
    "extra_files/tokenizer.json",
    "components/tokenizer/tokenizer.json",
    "tokenizer/tokenizer.json",
];

/// Why tokenizing failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    /// The backend has no tokenizer; says where it looked.
    #[error("{0}")]
    NotFound(String),
    /// The options or ids cannot be used with this tokenizer.
    #[error("{0}")]
    InvalidArgument(String),
    /// The tokenizer itself failed.
    #[error("{0}")]
    Failed(String),
}

/// A backend's tokenizer, or why it has none.
#[derive(Clone)]
pub enum ModelTokenizer {
    Loaded(Arc<Tokenizer>),
    /// What to tell a hook that asks for it.
    Missing(Arc<str>),
}

impl Default for ModelTokenizer {
    fn default() -> Self {
        Self::Missing(Arc::from(
            "this backend's model has no tokenizer (no tokenizer.json beside the ONNX file)",
        ))
    }
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Loaded(t) => write!(f, "Loaded({})", t.source.display()),
            Self::Missing(why) => write!(f, "Missing({why})"),
        }
    }
}

impl ModelTokenizer {
    /// Finds and loads the tokenizer of the model in `dir` whose graph is
    /// `onnx_path`. A folder without one is not an error (most models take
    /// no text); a file that does not load is reported when a hook asks.
    pub fn find(dir: &Path, onnx_path: &Path) -> Self {
        let beside = onnx_path.parent().map(|p| p.join(TOKENIZER_FILE));
        let places = beside
            .into_iter()
            .chain(TOKENIZER_PLACES.iter().map(|p| dir.join(p)));
        let Some(path) = places.into_iter().find(|p| p.is_file()) else {
            return Self::Missing(Arc::from(format!(
                "the model folder has no {TOKENIZER_FILE}; log it with the model (e.g. \
                 mlflow.onnx.log_model(..., extra_files=[\"tokenizer.json\"]) or save \
                 the tokenizer into the exported folder with tokenizer.save_pretrained)"
            )));
        };
        match Tokenizer::load(&path) {
            Ok(tokenizer) => Self::Loaded(Arc::new(tokenizer)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "tokenizer not loaded: {e}");
                Self::Missing(Arc::from(e.to_string()))
            }
        }
    }

    /// The tokenizer the backend config names (`model.tokenizer`): a file,
    /// or a folder holding `tokenizer.json`. Unlike one found by
    /// [`ModelTokenizer::find`], it must load.
    /// `shown` names it in errors (e.g. `tok/tokenizer.json in the model
    /// folder`).
    pub fn load_configured(path: &Path, shown: &str) -> Result<Self, TokenizerError> {
        let file = if path.is_dir() {
            path.join(TOKENIZER_FILE)
        } else {
            path.to_owned()
        };
        if !file.is_file() {
            let folder = file.parent().map(list_folder).unwrap_or_default();
            return Err(TokenizerError::NotFound(format!(
                "{shown}: there is no {} there ({folder})",
                display_name(&file)
            )));
        }
        Tokenizer::load(&file).map(|t| Self::Loaded(Arc::new(t)))
    }

    /// The tokenizer, or [`TokenizerError::NotFound`] saying why there is none.
    pub fn get(&self) -> Result<Arc<Tokenizer>, TokenizerError> {
        match self {
            Self::Loaded(t) => Ok(t.clone()),
            Self::Missing(why) => Err(TokenizerError::NotFound(why.to_string())),
        }
    }
}

/// The label names of a transformer head, from the `config.json` beside
/// its graph (`id2label`, ordered by id), for models whose ONNX metadata
/// names no classes. `None` when there is no such file or it names none.
pub fn config_label_names(dir: &Path, onnx_path: &Path) -> Option<Vec<String>> {
    let beside = onnx_path.parent().map(|p| p.join(CONFIG_FILE));
    let path = beside
        .into_iter()
        .chain(CONFIG_PLACES.iter().map(|p| dir.join(p)))
        .find(|p| p.is_file())?;
    let small = std::fs::metadata(&path).is_ok_and(|m| m.len() <= MAX_CONFIG_FILE_BYTES);
    let text = std::fs::read_to_string(&path).ok().filter(|_| small)?;
    let names = id2label(&text);
    if names.is_none() {
        tracing::debug!(path = %path.display(), "config.json names no labels (no usable id2label)");
    }
    names
}

/// `id2label` of a transformers `config.json`, in id order; `None` unless
/// the ids are exactly 0..n.
fn id2label(config: &str) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(config).ok()?;
    let map = value.get("id2label")?.as_object()?;
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .map(|(id, name)| Some((id.parse().ok()?, name.as_str()?.to_owned())))
        .collect::<Option<_>>()?;
    pairs.sort_by_key(|(id, _)| *id);
    let contiguous = pairs.iter().enumerate().all(|(i, (id, _))| i == *id);
    (contiguous && !pairs.is_empty()).then(|| pairs.into_iter().map(|(_, n)| n).collect())
}

/// How to tokenize one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EncodeOptions {
    /// Add the model's special tokens (`[CLS]` … `[SEP]`).
    pub add_special_tokens: bool,
    /// Tokens per window, special tokens included; `None`: one window with
    /// the whole text.
    pub max_length: Option<u32>,
    /// With `max_length`: tokens each window repeats from the one before,
    /// and every window of a long text is returned. `None`: only the first
    /// window (the text is truncated).
    pub stride: Option<u32>,
    /// Pad every window to `max_length`.
    pub pad_to_max_length: bool,
}

/// One window of a tokenized text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u8>,
    /// 1 for special tokens and padding.
    pub special_tokens_mask: Vec<u8>,
    /// The word each token belongs to; `None` for special and padding tokens.
    pub word_ids: Vec<Option<u32>>,
    /// `[start, end)` of each token in the original text, in characters;
    /// `(0, 0)` for special and padding tokens.
    pub offsets: Vec<(u32, u32)>,
    pub tokens: Vec<String>,
}

impl Encoding {
    fn from_hf(e: &tokenizers::Encoding) -> Self {
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            attention_mask: e.get_attention_mask().iter().map(|&m| m as u8).collect(),
            special_tokens_mask: e
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m as u8)
                .collect(),
            word_ids: e.get_word_ids().to_vec(),
            offsets: e
                .get_offsets()
                .iter()
                .map(|&(s, t)| (narrow(s), narrow(t)))
                .collect(),
            tokens: e.get_tokens().to_vec(),
        }
    }

    /// Bytes this encoding takes, for budgets.
    pub fn byte_len(&self) -> usize {
        self.ids.len() * 32 + self.tokens.iter().map(String::len).sum::<usize>()
    }
}

/// A loaded tokenizer. It is used as loaded, without truncation or
/// padding: windows and padding are made per call from [`EncodeOptions`].
pub struct Tokenizer {
    base: tokenizers::Tokenizer,
    source: PathBuf,
    /// The truncation length the file was saved with (the model's maximum
    /// sequence length, for most exports).
    saved_max_length: Option<u32>,
    /// Lower-case hex SHA-256 of the file.
    sha256: String,
}

impl Tokenizer {
    /// Loads `tokenizer.json` at `path`.
    pub fn load(path: &Path) -> Result<Self, TokenizerError> {
        let failed =
            |what: String| TokenizerError::Failed(format!("{}: {what}", display_name(path)));
        let size = std::fs::metadata(path)
            .map_err(|e| failed(e.to_string()))?
            .len();
        if size > MAX_TOKENIZER_FILE_BYTES {
            return Err(failed(format!(
                "{} is larger than the {} a tokenizer may take",
                human(size),
                human(MAX_TOKENIZER_FILE_BYTES)
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
        let mut base = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            failed(format!(
                "not a tokenizer this server can read ({e}); it must be a Hugging Face \
                 tokenizers JSON file (tokenizer.save(\"tokenizer.json\"))"
            ))
        })?;
        let saved_max_length = base
            .get_truncation()
            .and_then(|t| u32::try_from(t.max_length).ok());
        base.with_truncation(None)
            .map_err(|e| failed(e.to_string()))?
            .with_padding(None);
        // Tokenizing runs in a hook's budgeted slot of the compute pool;
        // the library's own thread pool would escape it.
        tokenizers::utils::parallelism::set_parallelism(false);
        Ok(Self {
            base,
            source: path.to_owned(),
            saved_max_length,
            sha256,
        })
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Lower-case hex SHA-256 of the file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The maximum sequence length the file was saved with, if any.
    pub fn max_length(&self) -> Option<u32> {
        self.saved_max_length
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> u32 {
        u32::try_from(self.base.get_vocab_size(true)).unwrap_or(u32::MAX)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.base.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.base.id_to_token(id)
    }

    /// Tokenizes `text` (with `pair` as the second segment, for models that
    /// take two): one encoding, or one per window when `options` ask for
    /// windows.
    ///
    /// The whole text is tokenized first and cut into windows after: the
    /// library's own truncation stops tokenizing at the first window even
    /// when a stride asks for all of them (tokenizers 0.23.2 returned two
    /// windows of a 1,000-token text), so it is not used.
    pub fn encode(
        &self,
        text: &str,
        pair: Option<&str>,
        options: EncodeOptions,
    ) -> Result<Vec<Encoding>, TokenizerError> {
        self.check(options, pair.is_some())?;
        let first = match (options.max_length, options.stride, pair) {
            // One window of one text: its start is enough.
            (Some(max), None, None) => self.tokenize_start(text, max)?,
            _ => self.tokenize(text, 0)?,
        };
        let second = pair.map(|p| self.tokenize(p, 1)).transpose()?;
        let (first, second) = match options.max_length {
            Some(max) => self.cut_into_windows(first, second, max, options)?,
            None => (first, second),
        };
        let mut encoding = self
            .base
            .post_process(first, second, options.add_special_tokens)
            .map_err(failed)?;
        if let (Some(max), true) = (options.max_length, options.pad_to_max_length) {
            tokenizers::pad_encodings(
                std::slice::from_mut(&mut encoding),
                &self.padding(max as usize),
            )
            .map_err(failed)?;
        }
        let windows = encoding.take_overflowing();
        Ok(std::iter::once(&encoding)
            .chain(windows.iter())
            .map(Encoding::from_hf)
            .collect())
    }

    /// One segment's tokens with character offsets, no special tokens.
    fn tokenize(&self, text: &str, type_id: u32) -> Result<tokenizers::Encoding, TokenizerError> {
        let mut encoding = self.base.encode_char_offsets(text, false).map_err(failed)?;
        if type_id != 0 {
            encoding.set_type_ids(vec![type_id; encoding.len()]);
        }
        Ok(encoding)
    }

    /// The tokens of the shortest start of `text` that holds the first `max`
    /// tokens (or of the whole text): a text truncated to one window is not
    /// tokenized whole. A start is cut at whitespace where it can be, since
    /// tokenizers split words there and its tokens are then the text's
    /// first tokens. A text without whitespace (Chinese, Japanese) is cut
    /// inside a word, and the start counts only when that cut word's tokens
    /// begin after the window. The start grows fourfold until it holds
    /// enough.
    fn tokenize_start(&self, text: &str, max: u32) -> Result<tokenizers::Encoding, TokenizerError> {
        let max = max as usize;
        let mut chars = max.saturating_mul(START_CHARS_PER_TOKEN);
        while let Some(cut) = start_cut(text, chars) {
            let start = self.tokenize(&text[..cut.end], 0)?;
            let holds_window = if cut.at_whitespace {
                start.len() > max
            } else {
                first_token_of_last_word(&start).is_some_and(|first| first >= max)
            };
            if holds_window {
                return Ok(start);
            }
            chars = chars.saturating_mul(4);
        }
        self.tokenize(text, 0)
    }

    /// Truncates to `max` tokens (special tokens included); with a stride
    /// the rest become overflowing windows, else it is dropped.
    fn cut_into_windows(
        &self,
        first: tokenizers::Encoding,
        second: Option<tokenizers::Encoding>,
        max: u32,
        options: EncodeOptions,
    ) -> Result<(tokenizers::Encoding, Option<tokenizers::Encoding>), TokenizerError> {
        let added = if options.add_special_tokens {
            self.added_tokens(second.is_some())
        } else {
            0
        };
        let params = TruncationParams {
            max_length: max as usize - added,
            stride: options.stride.unwrap_or(0) as usize,
            strategy: TruncationStrategy::LongestFirst,
            direction: TruncationDirection::Right,
        };
        let (mut first, mut second) =
            tokenizers::truncate_encodings(first, second, &params).map_err(failed)?;
        if options.stride.is_none() {
            first.take_overflowing();
            if let Some(second) = second.as_mut() {
                second.take_overflowing();
            }
        }
        Ok((first, second))
    }

    /// Turns ids back into text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let vocab = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
            return Err(TokenizerError::InvalidArgument(format!(
                "id {bad} is outside the tokenizer's vocabulary of {vocab} tokens"
            )));
        }
        self.base
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Failed(format!("decoding failed: {e}")))
    }

    /// Tokens the tokenizer adds around one text (or a pair).
    fn added_tokens(&self, is_pair: bool) -> usize {
        self.base
            .get_post_processor()
            .map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, is_pair))
    }

    /// Refuses options the tokenizer would reject with a less clear message.
    fn check(&self, options: EncodeOptions, is_pair: bool) -> Result<(), TokenizerError> {
        let invalid = |m: String| Err(TokenizerError::InvalidArgument(m));
        let added = if options.add_special_tokens {
            self.added_tokens(is_pair)
        } else {
            0
        };
        match (options.max_length, options.stride) {
            (None, Some(_)) => invalid("stride needs max-length (the window size)".into()),
            (None, None) if options.pad_to_max_length => {
                invalid("pad-to-max-length needs max-length".into())
            }
            (Some(max), _) if (max as usize) <= added => invalid(format!(
                "max-length {max} leaves no room for text: this tokenizer adds {added} \
                 special tokens"
            )),
            (Some(max), Some(stride)) if (stride as usize) >= max as usize - added => {
                invalid(format!(
                    "stride {stride} must be smaller than the {} text tokens a window of \
                     max-length {max} holds",
                    max as usize - added
                ))
            }
            _ => Ok(()),
        }
    }

    /// Fixed padding with the tokenizer's own pad token: the one its file
    /// names, else the usual spellings, else id 0.
    fn padding(&self, length: usize) -> PaddingParams {
        let (pad_id, pad_type_id, pad_token) = match self.base.get_padding() {
            Some(p) => (p.pad_id, p.pad_type_id, p.pad_token.clone()),
            None => ["[PAD]", "<pad>", "<|pad|>", "<|padding|>"]
                .iter()
                .find_map(|t| self.base.token_to_id(t).map(|id| (id, 0, (*t).to_owned())))
                .unwrap_or((0, 0, "[PAD]".to_owned())),
        };
        PaddingParams {
            strategy: PaddingStrategy::Fixed(length),
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        }
    }
}

/// Characters first tried per token of a window when only its start of a
/// text is tokenized (English averages about 4.5).
const START_CHARS_PER_TOKEN: usize = 8;

/// Where a start of a text ends, in bytes, and whether it ends at
/// whitespace (so that no word is cut).
#[derive(Debug, PartialEq)]
struct StartCut {
    end: usize,
    at_whitespace: bool,
}

/// The start of `text` before character `chars`: up to its last whitespace,
/// else (no whitespace in it) the whole start. `None` when the text is not
/// longer than that.
fn start_cut(text: &str, chars: usize) -> Option<StartCut> {
    let (end, _) = text.char_indices().nth(chars)?;
    Some(match text[..end].rfind(char::is_whitespace) {
        Some(space) if space > 0 => StartCut {
            end: space,
            at_whitespace: true,
        },
        _ => StartCut {
            end,
            at_whitespace: false,
        },
    })
}

/// The index of the first token of the encoding's last word; `None` when
/// the tokenizer does not number words.
fn first_token_of_last_word(encoding: &tokenizers::Encoding) -> Option<usize> {
    let words = encoding.get_word_ids();
    let last = words.iter().rev().find_map(|w| *w)?;
    words.iter().position(|w| *w == Some(last))
}

/// What a folder holds, for an error message.
fn list_folder(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return "no such folder".to_owned();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        "the folder is empty".to_owned()
    } else {
        format!("the folder holds {}", short_list(&names))
    }
}

/// Up to ten names, for an error message, with the count when there are
/// more.
pub(crate) fn short_list(names: &[impl AsRef<str>]) -> String {
    let shown: Vec<&str> = names.iter().take(10).map(AsRef::as_ref).collect();
    match names.len() {
        n if n > shown.len() => format!("{}, … ({n} in all)", shown.join(", ")),
        _ => shown.join(", "),
    }
}

fn failed(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Failed(format!("tokenizing failed: {e}"))
}

fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_cut_at_whitespace_where_there_is_some_inside_a_longer_text() {
        // Character 8 of "Zoë and Ada" is the "A"; the cut is at the space before it.
        let cut = |end, at_whitespace| Some(StartCut { end, at_whitespace });
        assert_eq!(start_cut("Zoë and Ada", 8), cut(8, true));
        assert_eq!(start_cut("Zoë and Ada", 11), None);
        // No whitespace: three characters of three bytes each.
        assert_eq!(start_cut("東京タワー東京タワー", 3), cut(9, false));
    }

    #[test]
    fn id2label_is_read_in_id_order_and_only_when_complete() {
        let config = r#"{"architectures": ["BertForTokenClassification"],
            "id2label": {"2": "I-PER", "0": "O", "1": "B-PER"}}"#;
        assert_eq!(id2label(config).unwrap(), ["O", "B-PER", "I-PER"]);
        assert_eq!(id2label(r#"{"id2label": {"0": "O", "2": "X"}}"#), None);
        assert_eq!(id2label(r#"{"id2label": {"zero": "O"}}"#), None);
        assert_eq!(id2label(r#"{"id2label": {}}"#), None);
        assert_eq!(id2label(r#"{"hidden_size": 384}"#), None);
        assert_eq!(id2label("not json"), None);
    }
}
