//! Text models: the model's own tokenizer, held by the host
//! ([`Tokenizer`], from the `tokenizer.json` in the model folder), and its
//! windows as model inputs.
//!
//! Offsets are in characters (Unicode code points) of the original text,
//! the unit Label Studio counts a span's `start`/`end` in; [`char_slice`]
//! cuts a `&str` by them.
//!
//! ```no_run
//! # fn demo(text: &str, ctx: &hook_sdk::Context) -> Result<(), hook_sdk::HookError> {
//! use hook_sdk::text::{char_slice, EncodeOptions, Tokenizer};
//! let tokenizer = Tokenizer::open()?;                          // loaded once per backend by the host
//! let windows = tokenizer.encode(text, &EncodeOptions::windows(512, 128))?;
//! let inputs = windows[0].to_inputs(ctx.model_inputs())?;      // input_ids, attention_mask, …
//! if let Some((start, end)) = windows[0].span(1) {
//!     let first_word = char_slice(text, start, end);           // what Label Studio would highlight
//! }
//! # Ok(()) }
//! ```

use crate::bindings::pre::cls::hooks::host::{self, TokenizerError};
use crate::bindings::pre::cls::hooks::types::{ElementType, Tensor, TensorSpec};
use crate::error::HookError;

pub use crate::bindings::pre::cls::hooks::host::{EncodeOptions, Encoding};

/// The model input holding token ids.
pub const INPUT_IDS: &str = "input_ids";
/// The model input holding the attention mask.
pub const ATTENTION_MASK: &str = "attention_mask";
/// The model input holding segment (token type) ids.
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";

impl From<TokenizerError> for HookError {
    fn from(e: TokenizerError) -> Self {
        match e {
            // A missing tokenizer is the backend's setup, not the task.
            TokenizerError::NotFound(m) => HookError::BadConfig(m),
            TokenizerError::InvalidArgument(m) => HookError::Failed(format!("tokenizer: {m}")),
            TokenizerError::Failed(m) => HookError::Failed(format!("tokenizer: {m}")),
        }
    }
}

/// The backend's tokenizer, held by the host: tokenizing runs natively, and
/// the vocabulary is loaded once per backend, not once per call.
#[derive(Debug)]
pub struct Tokenizer {
    inner: host::Tokenizer,
}

impl Tokenizer {
    /// The model's tokenizer. Fails with a configuration error saying what
    /// to add when the model folder has no `tokenizer.json`.
    pub fn open() -> Result<Self, HookError> {
        Ok(Self {
            inner: host::open_tokenizer()?,
        })
    }

    /// Tokenizes `text`: one [`Encoding`], or one per window when
    /// `options` ask for windows ([`EncodeOptions::windows`]).
    pub fn encode(&self, text: &str, options: &EncodeOptions) -> Result<Vec<Encoding>, HookError> {
        Ok(self.inner.encode(text, *options)?)
    }

    /// Tokenizes two texts as the two segments of one input (question and
    /// context, premise and hypothesis).
    pub fn encode_pair(
        &self,
        text: &str,
        pair: &str,
        options: &EncodeOptions,
    ) -> Result<Vec<Encoding>, HookError> {
        Ok(self.inner.encode_pair(text, pair, *options)?)
    }

    /// Tokenizes several texts in one host call; one list of windows per text.
    pub fn encode_batch(
        &self,
        texts: &[String],
        options: &EncodeOptions,
    ) -> Result<Vec<Vec<Encoding>>, HookError> {
        Ok(self.inner.encode_batch(texts, *options)?)
    }

    /// Turns ids back into text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, HookError> {
        Ok(self.inner.decode(ids, skip_special_tokens)?)
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of `id`, if the vocabulary has it.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }
}

impl EncodeOptions {
    /// The whole text in one window, with special tokens.
    pub fn whole() -> Self {
        Self {
            add_special_tokens: true,
            max_length: None,
            stride: None,
            pad_to_max_length: false,
        }
    }

