//! Small numeric helpers for model outputs: softmax, sigmoid, argmax, top-k.
//! NaNs never win a comparison, so a broken model yields "no class" rather
//! than a random one.

/// Numerically stable softmax (the maximum is subtracted first).
///
/// ```
/// let p = hook_sdk::ops::softmax(&[1.0, 1.0, 1000.0]);
/// assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
/// assert!(p[2] > 0.999);
/// ```
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // All -inf or empty: no information, spread evenly.
        let n = logits.len().max(1) as f32;
        return vec![1.0 / n; logits.len()];
    }
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Returns `values` unchanged when they already are a probability
/// distribution (each in 0–1, summing to 1 within 1e-3), else their softmax.
/// Many exported classifiers end in a Softmax node; applying a second one
/// would flatten the scores.
///
/// ```
/// use hook_sdk::ops::as_probabilities;
/// assert_eq!(as_probabilities(&[0.1, 0.9]), vec![0.1, 0.9]);
/// assert!((as_probabilities(&[2.0, 0.0])[0] - 0.8808).abs() < 1e-4);
/// ```
pub fn as_probabilities(values: &[f32]) -> Vec<f32> {
    let in_range = values.iter().all(|v| (0.0..=1.0).contains(v));
    let sum: f32 = values.iter().sum();
    if in_range && (sum - 1.0).abs() <= 1e-3 {
        values.to_vec()
    } else {
        softmax(values)
    }
}

/// Widens a model's `f32` to the `f64` of its shortest decimal form, so a
/// score of `0.8f32` is written to JSON as `0.8`, not `0.800000011920929`.
///
/// ```
/// assert_eq!(hook_sdk::ops::widen(0.8), 0.8f64);
/// assert_ne!(f64::from(0.8f32), 0.8f64);
/// ```
pub fn widen(x: f32) -> f64 {
    // f32's Display is the shortest string that reads back as the same f32.
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Index and value of the largest element; `None` when empty or all NaN.
/// The first of equal maxima wins, as in numpy.
///
/// ```
/// assert_eq!(hook_sdk::ops::argmax(&[0.1, 0.7, 0.2, 0.7]), Some((1, 0.7)));
/// ```
pub fn argmax(values: &[f32]) -> Option<(usize, f32)> {
    values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .fold(None, |best, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
}

/// The `k` largest elements as `(index, value)`, largest first; ties keep
/// index order. NaNs are skipped.
///
/// ```
/// assert_eq!(hook_sdk::ops::top_k(&[0.1, 0.7, 0.2], 2), vec![(1, 0.7), (2, 0.2)]);
/// ```
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut indexed: Vec<(usize, f32)> = values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .collect();
    // Stable sort: equal scores keep their original order.
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1));
    indexed.truncate(k);
    indexed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_a_hand_computed_example() {
        let p = softmax(&[0.0, (2.0f32).ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn softmax_of_empty_and_infinite_inputs_does_not_produce_nan() {
        assert!(softmax(&[]).is_empty());
        assert_eq!(
            softmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]),
            vec![0.5, 0.5]
        );
    }

    #[test]
    fn argmax_skips_nan_and_handles_empty() {
        assert_eq!(argmax(&[f32::NAN, 0.2, 0.1]), Some((1, 0.2)));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[f32::NAN]), None);
    }

    #[test]
    fn top_k_larger_than_input_returns_everything_sorted() {
        assert_eq!(
            top_k(&[0.3, 0.9, 0.5], 10),
            vec![(1, 0.9), (2, 0.5), (0, 0.3)]
        );
    }

    #[test]
    fn sigmoid_is_half_at_zero() {
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
