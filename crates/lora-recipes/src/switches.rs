//! The environment switches of the workspace's patched burn crates (vendor/PATCHES.md), checked
//! before a run starts.
//!
//! The patched crates read each switch once, at the first operation that needs it, deep inside a
//! training step, and panic there on a value they do not know. [`check_switches`] reads the same
//! variables up front, so that the examples that run a backend (all but `quantize`) fail with
//! one line naming the variable, the value and the accepted ones before anything is fetched,
//! loaded or compiled.
//! One difference: a value that is not UTF-8 is refused here, where the crates take it as unset.
//!
//! The accepted values are those of the vendored parsers, each of which points back here:
//! - `vendor/burn-autodiff/src/ops/attention.rs` (`LORA_BURN_ATTENTION`);
//! - `vendor/burn-cubecl/src/kernel/matmul/cublaslt.rs` (`LORA_BURN_CUBLASLT`);
//! - `vendor/burn-cubecl/src/kernel/matmul/base.rs` (`LORA_BURN_MATMUL`);
//! - `vendor/burn-cubecl-fusion/src/optim/matmul/optimization.rs` (`LORA_BURN_FUSED_MATMUL`).

use crate::AnyError;

/// A switch: its variable and the values it accepts (unset is always accepted).
struct Switch {
    name: &'static str,
    accepts: fn(&str) -> bool,
    expected: &'static str,
}

/// Every switch of the patched crates.
const SWITCHES: [Switch; 4] = [
    Switch {
        name: "LORA_BURN_ATTENTION",
        accepts: |v| {
            matches!(v, "recompute" | "whole" | "fallback")
                || v.strip_prefix("recompute:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n > 0)
        },
        expected:
            "recompute (or unset), recompute:N (N ≥ 1 score elements a group), whole or fallback",
    },
    Switch {
        name: "LORA_BURN_CUBLASLT",
        accepts: |v| matches!(v, "1" | "async" | "blocking" | "0" | "verbose"),
        expected: "1 (or unset), async, blocking, 0 or verbose",
    },
    Switch {
        name: "LORA_BURN_MATMUL",
        accepts: |v| {
            matches!(
                v,
                "specialized_tma_mma" | "simple_tma_mma_multi_rows" | "upstream"
            )
        },
        expected: "specialized_tma_mma (or unset), simple_tma_mma_multi_rows or upstream",
    },
    Switch {
        name: "LORA_BURN_FUSED_MATMUL",
        accepts: |v| {
            matches!(
                v,
                "fallback" | "simple_multirows_mma" | "simple_multirows_cmma" | "simple_cmma"
            )
        },
        expected: "fallback (or unset), simple_multirows_mma, simple_multirows_cmma or simple_cmma",
    },
];

/// Whether `value` of the switch `name` would be accepted by the patched crate that reads it.
///
/// # Errors
/// `"{name}={value:?}: expected {accepted values} (a switch of the patched burn crates,
/// vendor/PATCHES.md)"` for a value that crate would panic on, and `"{name}: not a switch"` for
/// a name that is none of the four.
pub fn check_switch(name: &str, value: &str) -> Result<(), AnyError> {
    let switch = SWITCHES
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("{name}: not a switch"))?;
    if (switch.accepts)(value) {
        Ok(())
    } else {
        Err(format!(
            "{name}={value:?}: expected {} (a switch of the patched burn crates, vendor/PATCHES.md)",
            switch.expected
        )
        .into())
    }
}

/// Checks every switch set in the environment ([`check_switch`]); unset ones are fine. The
/// switches a build never reads (the CubeCL ones in a CPU build) are checked all the same, so a
/// mistyped value fails on every backend.
///
/// # Errors
/// The first bad switch, as [`check_switch`] words it; a value that is not UTF-8 is reported
/// as `"{name}: not valid UTF-8"`.
pub fn check_switches() -> Result<(), AnyError> {
    for switch in &SWITCHES {
        match std::env::var(switch.name) {
            Ok(value) => check_switch(switch.name, &value)?,
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("{}: not valid UTF-8", switch.name).into())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_values_pass() {
        for (name, value) in [
            ("LORA_BURN_ATTENTION", "recompute"),
            ("LORA_BURN_ATTENTION", "recompute:144"),
            ("LORA_BURN_ATTENTION", "whole"),
            ("LORA_BURN_ATTENTION", "fallback"),
            ("LORA_BURN_CUBLASLT", "0"),
            ("LORA_BURN_CUBLASLT", "1"),
            ("LORA_BURN_CUBLASLT", "async"),
            ("LORA_BURN_CUBLASLT", "blocking"),
            ("LORA_BURN_CUBLASLT", "verbose"),
            ("LORA_BURN_MATMUL", "upstream"),
            ("LORA_BURN_MATMUL", "specialized_tma_mma"),
            ("LORA_BURN_MATMUL", "simple_tma_mma_multi_rows"),
            ("LORA_BURN_FUSED_MATMUL", "fallback"),
            ("LORA_BURN_FUSED_MATMUL", "simple_cmma"),
            ("LORA_BURN_FUSED_MATMUL", "simple_multirows_mma"),
            ("LORA_BURN_FUSED_MATMUL", "simple_multirows_cmma"),
        ] {
            check_switch(name, value).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        }
    }

    #[test]
    fn bad_values_name_the_switch_and_the_choices() {
        for (name, value, choice) in [
            ("LORA_BURN_ATTENTION", "recompute:0", "recompute:N"),
            ("LORA_BURN_ATTENTION", "recompute:x", "whole"),
            ("LORA_BURN_ATTENTION", "flash", "fallback"),
            ("LORA_BURN_CUBLASLT", "on", "blocking"),
            ("LORA_BURN_CUBLASLT", "", "verbose"),
            ("LORA_BURN_MATMUL", "Upstream", "simple_tma_mma_multi_rows"),
            ("LORA_BURN_FUSED_MATMUL", "mma", "simple_cmma"),
        ] {
            let e = check_switch(name, value).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{name}={value:?}: expected ")),
                "{e}"
            );
            assert!(e.contains(choice), "{e}");
        }
        let e = check_switch("LORA_BURN_X", "1").unwrap_err().to_string();
        assert_eq!(e, "LORA_BURN_X: not a switch");
    }
}
