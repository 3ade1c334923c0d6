//! Rollout sampling, PostHog's rule: a generation is classified when the
//! first 8 hex digits of md5(its uuid string), read as an integer, give
//! `n % 10000 / 100 < percent`. The same uuid always gets the same answer, on
//! every producer, so raising the percentage only adds generations.

use md5::{Digest, Md5};

/// The generation's bucket in 0.00..=99.99.
pub fn bucket(uuid: &str) -> f64 {
    let digest = Md5::digest(uuid.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    f64::from(n % 10_000) / 100.0
}

/// Whether the generation with this uuid string (as the event carries it,
/// lowercase and hyphenated from PostHog) is in a rollout of `percent`
/// (0 = none, 100 = all).
pub fn in_rollout(uuid: &str, percent: f64) -> bool {
    bucket(uuid) < percent
}

/// The uuid string of an event's JSON, if it has one.
pub fn event_uuid(event: &serde_json::Value) -> Option<&str> {
    event.get("uuid").and_then(serde_json::Value::as_str).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    // md5 values from Python's hashlib:
    //   0190b6a5-0000-7000-8000-000000000001 -> 97bd4aff... = 2545765119 -> 51.19
    //   0190b6a5-0000-7000-8000-000000000002 -> b7509e64... = 3075513956 -> 39.56
    //   00000000-0000-0000-0000-000000000000 -> 9f89c84a... = 2676607050 -> 70.50
    //   ffffffff-ffff-ffff-ffff-ffffffffffff -> b537846d... = 3040314477 -> 44.77
    const KNOWN: [(&str, f64); 4] = [
        ("0190b6a5-0000-7000-8000-000000000001", 51.19),
        ("0190b6a5-0000-7000-8000-000000000002", 39.56),
        ("00000000-0000-0000-0000-000000000000", 70.50),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", 44.77),
    ];

    #[test]
    fn buckets_match_known_md5_values() {
        for (uuid, want) in KNOWN {
            assert!((bucket(uuid) - want).abs() < 1e-9, "{uuid}: {} != {want}", bucket(uuid));
        }
    }

    #[test]
    fn the_rule_is_strictly_below_the_percentage() {
        let u = KNOWN[0].0; // bucket 51.19
        assert!(!in_rollout(u, 51.19));
        assert!(in_rollout(u, 51.2));
        assert!(!in_rollout(u, 50.0));
        assert!(in_rollout(KNOWN[1].0, 50.0));
        for (uuid, _) in KNOWN {
            assert!(!in_rollout(uuid, 0.0));
            assert!(in_rollout(uuid, 100.0));
            assert_eq!(in_rollout(uuid, 45.0), in_rollout(uuid, 45.0));
        }
    }

    #[test]
    fn a_percentage_keeps_about_that_share() {
        let n = 20_000;
        let kept = (0..n).filter(|i| in_rollout(&uuid::Uuid::from_u128(*i as u128 * 7919).to_string(), 10.0)).count();
        let share = kept as f64 / n as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
    }
}
