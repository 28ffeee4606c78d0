//! Basic authentication: the route filter of `auth-type: basic`, with nginx-ingress's
//! semantics (nginx's `auth_basic` + `auth_basic_user_file`; Higress 2.x no longer acts
//! on these annotations).
//!
//! - The users come from the Secret named by `auth-secret`, read at translation: an
//!   htpasswd file in its `auth` key (`auth-file`) or one user per key (`auth-map`).
//! - A request without `Authorization: Basic <base64 user:password>`, or with a user
//!   or password that does not match (the first line of that user decides, as nginx
//!   reads the file), gets 401 with `WWW-Authenticate: Basic realm="<auth-realm>"` and
//!   nginx's 401 page. The header goes upstream unchanged, as nginx passes it.
//! - bcrypt is slow by design (milliseconds a check at cost 5, far more at 10+), and
//!   nginx pays it on every request. Here each filter keeps the `Authorization` values
//!   it verified in a small direct-mapped cache ([`VerifiedCache`], 64 slots), so a
//!   keep-alive client pays once; a wrong password is never cached and pays each time.

pub mod htpasswd;

use std::hash::BuildHasher;
use std::sync::Mutex;

use base64::Engine;

use crate::model::http_filter::{FilterStatus, HttpFilter, LocalReply, MatchInput};
pub use htpasswd::PasswordHash;

/// nginx's 401 page (`server_tokens off`, as ingress-nginx runs it).
pub const UNAUTHORIZED_BODY: &str = "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Slots of a filter's cache of verified credentials.
const CACHE_SLOTS: usize = 64;
/// Longest `Authorization` value cached (longer ones are checked every time).
const CACHE_MAX_VALUE: usize = 512;

/// Base64 as nginx's `ngx_decode_base64` takes it: padding optional.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::general_purpose::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// One route's users and realm.
pub struct BasicAuthFilter {
    users: Vec<(String, PasswordHash)>,
    /// `Basic realm="<realm>"`.
    challenge: String,
    cache: VerifiedCache,
}

impl std::fmt::Debug for BasicAuthFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("BasicAuthFilter")
            .field("users", &self.users.len())
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl BasicAuthFilter {
    pub fn new(users: Vec<(String, PasswordHash)>, realm: &str) -> Self {
        BasicAuthFilter {
            users,
            challenge: format!("Basic realm=\"{realm}\""),
            cache: VerifiedCache::new(),
        }
    }

    /// Whether an `Authorization` value carries a known user and its password.
    fn check(&self, value: &[u8]) -> bool {
        let Some(encoded) = basic_credentials(value) else {
            return false;
        };
        let Ok(decoded) = B64.decode(encoded) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        self.users
            .iter()
            .find(|(u, _)| u.as_bytes() == user)
            .is_some_and(|(_, hash)| hash.verify(password))
    }

    fn challenge(&self) -> FilterStatus {
        FilterStatus::Reply(LocalReply {
            status: 401,
            headers: vec![
                ("www-authenticate".into(), self.challenge.clone()),
                ("content-type".into(), "text/html".into()),
            ],
            body: UNAUTHORIZED_BODY.as_bytes().to_vec(),
            ..Default::default()
        })
    }
}

/// The base64 part of `Basic <credentials>` (the scheme in any case, spaces after it).
fn basic_credentials(value: &[u8]) -> Option<&[u8]> {
    if value.len() < 6 || !value[..5].eq_ignore_ascii_case(b"basic") || value[5] != b' ' {
        return None;
    }
    let rest = &value[6..];
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

impl HttpFilter for BasicAuthFilter {
    fn name(&self) -> &'static str {
        "envoy.filters.http.basic_auth"
    }

    fn on_request_headers(
        &self,
        req: &mut pingora_http::RequestHeader,
        _input: &MatchInput<'_>,
    ) -> FilterStatus {
        let Some(value) = req.headers.get(http::header::AUTHORIZATION) else {
            return self.challenge();
        };
        let value = value.as_bytes();
        if self.cache.contains(value) {
            return FilterStatus::Continue;
        }
        if self.check(value) {
            self.cache.insert(value);
            return FilterStatus::Continue;
        }
        self.challenge()
    }
}