    /// One window of at most `max_length` tokens (special tokens included);
    /// the rest of a longer text is dropped.
    ///
    /// ```
    /// let o = hook_sdk::text::EncodeOptions::truncated(128);
    /// assert_eq!((o.max_length, o.stride), (Some(128), None));
    /// ```
    pub fn truncated(max_length: u32) -> Self {
        Self {
            max_length: Some(max_length),
            ..Self::whole()
        }
    }

    /// Every window of a long text, `max_length` tokens each, each
    /// repeating `stride` tokens of the one before so that an entity cut
    /// by a border is whole in the next window.
    ///
    /// ```
    /// let o = hook_sdk::text::EncodeOptions::windows(512, 128);
    /// assert_eq!((o.max_length, o.stride), (Some(512), Some(128)));
    /// ```
    pub fn windows(max_length: u32, stride: u32) -> Self {
        Self {
            max_length: Some(max_length),
            stride: Some(stride),
            ..Self::whole()
        }
    }

    /// The same, every window padded to `max_length` (for models with a
    /// fixed sequence length).
    pub fn padded(self) -> Self {
        Self {
            pad_to_max_length: true,
            ..self
        }
    }

    /// The same, without the model's special tokens.
    pub fn without_special_tokens(self) -> Self {
        Self {
            add_special_tokens: false,
            ..self
        }
    }
}

impl Encoding {
    /// Tokens in this window, padding included.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the window holds no token at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The characters of the original text token `index` covers, `None`
    /// for special and padding tokens.
    pub fn span(&self, index: usize) -> Option<(u32, u32)> {
        let special = self.special_tokens_mask.get(index).copied().unwrap_or(1) == 1;
        let (start, end) = *self.offsets.get(index)?;
        (!special && end > start).then_some((start, end))
    }

    /// This window as the model's inputs, shape `[1, tokens]`: one tensor
    /// per declared input named `input_ids`, `attention_mask` or
    /// `token_type_ids` (the names Hugging Face exports use), in the integer
    /// type the model declares for it. Any other input is an error naming it.
    ///
    /// ```
    /// use hook_sdk::{ElementType, TensorSpec};
    /// use hook_sdk::text::Encoding;
    /// let window = Encoding { ids: vec![101, 7592, 102], type_ids: vec![0; 3],
    ///     attention_mask: vec![1; 3], special_tokens_mask: vec![1, 0, 1],
    ///     word_ids: vec![None, Some(0), None], offsets: vec![(0, 0), (0, 5), (0, 0)],
    ///     tokens: vec!["[CLS]".into(), "hello".into(), "[SEP]".into()] };
    /// let spec = |name: &str| TensorSpec { name: name.into(), element_type: ElementType::I64,
    ///     shape: vec![-1, -1] };
    /// let inputs = window.to_inputs(&[spec("input_ids"), spec("attention_mask")])?;
    /// assert_eq!(inputs[0].to_array::<i64>()?.data(), &[101, 7592, 102]);
    /// assert_eq!(inputs[1].dims(), vec![1, 3]);
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn to_inputs(&self, model_inputs: &[TensorSpec]) -> Result<Vec<Tensor>, HookError> {
        stacked_inputs(std::slice::from_ref(self), model_inputs)
    }

    /// This window's values for the model input `name`.
    fn token_values(&self, name: &str) -> Result<Vec<u32>, HookError> {
        Ok(match name {
            INPUT_IDS => self.ids.clone(),
            ATTENTION_MASK => self.attention_mask.iter().map(|&m| u32::from(m)).collect(),
            TOKEN_TYPE_IDS => self.type_ids.clone(),
            other => {
                return Err(HookError::bad_config(format_args!(
                    "the model input '{other}' is not one a tokenizer fills \
                     ({INPUT_IDS}, {ATTENTION_MASK}, {TOKEN_TYPE_IDS}); fill it in \
                     the pre-hook"
                )));
            }
        })
    }
}

