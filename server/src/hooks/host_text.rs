//! The host side of the WIT `tokenizer` resource: the backend's tokenizer
//! ([`crate::model::Tokenizer`]) handed to a hook, with tokenizing governed
//! like the image helpers: refused up front when its estimated memory
//! exceeds what the hook may use or it cannot finish before the deadline,
//! run on [`crate::compute::pool`], trapping at the deadline.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;

use super::bindings::host::{self, EncodeOptions, Encoding, TokenizerError};
use super::host::{HostState, on_pool};
use crate::model::{self, Tokenizer};

/// The backend's tokenizer, handed to the guest as a resource.
pub struct TokenizerHandle(Arc<Tokenizer>);

/// What a tokenizer call returns: a trap (the deadline) or the hook's
/// `result<_, tokenizer-error>`.
type TextResult<T> = wasmtime::Result<Result<T, TokenizerError>>;

/// Host bytes one byte of text may cost while tokenized: a token per byte
/// at worst (byte-level BPE), each with its id, type id, masks, word id,
/// offsets and token string, in the library's encoding and in ours.
const BYTES_PER_TEXT_BYTE: u64 = 192;

/// Tokenizing speed assumed when refusing work that cannot finish in time:
/// well above what the `tokenizers` crate reaches, so only hopeless work is
/// refused up front (the deadline stops the rest).
const TEXT_BYTES_PER_SECOND: u64 = 200 << 20;

impl HostState {
    pub(super) fn open_model_tokenizer(
        &mut self,
    ) -> Result<Resource<TokenizerHandle>, TokenizerError> {
        let tokenizer = self.tokenizer.get().map_err(to_wit_error)?;
        self.table
            .push(TokenizerHandle(tokenizer))
            .map_err(|e| TokenizerError::InvalidArgument(e.to_string()))
    }

    fn tokenizer(
        &self,
        handle: &Resource<TokenizerHandle>,
    ) -> Result<Arc<Tokenizer>, TokenizerError> {
        self.table
            .get(handle)
            .map(|h| h.0.clone())
            .map_err(|e| TokenizerError::InvalidArgument(e.to_string()))
    }

    /// Admits tokenizing `text_bytes` bytes into windows as `options` ask,
    /// then runs `job` on the compute pool until the deadline.
    async fn tokenize<T, F>(
        &mut self,
        this: &Resource<TokenizerHandle>,
        text_bytes: usize,
        options: EncodeOptions,
        job: F,
    ) -> TextResult<T>
    where
        F: FnOnce(&Tokenizer, model::EncodeOptions) -> Result<T, model::TokenizerError>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let tokenizer = match self.tokenizer(this) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let options = from_wit_options(options);
        let needed = estimated_bytes(text_bytes, options);
        let estimate = Duration::from_secs_f64(text_bytes as f64 / TEXT_BYTES_PER_SECOND as f64);
        let work = format!("tokenizing {}", crate::size::human(text_bytes as u64));
        if let Err(refused) = self.admit(&work, needed, estimate, TokenizerError::Failed)? {
            return Ok(Err(refused));
        }
        let result = on_pool(self.deadline, move || job(&tokenizer, options)).await?;
        Ok(result.map_err(to_wit_error))
    }
}

impl host::HostTokenizer for HostState {
    async fn encode(
        &mut self,
        this: Resource<TokenizerHandle>,
        text: String,
        options: EncodeOptions,
    ) -> TextResult<Vec<Encoding>> {
        self.tokenize(&this, text.len(), options, move |t, o| {
            t.encode(&text, None, o).map(to_wit_encodings)
        })
        .await
    }

    async fn encode_pair(
        &mut self,
        this: Resource<TokenizerHandle>,
        text: String,
        pair: String,
        options: EncodeOptions,
    ) -> TextResult<Vec<Encoding>> {
        self.tokenize(&this, text.len() + pair.len(), options, move |t, o| {
            t.encode(&text, Some(&pair), o).map(to_wit_encodings)
        })
        .await
    }

