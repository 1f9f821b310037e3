//! `train` seeds the backend (`AD::seed`) so CPU runs repeat. Its own test binary: the NdArray
//! seed is process-global, and other tests calling `train` in parallel threads would reseed it.

mod common;

use burn::tensor::{Distribution, Tensor};
use common::{quiet, tiny, Tiny, AD};
use lora_train::{train, TrainConfig};

#[test]
fn seeded_runs_repeat() {
    let dev = Default::default();
    let cfg = quiet(3);
    let run = || {
        train(
            tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
            &cfg,
            &dev,
            |_| (),
            |m: &Tiny<AD>, _: &()| {
                let noise =
                    Tensor::<AD, 1>::random([3], Distribution::Default, &Default::default());
                Ok(((m.a.val() * noise).sum(), 1))
            },
            |_, _| String::new(),
            |_, _, _| Ok(()),
        )
        .unwrap()
        .1
        .losses
    };
    let (l1, l2) = (run(), run());
    assert_eq!(l1, l2);
    let cfg2 = TrainConfig {
        seed: 7,
        ..quiet(3)
    };
    let l3 = train(
        tiny(&[1.0, 1.0, 1.0], [[0.0; 2]; 2]),
        &cfg2,
        &dev,
        |_| (),
        |m: &Tiny<AD>, _: &()| {
            let noise = Tensor::<AD, 1>::random([3], Distribution::Default, &Default::default());
            Ok(((m.a.val() * noise).sum(), 1))
        },
        |_, _| String::new(),
        |_, _, _| Ok(()),
    )
    .unwrap()
    .1
    .losses;
    assert_ne!(l1, l3);
}
