//! The host CPU features compiled code depends on: part of every cache key,
//! and printed beside speed figures (wasm SIMD is 4 lanes wide whatever the
//! host, native runtimes use 8 on AVX2 and 16 on AVX-512).

use std::sync::LazyLock;

/// The features, space-separated, in a fixed order (e.g. `avx2 fma bmi2`).
pub fn features() -> &'static str {
    static FEATURES: LazyLock<String> = LazyLock::new(detect);
    &FEATURES
}

#[cfg(target_arch = "x86_64")]
fn detect() -> String {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { found.push($f); } )* };
    }
    probe!(
        "sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "lzcnt", "f16c", "avx512f",
        "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512vnni"
    );
    found.join(" ")
}

#[cfg(target_arch = "aarch64")]
fn detect() -> String {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($f:tt),*) => { $( if std::arch::is_aarch64_feature_detected!($f) { found.push($f); } )* };
    }
    probe!("neon", "fp16", "dotprod", "lse", "sve", "sve2");
    found.join(" ")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> String {
    std::env::consts::ARCH.to_string()
}

/// The widest vector unit, for benchmark tables.
pub fn widest_vectors() -> &'static str {
    let f = features();
    if f.split(' ').any(|x| x == "avx512f") {
        "AVX-512"
    } else if f.split(' ').any(|x| x == "avx2") {
        "AVX2"
    } else {
        "no AVX2"
    }
}
