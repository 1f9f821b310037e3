//! Checks of single command-line values shared by the examples, each failing with one line that
//! names the flag, the value given and what is allowed. They read no model or data, so the
//! examples run them before anything is fetched or loaded.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::AnyError;

/// `value` must be a finite number > 0.
///
/// # Errors
/// `"{flag} {value}: must be a finite number > 0"`.
pub fn positive(flag: &str, value: f64) -> Result<(), AnyError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{flag} {value}: must be a finite number > 0").into())
    }
}

/// `value` must be at least 1.
///
/// # Errors
/// `"{flag} 0: must be at least 1"`.
pub fn at_least_one(flag: &str, value: usize) -> Result<(), AnyError> {
    if value >= 1 {
        Ok(())
    } else {
        Err(format!("{flag} {value}: must be at least 1").into())
    }
}

/// `value` must be finite (any sign).
///
/// # Errors
/// `"{flag} {value}: must be a finite number"`.
pub fn finite(flag: &str, value: f64) -> Result<(), AnyError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(format!("{flag} {value}: must be a finite number").into())
    }
}

/// What a model path holds, from its files (not yet parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPathKind {
    /// A Hugging Face directory: `config.json` present.
    HfDir,
    /// A file that starts with the GGUF magic `GGUF`.
    Gguf,
}

/// The model family a checked model path holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// GPT-2 (`config.json` `model_type` "gpt2").
    Gpt2,
    /// Llama family (`model_type` "llama", or a GGUF file).
    Llama,
}

/// A checked `--model-path`: where it points once a hub id is resolved, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLocation {
    /// The local file or directory (a hub id's snapshot folder).
    pub path: PathBuf,
    /// A directory or a GGUF file.
    pub kind: ModelPathKind,
    /// The family its files declare.
    pub family: ModelFamily,
    /// What an adapter records as `base_model_name_or_path`: the hub id `org/name` when the
    /// path was found in the hub cache (as PEFT records the id given to `from_pretrained`;
    /// the snapshot folder exists on this machine only), else the path as given.
    pub name: String,
}

/// What every example's `--model-path` accepts, for messages.
pub const MODEL_PATH_EXPECTED: &str = "a model directory (config.json + model.safetensors or its \
     shards), a GGUF file, or a Hugging Face hub id org/name[@revision] in the local hub cache";

/// Resolves `given` ([`lora_models::resolve_model_path`]: an existing local path as is, else a
/// hub id `org/name[@rev]` in the local hub cache), checks it as [`model_path`] does and reads
/// its family: a GGUF file is Llama; a directory's `config.json` `model_type` decides.
///
/// # Errors
/// One line naming `flag` and `given`: a hub id in no cache (listing the places looked), or
/// [`model_path`]'s errors, or a `config.json` that cannot be read or whose `model_type` is
/// neither "gpt2" nor "llama".
pub fn model_location(flag: &str, given: &Path) -> Result<ModelLocation, AnyError> {
    let path = lora_models::resolve_model_path(given)
        .map_err(|e| format!("{flag} {}: {e}", given.display()))?;
    let kind = model_path_expecting(flag, &path, MODEL_PATH_EXPECTED)?;
    let family = match kind {
        ModelPathKind::Gguf => ModelFamily::Llama,
        ModelPathKind::HfDir => {
            let cfg = path.join("config.json");
            let v: serde_json::Value = lora_io::read_regular_to_string(&cfg)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                .map_err(|e| format!("{flag} {}: {}: {e}", given.display(), cfg.display()))?;
            match v.get("model_type").and_then(|t| t.as_str()) {
                Some("gpt2") => ModelFamily::Gpt2,
                Some("llama") => ModelFamily::Llama,
                other => {
                    return Err(format!(
                        "{flag} {}: {} has model_type {other:?}; expected \"gpt2\" or \"llama\"",
                        given.display(),
                        cfg.display()
                    )
                    .into())
                }
            }
        }
    };
    let name = match given.to_str().and_then(lora_models::HubId::parse) {
        Some(id) if path != given => id.repo_id,
        _ => given.display().to_string(),
    };
    Ok(ModelLocation {
        path,
        kind,
        family,
        name,
    })
}

