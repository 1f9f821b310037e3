//! The tokenizer of a Hugging Face model directory with the model's special tokens and chat
//! template, as transformers' `AutoTokenizer.from_pretrained(dir)` reads them
//! (`tokenization_utils_base.py` `_from_pretrained`, `tokenization_utils_tokenizers.py`):
//!
//! - `tokenizer.json` (the `tokenizers` serialization): its post-processor decides what
//!   `add_special_tokens=True` adds; transformers 5 drops `tokenizer_config.json`'s
//!   `add_bos_token` / `add_eos_token` when this file exists;
//! - else `vocab.json` + `merges.txt` (GPT-2's byte-level BPE), with `add_bos_token` /
//!   `add_eos_token` from `tokenizer_config.json` (default false);
//! - `tokenizer_config.json` `bos_token`, `eos_token`, `unk_token`, `pad_token` (a string or an
//!   `AddedToken` object with `content`), overridden by `special_tokens_map.json`; each named
//!   token is matched whole as a special token; missing ones fall back to `config.json`'s
//!   `bos_token_id` / `eos_token_id` / `pad_token_id`;
//! - the chat template: `chat_template.jinja` (transformers ≥ 4.43 writes it), else
//!   `tokenizer_config.json` `chat_template` (a string, or a list of `{name, template}` whose
//!   `default` is taken).
use super::{Inner, Tokenizer};
use crate::panic_guard::no_panic;
use crate::ModelError;
use serde_json::Value;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// What `tokenizer_config.json` / `special_tokens_map.json` / `chat_template.jinja` say.
#[derive(Default)]
struct TokenizerFiles {
    bos: Option<String>,
    eos: Option<String>,
    unk: Option<String>,
    pad: Option<String>,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
}

/// A JSON object from `path`, or `None` when the file does not exist.
fn optional_json(path: &Path) -> Result<Option<Value>, ModelError> {
    if !path.exists() {
        return Ok(None);
    }
    crate::config_json::read_json(path).map(Some)
}

/// A special token's text: a string, an `AddedToken` object (`content`), or null.
fn token_text(v: &Value, path: &Path, key: &str) -> Result<Option<String>, ModelError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(o) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(bad(path, key, "an object without a string `content`", v)),
        },
        _ => Err(bad(path, key, "a string or an object with `content`", v)),
    }
}

fn bad(path: &Path, key: &str, expected: &str, got: &Value) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        key: key.into(),
        msg: format!("is {got}, expected {expected}"),
    }
}

impl TokenizerFiles {
    fn read(dir: &Path) -> Result<Self, ModelError> {
        let mut out = Self::default();
        let cfg_path = dir.join("tokenizer_config.json");
        let map_path = dir.join("special_tokens_map.json");
        for (path, v) in [
            (&cfg_path, optional_json(&cfg_path)?),
            (&map_path, optional_json(&map_path)?),
        ] {
            let Some(v) = v else { continue };
            for (key, slot) in [
                ("bos_token", &mut out.bos),
                ("eos_token", &mut out.eos),
                ("unk_token", &mut out.unk),
                ("pad_token", &mut out.pad),
            ] {
                if let Some(x) = v.get(key) {
                    *slot = token_text(x, path, key)?;
                }
            }
            if path == &cfg_path {
                for (key, slot) in [
                    ("add_bos_token", &mut out.add_bos),
                    ("add_eos_token", &mut out.add_eos),
                ] {
                    match v.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::Bool(b)) => *slot = *b,
                        Some(x) => return Err(bad(path, key, "true or false", x)),
                    }
                }
                out.chat_template = match v.get("chat_template") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Array(list)) => list
                        .iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                        .and_then(|t| t.get("template").and_then(Value::as_str))
                        .map(str::to_string),
                    Some(x) => {
                        return Err(bad(
                            path,
                            "chat_template",
                            "a string or a list of {name, template}",
                            x,
                        ))
                    }
                };
            }
        }
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            let text =
                lora_io::read_regular_to_string(&jinja).map_err(|source| ModelError::Io {
                    path: jinja.clone(),
                    source,
                })?;
            out.chat_template = Some(text);
        }
        Ok(out)
    }
}

