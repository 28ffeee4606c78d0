//! Registry credentials: `WWW-Authenticate` challenges (Bearer token realms and Basic),
//! and the credentials a `kubernetes.io/dockerconfigjson` Secret holds per registry.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::OciError;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password, not even in debug logs.
        write!(f, "Credentials({})", self.username)
    }
}

impl Credentials {
    /// The `Authorization` value for Basic authentication.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// What a `401` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm` (with `service` and `scope` as query parameters).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
    Other(String),
}

impl Challenge {
    /// Parse one `WWW-Authenticate` value: a scheme, then `key=value` or
    /// `key="quoted value"` parameters separated by commas.
    pub fn parse(header: &str) -> Result<Challenge, String> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        let params = parse_params(rest)?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                let realm = params
                    .get("realm")
                    .cloned()
                    .ok_or_else(|| format!("Bearer challenge without a realm: {header:?}"))?;
                Ok(Challenge::Bearer {
                    realm,
                    service: params.get("service").cloned(),
                    scope: params.get("scope").cloned(),
                })
            }
            "basic" => Ok(Challenge::Basic),
            "" => Err("an empty WWW-Authenticate header".to_string()),
            _ => Ok(Challenge::Other(scheme.to_string())),
        }
    }
}

fn parse_params(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated quoted value for {key:?}"));
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        if key.is_empty() {
            return Err("a parameter without a name".to_string());
        }
        out.insert(key, value);
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The credentials for `registry` in a `.dockerconfigjson` document; `None` when it has
/// none for that registry. Keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`), which are ignored.
pub fn from_docker_config(json: &[u8], registry: &str) -> Result<Option<Credentials>, OciError> {
    let bad = |why: String| OciError::PullSecret(why);
    let cfg: DockerConfig = serde_json::from_slice(json)
        .map_err(|e| bad(format!(".dockerconfigjson is not a Docker config: {e}")))?;
    let host_of = |key: &str| {
        let k = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        k.split('/').next().unwrap_or(k).to_ascii_lowercase()
    };
    let wanted = registry.to_ascii_lowercase();
    // Docker Hub's entry is keyed by its old index host.
    let aliases: &[&str] = if wanted == "docker.io" || wanted == "registry-1.docker.io" {
        &["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        &[]
    };
    let Some((key, entry)) = cfg
        .auths
        .iter()
        .find(|(k, _)| host_of(k) == wanted || aliases.contains(&host_of(k).as_str()))
    else {
        return Ok(None);
    };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| bad(format!("auths[{key:?}].auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths[{key:?}].auth is not UTF-8")))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("auths[{key:?}].auth is not user:password")))?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Err(bad(format!(
            "auths[{key:?}] has neither auth nor username and password"
        ))),
    }
}

/// `application/x-www-form-urlencoded`-safe query value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:plugins/x:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:plugins/x:pull".into()),
            }
        );
        // Unquoted values, spaces after commas, escapes in quoted strings.
        let c = Challenge::parse(r#"bearer realm=http://127.0.0.1:9/t, scope="a\"b""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "http://127.0.0.1:9/t".into(),
                service: None,
                scope: Some("a\"b".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#).unwrap(),
            Challenge::Basic
        );
        assert_eq!(
            Challenge::parse("Negotiate").unwrap(),
            Challenge::Other("Negotiate".into())
        );
        assert!(Challenge::parse(r#"Bearer service="x""#)
            .unwrap_err()
            .contains("realm"));
        assert!(Challenge::parse(r#"Bearer realm="x"#)
            .unwrap_err()
            .contains("unterminated"));
    }

    #[test]
    fn docker_config_credentials_by_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let json = format!(
            r#"{{"auths": {{"http://127.0.0.1:5000/v2/": {{"auth": "{auth}"}}, "r.example": {{"username": "bob", "password": "pw"}}, "https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#
        );
        let c = from_docker_config(json.as_bytes(), "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!((&*c.username, &*c.password), ("alice", "s3:cret"));
        assert_eq!(
            c.basic(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:s3:cret")
            )
        );
        let c = from_docker_config(json.as_bytes(), "R.example")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "bob");
        assert!(from_docker_config(json.as_bytes(), "docker.io")
            .unwrap()
            .is_some());
        assert_eq!(
            from_docker_config(json.as_bytes(), "other:5000").unwrap(),
            None
        );
        let e = from_docker_config(br#"{"auths": {"r": {"auth": "!!"}}}"#, "r").unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        let e = from_docker_config(br#"{"auths": {"r": {}}}"#, "r").unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
        assert!(from_docker_config(b"\"text\"", "r").is_err());
        assert!(from_docker_config(b"{\"auths\": []}", "r").is_err());
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("repository:plugins/x:pull"),
            "repository%3Aplugins%2Fx%3Apull"
        );
    }
}
