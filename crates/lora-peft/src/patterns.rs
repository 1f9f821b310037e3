//! PEFT's module-name regular expressions, compiled with Python `re` semantics (anchored as
//! `re.fullmatch` / `re.match`): target and exclude patterns, `rank_pattern` keys,
//! `modules_to_save` exclusion and the layer-index pattern (`peft/tuners/tuners_utils.py`,
//! `peft/utils/other.py`).
use crate::config_types::StringOrList;
use crate::PeftError;

/// Compiles `pattern` anchored as Python's `re.fullmatch` (`^(?:pattern)$`).
pub(crate) fn compile(
    field: &str,
    pattern: &str,
    anchored: String,
) -> Result<regex::Regex, PeftError> {
    regex::Regex::new(&anchored).map_err(|e| PeftError::Regex {
        field: field.into(),
        pattern: pattern.into(),
        msg: e.to_string(),
    })
}

/// `^(?:p)$`: Python `re.fullmatch(p, s)`.
pub(crate) fn fullmatch_regex(field: &str, p: &str) -> Result<regex::Regex, PeftError> {
    compile(field, p, format!("^(?:{p})$"))
}

/// `^(.*\.)?(key)$`: PEFT `get_pattern_key` (`re.match(rf"(.*\.)?({key})$", name)`).
pub(crate) fn pattern_key_regex(field: &str, key: &str) -> Result<regex::Regex, PeftError> {
    compile(field, key, format!(r"^(.*\.)?({key})$"))
}

/// PEFT's modules_to_save exclusion from LoRA targets:
/// `re.match(rf"(^|.*\.){m}($|\..*)", name)`.
pub(crate) fn modules_to_save_regex(m: &str) -> Result<regex::Regex, PeftError> {
    compile("modules_to_save", m, format!(r"^(^|.*\.){m}($|\..*)"))
}

/// Layer-index regex: with no `layers_pattern`, PEFT's `.*?\.[^.]*\.(?P<idx>\d+)\.` (the first
/// numbered segment); with one, `(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.`, both with `re.match`.
pub(crate) fn layer_index_regexes(
    layers_pattern: Option<&StringOrList>,
) -> Result<Vec<regex::Regex>, PeftError> {
    let pats: Vec<String> = layers_pattern.map(|p| p.as_vec()).unwrap_or_default();
    if pats.is_empty() || pats.iter().all(|p| p.is_empty()) {
        return Ok(vec![compile(
            "layers_pattern",
            "",
            r"^.*?\.[^.]*\.(?P<idx>\d+)\.".to_string(),
        )?]);
    }
    pats.iter()
        .map(|p| {
            compile(
                "layers_pattern",
                p,
                format!(r"^(?:^|.*?\.){p}\.(?P<idx>\d+)\."),
            )
        })
        .collect()
}