/// `windows` stacked into `[windows, tokens]` inputs, one per declared
/// model input; every window must have the same length.
fn stacked_inputs(
    windows: &[Encoding],
    model_inputs: &[TensorSpec],
) -> Result<Vec<Tensor>, HookError> {
    let width = windows.first().map_or(0, Encoding::len);
    if let Some(odd) = windows.iter().find(|w| w.len() != width) {
        return Err(HookError::bad_config(format_args!(
            "tokenizer windows of {width} and {} tokens cannot be stacked into one input; \
             pad them to one length (EncodeOptions::padded)",
            odd.len()
        )));
    }
    model_inputs
        .iter()
        .map(|spec| {
            let mut values = Vec::with_capacity(windows.len() * width);
            for window in windows {
                values.extend(window.token_values(&spec.name)?);
            }
            integer_tensor(spec, &[windows.len(), width], &values)
        })
        .collect()
}

/// A text and the windows of tokens it was cut into: what a text pre-hook
/// passes on to its post-hook as the carry ([`TokenizedText::to_carry`]),
/// so token outputs map back to characters of this text. The built-in
/// pre-hook passes the same on when it tokenizes a task.
///
/// ```no_run
/// use hook_sdk::text::{EncodeOptions, TokenizedText, Tokenizer};
/// use hook_sdk::{Context, Datapoints, HookError, PreOutput};
///
/// fn pre_hook(data: &Datapoints, ctx: &Context) -> Result<PreOutput, HookError> {
///     let text = data.text(ctx)?.text()?;
///     // Windows of 256 tokens overlapping by 64, padded to one length.
///     let options = EncodeOptions::windows(256, 64).padded();
///     let tokenized = TokenizedText::new(&Tokenizer::open()?, text, &options)?;
///     Ok(PreOutput::new(tokenized.to_inputs(ctx.model_inputs())?)
///         .with_carry(tokenized.to_carry()))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct TokenizedText {
    /// The text as tokenized; offsets count its characters.
    pub text: String,
    /// Its windows, in text order.
    pub windows: Vec<Encoding>,
}

impl TokenizedText {
    /// Tokenizes `text` with `tokenizer`.
    pub fn new(
        tokenizer: &Tokenizer,
        text: &str,
        options: &EncodeOptions,
    ) -> Result<Self, HookError> {
        Ok(Self {
            text: text.to_owned(),
            windows: tokenizer.encode(text, options)?,
        })
    }

    /// Every window as the model's inputs, stacked `[windows, tokens]` (see
    /// [`Encoding::to_inputs`]); the windows must be padded to one length.
    pub fn to_inputs(&self, model_inputs: &[TensorSpec]) -> Result<Vec<Tensor>, HookError> {
        stacked_inputs(&self.windows, model_inputs)
    }

    /// The carry for the post-hook: `{"text": …, "windows": [...]}`.
    pub fn to_carry(&self) -> String {
        let windows: Vec<serde_json::Value> = self.windows.iter().map(window_to_json).collect();
        serde_json::json!({"text": self.text, "windows": windows}).to_string()
    }

    /// What the pre-hook passed on to this post-hook (see
    /// [`TokenizedText::from_carry`]).
    pub fn from_context(ctx: &crate::Context) -> Result<Self, HookError> {
        Self::from_carry(
            ctx.carry()
                .ok_or_else(|| bad_carry("the pre-hook passed no carry"))?,
        )
    }

    /// What [`TokenizedText::to_carry`] (or the built-in pre-hook) passed on.
    ///
    /// ```
    /// let carry = r#"{"text": "hello", "windows": [{"ids": [101, 7592, 102],
    ///     "type_ids": [0, 0, 0], "attention_mask": [1, 1, 1], "special_tokens_mask": [1, 0, 1],
    ///     "word_ids": [null, 0, null], "offsets": [[0, 0], [0, 5], [0, 0]],
    ///     "tokens": ["[CLS]", "hello", "[SEP]"]}]}"#;
    /// let tokenized = hook_sdk::text::TokenizedText::from_carry(carry)?;
    /// assert_eq!((tokenized.text.as_str(), tokenized.windows[0].span(1)), ("hello", Some((0, 5))));
    /// # Ok::<(), hook_sdk::HookError>(())
    /// ```
    pub fn from_carry(carry: &str) -> Result<Self, HookError> {
        let value = parse_carry(carry)?;
        let text = value["text"]
            .as_str()
            .ok_or_else(|| bad_carry("no \"text\""))?;
        Ok(Self {
            text: text.to_owned(),
            windows: windows_in(&value)?,
        })
    }
}

