//! Tokenizing reviews (GPT-2's tokenizer: compiled in, no files needed).

use lora_data::imdb::Review;
use lora_models::tokenizer::Tokenizer;
use lora_recipes::encode::{encode_cls, encode_lm, single_token};
use lora_recipes::score::verbalizer_ids;
use lora_recipes::Truncation;

fn review(text: &str) -> Review {
    Review {
        text: text.into(),
        label: 0,
    }
}

#[test]
fn cls_keeps_head_or_tail_then_the_suffix_in_review_order() {
    let tok = Tokenizer::gpt2().unwrap();
    let texts: Vec<String> = (0..37)
        .map(|i| format!("review number {i} says one two three four five six"))
        .collect();
    let reviews: Vec<Review> = texts.iter().map(|t| review(t)).collect();
    let suffix = tok.encode("\nSentiment:").unwrap();
    let max_length = suffix.len() + 4;
    let head = encode_cls(&tok, &reviews, &suffix, max_length, Truncation::Head).unwrap();
    let tail = encode_cls(&tok, &reviews, &suffix, max_length, Truncation::Tail).unwrap();
    assert_eq!(head.len(), reviews.len());
    for (i, t) in texts.iter().enumerate() {
        let full = tok.encode(t).unwrap();
        assert!(full.len() > 4);
        let mut want = full[..4].to_vec();
        want.extend_from_slice(&suffix);
        assert_eq!(head[i], want, "review {i}");
        let mut want = full[full.len() - 4..].to_vec();
        want.extend_from_slice(&suffix);
        assert_eq!(tail[i], want, "review {i}");
    }
}

#[test]
fn cls_keeps_one_review_token_when_the_suffix_fills_the_room() {
    let tok = Tokenizer::gpt2().unwrap();
    let suffix = vec![1, 2, 3];
    let out = encode_cls(
        &tok,
        &[review("hello world again")],
        &suffix,
        3,
        Truncation::Head,
    )
    .unwrap();
    let first = tok.encode("hello world again").unwrap()[0];
    assert_eq!(out[0], vec![first, 1, 2, 3]);
}

#[test]
fn lm_truncates_to_max_length() {
    let tok = Tokenizer::gpt2().unwrap();
    let text = "one two three four five six seven";
    let out = encode_lm(&tok, &[review(text), review("hi")], 3).unwrap();
    assert_eq!(out[0], tok.encode(text).unwrap()[..3].to_vec());
    assert_eq!(out[1], tok.encode("hi").unwrap());
}

#[test]
fn verbalizer_words_are_single_gpt2_tokens() {
    let tok = Tokenizer::gpt2().unwrap();
    let (neg, pos) = verbalizer_ids(&tok).unwrap();
    assert_eq!(vec![neg], tok.encode(" negative").unwrap());
    assert_eq!(vec![pos], tok.encode(" positive").unwrap());
    let e = single_token(&tok, " unquestionably negative")
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 1; use --score-init random"), "{e}");
}

/// With a tokenizer that adds a BOS (the Llama fixture's, written by transformers), a
/// verbalizer word is still its one vocabulary id: ids from transformers,
/// `tokenizer("g")` = [1, 20] and `tokenizer("g", add_special_tokens=False)` = [20].
#[test]
fn single_token_adds_no_bos() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama_hub");
    let tok = Tokenizer::from_model_path(&dir).unwrap();
    assert_eq!(tok.encode("g").unwrap(), [1, 20]);
    assert_eq!(single_token(&tok, "g").unwrap(), 20);
    let err = single_token(&tok, "good").unwrap_err().to_string();
    assert!(err.contains("is 3 tokens"), "{err}");
}
