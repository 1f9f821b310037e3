//! Global-norm clipping, AdamW (torch.optim.AdamW formula) and gradient accumulation against
//! closed forms computed by hand in f64.

mod common;

use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use common::{quiet, tiny, vals, Inner, RefAdamW, Tiny, AD};
use lora_train::{accumulate_grads, clip_grad_norm, grad_norm, train, TrainConfig};

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
        |_, _, _| Ok(()),
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
        1.0,
    )
    .unwrap();
    let full = accumulate_grads(
        &m,
        1,
        |_| vec![0usize, 1, 2, 3],
        &|m: &Tiny<AD>, r: &Vec<usize>| ls_loss(m, r),
        1,
        1.0,
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