/// `config.json`'s `key` as a token id (the first of a list), if the file and key exist.
fn config_id(dir: &Path, key: &str) -> Result<Option<u32>, ModelError> {
    let path = dir.join("config.json");
    let Some(v) = optional_json(&path)? else {
        return Ok(None);
    };
    let x = match v.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => match a.first() {
            None => return Ok(None),
            Some(x) => x,
        },
        Some(x) => x,
    };
    x.as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| bad(&path, key, "a token id (a non-negative integer)", x))
}

impl Tokenizer {
    /// The tokenizer of a Hugging Face model directory with its special tokens and chat
    /// template, as `AutoTokenizer.from_pretrained(dir)` (the module docs list the files and
    /// their precedence). Ids and `encode(text)` equal transformers' `tokenizer(text)`;
    /// `encode_with(text, false)` its `add_special_tokens=False`.
    ///
    /// # Errors
    /// [`ModelError::Format`] naming the file when it cannot be parsed, or naming the
    /// directory when it has neither `tokenizer.json` nor `vocab.json` + `merges.txt`;
    /// [`ModelError::Config`] naming the file and key for a special token, `add_bos_token`,
    /// `chat_template` or id of the wrong type; [`ModelError::Io`] for an unreadable
    /// `chat_template.jinja`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, ModelError> {
        let json = dir.join("tokenizer.json");
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let files = TokenizerFiles::read(dir)?;
        let (mut tok, source, from_json) = if json.is_file() {
            let tok = no_panic(&json, "cannot load tokenizer", || {
                tokenizers::Tokenizer::from_file(&json)
                    .map_err(|e| ModelError::format(&json, format!("cannot load tokenizer: {e}")))
            })?;
            (tok, json, true)
        } else if vocab.is_file() && merges.is_file() {
            let (v, m) = (vocab.to_string_lossy(), merges.to_string_lossy());
            let bpe = no_panic(&vocab, "cannot build BPE with merges.txt", || {
                BPE::from_file(&v, &m).build().map_err(|e| {
                    ModelError::format(&vocab, format!("cannot build BPE with merges.txt: {e}"))
                })
            })?;
            let mut tok = tokenizers::Tokenizer::new(bpe);
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
            tok.with_decoder(Some(ByteLevelDecoder::default()));
            if tok.token_to_id("<|endoftext|>").is_some() {
                tok.add_special_tokens(&[AddedToken::from("<|endoftext|>", true)]);
            }
            (tok, vocab, false)
        } else {
            return Err(ModelError::format(
                dir,
                "no tokenizer: expected tokenizer.json, or vocab.json and merges.txt",
            ));
        };
        // transformers adds every named special token as a special added token (matched whole,
        // a new id only when not in the vocabulary).
        let named: Vec<AddedToken> = [&files.bos, &files.eos, &files.unk, &files.pad]
            .into_iter()
            .flatten()
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        no_panic(&source, "cannot add the special tokens", || {
            tok.add_special_tokens(&named);
            Ok(())
        })?;
        let id = |text: &Option<String>, key: &str| -> Result<Option<u32>, ModelError> {
            match text {
                Some(t) => Ok(tok.token_to_id(t)),
                None => config_id(dir, key),
            }
        };
        let bos = id(&files.bos, "bos_token_id")?;
        let eos = id(&files.eos, "eos_token_id")?;
        let pad = id(&files.pad, "pad_token_id")?;
        Ok(Tokenizer {
            inner: Inner::Hf {
                vocab: tok.get_vocab_size(true),
                tok: Box::new(tok),
                source,
                bos,
                eos,
                pad,
                // With tokenizer.json its post-processor alone decides (transformers 5).
                add_bos: !from_json && files.add_bos && bos.is_some(),
                add_eos: !from_json && files.add_eos && eos.is_some(),
                post_process: from_json,
                chat_template: files.chat_template,
            },
        })
    }
}
