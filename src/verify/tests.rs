use super::*;

fn hv(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

fn key(route: usize, cred: Option<&str>) -> VerdictKey {
    let cred = cred.map(|c| HeaderValue::from_str(c).unwrap());
    let pattern = format!("/route{route}");
    VerdictKey::new(&pattern, "http://api", cred.as_ref(), std::iter::empty())
}

fn asker(route: usize, cred: Option<&'static str>) -> Asker {
    Asker {
        key: key(route, cred),
        policy: VerifyPolicy {
            verify_ttl: Duration::from_secs(300),
            reject_ttl: Duration::from_secs(30),
        },
    }
}

#[test]
fn outcome_by_status_table() {
    let mut challenged = HeaderMap::new();
    challenged.insert(header::WWW_AUTHENTICATE, hv("Bearer realm=\"api\""));
    let rejected = |s: u16, c: Option<&'static str>| {
        Some(Outcome::Rejected(Rejection {
            status: StatusCode::from_u16(s).unwrap(),
            challenge: c.map(hv),
        }))
    };
    // (status, verdict)
    let rows: [(u16, Option<Outcome>); 13] = [
        (200, Some(Outcome::Accepted)),
        (204, Some(Outcome::Accepted)),
        (206, Some(Outcome::Accepted)),
        (301, None),
        (304, None),
        (400, None),
        (404, None),
        (401, rejected(401, Some("Bearer realm=\"api\""))),
        (403, rejected(403, Some("Bearer realm=\"api\""))),
        (407, None),
        (429, None),
        (500, None),
        (503, None),
    ];
    for (status, want) in rows {
        let s = StatusCode::from_u16(status).unwrap();
        assert_eq!(outcome_of(s, &challenged), want, "{status}");
    }
    // A challenge too long to replay is left out, not truncated.
    let mut long = HeaderMap::new();
    long.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&"x".repeat(MAX_CHALLENGE + 1)).unwrap(),
    );
    assert_eq!(
        outcome_of(StatusCode::UNAUTHORIZED, &long),
        rejected(401, None)
    );
}

#[test]
fn admission_table() {
    let now = Instant::now();
    let later = now + Duration::from_secs(1);
    let r = Rejection {
        status: StatusCode::UNAUTHORIZED,
        challenge: None,
    };
    let v = |outcome: Outcome, until: Instant| Verdict { outcome, until };
    let rows = [
        (None, Admission::Unverified),
        (Some(v(Outcome::Accepted, later)), Admission::Verified),
        (Some(v(Outcome::Accepted, now)), Admission::Unverified),
        (
            Some(v(Outcome::Rejected(r.clone()), later)),
            Admission::Rejected(r.clone()),
        ),
        (Some(v(Outcome::Rejected(r), now)), Admission::Unverified),
    ];
    for (verdict, want) in rows {
        assert_eq!(admission(verdict.as_ref(), now), want, "{verdict:?}");
    }
}

#[test]
fn classes_are_per_route_host_credential_and_cookie_and_never_hold_the_secret() {
    let a = key(0, Some("Bearer k1"));
    assert_eq!(a, key(0, Some("Bearer k1")));
    assert_ne!(a, key(1, Some("Bearer k1")));
    assert_ne!(a, key(0, Some("Bearer k2")));
    let k1 = hv("Bearer k1");
    let other_host = VerdictKey::new("/route0", "http://other", Some(&k1), std::iter::empty());
    assert_ne!(a, other_host);
    // A session cookie makes a class of its own, with or without a credential.
    let sid = hv("sid=abc");
    let with_cookie = VerdictKey::new("/route0", "http://api", None, std::iter::once(&sid));
    assert_ne!(with_cookie, key(0, None));
    let both = VerdictKey::new("/route0", "http://api", Some(&k1), std::iter::once(&sid));
    assert_ne!(both, a);
    // An empty credential is not the anonymous class.
    assert_ne!(key(0, Some("")), key(0, None));
    assert!(!a.flight_suffix().contains("k1"));
    assert_ne!(a.flight_suffix(), key(0, None).flight_suffix());
    assert!(!format!("{a:?}").contains("k1"));
}

#[test]
fn verdicts_expire_on_the_clock_and_rejections_sooner() {
    let clock = Clock::default();
    let v = Verdicts::new(1 << 20, clock.clone());
    let (good, bad) = (asker(0, Some("Bearer good")), asker(0, Some("Bearer bad")));
    let none = HeaderMap::new();
    assert_eq!(v.admit(&good.key), Admission::Unverified);
    assert_eq!(
        v.record(&good, StatusCode::OK, &none),
        Recorded::Verification
    );
    assert_eq!(v.record(&good, StatusCode::OK, &none), Recorded::Confirmed);
    assert_eq!(
        v.record(&bad, StatusCode::FORBIDDEN, &none),
        Recorded::Verification
    );
    assert_eq!(v.admit(&good.key), Admission::Verified);
    assert!(matches!(v.admit(&bad.key), Admission::Rejected(r) if r.status == 403));
    // Another route knows neither.
    assert_eq!(
        v.admit(&asker(1, Some("Bearer good")).key),
        Admission::Unverified
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(v.admit(&bad.key), Admission::Unverified);
    assert_eq!(v.admit(&good.key), Admission::Verified);
    clock.advance(Duration::from_secs(270));
    assert_eq!(v.admit(&good.key), Admission::Unverified);
    // A server error says nothing, a revocation replaces the acceptance at once.
    assert_eq!(
        v.record(&good, StatusCode::BAD_GATEWAY, &none),
        Recorded::Nothing
    );
    v.record(&good, StatusCode::OK, &none);
    v.record(&good, StatusCode::UNAUTHORIZED, &none);
    assert!(matches!(v.admit(&good.key), Admission::Rejected(_)));
    assert_eq!(v.clear(), 2);
    assert_eq!((v.len(), v.bytes()), (0, 0));
}

#[test]
fn bounded_in_bytes_and_bad_keys_cannot_push_out_good_ones() {
    let clock = Clock::default();
    let v = Verdicts::new(100 * VERDICT_COST, clock.clone());
    let none = HeaderMap::new();
    let asker = |i: usize| Asker {
        key: key(0, Some(&format!("Bearer k{i}"))),
        policy: VerifyPolicy {
            verify_ttl: Duration::from_secs(300),
            reject_ttl: Duration::from_secs(30),
        },
    };
    for i in 0..50 {
        v.record(&asker(i), StatusCode::OK, &none);
    }
    for i in 1000..2000 {
        v.record(&asker(i), StatusCode::UNAUTHORIZED, &none);
    }
    assert!(v.bytes() <= 100 * VERDICT_COST, "{}", v.bytes());
    assert!((0..50).all(|i| v.admit(&asker(i).key) == Admission::Verified));
    assert!(v.dropped() > 0);
    // Expired rejections make room again.
    clock.advance(Duration::from_secs(31));
    v.record(&asker(5000), StatusCode::UNAUTHORIZED, &none);
    assert!(matches!(v.admit(&asker(5000).key), Admission::Rejected(_)));
    // A verdict that does not fit never leaves the old one in force.
    for i in 50..200 {
        v.record(&asker(i), StatusCode::OK, &none);
    }
    assert!(v.bytes() <= 100 * VERDICT_COST);
    let full = asker(0);
    v.record(&full, StatusCode::UNAUTHORIZED, &none);
    assert_ne!(v.admit(&full.key), Admission::Verified);
}