/// The windows a pre-hook passed on as its carry, `{"windows": [...]}`
/// with each window's fields named as in [`Encoding`]: what the built-in
/// pre-hook sends when it tokenizes a task's text, so a post-hook can map
/// token outputs back to characters.
///
/// ```
/// let carry = r#"{"windows": [{"ids": [101, 7592, 102], "type_ids": [0, 0, 0],
///     "attention_mask": [1, 1, 1], "special_tokens_mask": [1, 0, 1],
///     "word_ids": [null, 0, null], "offsets": [[0, 0], [0, 5], [0, 0]],
///     "tokens": ["[CLS]", "hello", "[SEP]"]}]}"#;
/// let windows = hook_sdk::text::windows_from_carry(carry)?;
/// assert_eq!(windows[0].span(1), Some((0, 5)));
/// # Ok::<(), hook_sdk::HookError>(())
/// ```
pub fn windows_from_carry(carry: &str) -> Result<Vec<Encoding>, HookError> {
    windows_in(&parse_carry(carry)?)
}

fn bad_carry(why: &str) -> HookError {
    HookError::bad_config(format_args!(
        "the carry holds no tokenizer windows ({why}); the pre-hook must pass them on as \
         {{\"text\": ..., \"windows\": [...]}} (TokenizedText::to_carry), as the built-in \
         pre-hook does"
    ))
}

fn parse_carry(carry: &str) -> Result<serde_json::Value, HookError> {
    serde_json::from_str(carry).map_err(|_| bad_carry("not JSON"))
}

fn windows_in(carry: &serde_json::Value) -> Result<Vec<Encoding>, HookError> {
    carry["windows"]
        .as_array()
        .ok_or_else(|| bad_carry("no \"windows\" list"))?
        .iter()
        .map(|w| window_from_json(w).ok_or_else(|| bad_carry("a window lacks a field")))
        .collect()
}

fn window_to_json(w: &Encoding) -> serde_json::Value {
    serde_json::json!({
        "ids": w.ids,
        "type_ids": w.type_ids,
        "attention_mask": w.attention_mask,
        "special_tokens_mask": w.special_tokens_mask,
        "word_ids": w.word_ids,
        "offsets": w.offsets,
        "tokens": w.tokens,
    })
}

fn window_from_json(w: &serde_json::Value) -> Option<Encoding> {
    fn list<T>(
        v: &serde_json::Value,
        f: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        v.as_array()?.iter().map(f).collect()
    }
    let number = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let byte = |v: &serde_json::Value| v.as_u64().and_then(|n| u8::try_from(n).ok());
    Some(Encoding {
        ids: list(&w["ids"], number)?,
        type_ids: list(&w["type_ids"], number)?,
        attention_mask: list(&w["attention_mask"], byte)?,
        special_tokens_mask: list(&w["special_tokens_mask"], byte)?,
        word_ids: list(&w["word_ids"], |v| {
            if v.is_null() {
                Some(None)
            } else {
                number(v).map(Some)
            }
        })?,
        offsets: list(&w["offsets"], |v| Some((number(&v[0])?, number(&v[1])?)))?,
        tokens: list(&w["tokens"], |v| v.as_str().map(str::to_owned))?,
    })
}

/// A tensor of `values` in the integer type `spec` declares.
fn integer_tensor(spec: &TensorSpec, shape: &[usize], values: &[u32]) -> Result<Tensor, HookError> {
    match spec.element_type {
        ElementType::I64 => {
            let wide: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
            Tensor::new(spec.name.clone(), shape, &wide)
        }
        ElementType::I32 => {
            let narrow: Vec<i32> = values.iter().map(|&v| v as i32).collect();
            Tensor::new(spec.name.clone(), shape, &narrow)
        }
        other => Err(HookError::bad_config(format_args!(
            "the model input '{}' is {}; token inputs are int64 or int32",
            spec.name,
            crate::tensor::type_name(other)
        ))),
    }
}

