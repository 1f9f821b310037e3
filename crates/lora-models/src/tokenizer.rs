//! Tokenizers: byte-level BPE rebuilt from GGUF metadata (Hugging Face `tokenizers`), and
//! GPT-2's `r50k_base` BPE (`tiktoken-rs`, compiled in).
//!
//! The GGUF tokenizer follows transformers' `integrations/gguf/gguf_tokenizer_mapping.py`
//! (`byte_level_tokenizer`, `add_gguf_special_tokens`) and llama.cpp's pre-tokenizer table
//! (`llama-vocab.cpp`): a BPE model over `tokenizer.ggml.tokens` / `tokenizer.ggml.merges`, the
//! tokens of `tokenizer.ggml.token_type` 3 (control) matched whole as special added tokens and
//! type 4 (user-defined) as plain added tokens, a ByteLevel decoder, and a pre-tokenizer picked
//! by `tokenizer.ggml.pre`. For SmolLM2 (`"smollm"`) that is the one of its Hugging Face
//! `tokenizer.json`: `Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false,
//! use_regex=true)]` (llama.cpp: `\p{N}` then the GPT-2 regex).
use crate::gguf::GgufFile;
use crate::ModelError;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

mod hf_dir;

/// GGUF `tokenizer.ggml.token_type` of control tokens (`<|im_start|>`...), matched as specials.
pub const TOKEN_TYPE_CONTROL: i64 = 3;
/// GGUF `tokenizer.ggml.token_type` of user-defined tokens, matched whole but not special.
pub const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's end-of-text token id in `r50k_base` (`<|endoftext|>`).
pub const GPT2_EOS: u32 = 50256;
/// GPT-2's vocabulary size.
pub const GPT2_VOCAB: usize = 50257;

/// llama.cpp's / transformers' split regex for Llama-3-style vocabularies
/// (`tokenizer.ggml.pre` = `llama-bpe`, `llama3`, ...).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A text ↔ token-id converter (ids are `u32` vocabulary indices).
pub struct Tokenizer {
    inner: Inner,
}

enum Inner {
    /// Byte-level BPE from a GGUF file.
    Hf {
        tok: Box<tokenizers::Tokenizer>,
        source: PathBuf,
        vocab: usize,
        bos: Option<u32>,
        eos: Option<u32>,
        pad: Option<u32>,
        add_bos: bool,
        /// Append EOS on encode (`add_eos_token` of a `vocab.json` + `merges.txt` directory).
        add_eos: bool,
        /// Run the tokenizer's own post-processor (a `tokenizer.json`'s BOS/EOS template).
        post_process: bool,
        /// The Jinja chat template (`tokenizer.chat_template`, `chat_template.jinja`, ...).
        chat_template: Option<String>,
    },
    /// GPT-2 `r50k_base`.
    Gpt2(Box<tiktoken_rs::CoreBPE>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Hf { source, vocab, .. } => {
                write!(
                    f,
                    "Tokenizer(byte-level BPE from {}, vocab {vocab})",
                    source.display()
                )
            }
            Inner::Gpt2(_) => write!(f, "Tokenizer(GPT-2 r50k_base)"),
        }
    }
}

/// GPT-2's byte → printable character table (`bytes_to_unicode` in openai/gpt-2 `encoder.py`).
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + extra).expect("valid code point");
            extra += 1;
            c
        };
    }
    table
}

