//! Adapters written by this library, for PEFT to load. Each test attaches a randomly
//! initialised (non-zero, `init_lora_weights=False`) adapter to a fixture model written by
//! transformers, saves it in PEFT's format together with an `io.safetensors` holding our logits,
//! and checks that it reloads here to the same logits. With `LORA_BURN_EXPORT_DIR=DIR` the files
//! are kept in DIR, and `tests/fixtures/check_ours_in_peft.sh DIR` then loads every one of them
//! with `PeftModel.from_pretrained` (no missing or unexpected keys) and compares logits (1e-4).
use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use lora_burn::{load_any, AnyModel};
use lora_core::NamedLinears;
use lora_models::classify::SequenceClassifier;
use lora_models::st::StFile;
use lora_models::LanguageModel;
use lora_peft::{apply_lora, load_adapter, save_adapter, InitLoraWeights, LoraConfig};
use std::path::{Path, PathBuf};

type B = NdArray<f32>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("LORA_BURN_EXPORT_DIR") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            std::fs::create_dir_all(&p).unwrap();
            (p, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

fn ids_of(fx: &str) -> (Tensor<B, 2, Int>, Vec<usize>, StFile) {
    let st = StFile::open(fixtures().join(fx).join("io.safetensors")).unwrap();
    let (ids, shape) = st.i64("input_ids").unwrap();
    let lengths = match st.i64("attention_mask") {
        Ok((m, _)) => m
            .chunks(shape[1])
            .map(|r| r.iter().filter(|&&v| v == 1).count())
            .collect(),
        Err(_) => vec![shape[1]; shape[0]],
    };
    (
        Tensor::from_data(
            TensorData::new(ids, [shape[0], shape[1]]),
            &Default::default(),
        ),
        lengths,
        st,
    )
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn vals<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

fn config(targets: &[&str], task: Option<&str>) -> LoraConfig {
    let mut c = LoraConfig::new(4, 8.0, targets);
    c.init_lora_weights = InitLoraWeights::Bool(false);
    c.task_type = task.map(str::to_string);
    c
}

/// Writes io.safetensors (input_ids, attention_mask, logits) next to the adapter.
fn write_io<const D: usize>(dir: &Path, st: &StFile, logits: Tensor<B, D>) {
    let (ids, shape) = st.i64("input_ids").unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = vec![(
        "input_ids".into(),
        safetensors::Dtype::I64,
        shape.clone(),
        ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )];
    if let Ok((m, ms)) = st.i64("attention_mask") {
        tensors.push((
            "attention_mask".into(),
            safetensors::Dtype::I64,
            ms,
            m.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    let lshape = logits.dims().to_vec();
    let l: Vec<f32> = vals(logits);
    tensors.push((
        "logits".into(),
        safetensors::Dtype::F32,
        lshape,
        l.iter().flat_map(|v| v.to_le_bytes()).collect(),
    ));
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("io.safetensors"), bytes).unwrap();
}

fn lm_case(fx: &str, name: &str, targets: &[&str]) {
    let device = Default::default();
    let mut m: Box<dyn FnMutModel> = match load_any::<B>(&fixtures().join(fx), &device).unwrap() {
        AnyModel::Gpt2(m, _) => Box::new(m),
        AnyModel::Llama(m, _) => Box::new(m),
    };
    let (ids, _, st) = ids_of(fx);
    let cfg = config(targets, Some("CAUSAL_LM"));
    m.apply(&cfg);
    let logits = m.logits(ids.clone());
    let (out, _keep) = out_dir(name);
    m.save(&cfg, &out);
    write_io(&out, &st, logits.clone());
    // Reload into a fresh base: same logits.
    let mut fresh: Box<dyn FnMutModel> = match load_any::<B>(&fixtures().join(fx), &device).unwrap()
    {
        AnyModel::Gpt2(m, _) => Box::new(m),
        AnyModel::Llama(m, _) => Box::new(m),
    };
    fresh.load(&out);
    let d = max_diff(&vals(fresh.logits(ids)), &vals(logits));
    println!("{name}: reload max diff {d:e}");
    // Not bit-equal: the reloaded factors are read from PEFT's layout (transposed), and the CPU
    // backend's products sum in an order that follows the operands' strides.
    assert!(d < 1e-5);
}

/// Object-safe wrapper over both model families for these tests.
trait FnMutModel {
    fn apply(&mut self, c: &LoraConfig);
    fn save(&self, c: &LoraConfig, dir: &Path);
    fn load(&mut self, dir: &Path);
    fn logits(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3>;
}

impl<M: LanguageModel<B> + NamedLinears<B>> FnMutModel for M {
    fn apply(&mut self, c: &LoraConfig) {
        apply_lora(self, c, &Default::default()).unwrap();
    }
    fn save(&self, c: &LoraConfig, dir: &Path) {
        save_adapter(self, c, dir).unwrap();
    }
    fn load(&mut self, dir: &Path) {
        load_adapter(self, dir, &Default::default()).unwrap();
    }
    fn logits(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward(ids)
    }
}

#[test]
fn gpt2_lm_adapter_for_peft() {
    lm_case("gpt2_a", "gpt2_a", &lora_models::gpt2::LORA_TARGETS);
}

#[test]
fn llama_lm_adapter_for_peft() {
    lm_case("llama_a", "llama_a", &lora_models::llama::LORA_TARGETS);
}

fn cls_case<M: LanguageModel<B> + NamedLinears<B>>(fx: &str, m: M, targets: &[&str]) {
    let device = Default::default();
    let dir = fixtures().join(fx);
    let mut clf = SequenceClassifier::load_score(m, &dir, &device).unwrap();
    let cfg = config(targets, Some("SEQ_CLS"));
    apply_lora(&mut clf, &cfg, &device).unwrap();
    // Train-like change of the saved `score` copy so the file differs from the base head.
    let w = clf.score.base_weight().mul_scalar(1.5);
    clf.score.replace_base(w, None).unwrap();
    let (ids, lengths, st) = ids_of(fx);
    let logits = clf.forward(ids.clone(), &lengths);
    let (out, _keep) = out_dir(&format!("{fx}_seqcls"));
    save_adapter(&clf, &cfg, &out).unwrap();
    write_io(&out, &st, logits.clone());
    let names = StFile::open(out.join("adapter_model.safetensors"))
        .unwrap()
        .names();
    assert!(
        names.contains(&"base_model.model.score.weight".to_string()),
        "{names:?}"
    );
    println!("{fx}: wrote {} keys", names.len());
}

#[test]
fn gpt2_seq_cls_adapter_for_peft() {
    let (m, _) =
        lora_models::gpt2::Gpt2::<B>::load(&fixtures().join("gpt2_cls"), &Default::default())
            .unwrap();
    cls_case("gpt2_cls", m, &["c_attn"]);
}

#[test]
fn llama_seq_cls_adapter_for_peft() {
    let (m, _) =
        lora_models::llama::Llama::<B>::load_hf(&fixtures().join("llama_cls"), &Default::default())
            .unwrap();
    cls_case("llama_cls", m, &["q_proj", "v_proj"]);
}

#[test]
fn load_any_bad_inputs_name_the_file() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let e = load_any::<B>(tmp.path(), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let e = load_any::<B>(tmp.path(), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model_type") && e.contains("bert"), "{e}");
    std::fs::write(tmp.path().join("config.json"), "{not json").unwrap();
    let e = load_any::<B>(tmp.path(), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
    let g = tmp.path().join("m.gguf");
    std::fs::write(&g, b"GGUF\x03\x00").unwrap();
    let e = load_any::<B>(&g, &device).err().unwrap().to_string();
    assert!(e.contains("m.gguf"), "{e}");
}
