//! Training-loop pieces against closed forms computed by hand in f64:
//! LR schedule, global-norm clipping, AdamW (torch.optim.AdamW formula), gradient
//! accumulation, error reporting, callbacks, atomic_write.

use burn::backend::{Autodiff, NdArray};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use lora_train::train::{
    accumulate_grads, atomic_write, budget_lr, clip_grad_norm, grad_norm, linear_warmup_lr, train,
    TrainConfig, TrainError,
};

type Inner = NdArray<f32>;
type AD = Autodiff<Inner>;

#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    a: Param<Tensor<B, 1>>,
    b: Param<Tensor<B, 2>>,
    frozen: Param<Tensor<B, 1>>,
}

fn tiny(a: &[f32], b: [[f32; 2]; 2]) -> Tiny<AD> {
    let dev = Default::default();
    Tiny {
        a: Param::from_tensor(Tensor::from_floats(a, &dev)),
        b: Param::from_tensor(Tensor::from_floats(b, &dev)),
        frozen: Param::from_tensor(Tensor::from_floats([1.0, 2.0], &dev)).set_require_grad(false),
    }
}

fn vals<const D: usize>(t: Tensor<Inner, D>) -> Vec<f64> {
    t.into_data().iter::<f64>().collect()
}

fn quiet(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        progress: false,
        ..TrainConfig::default()
    }
}

#[test]
fn lr_schedule_closed_form() {
    // warmup 10, total 110: ramps 0 → lr over steps 0..10, then linear to 0 at step 110.
    let lr = 3e-4;
    let cases = [
        (0, 0.0),
        (1, 0.1),
        (5, 0.5),
        (9, 0.9),
        (10, 1.0),
        (35, 0.75),
        (60, 0.5),
        (109, 0.01),
        (110, 0.0),
        (500, 0.0),
    ];
    for (step, factor) in cases {
        let got = linear_warmup_lr(lr, step, 10, 110);
        assert!((got - lr * factor).abs() < 1e-15, "step {step}: {got}");
    }
    // no warmup: starts at the full lr
    assert_eq!(linear_warmup_lr(1.0, 0, 0, 4), 1.0);
    assert_eq!(linear_warmup_lr(1.0, 1, 0, 4), 0.75);
    assert_eq!(linear_warmup_lr(1.0, 3, 0, 4), 0.25);
    // warmup == total (degenerate): no division by zero
    assert_eq!(linear_warmup_lr(1.0, 5, 5, 5), 0.0);
}

#[test]
fn time_budget_schedule_closed_form() {
    // warmup 10 of 1000 steps, budget 100 s.
    let b = Some(100.0);
    // warmup ignores the clock
    assert_eq!(budget_lr(1.0, 5, 10, 1000, 99.0, b), 0.5);
    // after warmup, the time fraction dominates: 25 s of 100 -> 0.75 (steps would give ~0.99)
    assert!((budget_lr(1.0, 20, 10, 1000, 25.0, b) - 0.75).abs() < 1e-12);
    // the step fraction dominates when it is further along: step 910 -> 90/990, time 0.5
    assert!((budget_lr(1.0, 910, 10, 1000, 50.0, b) - 90.0 / 990.0).abs() < 1e-12);
    // past the budget: 0, never negative
    assert_eq!(budget_lr(1.0, 20, 10, 1000, 150.0, b), 0.0);
    // no budget: the plain schedule
    assert_eq!(budget_lr(1.0, 35, 10, 110, 1e9, None), 0.75);
}

#[test]
fn time_budget_stops_training() {
    // A budget already spent before the second step: the loop stops early, not at `steps`.
    let cfg = TrainConfig {
        time_budget_secs: Some(1e-9),
        ..quiet(50)
    };
    let dev = Default::default();
    let m = tiny(&[1.0, 2.0, 3.0], [[1.0, 0.0], [0.0, 1.0]]);
    let (_, stats) = train(
        m,
        &cfg,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().sum() + m.b.val().sum(), 1)),
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap();
    assert!(stats.steps < 50, "ran {} steps", stats.steps);
    assert!(TrainConfig {
        time_budget_secs: Some(0.0),
        ..quiet(1)
    }
    .validate()
    .is_err());
}

