//! Greedy CTC decoding for text recognizers (CRNN, PaddleOCR's SVTR):
//! the best class at each time step, repeats merged, the blank dropped.
//!
//! PaddleOCR's convention for the alphabet is the blank at class 0, then the
//! dictionary's characters in order, then a space; [`paddle_alphabet`]
//! builds it from the dictionary text (one character per line, as the
//! `character` entry of the recognizer's ONNX metadata holds it).
//!
//! ```
//! use hook_sdk::ctc::{greedy_decode, paddle_alphabet};
//!
//! let alphabet = paddle_alphabet("a\nb");            // ["", "a", "b", " "]
//! // Four steps over four classes: a, a, blank, b.
//! let probs = [
//!     0.1, 0.8, 0.05, 0.05,
//!     0.1, 0.7, 0.1, 0.1,
//!     0.9, 0.05, 0.05, 0.0,
//!     0.0, 0.1, 0.6, 0.3,
//! ];
//! let line = greedy_decode(&probs, alphabet.len(), &alphabet, 0)?;
//! assert_eq!(line.text, "ab");
//! assert!((line.score - 0.7).abs() < 1e-6);                // mean of 0.8 and 0.6
//! # Ok::<(), hook_sdk::HookError>(())
//! ```

use crate::error::HookError;

/// A decoded line of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    /// The characters read.
    pub text: String,
    /// Mean probability of the kept characters (0 when none): the line
    /// score of PaddleOCR's `CTCLabelDecode`.
    pub score: f32,
}

/// PaddleOCR's alphabet from its dictionary text: `""` for the blank at
/// class 0, one entry per line of `dictionary` (a trailing newline adds
/// none), then `" "`.
pub fn paddle_alphabet(dictionary: &str) -> Vec<String> {
    let mut alphabet = vec![String::new()];
    alphabet.extend(
        dictionary
            .strip_suffix('\n')
            .unwrap_or(dictionary)
            .split('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line).to_string()),
    );
    alphabet.push(" ".to_string());
    alphabet
}

/// Decodes one line: `probs` holds `steps × classes` values, row-major.
/// At each step the most probable class wins (the first of equal maxima;
/// NaNs never win); a class repeated on consecutive steps counts once, and
/// `blank` separates real repeats and is dropped.
pub fn greedy_decode<S: AsRef<str>>(
    probs: &[f32],
    classes: usize,
    alphabet: &[S],
    blank: usize,
) -> Result<Transcription, HookError> {
    if classes == 0 || !probs.len().is_multiple_of(classes) {
        return Err(HookError::bad_config(format_args!(
            "CTC probabilities of {} values do not split into steps of {classes} classes",
            probs.len()
        )));
    }
    if alphabet.len() != classes {
        return Err(HookError::bad_config(format_args!(
            "the recognizer has {classes} classes but the alphabet {} entries \
             (PaddleOCR: the blank, the dictionary, then a space)",
            alphabet.len()
        )));
    }
    let mut text = String::new();
    let (mut sum, mut kept) = (0.0f64, 0usize);
    let mut previous = None;
    for step in probs.chunks_exact(classes) {
        let best = crate::ops::argmax(step);
        let class = best.map(|(c, _)| c);
        if let Some((c, p)) = best
            && c != blank
            && previous != Some(c)
        {
            text.push_str(alphabet[c].as_ref());
            sum += f64::from(p);
            kept += 1;
        }
        previous = class;
    }
    let score = if kept == 0 {
        0.0
    } else {
        (sum / kept as f64) as f32
    };
    Ok(Transcription { text, score })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(classes: usize, picks: &[usize]) -> Vec<f32> {
        let mut probs = vec![0.0; classes * picks.len()];
        for (t, &c) in picks.iter().enumerate() {
            probs[t * classes + c] = 1.0;
        }
        probs
    }

    #[test]
    fn a_blank_between_two_equal_classes_keeps_both() {
        let alphabet = paddle_alphabet("l\no");
        let probs = one_hot(4, &[1, 1, 0, 1, 2, 2, 3]);
        let line = greedy_decode(&probs, 4, &alphabet, 0).unwrap();
        assert_eq!(line.text, "llo ");
        assert_eq!(line.score, 1.0);
    }

    #[test]
    fn only_blanks_read_as_empty_with_score_zero() {
        let alphabet = paddle_alphabet("x");
        let line = greedy_decode(&one_hot(3, &[0, 0, 0]), 3, &alphabet, 0).unwrap();
        assert_eq!(
            line,
            Transcription {
                text: String::new(),
                score: 0.0
            }
        );
    }

    #[test]
    fn an_alphabet_that_does_not_fit_the_classes_is_named() {
        let err = greedy_decode(&[0.5; 8], 4, &paddle_alphabet("a"), 0).unwrap_err();
        assert!(
            err.message().contains("4 classes but the alphabet 3"),
            "{err:?}"
        );
        let err = greedy_decode(&[0.5; 7], 4, &paddle_alphabet("a\nb"), 0).unwrap_err();
        assert!(err.message().contains("7 values"), "{err:?}");
    }

    #[test]
    fn the_dictionary_may_end_with_a_newline_or_use_crlf() {
        assert_eq!(paddle_alphabet("a\r\nb\n"), ["", "a", "b", " "]);
    }
}
