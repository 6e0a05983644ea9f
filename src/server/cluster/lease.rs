//! What a node does with a request for a session it does not serve: the decision from the
//! session's row and lease, without I/O.

/// A session as the database has it, for [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Closed: `(nonce, reason, closed_ms)`.
    pub closed: Option<(String, String, i64)>,
    pub lease: Option<Lease>,
}

/// A session's lease row, its expiry as the database's clock sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub owner: String,
    /// Milliseconds until it expires (negative: expired that long ago).
    pub remaining_ms: i64,
    /// The owner's internal URL, while the owner is a node the database knows.
    pub url: Option<String>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No such session, or a closed one: the request is answered here (404, 410).
    Answer,
    /// Take the session over (nobody holds it, or its lease expired) and serve it here.
    Take,
    /// Another node holds it: forward the request to `url`.
    Forward { owner: String, url: String },
    /// Another node holds it but cannot be reached: wait (at most `ms`) for its lease to run out.
    Wait { ms: i64 },
}

/// The decision on `found` (`None`: no such session) for node `me`. (An owner that does not
/// answer is asked again until its lease runs out: a loaded node may be slow to accept.)
pub fn decide(me: &str, found: Option<&Found>) -> Decision {
    let Some(found) = found else {
        return Decision::Answer;
    };
    if found.closed.is_some() {
        return Decision::Answer;
    }
    match &found.lease {
        None => Decision::Take,
        Some(l) if l.remaining_ms <= 0 => Decision::Take,
        // this node's own lease but no task here (being adopted this moment, or left by an
        // earlier process under the same --node-id): the adoption finishes or the lease runs out
        Some(l) if l.owner == me => Decision::Wait { ms: l.remaining_ms },
        Some(Lease {
            owner,
            url: Some(url),
            ..
        }) => Decision::Forward {
            owner: owner.clone(),
            url: url.clone(),
        },
        Some(l) => Decision::Wait { ms: l.remaining_ms },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(owner: &str, remaining_ms: i64, url: Option<&str>) -> Found {
        Found {
            closed: None,
            lease: Some(Lease {
                owner: owner.into(),
                remaining_ms,
                url: url.map(String::from),
            }),
        }
    }

    #[test]
    fn a_live_lease_of_another_node_is_forwarded_to_it() {
        let f = held("b", 2500, Some("http://10.0.0.2:8787"));
        let to_b = Decision::Forward {
            owner: "b".into(),
            url: "http://10.0.0.2:8787".into(),
        };
        assert_eq!(decide("a", Some(&f)), to_b);
        // once b's lease ran out, the session is taken
        let expired = held("b", -1, Some("u"));
        assert_eq!(decide("a", Some(&expired)), Decision::Take);
    }

    #[test]
    fn an_expired_own_or_missing_lease_is_taken() {
        assert_eq!(decide("a", Some(&held("b", 0, Some("u")))), Decision::Take);
        assert_eq!(decide("a", Some(&held("b", -40, None))), Decision::Take);
        // this node's own lease without a task here: waited for, not taken a second time
        assert_eq!(
            decide("a", Some(&held("a", 2000, Some("u")))),
            Decision::Wait { ms: 2000 }
        );
        assert_eq!(decide("a", Some(&held("a", -1, Some("u")))), Decision::Take);
        let unleased = Found {
            closed: None,
            lease: None,
        };
        assert_eq!(decide("a", Some(&unleased)), Decision::Take);
    }

    #[test]
    fn an_owner_the_database_does_not_know_is_waited_out() {
        assert_eq!(
            decide("a", Some(&held("b", 1200, None))),
            Decision::Wait { ms: 1200 }
        );
    }

    #[test]
    fn missing_and_closed_sessions_are_answered_here() {
        assert_eq!(decide("a", None), Decision::Answer);
        let closed = Found {
            closed: Some(("n".into(), "closed by the producer".into(), 5)),
            lease: Some(Lease {
                owner: "b".into(),
                remaining_ms: 3000,
                url: Some("u".into()),
            }),
        };
        assert_eq!(decide("a", Some(&closed)), Decision::Answer);
    }
}