impl Tokenizer {
    /// Builds the byte-level BPE tokenizer described by a GGUF file's metadata:
    /// `tokenizer.ggml.model` (must be `"gpt2"`), `tokenizer.ggml.tokens` (strings, the
    /// vocabulary, id = index), `tokenizer.ggml.merges` (strings `"a b"`, by priority),
    /// `tokenizer.ggml.token_type` (optional i32 array: 3 control, 4 user-defined),
    /// `tokenizer.ggml.pre` (optional: `"smollm"`, `"gpt2"`, `"default"`, or the Llama-3 family
    /// `"llama-bpe"`/`"llama3"`/`"llama-v3"`/`"smaug-bpe"`/`"dbrx"`/`"falcon3"`), the optional
    /// `tokenizer.ggml.{bos,eos,padding}_token_id` and `tokenizer.ggml.add_bos_token` (default
    /// false). Tokens spelled outside the byte alphabet are re-spelled byte by byte, and control
    /// tokens spelled outside it are not added as specials, as transformers does.
    ///
    /// # Errors
    /// [`ModelError::MissingKey`] if tokens or merges are absent; [`ModelError::Config`] naming
    /// the key for another tokenizer model or pre-tokenizer, a malformed merge, a token type
    /// array of the wrong length, or a special id outside the vocabulary;
    /// [`ModelError::Format`] if the `tokenizers` crate refuses the vocabulary.
    pub fn from_gguf(g: &GgufFile) -> Result<Self, ModelError> {
        let path = g.path().to_path_buf();
        let bad = |key: &str, msg: String| ModelError::Config {
            path: path.clone(),
            key: key.into(),
            msg,
        };
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(bad(
                "tokenizer.ggml.model",
                format!("is {model:?}; only \"gpt2\" (byte-level BPE) is supported"),
            ));
        }
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(bad("tokenizer.ggml.tokens", format!("has {n} tokens")));
        }
        let types = match g.get("tokenizer.ggml.token_type") {
            None => vec![1; n],
            Some(_) => g.get_int_array("tokenizer.ggml.token_type")?,
        };
        if types.len() != n {
            return Err(bad(
                "tokenizer.ggml.token_type",
                format!("has {} entries but there are {n} tokens", types.len()),
            ));
        }
        let spelling = bytes_to_unicode();
        let alphabet: std::collections::HashSet<char> = spelling.iter().copied().collect();
        let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
        let mut vocab = Vocab::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            let spelled = if in_alphabet(t) {
                t.clone()
            } else {
                t.bytes().map(|b| spelling[b as usize]).collect()
            };
            vocab.insert(spelled, i as u32);
        }
        let merges: Merges = g
            .get_str_array("tokenizer.ggml.merges")?
            .into_iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                    Ok((a.to_string(), b.to_string()))
                }
                _ => Err(bad(
                    "tokenizer.ggml.merges",
                    format!("merge #{i} is {m:?}, expected two tokens separated by one space"),
                )),
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| {
                ModelError::format(&path, format!("cannot build the BPE tokenizer: {e}"))
            })?;

        let byte_level = ByteLevel::new(false, true, true);
        let pre = match g.get("tokenizer.ggml.pre") {
            None => "default",
            Some(_) => g.get_str("tokenizer.ggml.pre")?,
        };
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "gpt2" | "default" => byte_level.into(),
            "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" | "falcon3" => {
                let split = Split::new(
                    SplitPattern::Regex(LLAMA3_SPLIT.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| ModelError::format(&path, format!("bad split regex: {e}")))?;
                Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ])
                .into()
            }
            other => {
                return Err(bad(
                    "tokenizer.ggml.pre",
                    format!(
                        "pre-tokenizer {other:?} is not supported (supported: smollm, gpt2, \
                         default, llama-bpe, llama3, llama-v3, smaug-bpe, dbrx, falcon3)"
                    ),
                ))
            }
        };

        let mut tok = tokenizers::Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(pre_tokenizer));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        let control: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(t, &ty)| ty == TOKEN_TYPE_CONTROL && in_alphabet(t))
            .map(|(t, _)| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tok.add_special_tokens(&control);
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(t, &ty)| ty == TOKEN_TYPE_USER_DEFINED && in_alphabet(t))
            .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        tok.add_tokens(&user);

        let id = |key: &str| -> Result<Option<u32>, ModelError> {
            match g.get(key) {
                None => Ok(None),
                Some(_) => {
                    let v = g.get_u64(key)?;
                    if v >= n as u64 {
                        return Err(bad(key, format!("is {v}, outside the vocabulary of {n}")));
                    }
                    Ok(Some(v as u32))
                }
            }
        };
        let add_bos = match g.get("tokenizer.ggml.add_bos_token") {
            None => false,
            Some(_) => g.get_bool("tokenizer.ggml.add_bos_token")?,
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        if add_bos && bos.is_none() {
            return Err(bad(
                "tokenizer.ggml.bos_token_id",
                "is absent but tokenizer.ggml.add_bos_token is true".into(),
            ));
        }
        let chat_template = match g.get(crate::generate::CHAT_TEMPLATE_KEY) {
            None => None,
            Some(_) => Some(g.get_str(crate::generate::CHAT_TEMPLATE_KEY)?.to_string()),
        };
        Ok(Tokenizer {
            inner: Inner::Hf {
                tok: Box::new(tok),
                source: path.clone(),
                vocab: n,
                bos,
                eos: id("tokenizer.ggml.eos_token_id")?,
                pad: id("tokenizer.ggml.padding_token_id")?,
                add_bos,
                add_eos: false,
                post_process: false,
                chat_template,
            },
        })
    }

    /// GPT-2's byte-level BPE (`r50k_base`, 50,257 tokens, `<|endoftext|>` = 50256), from
    /// `tiktoken-rs` with the vocabulary compiled in; `"Hello world"` → `[15496, 995]`.
    ///
    /// # Errors
    /// [`ModelError::Format`] if tiktoken-rs cannot load its bundled vocabulary.
    pub fn gpt2() -> Result<Self, ModelError> {
        let bpe = tiktoken_rs::r50k_base()
            .map_err(|e| ModelError::format("tiktoken-rs r50k_base", e.to_string()))?;
        Ok(Tokenizer {
            inner: Inner::Gpt2(Box::new(bpe)),
        })
    }

    /// The tokenizer of a model path as [`crate::load_any`] takes it: a GGUF file's
    /// ([`Tokenizer::from_gguf`]); a directory's own files ([`Tokenizer::from_hf_dir`]); else,
    /// for a GPT-2 directory (`model_type` "gpt2") with the 50,257-token vocabulary, the
    /// compiled-in [`Tokenizer::gpt2`].
    ///
    /// # Errors
    /// The loaders' errors; [`ModelError::Format`] naming the directory when it has no
    /// tokenizer files and is not a full-vocabulary GPT-2.
    pub fn from_model_path(path: &Path) -> Result<Self, ModelError> {
        if path.is_file() {
            return Self::from_gguf(&GgufFile::open(path)?);
        }
        match Self::from_hf_dir(path) {
            Ok(t) => Ok(t),
            Err(e) => {
                let cfg = path.join("config.json");
                let v: serde_json::Value = lora_io::read_regular_to_string(&cfg)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let gpt2 = v["model_type"] == "gpt2" && v["vocab_size"] == GPT2_VOCAB as u64;
                if gpt2 {
                    Self::gpt2()
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Text → token ids as transformers' `tokenizer(text)` (`add_special_tokens=True`):
    /// [`Tokenizer::encode_with`] with special tokens added.
    ///
    /// # Errors
    /// As [`Tokenizer::encode_with`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode_with(text, true)
    }

    /// Text → token ids. Special/control tokens written in the text (`<|im_start|>`,
    /// `<|endoftext|>`) become their single ids, as transformers' tokenizers do. With
    /// `add_special_tokens` (transformers' argument of that name) a `tokenizer.json`'s
    /// post-processor runs (e.g. a Llama BOS), and the BOS / EOS that GGUF metadata
    /// (`tokenizer.ggml.add_bos_token`) or a `vocab.json` directory's `tokenizer_config.json`
    /// (`add_bos_token`, `add_eos_token`) ask for are added; without it none is (what
    /// `apply_chat_template` uses on the rendered text).
    ///
    /// # Errors
    /// [`ModelError::Format`] if the `tokenizers` crate fails (not expected for valid UTF-8).
    pub fn encode_with(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, ModelError> {
        match &self.inner {
            Inner::Hf {
                tok,
                source,
                bos,
                eos,
                add_bos,
                add_eos,
                post_process,
                ..
            } => {
                let enc = tok
                    .encode(text, *post_process && add_special_tokens)
                    .map_err(|e| {
                        ModelError::format(source, format!("tokenizer failed on {text:?}: {e}"))
                    })?;
                let mut ids = Vec::with_capacity(enc.len() + 2);
                if *add_bos && add_special_tokens {
                    ids.extend(*bos);
                }
                ids.extend_from_slice(enc.get_ids());
                if *add_eos && add_special_tokens {
                    ids.extend(*eos);
                }
                Ok(ids)
            }
            Inner::Gpt2(bpe) => Ok(bpe.encode_with_special_tokens(text)),
        }
    }

    /// Token ids → text. Special tokens are kept in the text (transformers' `decode` with
    /// `skip_special_tokens=False`); byte sequences that are not valid UTF-8 become U+FFFD.
    ///
    /// # Errors
    /// [`ModelError::Config`] (key `token id`) for an id outside the vocabulary;
    /// [`ModelError::Format`] if the `tokenizers` crate fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        let n = self.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= n) {
            return Err(ModelError::Config {
                path: self.source(),
                key: "token id".into(),
                msg: format!("{bad} is outside the vocabulary of {n} tokens"),
            });
        }
        match &self.inner {
            Inner::Hf { tok, source, .. } => tok
                .decode(ids, false)
                .map_err(|e| ModelError::format(source, format!("cannot decode {ids:?}: {e}"))),
            Inner::Gpt2(bpe) => {
                let bytes = bpe.decode_bytes(ids).map_err(|e| {
                    ModelError::format("tiktoken-rs r50k_base", format!("cannot decode: {e}"))
                })?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// The file the tokenizer was read from (`tokenizer.json`, `vocab.json`, the GGUF file), or
    /// `tiktoken-rs r50k_base` for the compiled-in GPT-2 BPE.
    pub fn source_path(&self) -> PathBuf {
        self.source()
    }

    fn source(&self) -> PathBuf {
        match &self.inner {
            Inner::Hf { source, .. } => source.clone(),
            Inner::Gpt2(_) => PathBuf::from("tiktoken-rs r50k_base"),
        }
    }

    /// Id of a token spelled as in the vocabulary (`"<|im_end|>"`, `"Ġthe"`), if present.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Hf { tok, .. } => tok.token_to_id(token),
            Inner::Gpt2(bpe) => {
                let ids = bpe.encode_with_special_tokens(token);
                (ids.len() == 1 && bpe.decode(&ids).ok().as_deref() == Some(token)).then(|| ids[0])
            }
        }
    }

    /// Beginning-of-sequence id (`tokenizer.ggml.bos_token_id`; GPT-2: 50256).
    pub fn bos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Hf { bos, .. } => *bos,
            Inner::Gpt2(_) => Some(GPT2_EOS),
        }
    }

    /// End-of-sequence id (`tokenizer.ggml.eos_token_id`; GPT-2: 50256).
    pub fn eos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Hf { eos, .. } => *eos,
            Inner::Gpt2(_) => Some(GPT2_EOS),
        }
    }

    /// The Jinja chat template the model's files carry (GGUF `tokenizer.chat_template`; a
    /// directory's `chat_template.jinja` or `tokenizer_config.json` `chat_template`), if any.
    pub fn chat_template(&self) -> Option<&str> {
        match &self.inner {
            Inner::Hf { chat_template, .. } => chat_template.as_deref(),
            Inner::Gpt2(_) => None,
        }
    }

    /// The text of token `id` as the vocabulary spells it (`"<s>"`, `"<|im_end|>"`), for
    /// chat templates' `bos_token` / `eos_token`; `None` outside the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Hf { tok, .. } => tok.id_to_token(id),
            Inner::Gpt2(bpe) => bpe.decode(&[id]).ok(),
        }
    }

    /// Padding id (`tokenizer.ggml.padding_token_id`; GPT-2 has none).
    pub fn pad_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Hf { pad, .. } => *pad,
            Inner::Gpt2(_) => None,
        }
    }

    /// Number of token ids (GGUF: length of `tokenizer.ggml.tokens`; GPT-2: 50,257).
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Hf { vocab, .. } => *vocab,
            Inner::Gpt2(_) => GPT2_VOCAB,
        }
    }
}

// The tokenizer can be shared across threads (e.g. data-loading workers).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Tokenizer>();
};
