//! Checkpoints as they arrive from the Hugging Face hub: model paths given as hub ids resolved
//! in a local hub cache (blobs + snapshot links), a bf16 sharded Llama checkpoint against
//! transformers' logits, its tokenizer's ids, special tokens and chat template against
//! `AutoTokenizer` (fixture `llama_hub/`, written by `tests/fixtures/make_hub_fixtures.py`).
#![cfg(unix)]

use lora_models::generate::{ChatMessage, ChatTemplate, JinjaChatTemplate};
use lora_models::llama::Llama;
use lora_models::st::StFile;
use lora_models::tokenizer::Tokenizer;
use lora_models::weights::Weights;
use lora_models::{resolve_model_path_in, HubEnv, HubId, LanguageModel, ModelError};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;
use common::{fixtures, hub_tree, io, max_diff, values, B};

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "tiny-org/llama-hub";

fn fixture() -> PathBuf {
    fixtures().join("llama_hub")
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("ref.json")).unwrap()).unwrap()
}

fn env_cache(cache: &Path) -> HubEnv {
    HubEnv {
        hf_hub_cache: Some(cache.to_path_buf()),
        ..HubEnv::default()
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn hub_ids_parse_as_huggingface_hub_validates_them() {
    let id = HubId::parse("HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
    assert_eq!(
        (id.repo_id.as_str(), id.revision.as_str()),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "main")
    );
    assert_eq!(
        id.folder_name(),
        "models--HuggingFaceTB--SmolLM2-135M-Instruct"
    );
    let id = HubId::parse("org/name@refs/pr/1").unwrap();
    assert_eq!(id.revision, "refs/pr/1");
    for not_an_id in [
        "/abs/path",
        "./rel/path",
        "a/b/c",
        "single",
        "org/na--me",
        "org/name@../x",
        "org/name@",
        "org/-name",
        "org/name.",
    ] {
        assert_eq!(HubId::parse(not_an_id), None, "{not_an_id}");
    }
}

#[test]
fn resolves_refs_revisions_and_cache_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let snap_a = hub_tree(&a, REPO, HASH, &fixture());
    // `b` is laid out under HF_HOME (`b/hub`), with a tag `v1` pointing at another snapshot.
    let other = "fedcba9876543210fedcba9876543210fedcba98";
    let snap_b = hub_tree(&b.join("hub"), REPO, other, &fixture());
    let repo_b = b.join("hub/models--tiny-org--llama-hub");
    std::fs::write(repo_b.join("refs/v1"), format!("{other}\n")).unwrap();
    let id = Path::new(REPO);

    // HF_HUB_CACHE wins over HF_HOME, which wins over XDG_CACHE_HOME and HOME.
    let both = HubEnv {
        hf_hub_cache: Some(a.clone()),
        hf_home: Some(b.clone()),
        ..HubEnv::default()
    };
    assert_eq!(resolve_model_path_in(id, &both).unwrap(), snap_a);
    let home = HubEnv {
        hf_home: Some(b.clone()),
        xdg_cache_home: Some(a.clone()),
        home: Some(a.clone()),
        ..HubEnv::default()
    };
    assert_eq!(resolve_model_path_in(id, &home).unwrap(), snap_b);
    let xdg_root = tmp.path().join("xdg");
    let snap_x = hub_tree(&xdg_root.join("huggingface/hub"), REPO, HASH, &fixture());
    let xdg = HubEnv {
        xdg_cache_home: Some(xdg_root.clone()),
        home: Some(b.clone()),
        ..HubEnv::default()
    };
    assert_eq!(resolve_model_path_in(id, &xdg).unwrap(), snap_x);
    let home_root = tmp.path().join("home");
    let snap_h = hub_tree(
        &home_root.join(".cache/huggingface/hub"),
        REPO,
        HASH,
        &fixture(),
    );
    let only_home = HubEnv {
        home: Some(home_root),
        ..HubEnv::default()
    };
    assert_eq!(resolve_model_path_in(id, &only_home).unwrap(), snap_h);

    // A tag in refs/, a commit hash in snapshots/.
    let env_b = HubEnv {
        hf_home: Some(b.clone()),
        ..HubEnv::default()
    };
    let tagged = format!("{REPO}@v1");
    assert_eq!(
        resolve_model_path_in(Path::new(&tagged), &env_b).unwrap(),
        snap_b
    );
    let pinned = format!("{REPO}@{other}");
    assert_eq!(
        resolve_model_path_in(Path::new(&pinned), &env_b).unwrap(),
        snap_b
    );

    // An existing local path always wins; a path that is no hub id passes through unchanged.
    let local = tmp.path().join(REPO);
    std::fs::create_dir_all(&local).unwrap();
    assert_eq!(resolve_model_path_in(&local, &both).unwrap(), local);
    let missing = tmp.path().join("nothing/here/at-all");
    assert_eq!(resolve_model_path_in(&missing, &both).unwrap(), missing);
}

#[test]
fn not_found_names_every_place_looked_and_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let e = resolve_model_path_in(Path::new("some-org/absent@v2"), &env_cache(&cache)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ModelError::NotInHubCache { .. }), "{msg}");
    let repo = cache.join("models--some-org--absent");
    for needle in [
        "some-org/absent@v2".to_string(),
        format!(
            "looked at {}, ",
            std::env::current_dir()
                .unwrap()
                .join("some-org/absent@v2")
                .display()
        ),
        repo.join("refs/v2").display().to_string(),
        format!("{} (from HF_HUB_CACHE)", cache.display()),
        "hf download some-org/absent".into(),
        "huggingface-cli download some-org/absent".into(),
    ] {
        assert!(msg.contains(&needle), "{needle:?} not in {msg}");
    }
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn bf16_sharded_checkpoint_by_hub_id_matches_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    hub_tree(tmp.path(), REPO, HASH, &fixture());
    let dir = resolve_model_path_in(Path::new(REPO), &env_cache(tmp.path())).unwrap();
    // The shards really are bf16: the loader widens them.
    let w = Weights::open_dir(&dir).unwrap();
    assert!(w.is_sharded());
    let shard = StFile::open(w.path_of("model.embed_tokens.weight")).unwrap();
    let header = std::fs::read(&shard.path).unwrap();
    assert!(String::from_utf8_lossy(&header[..600]).contains("\"BF16\""));
    let (model, c) = Llama::<B>::load_hf(&dir, &Default::default()).unwrap();
    assert_eq!((c.vocab_size, c.num_hidden_layers), (90, 2));
    let (input_ids, want, want_shape) = io(&dir, "logits");
    let (got, shape) = values(model.forward(input_ids));
    assert_eq!(shape, want_shape);
    let d = max_diff(&got, &want);
    assert!(d < 1e-4, "max |diff| {d}");
}

