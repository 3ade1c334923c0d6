//! A plugin that misbehaves on demand, for the host's sandbox tests.
//!
//! `classify` looks at each text: `spin` loops forever, `recurse` overflows
//! the stack, `alloc` grows memory without bound, `panic` panics, and
//! `handles` opens the model's config file again and again without closing
//! it, `socket`, `read:PATH`, `write-model`, `env` try to escape the sandbox,
//! answering `invalid-argument("denied: ...")` when the sandbox held and
//! a positive result with score 1.0 when it did not. Any other text gets a
//! fixed neutral result. `load` misbehaves the same way when the model
//! directory holds a file `hostile-load` naming the behaviour; a file
//! `hostile-bad-scores` makes every result's scores sum to 2 (a plugin that
//! must fail the host's self-test).

#![cfg(target_arch = "wasm32")]

// Built against the frozen 1.0 contract on purpose: the host's tests use it
// as the plugin that has none of 1.1's options.
wit_bindgen::generate!({ world: "plugin", path: "../../../wit/v1.0/sentiment.wit" });

use exports::llma::sentiment::sentiment::*;

struct Hostile;
export!(Hostile);

static BAD_SCORES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Every text positive (a model-dir marker): a plugin that labels everything wrong.
static ALWAYS_POSITIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn info() -> PluginInfo {
    PluginInfo {
        name: "llma-hostile-plugin".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        interface_version: "1.0.0".into(),
        model_name: "hostile".into(),
        labels: vec![Label::Negative, Label::Neutral, Label::Positive],
        limits: Limits { max_tokens: 512, max_batch: 64 },
    }
}

fn escaped(what: String) -> Result<MessageResult, Error> {
    let _ = what;
    Ok(MessageResult { label: Label::Positive, score: 1.0, scores: Scores { negative: 0.0, neutral: 0.0, positive: 1.0 } })
}

/// Recursion on the wasm call stack only (no address-taken locals, so the
/// shadow stack in linear memory is not what runs out first).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    std::hint::black_box(recurse(depth + 1)).wrapping_add(1)
}

fn behave(text: &str) -> Result<MessageResult, Error> {
    match text {
        "spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "recurse" => {
            let d = recurse(0);
            escaped(format!("recursed {d}"))
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            for _ in 0..(8u64 << 30) / (64 << 20) {
                hoard.push(vec![1u8; 64 << 20]);
            }
            escaped(format!("allocated {} chunks", hoard.len()))
        }
        "panic" => panic!("hostile plugin panics on purpose"),
        // A WASI handle flood: every open file is a host-side handle.
        "handles" => {
            let mut opened = 0u64;
            loop {
                match std::fs::File::open("/model/config.json") {
                    Ok(f) => {
                        std::mem::forget(f);
                        opened += 1;
                    }
                    Err(e) => return Err(Error::InvalidArgument(format!("denied after {opened} handles: {e}"))),
                }
            }
        }
        "socket" => match std::net::TcpStream::connect("127.0.0.1:1") {
            Ok(_) => escaped("socket".into()),
            Err(e) => Err(Error::InvalidArgument(format!("denied: {e}"))),
        },
        "write-model" => match std::fs::write("/model/pwned", b"x") {
            Ok(()) => escaped("write".into()),
            Err(e) => Err(Error::InvalidArgument(format!("denied: {e}"))),
        },
        "env" => {
            let vars: Vec<(String, String)> = std::env::vars().collect();
            let args: Vec<String> = std::env::args().collect();
            if vars.is_empty() && args.is_empty() {
                Err(Error::InvalidArgument("denied: no env vars, no args".into()))
            } else {
                escaped(format!("{} vars {} args", vars.len(), args.len()))
            }
        }
        // Computes for MS milliseconds of wall time, then answers: a call
        // that is slow but well-behaved (it finishes inside its deadline).
        t if t.starts_with("busy:") => {
            let ms: u64 = t[5..].parse().map_err(|_| Error::InvalidArgument(format!("busy:MS, not {t}")))?;
            let started = std::time::Instant::now();
            let mut x: u64 = 0;
            while started.elapsed() < std::time::Duration::from_millis(ms) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            Ok(MessageResult { label: Label::Negative, score: 0.8, scores: Scores { negative: 0.8, neutral: 0.1, positive: 0.1 } })
        }
        t if t.starts_with("read:") => match std::fs::read(&t[5..]) {
            Ok(_) => escaped("read".into()),
            Err(e) => Err(Error::InvalidArgument(format!("denied: {e}"))),
        },
        _ => Ok(MessageResult {
            label: Label::Neutral,
            score: 0.5,
            scores: Scores { negative: 0.25, neutral: 0.5, positive: 0.25 },
        }),
    }
}

impl Guest for Hostile {
    fn load(model_dir: String) -> Result<PluginInfo, Error> {
        if let Ok(what) = std::fs::read_to_string(format!("{model_dir}/hostile-load")) {
            behave(what.trim())?;
        }
        std::fs::read(format!("{model_dir}/config.json")).map_err(|e| Error::ModelLoad(e.to_string()))?;
        let bad = std::fs::metadata(format!("{model_dir}/hostile-bad-scores")).is_ok();
        BAD_SCORES.store(bad, std::sync::atomic::Ordering::Relaxed);
        let positive = std::fs::metadata(format!("{model_dir}/hostile-always-positive")).is_ok();
        ALWAYS_POSITIVE.store(positive, std::sync::atomic::Ordering::Relaxed);
        Ok(info())
    }

    fn info() -> Result<PluginInfo, Error> {
        Ok(info())
    }

    fn extract(ai_input_json: String, _options: ExtractOptions) -> Result<Vec<UserMessage>, Error> {
        // `$ai_input` "a|b|c" (a JSON string) is three messages, so a test can
        // mix well-behaved and hostile messages in one generation; anything
        // else is one message holding the whole JSON text.
        let texts: Vec<String> = match ai_input_json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(inner) => inner.split('|').map(String::from).collect(),
            None => vec![ai_input_json],
        };
        Ok(texts.into_iter().enumerate().map(|(i, text)| UserMessage { index: i as u32, text }).collect())
    }

    fn classify(texts: Vec<String>) -> Result<Vec<MessageResult>, Error> {
        let mut results: Vec<MessageResult> = texts.iter().map(|t| behave(t)).collect::<Result<_, _>>()?;
        if ALWAYS_POSITIVE.load(std::sync::atomic::Ordering::Relaxed) {
            for r in &mut results {
                *r = MessageResult { label: Label::Positive, score: 0.9, scores: Scores { negative: 0.05, neutral: 0.05, positive: 0.9 } };
            }
        }
        if BAD_SCORES.load(std::sync::atomic::Ordering::Relaxed) {
            for r in &mut results {
                r.scores = Scores { negative: 0.5, neutral: 1.0, positive: 0.5 };
                r.score = 1.0;
            }
        }
        Ok(results)
    }

    fn aggregate(results: Vec<MessageResult>) -> Option<OverallResult> {
        let first = results.first()?;
        Some(OverallResult { label: first.label, score: first.score, scores: first.scores, messages: results })
    }
}
