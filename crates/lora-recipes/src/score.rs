//! The `score` head of a sequence classifier: verbalizer or random initialisation.

use burn::tensor::backend::Backend;
use lora_models::classify::SequenceClassifier;
use lora_models::tokenizer::Tokenizer;
use lora_models::LanguageModel;

use crate::encode::single_token;
use crate::options::ScoreInit;
use crate::AnyError;

/// The verbalizer words of the two labels (0 = negative, 1 = positive), each one token after
/// the prompt suffix (leading space: the words follow "Sentiment:").
pub const VERBALIZER_WORDS: [&str; 2] = [" negative", " positive"];

/// The token ids of [`VERBALIZER_WORDS`], `(negative, positive)`.
///
/// # Errors
/// [`single_token`]'s: a word that is not exactly one token of `tok`.
pub fn verbalizer_ids(tok: &Tokenizer) -> Result<(u32, u32), AnyError> {
    let neg = single_token(tok, VERBALIZER_WORDS[0])?;
    let pos = single_token(tok, VERBALIZER_WORDS[1])?;
    Ok((neg, pos))
}

/// A two-label classifier whose `score` rows are the model's output embeddings of the token
/// ids `(negative, positive)`: the head starts as the model's own zero-shot answer to the
/// prompt (verbalizer initialisation; Schick & Schütze 2021, LM-BFF, Gao et al. 2021).
///
/// # Shapes
/// `score` weight `[hidden, 2]` (burn layout): column `j` = output embedding row of id `j`.
///
/// # Errors
/// [`lora_models::ModelError::Shape`] when the embedding rows do not match the hidden size.
pub fn verbalizer_classifier<B: Backend, M: LanguageModel<B>>(
    model: M,
    (neg, pos): (u32, u32),
) -> Result<SequenceClassifier<B, M>, AnyError> {
    let w = model.output_embedding_rows(&[neg, pos]); // [2, hidden]
    Ok(SequenceClassifier::with_score(model, w.transpose())?)
}

/// The two-label classifier of a run: `score` from [`verbalizer_classifier`] (token ids from
/// [`verbalizer_ids`]) or, for [`ScoreInit::Random`], transformers' N(0, 0.02) drawn from the
/// backend generator on `device`.
///
/// # Errors
/// [`verbalizer_ids`]' and [`verbalizer_classifier`]'s.
pub fn init_classifier<B: Backend, M: LanguageModel<B>>(
    model: M,
    tok: &Tokenizer,
    init: ScoreInit,
    device: &B::Device,
) -> Result<SequenceClassifier<B, M>, AnyError> {
    match init {
        ScoreInit::Random => Ok(SequenceClassifier::new_random(model, 2, 0.02, device)),
        ScoreInit::Verbalizer => verbalizer_classifier(model, verbalizer_ids(tok)?),
    }
}