/// loss = Σ a·ca + Σ b·cb + Σ frozen, so grad a = ca, grad b = cb, no grad for `frozen`.
fn linear_loss_grads(m: &Tiny<AD>, ca: [f32; 3], cb: [[f32; 2]; 2]) -> GradientsParams {
    let dev = Default::default();
    let loss = (m.a.val() * Tensor::<AD, 1>::from_floats(ca, &dev)).sum()
        + (m.b.val() * Tensor::<AD, 2>::from_floats(cb, &dev)).sum()
        + m.frozen.val().sum();
    GradientsParams::from_grads::<AD, _>(loss.backward(), m)
}

#[test]
fn global_norm_clipping() {
    let m = tiny(&[0.3, -0.2, 0.1], [[1.0, 2.0], [3.0, 4.0]]);
    // |ca|² = 1 + 4 + 4 = 9, |cb|² = 16 → total norm 5 (torch: norm of the per-tensor norms).
    let ca = [1.0, -2.0, 2.0];
    let cb = [[0.0, 4.0], [0.0, 0.0]];
    let mut grads = linear_loss_grads(&m, ca, cb);
    assert_eq!(grads.len(), 2, "frozen parameter must have no gradient");
    assert!((grad_norm::<AD, _>(&m, &grads) - 5.0).abs() < 1e-6);

    let total = clip_grad_norm::<AD, _>(&m, &mut grads, 1.0);
    assert!((total - 5.0).abs() < 1e-6, "pre-clip norm {total}");
    let coef = 1.0 / (5.0 + 1e-6);
    let ga = vals(grads.get::<Inner, 1>(m.a.id).unwrap());
    let gb = vals(grads.get::<Inner, 2>(m.b.id).unwrap());
    let want_a: Vec<f64> = ca.iter().map(|&c| c as f64 * coef).collect();
    let want_b: Vec<f64> = cb.iter().flatten().map(|&c| c as f64 * coef).collect();
    for (g, w) in ga.iter().chain(&gb).zip(want_a.iter().chain(&want_b)) {
        assert!((g - w).abs() < 1e-7, "{g} vs {w}");
    }
    let new_norm = ga.iter().chain(&gb).map(|g| g * g).sum::<f64>().sqrt();
    assert!((new_norm - 1.0).abs() < 1e-6, "clipped norm {new_norm}");
    assert!((grad_norm::<AD, _>(&m, &grads) - 1.0).abs() < 1e-6);

    // Below the threshold: untouched.
    let mut grads = linear_loss_grads(&m, ca, cb);
    assert!((clip_grad_norm::<AD, _>(&m, &mut grads, 10.0) - 5.0).abs() < 1e-6);
    let ga = vals(grads.get::<Inner, 1>(m.a.id).unwrap());
    assert_eq!(ga, vec![1.0, -2.0, 2.0]);
}

