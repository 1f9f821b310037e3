//! The recomputing attention op in batch groups (vendor/burn-autodiff, `ops/attention.rs`):
//! with `LORA_BURN_ATTENTION=recompute:144` each group holds one batch entry of the fixture's
//! "prefix" case (3 heads × 6 rows × 8 keys = 144 scores), so its two entries run as two groups
//! in the forward and the backward pass and are concatenated; the output and the gradients of
//! `q`, `k`, `v` still match torch's. One test in this binary: the variable is read once.

mod common;

#[test]
fn batch_groups_of_one_entry_match_torch() {
    // Set before the first attention call of this process.
    std::env::set_var("LORA_BURN_ATTENTION", "recompute:144");
    common::attention::check_case("prefix", 1e-5);
}
