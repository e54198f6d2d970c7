//! Token classification (NER) to Label Studio spans: per-token logits of
//! one or more tokenizer windows become [`Entity`]s with character offsets
//! in the original text, then `labels` regions.
//!
//! Words are labelled by their first sub-token (the `first` aggregation of
//! Hugging Face pipelines). A word seen in several overlapping windows
//! takes its label from the window where it has the most context (the
//! most tokens on its nearer side; ties go to the more confident), never
//! from a window whose border cuts the sentence next to it, so an entity
//! cut by a window border comes out whole. Tags follow BIO/IOB2 (`B-PER`, `I-PER`, `O`),
//! BILOU/BIOES (`U-`/`S-` single, `L-`/`E-` last) or plain IO (`PER`).
//!
//! ```
//! use hook_sdk::entities::{entities, Entity, WindowScores};
//! use hook_sdk::text::Encoding;
//! // "Ada Lovelace wrote" as one window: [CLS] ada love ##lace wrote [SEP]
//! let window = Encoding { ids: vec![101, 1, 2, 3, 4, 102], type_ids: vec![0; 6],
//!     attention_mask: vec![1; 6], special_tokens_mask: vec![1, 0, 0, 0, 0, 1],
//!     word_ids: vec![None, Some(0), Some(1), Some(1), Some(2), None],
//!     offsets: vec![(0, 0), (0, 3), (4, 8), (8, 12), (13, 18), (0, 0)], tokens: vec![] };
//! let labels = ["O", "B-PER", "I-PER"].map(String::from);
//! // Logits per token, one row of three labels each.
//! let logits = [0.0, 0.0, 0.0,  0.0, 5.0, 0.0,  0.0, 0.0, 5.0,  5.0, 0.0, 0.0,  5.0, 0.0, 0.0,  0.0, 0.0, 0.0];
//! let found = entities(&[WindowScores { window: &window, logits: &logits }], &labels)?;
//! assert_eq!(found.len(), 1);
//! assert_eq!((found[0].label.as_str(), found[0].start, found[0].end), ("PER", 0, 12));
//! # Ok::<(), hook_sdk::HookError>(())
//! ```

use std::collections::BTreeMap;

use crate::error::HookError;
use crate::results::{Region, Target};
use crate::tensor::Array;
use crate::text::{Encoding, char_slice};

/// One window's tokens and the model's logits for them, row-major
/// `[tokens, labels]` (the window's slice of a `[windows, tokens, labels]`
/// output).
#[derive(Debug, Clone, Copy)]
pub struct WindowScores<'a> {
    /// The tokenizer's window the logits are for.
    pub window: &'a Encoding,
    /// `tokens × labels` logits.
    pub logits: &'a [f32],
}

/// A span of the text with one label.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The entity type, without its `B-`/`I-` prefix.
    pub label: String,
    /// First character, in Unicode code points of the original text.
    pub start: u32,
    /// One past the last character.
    pub end: u32,
    /// Mean probability of its words' labels.
    pub score: f32,
}

impl Entity {
    /// A Label Studio `labels` region for this entity on `text`, with the
    /// label resolved against the control (value, alias, case); `None`
    /// when the labeling config does not know the label.
    pub fn to_region(&self, binding: &labelconfig::Binding<'_>, text: &str) -> Option<Region> {
        let label = binding.resolve_label(&self.label)?;
        Some(
            Region::text_span(
                Target::from(binding),
                self.start as usize,
                self.end as usize,
                char_slice(text, self.start, self.end),
                [label],
            )
            .with_score(crate::ops::widen(self.score)),
        )
    }
}

/// `labels` regions for every entity the labeling config knows.
pub fn regions(found: &[Entity], binding: &labelconfig::Binding<'_>, text: &str) -> Vec<Region> {
    found
        .iter()
        .filter_map(|e| e.to_region(binding, text))
        .collect()
}