#[test]
fn shard_errors_name_the_file_and_the_key() {
    let copy = |tmp: &Path| {
        for e in std::fs::read_dir(fixture()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), tmp.join(e.file_name())).unwrap();
        }
    };
    // A shard the index lists is missing.
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path());
    std::fs::remove_file(tmp.path().join("model-00002-of-00003.safetensors")).unwrap();
    let e = Weights::open_dir(tmp.path()).err().unwrap().to_string();
    assert!(
        e.contains("model.safetensors.index.json")
            && e.contains("model-00002-of-00003.safetensors")
            && e.contains("listed for tensor `model."),
        "{e}"
    );
    // The index maps a tensor to a shard that lacks it.
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path());
    let idx = tmp.path().join("model.safetensors.index.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&idx).unwrap()).unwrap();
    let map = v["weight_map"].as_object_mut().unwrap();
    let key = "model.norm.weight";
    let wrong = if map[key] == "model-00001-of-00003.safetensors" {
        "model-00002-of-00003.safetensors"
    } else {
        "model-00001-of-00003.safetensors"
    };
    map.insert(key.into(), wrong.into());
    std::fs::write(&idx, v.to_string()).unwrap();
    let e = Weights::open_dir(tmp.path()).err().unwrap().to_string();
    assert!(
        e.contains(wrong) && e.contains(&format!("no tensor `{key}`")),
        "{e}"
    );
    // A shard name that leaves the folder.
    map_edit(&idx, key, "../model-00001-of-00003.safetensors");
    let e = Weights::open_dir(tmp.path()).err().unwrap().to_string();
    assert!(e.contains(&format!("weight_map[`{key}`]")), "{e}");
    // A tensor the index does not list.
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path());
    let idx = tmp.path().join("model.safetensors.index.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&idx).unwrap()).unwrap();
    v["weight_map"].as_object_mut().unwrap().remove(key);
    std::fs::write(&idx, v.to_string()).unwrap();
    let e = Llama::<B>::load_hf(tmp.path(), &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(key) && e.contains("does not list"), "{e}");
}

