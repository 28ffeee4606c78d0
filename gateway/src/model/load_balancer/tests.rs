use std::net::SocketAddr;

use super::*;

fn endpoints(n: u8) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 0, 0, 1 + i], 8080)))
        .collect()
}

/// A deterministic stream of random numbers (splitmix64).
fn randoms() -> impl FnMut() -> u64 {
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn ring(eps: &[SocketAddr]) -> LoadBalancer {
    LoadBalancer::new(LbPolicy::RingHash(HashPolicy::SourceIp), eps)
}

/// 10,000 keys on 10 endpoints; one endpoint leaves and the ring is rebuilt, as a new
/// snapshot rebuilds it. Its own keys (about 1/10) must move; Envoy's ring also moves
/// some keys between the others, because each remaining endpoint gets more points
/// (ceil(1024/9) = 114 instead of ceil(1024/10) = 103). The figure is printed.
#[test]
fn keys_moved_when_one_of_ten_endpoints_leaves() {
    let all = endpoints(10);
    let gone = all[3];
    let rest: Vec<SocketAddr> = all.iter().copied().filter(|a| *a != gone).collect();
    let (before, after) = (ring(&all), ring(&rest));
    let keys = 10_000;
    let (mut moved, mut on_gone, mut moved_others) = (0, 0, 0);
    for k in 0..keys {
        let h = xxh64(format!("user-{k}").as_bytes());
        let a = all[before.pick(10, Some(h), 0, &[]).unwrap() as usize];
        let b = rest[after.pick(9, Some(h), 0, &[]).unwrap() as usize];
        if a == gone {
            on_gone += 1;
        }
        if a != b {
            moved += 1;
            if a != gone {
                moved_others += 1;
            }
        }
    }
    println!(
        "ring hash, 10 -> 9 endpoints, {keys} keys: {moved} moved ({:.1}%), {on_gone} were on the endpoint that left, {moved_others} moved between endpoints that stayed",
        moved as f64 * 100.0 / keys as f64
    );
    // Every key of the endpoint that left moves, and only those are forced to.
    assert!(moved >= on_gone);
    // Its share is about 1/10 (p = 0.1 over 10,000 keys: +- 4 sd is +- 120).
    assert!((880..=1120).contains(&on_gone), "{on_gone}");
    // The keys that move are about 1/10 of all plus the ring's re-spread; far from a
    // modulo hash, which would move about 9/10 of them.
    assert!(moved <= 2_000, "{moved} of {keys} keys moved");
}

#[test]
fn same_key_same_endpoint_and_keys_spread() {
    let eps = endpoints(3);
    let lb = ring(&eps);
    let mut counts = [0u32; 3];
    for k in 0..3000 {
        let h = xxh64(format!("key-{k}").as_bytes());
        let first = lb.pick(3, Some(h), k, &[]).unwrap();
        for r in 0..3 {
            assert_eq!(lb.pick(3, Some(h), r * 7919, &[]), Some(first));
        }
        counts[first as usize] += 1;
    }
    // Each endpoint holds about a third of the keys (ring imbalance included: wide bounds).
    for c in counts {
        assert!((700..=1300).contains(&c), "{counts:?}");
    }
}

#[test]
fn retries_avoid_tried_endpoints_under_every_policy() {
    let eps = endpoints(3);
    let mut rnd = randoms();
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::LeastRequest,
        LbPolicy::RingHash(HashPolicy::Path),
    ] {
        let lb = LoadBalancer::new(policy.clone(), &eps);
        for _ in 0..200 {
            let h = rnd();
            let first = lb.pick(3, Some(h), rnd(), &[]).unwrap();
            let second = lb.pick(3, Some(h), rnd(), &[first]).unwrap();
            assert_ne!(first, second, "{policy:?}");
            let third = lb.pick(3, Some(h), rnd(), &[first, second]).unwrap();
            assert!(third != first && third != second, "{policy:?}");
            // All tried: still an answer.
            assert!(lb.pick(3, Some(h), rnd(), &[0, 1, 2]).is_some());
        }
        assert_eq!(lb.pick(0, None, 1, &[]), None);
    }
}

#[test]
fn random_spreads_evenly() {
    let lb = LoadBalancer::new(LbPolicy::Random, &endpoints(4));
    let mut rnd = randoms();
    let mut counts = [0u32; 4];
    let n = 10_000;
    for _ in 0..n {
        counts[lb.pick(4, None, rnd(), &[]).unwrap() as usize] += 1;
    }
    // p = 1/4: +- 4 sd = +- 173.
    for c in counts {
        assert!((2500 - 173..=2500 + 173).contains(&c), "{counts:?}");
    }
}

#[test]
fn least_request_prefers_the_endpoint_with_fewer_active_requests() {
    let lb = LoadBalancer::new(LbPolicy::LeastRequest, &endpoints(2));
    assert!(lb.counts_active());
    // Endpoint 0 is busy.
    for _ in 0..5 {
        lb.begin(0);
    }
    assert_eq!(lb.active(0), 5);
    let mut rnd = randoms();
    let n = 4000;
    let busy = (0..n)
        .filter(|_| lb.pick(2, None, rnd(), &[]) == Some(0))
        .count();
    // Two draws with replacement: the busy one wins only when both draws name it (1/4).
    // p = 0.25 over 4000: +- 4 sd = +- 110.
    assert!((1000 - 110..=1000 + 110).contains(&busy), "{busy}");
    for _ in 0..5 {
        lb.end(0);
    }
    lb.end(0);
    assert_eq!(lb.active(0), 0, "never below zero");
    // Idle: both win as often.
    let zero = (0..n)
        .filter(|_| lb.pick(2, None, rnd(), &[]) == Some(0))
        .count();
    assert!((2000 - 127..=2000 + 127).contains(&zero), "{zero}");
}

