//! The pure core of applying a batch: decide, from the current versions of the keys, whether
//! every check passes and which writes follow. No I/O: the caller supplies the versions.

use std::collections::HashMap;

use super::types::{CommandResponse, Op};

/// What a batch does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan<'a> {
    /// Every check passed: these writes, in order (`None` removes the key).
    Write(Vec<(&'a str, Option<&'a [u8]>)>),
    /// A check failed: nothing is written and this is the answer.
    Reject(CommandResponse),
}

/// Plans `ops`, to be applied at log index `index`, against the stored versions given by
/// `stored_version`. Each operation sees the effect of the earlier ones in the same batch: after
/// a put the key has version `index`, after a delete it is absent.
pub(crate) fn plan_batch<'a, E>(
    ops: &'a [Op],
    index: u64,
    mut stored_version: impl FnMut(&str) -> Result<Option<u64>, E>,
) -> Result<Plan<'a>, E> {
    // Keys written earlier in this batch, with their version after that write.
    let mut pending: HashMap<&str, Option<u64>> = HashMap::new();
    let mut writes = Vec::with_capacity(ops.len());
    for op in ops {
        let key = op.key();
        let actual = match pending.get(key) {
            Some(version) => *version,
            None => stored_version(key)?,
        };
        let expected = op.expect();
        if !expected.matches(actual) {
            return Ok(Plan::Reject(CommandResponse::Conflict {
                key: key.to_owned(),
                expected,
                actual,
            }));
        }
        match op {
            Op::Put { value, .. } => {
                pending.insert(key, Some(index));
                writes.push((key, Some(value.as_slice())));
            }
            Op::Delete { .. } => {
                pending.insert(key, None);
                writes.push((key, None));
            }
        }
    }
    Ok(Plan::Write(writes))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;
    use crate::raft::types::Expect;

    fn plan<'a>(ops: &'a [Op], stored: &[(&str, u64)]) -> Plan<'a> {
        let stored: HashMap<&str, u64> = stored.iter().copied().collect();
        let lookup = |k: &str| Ok::<_, Infallible>(stored.get(k).copied());
        match plan_batch(ops, 10, lookup) {
            Ok(plan) => plan,
            Err(never) => match never {},
        }
    }

    #[test]
    fn a_passing_batch_plans_every_write_in_order() {
        let ops = [
            Op::Put {
                key: "a".into(),
                value: b"1".to_vec(),
                expect: Expect::Version(3),
            },
            Op::Delete {
                key: "b".into(),
                expect: Expect::Any,
            },
            Op::Put {
                key: "a".into(),
                value: b"2".to_vec(),
                expect: Expect::Version(10),
            },
        ];
        let expected = vec![("a", Some(&b"1"[..])), ("b", None), ("a", Some(&b"2"[..]))];
        assert_eq!(plan(&ops, &[("a", 3), ("b", 4)]), Plan::Write(expected));
    }

    #[test]
    fn the_first_failed_check_rejects_the_batch() {
        let ops = [
            Op::Delete {
                key: "a".into(),
                expect: Expect::Any,
            },
            Op::Put {
                key: "a".into(),
                value: vec![],
                expect: Expect::Version(3),
            },
            Op::Put {
                key: "c".into(),
                value: vec![],
                expect: Expect::Absent,
            },
        ];
        let rejected = CommandResponse::Conflict {
            key: "a".into(),
            expected: Expect::Version(3),
            actual: None,
        };
        assert_eq!(plan(&ops, &[("a", 3), ("c", 1)]), Plan::Reject(rejected));
    }
}