/// `Authorization` values a filter verified: direct-mapped by a keyed hash, one lock per
/// slot (held for a compare), a new value replacing the slot's old one. Bounded, no
/// allocation on a hit; dropped with the filter when the route's config changes, so a
/// removed user or changed password takes effect with the next snapshot.
pub struct VerifiedCache {
    hasher: foldhash::fast::RandomState,
    slots: Box<[Slot]>,
}

/// One verified `Authorization` value, or none.
type Slot = Mutex<Option<Box<[u8]>>>;

impl VerifiedCache {
    fn new() -> Self {
        VerifiedCache {
            hasher: foldhash::fast::RandomState::default(),
            slots: (0..CACHE_SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, value: &[u8]) -> &Slot {
        let h = self.hasher.hash_one(value) as usize;
        &self.slots[h % self.slots.len()]
    }

    fn contains(&self, value: &[u8]) -> bool {
        let slot = self.slot(value).lock().unwrap_or_else(|e| e.into_inner());
        slot.as_deref() == Some(value)
    }

    fn insert(&self, value: &[u8]) {
        if value.len() > CACHE_MAX_VALUE {
            return;
        }
        *self.slot(value).lock().unwrap_or_else(|e| e.into_inner()) = Some(value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::htpasswd::tests::{APR1, BCRYPT_2Y, SHA};
    use super::*;

    fn filter() -> BasicAuthFilter {
        let (users, unsupported) =
            htpasswd::parse_file(&format!("alice:{BCRYPT_2Y}\nbob:{APR1}\ncarol:{SHA}\n"));
        assert!(unsupported.is_empty());
        BasicAuthFilter::new(users, "Authentication Required - foo")
    }

    fn run(f: &BasicAuthFilter, auth: Option<&str>) -> FilterStatus {
        let mut req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(a) = auth {
            req.insert_header("authorization", a).unwrap();
        }
        f.on_request_headers(&mut req, &MatchInput::default())
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn users_of_every_hash_kind_pass_others_get_401() {
        let f = filter();
        for user in ["alice", "bob", "carol"] {
            assert_eq!(
                run(&f, Some(&basic(user, "secret"))),
                FilterStatus::Continue
            );
            // Second time from the cache.
            assert_eq!(
                run(&f, Some(&basic(user, "secret"))),
                FilterStatus::Continue
            );
            assert_ne!(run(&f, Some(&basic(user, "wrong"))), FilterStatus::Continue);
        }
        assert_eq!(
            run(
                &f,
                Some(&basic("alice", "secret").replace("Basic", "bAsIc"))
            ),
            FilterStatus::Continue
        );
        for bad in [
            None,
            Some("Bearer abc".to_string()),
            Some("Basic !!!".to_string()),
            Some(basic("mallory", "secret")),
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice")
            )),
        ] {
            match run(&f, bad.as_deref()) {
                FilterStatus::Reply(r) => {
                    assert_eq!(r.status, 401);
                    assert_eq!(
                        r.headers[0],
                        (
                            "www-authenticate".to_string(),
                            "Basic realm=\"Authentication Required - foo\"".to_string()
                        )
                    );
                    assert!(r.body.starts_with(b"<html>"));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_cache_is_bounded_and_exact() {
        let c = VerifiedCache::new();
        for i in 0..1000 {
            c.insert(format!("Basic {i}").as_bytes());
        }
        let kept = (0..1000)
            .filter(|i| c.contains(format!("Basic {i}").as_bytes()))
            .count();
        assert!(kept <= CACHE_SLOTS, "{kept}");
        assert!(!c.contains(b"Basic never"));
        c.insert(&[b'x'; CACHE_MAX_VALUE + 1]);
        assert!(!c.contains(&[b'x'; CACHE_MAX_VALUE + 1]));
    }
}
