//! The vocabularies every layer reports in: why a plugin instance trapped,
//! why an event yields no sentiment event, what became of an event. A leaf:
//! it imports nothing of the crate, so the engine, the events, the pipeline
//! and the metrics can all name these without importing each other (metrics
//! take the labels as plain strings).

use serde::{Deserialize, Serialize};

/// An enum of labels: each variant with its label (`as_str`, `Display`) and
/// `ALL` of them in order (metrics create a series per label up front).
macro_rules! vocabulary {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub const ALL: [$name; [$($label),*].len()] = [$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// Why a plugin instance stopped: each kind means something different to
    /// an operator (see the troubleshooting section of docs/operations.md).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum TrapKind {
        /// The call ran past its epoch (wall-clock) deadline: a hang.
        Deadline => "deadline",
        /// The call used up its fuel budget: runaway computation.
        OutOfFuel => "out_of_fuel",
        /// The guest recursed past the wasm stack limit.
        StackOverflow => "stack_overflow",
        /// The guest tried to grow its memories past the per-instance cap.
        MemoryLimit => "memory_limit",
        /// The guest tried to grow its tables past the per-instance cap.
        TableLimit => "table_limit",
        /// The guest held more WASI handles (files, streams...) than allowed.
        HandleLimit => "handle_limit",
        /// The guest panicked or aborted (`unreachable`).
        Panic => "panic",
        /// The guest accessed memory out of bounds (a bug, or its shadow stack overflowed).
        MemoryFault => "memory_fault",
        /// The owner interrupted the call (activity cancelled, shutdown).
        Cancelled => "cancelled",
        /// Any other trap (bad memory access, ...).
        Other => "other",
    }
}

vocabulary! {
    /// Why a valid event yields no sentiment event: expected, not an error.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum SkipReason {
        /// The event is not an `$ai_generation`.
        NotAiGeneration => "not_ai_generation",
        /// `$ai_input` is missing or null.
        NoAiInput => "no_ai_input",
        /// `$ai_input` holds no user message to classify.
        NoUserMessages => "no_user_messages",
        /// Every user message trapped the plugin again on the last attempt.
        PluginTrapped => "plugin_trapped",
    }
}

vocabulary! {
    /// What became of one input event.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum EventStatus {
        /// A sentiment event was built for it.
        Classified => "classified",
        /// Nothing to classify (see [`SkipReason`]).
        Skipped => "skipped",
        /// Malformed, or the plugin failed on it.
        Failed => "failed",
        /// Never reached: a batch ran out of time in an activity that could
        /// not classify any of its events, so no further round was tried.
        Missed => "missed",
    }
}

vocabulary! {
    /// Why a call to the shared Redis tier did not work (a miss, never an
    /// error of the event: the tier is an optimisation).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RedisErrorKind {
        /// No answer within the tier's timeout.
        Timeout => "timeout",
        /// Refused, dropped or otherwise unreachable.
        Unavailable => "unavailable",
        /// An answer that is not what was asked for.
        Garbage => "garbage",
        /// The server answered with an error.
        Server => "server",
        /// The TLS handshake failed (certificate, CA, or a server without TLS).
        Tls => "tls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_labels() {
        for r in SkipReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for s in EventStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(TrapKind::ALL.len(), 10);
    }
}
