//! Embeds the default plugin and model bundle when the Makefile built them,
//! so the binary runs from any directory without extra files.

use std::path::PathBuf;

const MODEL_FILES: [&str; 4] = ["model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json"];
const CANARY_FILE: &str = "canary.json";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(embedded_default)");
    println!("cargo:rerun-if-env-changed=LLMA_EMBED_PLUGIN");
    println!("cargo:rerun-if-env-changed=LLMA_EMBED_MODEL_DIR");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let plugin = std::env::var_os("LLMA_EMBED_PLUGIN").map(PathBuf::from);
    let model = std::env::var_os("LLMA_EMBED_MODEL_DIR").map(PathBuf::from);
    let code = match (plugin, model) {
        (Some(plugin), Some(model)) if plugin.is_file() && MODEL_FILES.iter().all(|f| model.join(f).is_file()) => {
            println!("cargo:rustc-cfg=embedded_default");
            println!("cargo:rerun-if-changed={}", plugin.display());
            let mut code = format!("pub const PLUGIN: &[u8] = include_bytes!({:?});\npub const MODEL_FILES: &[(&str, &[u8])] = &[\n", plugin);
            // The canaries go along when the bundle has them (see models/README.md).
            let canary = model.join(CANARY_FILE);
            println!("cargo:rerun-if-changed={}", canary.display());
            let optional = canary.is_file().then_some(CANARY_FILE);
            for f in MODEL_FILES.into_iter().chain(optional) {
                let p = model.join(f);
                println!("cargo:rerun-if-changed={}", p.display());
                code.push_str(&format!("    ({f:?}, include_bytes!({p:?})),\n"));
            }
            code.push_str("];\n");
            code
        }
        (plugin, model) => {
            if plugin.is_some() || model.is_some() {
                println!("cargo:warning=LLMA_EMBED_PLUGIN / LLMA_EMBED_MODEL_DIR set but incomplete: building without the embedded default");
            }
            "pub const PLUGIN: &[u8] = &[];\npub const MODEL_FILES: &[(&str, &[u8])] = &[];\n".to_string()
        }
    };
    std::fs::write(out.join("embedded.rs"), code).expect("writing embedded.rs");
}