#[test]
fn round_robin_is_the_default_and_rotates() {
    let lb = LoadBalancer::default();
    assert_eq!(lb.policy(), &LbPolicy::RoundRobin);
    assert!(!lb.counts_active() && lb.hash_policy().is_none());
    let picks: Vec<u32> = (0..6).map(|_| lb.pick(3, None, 0, &[]).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn cookies_parse_and_print_as_envoy_does() {
    let c = CookiePolicy {
        name: "route".into(),
        path: "/".into(),
        ttl: std::time::Duration::from_secs(172800),
    };
    assert_eq!(
        c.set_cookie("0123456789abcdef"),
        "route=\"0123456789abcdef\"; Max-Age=172800; Path=/; HttpOnly"
    );
    let session = CookiePolicy {
        ttl: std::time::Duration::ZERO,
        path: String::new(),
        ..c.clone()
    };
    assert_eq!(session.set_cookie("v"), "route=\"v\"; HttpOnly");
    assert_eq!(c.value_in("a=1; route=\"abc\"; b=2"), Some("abc"));
    assert_eq!(c.value_in("a=1;route=xyz"), Some("xyz"));
    assert_eq!(c.value_in("router=1; xroute=2"), None);
    assert_eq!(c.value_in("route="), None);
    let remote: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let v = cookie_value(&remote, &local);
    assert_eq!(v.len(), 16);
    assert_eq!(
        v,
        format!("{:016x}", xxh64(b"127.0.0.1:50000127.0.0.1:8080"))
    );
}

/// Ejected endpoints are never picked while another is healthy, by any policy; when
/// all are ejected there is nothing to pick; retries still avoid tried endpoints.
#[test]
fn every_policy_skips_ejected_endpoints() {
    let eps = endpoints(4);
    let ejected = |i: usize| i == 1 || i == 2;
    let mut next = randoms();
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::LeastRequest,
        LbPolicy::RingHash(HashPolicy::SourceIp),
    ] {
        let lb = LoadBalancer::new(policy.clone(), &eps);
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            let (h, r) = (next(), next());
            let i = lb
                .pick_healthy(4, Some(h), r, &[], |i| !ejected(i))
                .unwrap();
            seen[i as usize] += 1;
            // A retry after endpoint `i` goes to the other healthy one.
            let again = lb
                .pick_healthy(4, Some(h), r, &[i], |i| !ejected(i))
                .unwrap();
            assert!(!ejected(again as usize) && again != i, "{policy:?}");
        }
        assert_eq!((seen[1], seen[2]), (0, 0), "{policy:?}: {seen:?}");
        assert!(seen[0] > 0 && seen[3] > 0, "{policy:?}: {seen:?}");
        assert_eq!(lb.pick_healthy(4, Some(1), 2, &[], |_| false), None);
    }
}

#[test]
fn weights_split_round_robin_and_random_in_proportion() {
    let eps = endpoints(3);
    let weights = [1u32, 3, 6];
    let mut next = randoms();
    for policy in [LbPolicy::RoundRobin, LbPolicy::Random] {
        let lb = LoadBalancer::weighted(policy.clone(), &eps, Some(&weights));
        let mut seen = [0usize; 3];
        for _ in 0..10_000 {
            seen[lb.pick(3, None, next(), &[]).unwrap() as usize] += 1;
        }
        for (i, w) in weights.iter().enumerate() {
            let want = 10_000 * *w as usize / 10;
            // Round robin is exact over whole schedules; random within 10 %.
            let tol = if policy == LbPolicy::RoundRobin { 0 } else { want / 10 };
            assert!(seen[i].abs_diff(want) <= tol, "{policy:?}: {seen:?}");
        }
        // A retry still avoids the endpoint tried.
        for _ in 0..50 {
            assert_ne!(lb.pick(3, None, next(), &[2]), Some(2), "{policy:?}");
        }
    }
}

#[test]
fn weighted_schedule_spreads_and_fits() {
    // 1:3: the light endpoint between the heavy one's picks, not after a run of them.
    assert_eq!(&*schedule(&[1, 3]), &[1, 0, 1, 1]);
    // Equal weights after the gcd: one each.
    assert_eq!(schedule(&[10, 20]).len(), 3);
    // Huge weights are scaled down to the cap, each endpoint kept.
    let s = schedule(&[1, 1_000_000]);
    assert!(s.len() as u64 <= MAX_SCHEDULE + 2 && s.contains(&0), "{}", s.len());
    // Equal weights are no weights: plain round robin.
    let lb = LoadBalancer::weighted(LbPolicy::RoundRobin, &endpoints(2), Some(&[5, 5]));
    assert!(matches!(lb.state, State::RoundRobin(_)));
}