/// The characters `start..end` of `text`, counted in Unicode code points as
/// tokenizer offsets and Label Studio spans are (clamped to the text).
///
/// ```
/// use hook_sdk::text::char_slice;
/// assert_eq!(char_slice("Café 🗽 NY", 5, 6), "🗽");
/// assert_eq!(char_slice("Café", 2, 99), "fé");
/// ```
pub fn char_slice(text: &str, start: u32, end: u32) -> &str {
    let byte_at = |chars: u32| {
        text.char_indices()
            .nth(chars as usize)
            .map_or(text.len(), |(i, _)| i)
    };
    let (from, to) = (byte_at(start), byte_at(end));
    &text[from..to.max(from)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Encoding {
        Encoding {
            ids: vec![101, 2026, 102, 0],
            type_ids: vec![0; 4],
            attention_mask: vec![1, 1, 1, 0],
            special_tokens_mask: vec![1, 0, 1, 1],
            word_ids: vec![None, Some(0), None, None],
            offsets: vec![(0, 0), (0, 4), (0, 0), (0, 0)],
            tokens: vec![
                "[CLS]".into(),
                "cafe".into(),
                "[SEP]".into(),
                "[PAD]".into(),
            ],
        }
    }

    fn spec(name: &str, element_type: ElementType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element_type,
            shape: vec![-1, -1],
        }
    }

    #[test]
    fn spans_skip_special_and_padding_tokens() {
        let w = window();
        assert_eq!(w.span(0), None);
        assert_eq!(w.span(1), Some((0, 4)));
        assert_eq!(w.span(3), None);
        assert_eq!(w.span(9), None);
    }

    #[test]
    fn inputs_follow_the_declared_names_and_integer_types() {
        let inputs = window()
            .to_inputs(&[
                spec(INPUT_IDS, ElementType::I32),
                spec(ATTENTION_MASK, ElementType::I64),
                spec(TOKEN_TYPE_IDS, ElementType::I64),
            ])
            .unwrap();
        assert_eq!(
            inputs[0].to_array::<i32>().unwrap().data(),
            &[101, 2026, 102, 0]
        );
        assert_eq!(inputs[1].to_array::<i64>().unwrap().data(), &[1, 1, 1, 0]);
        assert_eq!(inputs[2].dims(), vec![1, 4]);
    }

    #[test]
    fn an_input_no_tokenizer_fills_is_named_in_the_error() {
        let e = window()
            .to_inputs(&[spec("pixel_values", ElementType::F32)])
            .unwrap_err();
        assert!(e.message().contains("'pixel_values'"), "{e}");
        let e = window()
            .to_inputs(&[spec(INPUT_IDS, ElementType::F32)])
            .unwrap_err();
        assert!(e.message().contains("int64 or int32"), "{e}");
    }

    #[test]
    fn char_slices_count_code_points_not_bytes() {
        let text = "naïve 東京 👩‍👩‍👧!";
        assert_eq!(char_slice(text, 0, 5), "naïve");
        assert_eq!(char_slice(text, 6, 8), "東京");
        // A ZWJ family is five code points.
        assert_eq!(char_slice(text, 9, 14), "👩‍👩‍👧");
        assert_eq!(char_slice(text, 14, 15), "!");
        assert_eq!(char_slice(text, 20, 30), "");
    }

    #[test]
    fn a_carry_without_windows_is_a_config_error_saying_what_to_pass() {
        for carry in ["not json", "{}", r#"{"windows": [{"ids": [1]}]}"#] {
            let e = windows_from_carry(carry).unwrap_err();
            assert!(matches!(e, HookError::BadConfig(_)), "{e}");
            assert!(e.message().contains("\"windows\""), "{e}");
        }
    }

    #[test]
    fn tokenizer_errors_say_whose_fault_they_are() {
        let missing: HookError = TokenizerError::NotFound("no tokenizer.json".into()).into();
        assert!(matches!(missing, HookError::BadConfig(_)));
        let bad: HookError = TokenizerError::InvalidArgument("stride".into()).into();
        assert_eq!(bad.message(), "tokenizer: stride");
    }
}
