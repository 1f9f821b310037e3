//! ChatML prompts (`<|im_start|>role\ncontent<|im_end|>\n`), the chat format of SmolLM2 and
//! other instruction-tuned models whose GGUF `tokenizer.chat_template` is ChatML.
//!
//! Only the ChatML family is rendered (no Jinja engine): the template's default system prompt,
//! the one it adds when the conversation does not start with a system message, is read from the
//! template text. SmolLM2-135M-Instruct's template:
//! `{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{
//! '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging
//! Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' +
//! message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{
//! '<|im_start|>assistant\n' }}{% endif %}`.
use crate::gguf::GgufFile;
use crate::ModelError;

/// GGUF metadata key of the Jinja chat template.
pub const CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

/// A ChatML chat format with its default system prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    /// The system message used when none is given (`None`: no system turn then).
    pub default_system: Option<String>,
}

impl ChatTemplate {
    /// The chat format of a GGUF file's `tokenizer.chat_template`; `Ok(None)` when the key is
    /// absent.
    ///
    /// # Errors
    /// [`ModelError::Config`] (key `tokenizer.chat_template`) when the template is not ChatML
    /// (no `<|im_start|>`); the GGUF reader's error when the value is not a string.
    pub fn from_gguf(g: &GgufFile) -> Result<Option<Self>, ModelError> {
        if g.get(CHAT_TEMPLATE_KEY).is_none() {
            return Ok(None);
        }
        let text = g.get_str(CHAT_TEMPLATE_KEY)?;
        Self::from_template(text)
            .map(Some)
            .ok_or_else(|| ModelError::Config {
                path: g.path().to_path_buf(),
                key: CHAT_TEMPLATE_KEY.into(),
                msg: "is not a ChatML template (no <|im_start|>); only ChatML is supported".into(),
            })
    }

    /// The ChatML format of a Jinja template text, or `None` when it is not ChatML. The default
    /// system prompt is the literal between `<|im_start|>system` + newline and `<|im_end|>`
    /// (a Jinja `\n` escape counts as a newline).
    pub fn from_template(template: &str) -> Option<Self> {
        if !template.contains(START) {
            return None;
        }
        let head = format!("{START}system");
        let default_system = template.find(&head).and_then(|i| {
            let rest = &template[i + head.len()..];
            let rest = rest
                .strip_prefix('\n')
                .or_else(|| rest.strip_prefix("\\n"))?;
            let end = rest.find(END)?;
            Some(rest[..end].replace("\\n", "\n"))
        });
        Some(Self { default_system })
    }

    /// The prompt of a one-turn conversation with the generation prompt added
    /// (`apply_chat_template(..., add_generation_prompt=True)`): the system turn (`system`, else
    /// the default, else none), the user turn, then `<|im_start|>assistant\n`.
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        let mut out = String::new();
        if let Some(s) = system.or(self.default_system.as_deref()) {
            out.push_str(&format!("{START}system\n{s}{END}\n"));
        }
        out.push_str(&format!("{START}user\n{user}{END}\n{START}assistant\n"));
        out
    }
}
