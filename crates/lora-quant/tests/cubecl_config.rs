//! The repository's `cubecl.toml` parses into cubecl 0.10's runtime configuration with the caches
//! and loggers it asks for (a malformed file would make every GPU process panic at its first
//! kernel). Needs the `cubecl` feature: `cargo test -p lora-quant --features cubecl --test
//! cubecl_config`; no GPU is needed.
#![cfg(feature = "cubecl")]

use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

#[test]
fn repository_cubecl_toml_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(root.join("cubecl.toml").is_file());
    std::env::set_current_dir(&root).unwrap();
    let c = CubeClRuntimeConfig::get();
    let text = format!("{c:?}");
    println!("{text}");
    assert!(
        c.compilation.cache.is_some(),
        "the compilation (PTX) cache should be on"
    );
    assert!(
        text.contains("compile.log") && text.contains("autotune.log"),
        "{text}"
    );
    // The profiling log has a file but stays off unless CUBECL_DEBUG_OPTION=profile.
    assert!(text.contains("profile.log"), "{text}");
    if std::env::var("CUBECL_DEBUG_OPTION").is_err() && std::env::var("CUBECL_DEBUG_LOG").is_err() {
        let p = format!("{:?}", c.profiling.logger.level);
        assert_eq!(p, "Disabled", "{text}");
    }
}