fn map_edit(idx: &Path, key: &str, file: &str) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(idx).unwrap()).unwrap();
    v["weight_map"]
        .as_object_mut()
        .unwrap()
        .insert(key.into(), file.into());
    std::fs::write(idx, v.to_string()).unwrap();
}

#[test]
fn tokenizer_from_the_checkpoint_matches_autotokenizer() {
    let r = reference();
    let tok = Tokenizer::from_hf_dir(&fixture()).unwrap();
    assert_eq!(tok.bos_id(), r["bos_token_id"].as_u64().map(|i| i as u32));
    assert_eq!(tok.eos_id(), r["eos_token_id"].as_u64().map(|i| i as u32));
    assert_eq!(tok.pad_id(), r["pad_token_id"].as_u64().map(|i| i as u32));
    for case in r["encode"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
        assert_eq!(
            tok.encode_with(text, false).unwrap(),
            ids(&case["ids_no_special"]),
            "{text:?} without special tokens"
        );
    }
    // tokenizer_config.json's add_bos_token / add_eos_token do not override tokenizer.json.
    let tmp = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "chat_template.jinja", "config.json"] {
        std::fs::copy(fixture().join(f), tmp.path().join(f)).unwrap();
    }
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    cfg["add_bos_token"] = false.into();
    cfg["add_eos_token"] = true.into();
    std::fs::write(tmp.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let variant = Tokenizer::from_hf_dir(tmp.path()).unwrap();
    for case in r["eos_not_bos"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(variant.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
    }
    // special_tokens_map.json names the special tokens over tokenizer_config.json, and a
    // missing name falls back to config.json's id.
    std::fs::write(
        tmp.path().join("special_tokens_map.json"),
        r#"{"pad_token": {"content": "</s>"}, "bos_token": null}"#,
    )
    .unwrap();
    let t = Tokenizer::from_hf_dir(tmp.path()).unwrap();
    assert_eq!((t.pad_id(), t.bos_id()), (Some(2), Some(1)));
    std::fs::write(
        tmp.path().join("special_tokens_map.json"),
        r#"{"pad_token": 7}"#,
    )
    .unwrap();
    let e = Tokenizer::from_hf_dir(tmp.path()).unwrap_err().to_string();
    assert!(
        e.contains("special_tokens_map.json") && e.contains("pad_token"),
        "{e}"
    );
}

#[test]
fn chat_template_from_the_checkpoint_renders_as_transformers() {
    let r = reference();
    let tok = Tokenizer::from_hf_dir(&fixture()).unwrap();
    let t = JinjaChatTemplate::from_tokenizer(&tok).unwrap().unwrap();
    for case in r["chat"].as_array().unwrap() {
        let got = t.render(&messages(&case["messages"]), true).unwrap();
        assert_eq!(got, case["text"].as_str().unwrap());
    }
    // The template in tokenizer_config.json when there is no chat_template.jinja.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let template = std::fs::read_to_string(fixture().join("chat_template.jinja")).unwrap();
    let cfg = serde_json::json!({"bos_token": "<s>", "eos_token": "</s>",
        "chat_template": [{"name": "default", "template": template}]});
    std::fs::write(tmp.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let tok2 = Tokenizer::from_hf_dir(tmp.path()).unwrap();
    assert_eq!(tok2.chat_template(), Some(template.as_str()));
    // A template error names the file.
    let bad = JinjaChatTemplate::new("{% if %}", "x/chat_template.jinja", None, None)
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("x/chat_template.jinja") && bad.contains("chat_template"),
        "{bad}"
    );
    let raised = JinjaChatTemplate::new(
        "{{ raise_exception('roles must alternate') }}",
        "t.jinja",
        None,
        None,
    )
    .unwrap()
    .render(&[], true)
    .unwrap_err()
    .to_string();
    assert!(raised.contains("roles must alternate"), "{raised}");
}

#[test]
fn chatml_template_renders_as_the_chatml_path_and_transformers() {
    // SmolLM2-135M-Instruct's GGUF template through minijinja, the ChatML renderer and
    // transformers' apply_chat_template agree.
    let r = reference();
    let src = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let jinja = JinjaChatTemplate::new(src, "smollm2", None, None).unwrap();
    let chatml = ChatTemplate::from_template(src).unwrap();
    for case in r["chatml"].as_array().unwrap() {
        let m = messages(&case["messages"]);
        let want = case["text"].as_str().unwrap();
        assert_eq!(jinja.render(&m, true).unwrap(), want);
        assert_eq!(chatml.render(None, &m[0].content), want);
    }
}

#[test]
fn converted_smollm2_in_the_hub_cache_matches_the_gguf_tokenizer() {
    // Present once `scripts/smollm2_to_hub_cache.py` has run on this machine.
    let id = Path::new("HuggingFaceTB/SmolLM2-135M-Instruct");
    let dir = match lora_models::resolve_model_path(id) {
        Ok(d) if d.is_dir() => d,
        _ => {
            println!("SKIPPED: {} is not in the hub cache", id.display());
            return;
        }
    };
    let t = Tokenizer::from_hf_dir(&dir).unwrap();
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smollm2_tokens.json")).unwrap(),
    )
    .unwrap();
    for c in json.as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(t.encode(text).unwrap(), ids(&c["ids"]), "{text:?}");
    }
    assert_eq!(
        (t.bos_id(), t.eos_id(), t.pad_id()),
        (Some(1), Some(2), Some(2))
    );
    let jinja = JinjaChatTemplate::from_tokenizer(&t).unwrap().unwrap();
    let chatml = ChatTemplate::from_template(t.chat_template().unwrap()).unwrap();
    let user = "What is the capital of France?";
    assert_eq!(
        jinja
            .render(&[ChatMessage::new("user", user)], true)
            .unwrap(),
        chatml.render(None, user)
    );
}

#[test]
fn gpt2_split_into_shards_loads_as_the_single_file() {
    // gpt2_a's tensors written to two shards with an index: the same logits as transformers'.
    use safetensors::tensor::{serialize, TensorView};
    let src = fixtures().join("gpt2_a");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, TensorView)> = part
            .iter()
            .map(|n| {
                let t = st.tensor(n).unwrap();
                map.insert(n.clone(), file.clone().into());
                (
                    n.clone(),
                    TensorView::new(t.dtype(), t.shape().to_vec(), t.data()).unwrap(),
                )
            })
            .collect();
        std::fs::write(tmp.path().join(&file), serialize(views, None).unwrap()).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let (model, _) = lora_models::gpt2::Gpt2::<B>::load(tmp.path(), &Default::default()).unwrap();
    let (input_ids, want, _) = io(&src, "logits");
    let (got, _) = values(model.forward(input_ids));
    let d = max_diff(&got, &want);
    assert!(d < 1e-4, "max |diff| {d}");
}