/// Pairs each window with its rows of a token-classification output,
/// `[windows, tokens, labels]` (or `[tokens, labels]` for one window): the
/// step between the model's logits and [`entities`].
///
/// ```
/// use hook_sdk::entities::window_scores;
/// use hook_sdk::tensor::Array;
/// use hook_sdk::text::Encoding;
/// let window = Encoding { ids: vec![101, 7592, 102], type_ids: vec![0; 3],
///     attention_mask: vec![1; 3], special_tokens_mask: vec![1, 0, 1],
///     word_ids: vec![None, Some(0), None], offsets: vec![(0, 0), (0, 5), (0, 0)], tokens: vec![] };
/// let logits = Array::new(vec![1, 3, 2], vec![0.0; 6])?;
/// let scores = window_scores(std::slice::from_ref(&window), &logits)?;
/// assert_eq!(scores[0].logits.len(), 6);
/// # Ok::<(), hook_sdk::HookError>(())
/// ```
pub fn window_scores<'a>(
    windows: &'a [Encoding],
    logits: &'a Array<f32>,
) -> Result<Vec<WindowScores<'a>>, HookError> {
    let n_labels = logits.shape().last().copied().unwrap_or(0);
    let tokens: usize = windows.iter().map(Encoding::len).sum();
    if n_labels == 0 || logits.len() != tokens * n_labels {
        return Err(HookError::bad_config(format_args!(
            "token logits of shape {:?} do not fit {} tokenizer windows of {tokens} tokens in \
             all; expected [windows, tokens, labels]",
            logits.shape(),
            windows.len()
        )));
    }
    let mut rest = logits.data();
    Ok(windows
        .iter()
        .map(|window| {
            let (mine, next) = rest.split_at(window.len() * n_labels);
            rest = next;
            WindowScores {
                window,
                logits: mine,
            }
        })
        .collect())
}

/// How a tag places its word in an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Outside,
    Begin,
    Inside,
    Last,
    Single,
}

/// `B-PER` → (Begin, "PER"); `O` → Outside; an unprefixed tag is Inside.
fn parse_tag(tag: &str) -> (Position, &str) {
    if tag == "O" || tag.is_empty() {
        return (Position::Outside, "");
    }
    let position = match tag.as_bytes() {
        [b'B', b'-' | b'_', ..] => Position::Begin,
        [b'I', b'-' | b'_', ..] => Position::Inside,
        [b'L' | b'E', b'-' | b'_', ..] => Position::Last,
        [b'U' | b'S', b'-' | b'_', ..] => Position::Single,
        _ => return (Position::Inside, tag),
    };
    (position, &tag[2..])
}

/// A word's best prediction over every window that saw its first sub-token.
#[derive(Debug, Clone, Copy)]
struct WordLabel {
    start: u32,
    end: u32,
    label: usize,
    score: f32,
    /// Text tokens between the word and its window's nearer border.
    context: usize,
}

impl WordLabel {
    /// Whether this prediction of a word beats `other`: more context first.
    fn beats(&self, other: &Self) -> bool {
        (self.context, self.score) > (other.context, other.score)
    }
}

