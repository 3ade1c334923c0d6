//! What a version's labels must agree with before it serves: the bundle's
//! own canaries (`canary.json`: texts and the labels ONNX Runtime gave them
//! when the bundle was built; a real export gets its own, see
//! models/README.md), and, for a new build on the model that serves now,
//! the serving version's labels of the texts every self-test classifies,
//! but for a few.

use std::sync::Arc;

use serde::Deserialize;

use super::{SwapError, CANARY_TEXTS};
use crate::engine::{InstanceSlot, Label, Plugin};

/// The canaries' file in a model bundle.
pub const FILE: &str = "canary.json";

/// More of the self-test's texts than this share labelled otherwise than by
/// the serving version refuses a new one (a new model may move a few).
const MAX_SHARE_AGAINST_CURRENT: f64 = 1.0 / 3.0;

#[derive(Deserialize)]
struct Canaries {
    texts: Vec<Canary>,
}

#[derive(Deserialize)]
struct Canary {
    text: String,
    label: String,
}

/// The bundle's canaries `slot` labels otherwise, as `"text": expected X,
/// got Y`; none without a `canary.json`. An unreadable file is an error.
pub(super) fn disagreements(plugin: &Arc<Plugin>, slot: &mut InstanceSlot) -> Result<Vec<String>, SwapError> {
    let path = plugin.model_dir().join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SwapError::SelfTest(format!("{}: {e}", path.display()))),
    };
    let canaries: Canaries =
        serde_json::from_slice(&bytes).map_err(|e| SwapError::SelfTest(format!("{}: not canaries: {e}", path.display())))?;
    if canaries.texts.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<String> = canaries.texts.iter().map(|c| c.text.clone()).collect();
    let results = slot.get()?.classify(&texts)?;
    Ok(canaries
        .texts
        .iter()
        .zip(results)
        .filter(|(c, r)| c.label != r.label.as_str())
        .map(|(c, r)| format!("{:?}: expected {}, got {}", c.text, c.label, r.label.as_str()))
        .collect())
}

/// The self-test's texts `new` labels otherwise than `current` does, when
/// they are more than the tolerated share (the empty text aside: no label
/// is right for it).
pub(super) fn against_current(new: &[Label], current: &[Label]) -> Vec<String> {
    let differ: Vec<String> = CANARY_TEXTS
        .iter()
        .zip(new.iter().zip(current))
        .filter(|(text, (n, c))| !text.is_empty() && n != c)
        .map(|(text, (n, c))| format!("{text:?}: the serving version says {}, the new one {}", c.as_str(), n.as_str()))
        .collect();
    let compared = CANARY_TEXTS.iter().filter(|t| !t.is_empty()).count();
    if differ.len() as f64 > compared as f64 * MAX_SHARE_AGAINST_CURRENT {
        differ
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_labels_may_move_more_refuse() {
        let current = [Label::Positive, Label::Negative, Label::Neutral, Label::Neutral];
        assert!(against_current(&current, &current).is_empty());
        let one = [Label::Positive, Label::Negative, Label::Positive, Label::Positive];
        assert!(against_current(&one, &current).is_empty(), "one of three non-empty texts moved (the empty one does not count)");
        let two = [Label::Neutral, Label::Negative, Label::Positive, Label::Neutral];
        let refused = against_current(&two, &current);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("I love this"), "{refused:?}");
    }
}