    async fn encode_batch(
        &mut self,
        this: Resource<TokenizerHandle>,
        texts: Vec<String>,
        options: EncodeOptions,
    ) -> TextResult<Vec<Vec<Encoding>>> {
        let bytes = texts.iter().map(String::len).sum();
        self.tokenize(&this, bytes, options, move |t, o| {
            texts
                .iter()
                .map(|text| t.encode(text, None, o).map(to_wit_encodings))
                .collect()
        })
        .await
    }

    fn decode(
        &mut self,
        this: Resource<TokenizerHandle>,
        ids: Vec<u32>,
        skip_special_tokens: bool,
    ) -> Result<String, TokenizerError> {
        self.tokenizer(&this)?
            .decode(&ids, skip_special_tokens)
            .map_err(to_wit_error)
    }

    fn token_to_id(&mut self, this: Resource<TokenizerHandle>, token: String) -> Option<u32> {
        self.tokenizer(&this).ok()?.token_to_id(&token)
    }

    fn id_to_token(&mut self, this: Resource<TokenizerHandle>, id: u32) -> Option<String> {
        self.tokenizer(&this).ok()?.id_to_token(id)
    }

    fn vocab_size(&mut self, this: Resource<TokenizerHandle>) -> u32 {
        self.tokenizer(&this).map_or(0, |t| t.vocab_size())
    }

    fn drop(&mut self, this: Resource<TokenizerHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// Upper bound of the host memory tokenizing `text_bytes` takes: windows
/// repeat `stride` tokens of each window before them.
fn estimated_bytes(text_bytes: usize, options: model::EncodeOptions) -> u64 {
    let tokens = text_bytes as u64 + 8;
    let repeated = match (options.max_length, options.stride) {
        (Some(max), Some(stride)) => {
            let fresh = u64::from(max.saturating_sub(stride)).max(1);
            tokens.div_ceil(fresh) * u64::from(max)
        }
        (Some(max), None) => u64::from(max).min(tokens),
        _ => tokens,
    };
    tokens.max(repeated).saturating_mul(BYTES_PER_TEXT_BYTE)
}

fn from_wit_options(o: EncodeOptions) -> model::EncodeOptions {
    model::EncodeOptions {
        add_special_tokens: o.add_special_tokens,
        max_length: o.max_length,
        stride: o.stride,
        pad_to_max_length: o.pad_to_max_length,
    }
}

fn to_wit_encodings(encodings: Vec<model::Encoding>) -> Vec<Encoding> {
    encodings
        .into_iter()
        .map(|e| Encoding {
            ids: e.ids,
            type_ids: e.type_ids,
            attention_mask: e.attention_mask,
            special_tokens_mask: e.special_tokens_mask,
            word_ids: e.word_ids,
            offsets: e.offsets,
            tokens: e.tokens,
        })
        .collect()
}

fn to_wit_error(e: model::TokenizerError) -> TokenizerError {
    match e {
        model::TokenizerError::NotFound(m) => TokenizerError::NotFound(m),
        model::TokenizerError::InvalidArgument(m) => TokenizerError::InvalidArgument(m),
        model::TokenizerError::Failed(m) => TokenizerError::Failed(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(max_length: Option<u32>, stride: Option<u32>) -> model::EncodeOptions {
        model::EncodeOptions {
            add_special_tokens: true,
            max_length,
            stride,
            pad_to_max_length: false,
        }
    }

    #[test]
    fn the_estimate_counts_a_token_per_byte_and_the_windows_overlap() {
        let one = estimated_bytes(1000, options(None, None));
        assert_eq!(one, 1008 * BYTES_PER_TEXT_BYTE);
        // Truncated to one window: at most the window.
        assert_eq!(
            estimated_bytes(1000, options(Some(128), None)),
            1008 * BYTES_PER_TEXT_BYTE
        );
        // Windows of 128 advancing by 64 hold every token about twice.
        let windows = estimated_bytes(1000, options(Some(128), Some(64)));
        assert_eq!(windows, 1008u64.div_ceil(64) * 128 * BYTES_PER_TEXT_BYTE);
        assert!(windows >= 2 * 1000 * BYTES_PER_TEXT_BYTE);
    }
}