/// Hand AdamW (torch.optim.AdamW, amsgrad=False) in f64 for one tensor.
struct RefAdamW {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl RefAdamW {
    fn step(&mut self, p: &mut [f64], g: &[f64], lr: f64, cfg: &TrainConfig) {
        self.t += 1;
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        for i in 0..p.len() {
            p[i] *= 1.0 - lr * cfg.weight_decay;
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let mhat = self.m[i] / (1.0 - b1.powi(self.t));
            let vhat = self.v[i] / (1.0 - b2.powi(self.t));
            p[i] -= lr * mhat / (vhat.sqrt() + cfg.eps);
        }
    }
}

#[test]
fn adamw_steps_match_torch_formula() {
    // loss = Σ c·a² (+ the b/frozen terms with zero weight): grad a = 2·c·a, so the gradient
    // changes between steps. 3 steps, lr schedule 1, 2/3, 1/3 (no warmup), weight decay on.
    let a0 = [0.5f32, -1.0, 2.0];
    let c = [1.0f64, 0.5, -0.25];
    let cfg = TrainConfig {
        lr: 0.1,
        weight_decay: 0.1,
        eps: 1e-3, // large enough that eps-placement differences would show
        max_grad_norm: None,
        ..quiet(3)
    };
    let dev = Default::default();
    let model = tiny(&a0, [[0.0; 2]; 2]);
    let ct = Tensor::<AD, 1>::from_floats([c[0] as f32, c[1] as f32, c[2] as f32], &dev);
    let (model, stats) = train(
        model,
        &cfg,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok(((m.a.val().powi_scalar(2) * ct.clone()).sum(), 3)),
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap();

    let mut p: Vec<f64> = a0.iter().map(|&x| x as f64).collect();
    let mut opt = RefAdamW {
        m: vec![0.0; 3],
        v: vec![0.0; 3],
        t: 0,
    };
    let lrs = [0.1, 0.1 * 2.0 / 3.0, 0.1 / 3.0];
    for (k, &lr) in lrs.iter().enumerate() {
        let loss: f64 = p.iter().zip(&c).map(|(x, c)| c * x * x).sum();
        assert!((stats.losses[k] - loss).abs() < 1e-5, "loss step {k}");
        assert!((stats.lrs[k] - lr).abs() < 1e-12);
        let g: Vec<f64> = p.iter().zip(&c).map(|(x, c)| 2.0 * c * x).collect();
        let gn = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((stats.grad_norms[k] - gn).abs() < 1e-5);
        opt.step(&mut p, &g, lr, &cfg);
    }
    let got = vals(model.a.val().inner());
    let maxdiff = got
        .iter()
        .zip(&p)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    eprintln!("adamw: max |burn - torch formula| after 3 steps = {maxdiff:.3e}");
    for (g, w) in got.iter().zip(&p) {
        assert!((g - w).abs() < 2e-6, "got {got:?}, torch formula {p:?}");
    }
    // parameters without gradients are untouched by the optimizer (no weight decay either)
    assert_eq!(vals(model.frozen.val().inner()), vec![1.0, 2.0]);
    assert_eq!(vals(model.b.val().inner()), vec![0.0; 4]);
    assert_eq!(stats.tokens, 9);
}

/// Data for least squares: x [4, 3], y [4].
fn ls_data() -> ([[f32; 3]; 4], [f32; 4]) {
    (
        [
            [1.0, 2.0, -1.0],
            [0.5, -1.0, 3.0],
            [-2.0, 0.0, 1.0],
            [1.5, 1.0, 0.5],
        ],
        [1.0, -2.0, 0.5, 3.0],
    )
}

/// mean over the rows of (x·a − y)² on rows `rows`.
fn ls_loss(m: &Tiny<AD>, rows: &[usize]) -> Result<(Tensor<AD, 1>, usize), String> {
    let (x, y) = ls_data();
    let dev = Default::default();
    let xs: Vec<[f32; 3]> = rows.iter().map(|&i| x[i]).collect();
    let ys: Vec<f32> = rows.iter().map(|&i| y[i]).collect();
    let xt = Tensor::<AD, 2>::from_data(TensorData::new(xs.concat(), [rows.len(), 3]), &dev);
    let yt = Tensor::<AD, 1>::from_data(TensorData::new(ys, [rows.len()]), &dev);
    let pred = (xt * m.a.val().unsqueeze_dim::<2>(0))
        .sum_dim(1)
        .squeeze_dim::<1>(1);
    Ok(((pred - yt).powi_scalar(2).mean(), rows.len()))
}

#[test]
fn grad_accumulation_equals_full_batch() {
    let m = tiny(&[0.2, -0.4, 0.7], [[0.0; 2]; 2]);
    let halves = [vec![0usize, 1], vec![2, 3]];
    let acc = accumulate_grads(
        &m,
        2,
        |k| halves[k].clone(),
        &|m: &Tiny<AD>, r: &Vec<usize>| ls_loss(m, r),
        1,
    )
    .unwrap();
    let full = accumulate_grads(
        &m,
        1,
        |_| vec![0usize, 1, 2, 3],
        &|m: &Tiny<AD>, r: &Vec<usize>| ls_loss(m, r),
        1,
    )
    .unwrap();
    let ga = vals(acc.grads.get::<Inner, 1>(m.a.id).unwrap());
    let gf = vals(full.grads.get::<Inner, 1>(m.a.id).unwrap());
    // closed form: 2/N Σ (x·a − y) x
    let (x, y) = ls_data();
    let a = [0.2f64, -0.4, 0.7];
    let mut want = [0.0f64; 3];
    for i in 0..4 {
        let r: f64 = (0..3).map(|j| x[i][j] as f64 * a[j]).sum::<f64>() - y[i] as f64;
        for j in 0..3 {
            want[j] += 2.0 / 4.0 * r * x[i][j] as f64;
        }
    }
    let maxdiff = (0..3).map(|j| (ga[j] - gf[j]).abs()).fold(0.0, f64::max);
    eprintln!("grad accumulation: max |2 halves - full batch| = {maxdiff:.3e}");
    for j in 0..3 {
        assert!((ga[j] - gf[j]).abs() < 1e-6, "accum {ga:?} vs full {gf:?}");
        assert!(
            (gf[j] - want[j]).abs() < 1e-5,
            "full {gf:?} vs closed form {want:?}"
        );
    }
    assert!((acc.loss - full.loss).abs() < 1e-6);
    assert_eq!(acc.tokens, 4);
}

#[test]
fn nonfinite_loss_names_the_step() {
    let dev = Default::default();
    let cfg = quiet(5);
    let err = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg,
        &dev,
        |i| i,
        |m: &Tiny<AD>, &i: &usize| {
            let l = m.a.val().sum();
            Ok((if i == 2 { l * f32::NAN } else { l }, 1))
        },
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::NonFiniteLoss {
                step: 3,
                micro: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("step 3"));

    // with grad_accum 2, batch index 2 is step 2, micro 0
    let cfg = TrainConfig {
        grad_accum: 2,
        ..quiet(5)
    };
    let err = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg,
        &dev,
        |i| i,
        |m: &Tiny<AD>, &i: &usize| {
            let l = m.a.val().sum();
            Ok((if i == 3 { l * f32::INFINITY } else { l }, 1))
        },
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::NonFiniteLoss {
                step: 2,
                micro: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn callbacks_run_on_schedule_and_errors_propagate() {
    let dev = Default::default();
    let cfg = TrainConfig {
        eval_every: Some(2),
        checkpoint_every: Some(3),
        ..quiet(7)
    };
    let mut evals = Vec::new();
    let mut ckpts = Vec::new();
    let (_, stats) = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().powi_scalar(2).sum(), 2)),
        |_, s| {
            evals.push(s);
            format!("eval {s}")
        },
        |_, s| {
            ckpts.push(s);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(evals, vec![2, 4, 6]);
    assert_eq!(ckpts, vec![3, 6]);
    assert_eq!(stats.steps, 7);
    assert_eq!(stats.tokens, 14);
    assert_eq!(stats.final_loss, *stats.losses.last().unwrap());
    assert!(
        stats.losses[6] < stats.losses[0],
        "loss should go down: {:?}",
        stats.losses
    );

    let err = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().sum(), 1)),
        |_, _| String::new(),
        |_, _| Err("disk full".to_string()),
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::Checkpoint { step: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("disk full"));

    // Everything frozen: an error, not a silent no-op.
    let mut frozen = tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]);
    frozen.a = frozen.a.set_require_grad(false);
    frozen.b = frozen.b.set_require_grad(false);
    let err = train(
        frozen,
        &quiet(2),
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| Ok((m.a.val().sum() + m.frozen.val().sum(), 1)),
        |_, _| String::new(),
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(
        matches!(err, TrainError::NoGradients { step: 1 }),
        "{err:?}"
    );

    let bad = TrainConfig {
        grad_accum: 0,
        ..quiet(1)
    };
    let err = bad.validate().unwrap_err();
    assert!(err.to_string().contains("grad_accum"));
}

#[test]
fn atomic_write_replaces_whole_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("adapter_model.safetensors");
    atomic_write(&p, b"first version").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"first version");
    atomic_write(&p, b"2nd").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"2nd");
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temp files left: {names:?}");
    let err = atomic_write(d.path().join("no/such/dir/x.bin"), b"x").unwrap_err();
    assert!(err.to_string().contains("x.bin"), "{err}");
}