/// Checks that `path` is a Hugging Face model directory (with `config.json`) or a GGUF file
/// (first four bytes `GGUF`), and returns which. A hub id is not resolved here
/// ([`model_location`] does).
///
/// # Errors
/// One line naming `flag` and `path`: missing, a directory without `config.json`, or a file
/// that is not GGUF.
pub fn model_path(flag: &str, path: &Path) -> Result<ModelPathKind, AnyError> {
    model_path_expecting(
        flag,
        path,
        "a model directory (config.json + model.safetensors) or a GGUF file",
    )
}

/// [`model_path`] with the expectation its messages end with (`"; expected {expected}"`), for
/// a caller that accepts only one of the two kinds.
///
/// # Errors
/// As [`model_path`].
pub fn model_path_expecting(
    flag: &str,
    path: &Path,
    expected: &str,
) -> Result<ModelPathKind, AnyError> {
    let expected = format!("expected {expected}");
    let fail = |why: String| -> AnyError {
        format!("{flag} {}: {why}; {expected}", path.display()).into()
    };
    if !path.exists() {
        return Err(fail("does not exist".into()));
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelPathKind::HfDir);
        }
        return Err(fail("a directory without config.json".into()));
    }
    // A FIFO would block the open below, a device would answer anything.
    lora_io::check_regular_file(path).map_err(|e| fail(e.to_string()))?;
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if &magic == b"GGUF" => Ok(ModelPathKind::Gguf),
        Ok(()) => Err(fail(
            "not a GGUF file (its first bytes are not \"GGUF\")".into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(fail("a file too short to be GGUF".into()))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Creates the output directory `dir` if needed and checks that files can be written in it
/// ([`lora_io::ensure_writable_dir`]).
///
/// # Errors
/// `"{flag} {dir}: cannot write there (<os error>)"`.
pub fn output_dir(flag: &str, dir: &Path) -> Result<(), AnyError> {
    lora_io::ensure_writable_dir(dir)
        .map_err(|e| format!("{flag} {}: cannot write there ({e})", dir.display()).into())
}

/// Checks that the output file `path` can be written ([`lora_io::check_writable_file`]);
/// nothing is created under `path`.
///
/// # Errors
/// `"{flag} {path}: cannot write there (<reason>)"`.
pub fn output_file(flag: &str, path: &Path) -> Result<(), AnyError> {
    lora_io::check_writable_file(path)
        .map_err(|e| format!("{flag} {}: cannot write there ({e})", path.display()).into())
}

/// Checks that the output `out` (of flag `out_flag`) is not the input `input` (of `in_flag`):
/// the same file or directory once links and `.`/`..` are resolved ([`lora_io::same_file`]).
///
/// # Errors
/// `"{out_flag} {out}: is the same as {in_flag} {input}; writing there would overwrite the
/// input, choose another output"`.
pub fn output_not_input(
    out_flag: &str,
    out: &Path,
    in_flag: &str,
    input: &Path,
) -> Result<(), AnyError> {
    if lora_io::same_file(out, input) {
        return Err(format!(
            "{out_flag} {}: is the same as {in_flag} {}; writing there would overwrite the \
             input, choose another output",
            out.display(),
            input.display()
        )
        .into());
    }
    Ok(())
}

/// Checks that the input file `path` exists and is a regular file (symbolic links followed),
/// without opening it.
///
/// # Errors
/// `"{flag} {path}: no such file"`, or `"{flag} {path}: is not a regular file (a FIFO);
/// expected a file"` (a device, socket, directory).
pub fn input_file(flag: &str, path: &Path) -> Result<(), AnyError> {
    regular(flag, path).map_err(|e| format!("{e}; expected a file").into())
}

/// `path` is a regular file; the message otherwise (`"{flag} {path}: no such file"` or
/// `"{flag} {path}: is not a regular file (a FIFO)"`).
fn regular(flag: &str, path: &Path) -> Result<(), String> {
    match lora_io::check_regular_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{flag} {}: no such file", path.display()))
        }
        Err(e) => Err(format!("{flag} {}: {e}", path.display())),
    }
}

