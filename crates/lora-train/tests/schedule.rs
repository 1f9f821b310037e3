//! Learning-rate schedules against closed forms: linear warmup/decay and the time budget.

mod common;

use common::{quiet, tiny, Tiny, AD};
use lora_train::{budget_lr, linear_warmup_lr, train, TrainConfig};

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
        |_, _, _| Ok(()),
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
