//! Hugging Face chat templates (Jinja) rendered with `minijinja`, as transformers'
//! `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders them.
//!
//! Source: transformers `utils/chat_template_utils.py` (`_compile_jinja_template`,
//! `render_jinja_template`): a sandboxed Jinja environment with `trim_blocks=True`,
//! `lstrip_blocks=True` and the loop controls (`break`, `continue`), the globals
//! `raise_exception(message)` and `strftime_now(format)`, the filter `tojson`, and the context
//! `messages`, `add_generation_prompt` and the tokenizer's special tokens (`bos_token`,
//! `eos_token`, ...). Python string methods (`.strip()`, `.split()`, `.startswith()`) come from
//! `minijinja-contrib`'s `pycompat`, as in text-generation-inference and mistral.rs.
use crate::tokenizer::Tokenizer;
use crate::ModelError;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One turn of a conversation (`{"role": ..., "content": ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A turn of `role` with `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled Jinja chat template with the special tokens it may print.
pub struct JinjaChatTemplate {
    env: Environment<'static>,
    /// The file the template came from (for errors).
    origin: PathBuf,
    /// `bos_token` in the template's context.
    pub bos_token: Option<String>,
    /// `eos_token` in the template's context.
    pub eos_token: Option<String>,
}

impl std::fmt::Debug for JinjaChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JinjaChatTemplate(from {})", self.origin.display())
    }
}

fn template_error(origin: &Path, e: &minijinja::Error) -> ModelError {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    ModelError::Config {
        path: origin.to_path_buf(),
        key: "chat_template".into(),
        msg,
    }
}

impl JinjaChatTemplate {
    /// Compiles `source` (the template text) in transformers' environment; `origin` names
    /// the file it came from in errors.
    ///
    /// # Errors
    /// [`ModelError::Config`] (key `chat_template`) naming `origin` when the template does not
    /// parse.
    pub fn new(
        source: &str,
        origin: impl Into<PathBuf>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self, ModelError> {
        let origin = origin.into();
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&origin, &e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |_fmt: String| -> Result<String, _> {
            // Rendering must be reproducible: no clock in prompts.
            Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "strftime_now (the current date) is not supported",
            ))
        });
        env.add_template_owned("chat_template", source.to_string())
            .map_err(|e| template_error(&origin, &e))?;
        Ok(Self {
            env,
            origin,
            bos_token,
            eos_token,
        })
    }

    /// The template of `tok` (GGUF `tokenizer.chat_template`, a directory's
    /// `chat_template.jinja` or `tokenizer_config.json`) with its BOS / EOS token texts;
    /// `Ok(None)` when the tokenizer has no template.
    ///
    /// # Errors
    /// As [`JinjaChatTemplate::new`].
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<Option<Self>, ModelError> {
        let Some(source) = tok.chat_template() else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i));
        Self::new(
            source,
            tok.source_path(),
            text(tok.bos_id()),
            text(tok.eos_id()),
        )
        .map(Some)
    }

    /// The prompt text of `messages`, with the assistant's turn opened when
    /// `add_generation_prompt` (transformers' `apply_chat_template(..., tokenize=False)`).
    /// Encode it with `Tokenizer::encode_with(text, false)`: the template writes its own
    /// special tokens.
    ///
    /// # Errors
    /// [`ModelError::Config`] (key `chat_template`) naming the template's file when rendering
    /// fails (a `raise_exception` in the template, an unsupported construct).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ModelError> {
        let t = self
            .env
            .get_template("chat_template")
            .map_err(|e| template_error(&self.origin, &e))?;
        // Unset special tokens stay undefined (they render empty), as in transformers.
        let mut ctx = BTreeMap::new();
        ctx.insert("messages", Value::from(Serde(messages)));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        for (k, v) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
        ] {
            if let Some(v) = v {
                ctx.insert(k, Value::from(v.clone()));
            }
        }
        t.render(Serde(ctx))
            .map_err(|e| template_error(&self.origin, &e))
    }
}