/// Checks that the input directory `path` exists and that none of its entries (symbolic links
/// followed) is a FIFO, device or socket, which a reader would block on or read without end
/// (adapter directories: PEFT's and AdapterHub's file names differ, so no file is required
/// here; the loader names a missing one).
///
/// # Errors
/// `"{flag} {path}: no such directory"` or `"{flag} {path}: its {name} is not a regular file
/// (a device)"`.
pub fn input_dir(flag: &str, path: &Path) -> Result<(), AnyError> {
    let entries = std::fs::read_dir(path)
        .map_err(|_| format!("{flag} {}: no such directory", path.display()))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            continue;
        }
        if let Err(e) = lora_io::check_regular_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                let name = entry.file_name();
                return Err(format!(
                    "{flag} {}: its {} {e}",
                    path.display(),
                    name.to_string_lossy()
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Checks that the input directory `path` exists and holds the regular file `file`.
///
/// # Errors
/// `"{flag} {path}: ..."` naming the missing directory or file, or the file that is not a
/// regular one.
pub fn input_dir_with(flag: &str, path: &Path, file: &str) -> Result<(), AnyError> {
    if !path.is_dir() {
        return Err(format!("{flag} {}: no such directory", path.display()).into());
    }
    match lora_io::check_regular_file(&path.join(file)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{flag} {}: the directory has no {file}", path.display()).into())
        }
        Err(e) => Err(format!("{flag} {}: its {file} {e}", path.display()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert!(positive("--lr", 1e-3).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = positive("--lr", bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--lr {bad}:")), "{e}");
        }
        assert_eq!(
            at_least_one("--steps", 0).unwrap_err().to_string(),
            "--steps 0: must be at least 1"
        );
        assert!(finite("--weight", -2.0).is_ok() && finite("--weight", f64::NAN).is_err());
    }

    #[test]
    fn model_paths() {
        let d = tempfile::tempdir().unwrap();
        let e = model_path("--model-path", d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("without config.json"), "{e}");
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            model_path("--model-path", d.path()).unwrap(),
            ModelPathKind::HfDir
        );
        let g = d.path().join("m.gguf");
        std::fs::write(&g, b"GGUF\x03\0\0\0").unwrap();
        assert_eq!(model_path("--model-path", &g).unwrap(), ModelPathKind::Gguf);
        let t = d.path().join("m.txt");
        std::fs::write(&t, b"not a model").unwrap();
        let e = model_path("--model-path", &t).unwrap_err().to_string();
        assert!(e.contains("m.txt") && e.contains("not a GGUF"), "{e}");
        let e = model_path_expecting("--model-path", Path::new("/dev/null"), "a GGUF file")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--model-path /dev/null: is not a regular file (a device); expected a GGUF file"
        );
        let e = model_path("--model-path", &d.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--model-path ") && e.contains("none"), "{e}");
    }

    #[test]
    fn output_locations() {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        output_dir("--output-dir", &sub).unwrap();
        assert!(sub.is_dir());
        assert_eq!(
            std::fs::read_dir(&sub).unwrap().count(),
            0,
            "probe left behind"
        );
        // A path below a regular file cannot be created, whoever runs the test (root too).
        let file = d.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = output_dir("--output-dir", &file.join("x"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--output-dir ") && e.contains("cannot write"),
            "{e}"
        );
        let e = output_file("--out", &file.join("x.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--out ") && e.contains("not an existing directory"),
            "{e}"
        );
        output_file("--out", &d.path().join("y.safetensors")).unwrap();
        assert!(!d.path().join("y.safetensors").exists());
    }
}
