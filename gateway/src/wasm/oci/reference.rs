//! Image references: `<registry>[:<port>]/<repository>[:<tag>][@sha256:<hex>]`, as a
//! WasmPlugin's `spec.url` names an image (without `oci://`).

use std::fmt;

use super::OciError;

/// Where Docker Hub's API is: its image names say `docker.io`.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (Docker Hub's API host for `docker.io`).
    pub registry: String,
    /// The repository path inside the registry, e.g. `plugins/key-auth`.
    pub repository: String,
    /// The tag, `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// The lowercase hex of an `@sha256:` digest.
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(image: &str) -> Result<Reference, OciError> {
        let bad = |why: &str| OciError::Reference {
            image: image.to_string(),
            why: why.to_string(),
        };
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("only sha256 digests are supported"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("the digest is not sha256:<64 hex digits>"));
                }
                (n, Some(hex.to_ascii_lowercase()))
            }
            None => (image, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let last_slash = name.rfind('/').unwrap_or(0);
        let (name, tag) = match name[last_slash..].find(':') {
            Some(i) => {
                let (n, t) = name.split_at(last_slash + i);
                (n, Some(t[1..].to_string()))
            }
            None => (name, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad("the tag must be 1-128 of [A-Za-z0-9_.-]"));
            }
        }
        let (first, rest) = name
            .split_once('/')
            .ok_or_else(|| bad("expected <registry>/<repository>"))?;
        // As Docker decides: a first part with a dot, a port or `localhost` is a host.
        let (registry, repository) = if first.contains(['.', ':']) || first == "localhost" {
            (first.to_string(), rest.to_string())
        } else {
            (DOCKER_HUB.to_string(), name.to_string())
        };
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace()) {
            return Err(bad("the registry is not a host[:port]"));
        }
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_ok {
            return Err(bad(
                "the repository must be lowercase [a-z0-9._-] parts separated by /",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the registry API is on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What `GET /v2/<repo>/manifests/<ref>` asks for: the digest when given, else the
    /// tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(hex), _) => format!("sha256:{hex}"),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// A tag that moves by convention: pulled again when no policy is given.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref() == Some("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@sha256:{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn registry_repository_tag_and_digest() {
        let r = parse("higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:1.0.0");
        assert_eq!(r.registry, "higress-registry.cn-hangzhou.cr.aliyuncs.com");
        assert_eq!(r.repository, "plugins/key-auth");
        assert_eq!(r.tag.as_deref(), Some("1.0.0"));
        assert_eq!(r.manifest_ref(), "1.0.0");
        assert!(!r.is_latest());

        let r = parse("127.0.0.1:5000/a/b/c");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(r.is_latest());
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b/c:latest");

        let hex = "AB".repeat(32);
        let r = parse(&format!("localhost:5000/p/x:v1@sha256:{hex}"));
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.digest.as_deref(), Some(&*"ab".repeat(32)));
        assert_eq!(r.manifest_ref(), format!("sha256:{}", "ab".repeat(32)));
        assert!(!r.is_latest());
        let r = parse(&format!("localhost/p/x@sha256:{hex}"));
        assert_eq!(r.tag, None);
    }

    #[test]
    fn docker_hub_names() {
        let r = parse("library/busybox:1");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository, "library/busybox");
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("r.io/p/x@md5:00", "sha256"),
            ("r.io/p/x@sha256:abc", "64 hex"),
            ("r.io/p/x:", "tag"),
            ("r.io/p/x:-v", "tag"),
            ("r.io/P/x", "lowercase"),
            ("r.io//x", "lowercase"),
            ("r.io", "<registry>/<repository>"),
        ] {
            let e = Reference::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