/// Entities in `windows`, in text order. Fails when a window's logits do
/// not hold one row of `labels.len()` scores per token.
pub fn entities(windows: &[WindowScores<'_>], labels: &[String]) -> Result<Vec<Entity>, HookError> {
    let words = word_labels(windows, labels.len())?;
    Ok(group(&words, labels))
}

/// Every word's label by its first sub-token, best over windows; spans
/// cover all of a word's sub-tokens.
fn word_labels(
    windows: &[WindowScores<'_>],
    n_labels: usize,
) -> Result<BTreeMap<u32, WordLabel>, HookError> {
    let mut words: BTreeMap<u32, WordLabel> = BTreeMap::new();
    for scores in windows {
        let w = scores.window;
        if n_labels == 0 || scores.logits.len() != w.len() * n_labels {
            return Err(HookError::bad_config(format_args!(
                "token logits hold {} values for {} tokens and {n_labels} labels; expected \
                 [tokens, labels] per window",
                scores.logits.len(),
                w.len()
            )));
        }
        let text_tokens: Vec<usize> = (0..w.len()).filter(|&i| w.span(i).is_some()).collect();
        let (first, last) = (
            text_tokens.first().copied().unwrap_or(0),
            text_tokens.last().copied().unwrap_or(0),
        );
        let mut previous_word = None;
        for (index, row) in scores.logits.chunks_exact(n_labels).enumerate() {
            let Some((start, end)) = w.span(index) else {
                previous_word = None;
                continue;
            };
            let Some(word) = w.word_ids.get(index).copied().flatten() else {
                continue;
            };
            let first_sub_token = previous_word != Some(word);
            previous_word = Some(word);
            let entry = words.entry(word);
            if first_sub_token {
                let probabilities = crate::ops::softmax(row);
                let (label, score) = crate::ops::argmax(&probabilities).unwrap_or((0, 0.0));
                let seen = WordLabel {
                    start,
                    end,
                    label,
                    score,
                    context: (index - first).min(last - index),
                };
                entry
                    .and_modify(|best| {
                        if seen.beats(best) {
                            *best = WordLabel {
                                start: best.start.min(start),
                                end: best.end.max(end),
                                ..seen
                            };
                        }
                    })
                    .or_insert(seen);
            } else if let std::collections::btree_map::Entry::Occupied(mut known) = entry {
                let known = known.get_mut();
                known.end = known.end.max(end);
            }
        }
    }
    Ok(words)
}

/// Consecutive words into entities by their tags.
fn group(words: &BTreeMap<u32, WordLabel>, labels: &[String]) -> Vec<Entity> {
    let mut found: Vec<Entity> = Vec::new();
    // The entity still open, with its word count for the mean score.
    let mut open: Option<(Entity, u32)> = None;
    let mut close = |open: &mut Option<(Entity, u32)>| {
        if let Some((mut entity, n)) = open.take() {
            entity.score /= n as f32;
            found.push(entity);
        }
    };
    for word in words.values() {
        let tag = labels.get(word.label).map_or("O", String::as_str);
        let (position, kind) = parse_tag(tag);
        let continues = matches!(position, Position::Inside | Position::Last)
            && open.as_ref().is_some_and(|(e, _)| e.label == kind);
        if continues {
            if let Some((entity, n)) = open.as_mut() {
                entity.end = word.end;
                entity.score += word.score;
                *n += 1;
            }
        } else {
            close(&mut open);
            if position != Position::Outside {
                let entity = Entity {
                    label: kind.to_owned(),
                    start: word.start,
                    end: word.end,
                    score: word.score,
                };
                open = Some((entity, 1));
            }
        }
        if matches!(position, Position::Last | Position::Single) {
            close(&mut open);
        }
    }
    close(&mut open);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window over `words` (each a list of sub-token character spans),
    /// starting at word `first_word`, wrapped in [CLS] … [SEP].
    fn window(first_word: u32, words: &[&[(u32, u32)]]) -> Encoding {
        let mut e = Encoding {
            ids: vec![101],
            type_ids: vec![0],
            attention_mask: vec![1],
            special_tokens_mask: vec![1],
            word_ids: vec![None],
            offsets: vec![(0, 0)],
            tokens: vec!["[CLS]".into()],
        };
        for (i, pieces) in words.iter().enumerate() {
            for &span in pieces.iter() {
                e.ids.push(1000);
                e.type_ids.push(0);
                e.attention_mask.push(1);
                e.special_tokens_mask.push(0);
                e.word_ids.push(Some(first_word + i as u32));
                e.offsets.push(span);
                e.tokens.push("w".into());
            }
        }
        e.ids.push(102);
        e.type_ids.push(0);
        e.attention_mask.push(1);
        e.special_tokens_mask.push(1);
        e.word_ids.push(None);
        e.offsets.push((0, 0));
        e.tokens.push("[SEP]".into());
        e
    }

    /// Logits that pick `tags[i]` (an index into `labels`) for token i with
    /// confidence `strength`.
    fn logits(tags: &[usize], n_labels: usize, strength: f32) -> Vec<f32> {
        tags.iter()
            .flat_map(|&t| (0..n_labels).map(move |l| if l == t { strength } else { 0.0 }))
            .collect()
    }

    /// Entities of two windows with their logits.
    fn two_windows(
        a: (&Encoding, &[f32]),
        b: (&Encoding, &[f32]),
        labels: &[String],
    ) -> Vec<Entity> {
        let scores = [a, b].map(|(window, logits)| WindowScores { window, logits });
        entities(&scores, labels).unwrap()
    }

    fn names(labels: &[&str]) -> Vec<String> {
        labels.iter().map(|s| (*s).to_owned()).collect()
    }

    fn spans(found: &[Entity]) -> Vec<(&str, u32, u32)> {
        found
            .iter()
            .map(|e| (e.label.as_str(), e.start, e.end))
            .collect()
    }

    #[test]
    fn bio_tags_make_entities_and_sub_words_follow_their_first_token() {
        // "Ada Lovelace met Charles Babbage in London"
        let w = window(
            0,
            &[
                &[(0, 3)],
                &[(4, 8), (8, 12)],
                &[(13, 16)],
                &[(17, 24)],
                &[(25, 28), (28, 32)],
                &[(33, 35)],
                &[(36, 42)],
            ],
        );
        let labels = names(&["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]);
        // Per token: CLS, ada B-PER, love I-PER, ##lace O (ignored: not first),
        // met O, charles B-PER, bab I-PER, ##bage B-LOC (ignored), in O, london B-LOC, SEP.
        let tags = [0, 1, 2, 0, 0, 1, 2, 3, 0, 3, 0];
        let found = entities(
            &[WindowScores {
                window: &w,
                logits: &logits(&tags, 5, 6.0),
            }],
            &labels,
        )
        .unwrap();
        assert_eq!(
            spans(&found),
            [("PER", 0, 12), ("PER", 17, 32), ("LOC", 36, 42)]
        );
        assert!(found.iter().all(|e| e.score > 0.9 && e.score <= 1.0));
    }

    #[test]
    fn bilou_and_io_tags_group_as_their_schemes_say() {
        let w = window(0, &[&[(0, 2)], &[(3, 5)], &[(6, 8)], &[(9, 11)]]);
        let bilou = names(&["O", "B-X", "I-X", "L-X", "U-X"]);
        // B L U U: two words, then two single-word entities.
        let found = entities(
            &[WindowScores {
                window: &w,
                logits: &logits(&[0, 1, 3, 4, 4, 0], 5, 6.0),
            }],
            &bilou,
        )
        .unwrap();
        assert_eq!(spans(&found), [("X", 0, 5), ("X", 6, 8), ("X", 9, 11)]);
        // IO: adjacent words of one type are one entity; a type change splits.
        let io = names(&["O", "PER", "ORG"]);
        let found = entities(
            &[WindowScores {
                window: &w,
                logits: &logits(&[0, 1, 1, 2, 0, 0], 3, 6.0),
            }],
            &io,
        )
        .unwrap();
        assert_eq!(spans(&found), [("PER", 0, 5), ("ORG", 6, 8)]);
    }

    #[test]
    fn an_inside_tag_of_another_type_starts_a_new_entity() {
        let w = window(0, &[&[(0, 2)], &[(3, 5)]]);
        let labels = names(&["O", "B-PER", "I-PER", "I-LOC"]);
        let found = entities(
            &[WindowScores {
                window: &w,
                logits: &logits(&[0, 1, 3, 0], 4, 6.0),
            }],
            &labels,
        )
        .unwrap();
        assert_eq!(spans(&found), [("PER", 0, 2), ("LOC", 3, 5)]);
    }

    #[test]
    fn an_entity_across_a_window_border_comes_out_whole_and_once() {
        // Words 0..6; window A sees words 0..4, window B words 2..6. The
        // entity is words 3..5: A sees its start (less sure), B all of it.
        let a = window(0, &[&[(0, 1)], &[(2, 3)], &[(4, 5)], &[(6, 7)]]);
        let b = window(2, &[&[(4, 5)], &[(6, 7)], &[(8, 9)], &[(10, 11)]]);
        let labels = names(&["O", "B-ORG", "I-ORG"]);
        let a_logits = logits(&[0, 0, 0, 0, 1, 0], 3, 2.0);
        let b_logits = logits(&[0, 0, 1, 2, 0, 0], 3, 6.0);
        let found = two_windows((&a, &a_logits), (&b, &b_logits), &labels);
        assert_eq!(spans(&found), [("ORG", 6, 9)]);
    }

    #[test]
    fn a_word_takes_its_label_from_the_window_with_more_context_not_the_surer_one() {
        // "Tomasz Wiśniewski": window A sees words 0..5 (surname in its
        // middle), window B starts at the surname and, with no context,
        // is sure it begins a new name.
        let a = window(
            0,
            &[&[(0, 6)], &[(7, 17)], &[(18, 23)], &[(24, 26)], &[(27, 29)]],
        );
        let b = window(1, &[&[(7, 17)], &[(18, 23)], &[(24, 26)]]);
        let labels = names(&["O", "B-PER", "I-PER"]);
        let a_logits = logits(&[0, 1, 2, 0, 0, 0, 0], 3, 3.0);
        let b_logits = logits(&[0, 1, 0, 0, 0], 3, 9.0);
        let found = two_windows((&a, &a_logits), (&b, &b_logits), &labels);
        assert_eq!(spans(&found), [("PER", 0, 17)]);
    }

    #[test]
    fn no_entities_is_an_empty_list_and_bad_shapes_are_errors() {
        let w = window(0, &[&[(0, 2)]]);
        let labels = names(&["O", "B-X"]);
        let none = entities(
            &[WindowScores {
                window: &w,
                logits: &logits(&[0, 0, 0], 2, 6.0),
            }],
            &labels,
        )
        .unwrap();
        assert!(none.is_empty());
        let err = entities(
            &[WindowScores {
                window: &w,
                logits: &[0.0; 5],
            }],
            &labels,
        )
        .unwrap_err();
        assert!(
            err.message().contains("5 values for 3 tokens and 2 labels"),
            "{err}"
        );
    }

    #[test]
    fn regions_carry_the_original_text_and_the_configs_label() {
        let config = labelconfig::LabelConfig::parse(
            r#"<View><Text name="text" value="$text"/>
               <Labels name="ner" toName="text"><Label value="Person"/></Labels></View>"#,
        )
        .unwrap();
        let binding = config.labels_for_text().unwrap();
        let text = "Zoë 🎉 met Łukasz";
        let person = Entity {
            label: "person".into(),
            start: 10,
            end: 16,
            score: 0.9,
        };
        let region = person.to_region(&binding, text).unwrap();
        assert_eq!(region.value()["text"], "Łukasz");
        assert_eq!(region.value()["labels"][0], "Person");
        let unknown = Entity {
            label: "MISC".into(),
            ..person
        };
        assert!(unknown.to_region(&binding, text).is_none());
    }
}
