//! Secrets out of what the admin listener shows (`/debug/configz`, `/config_dump`):
//! values under keys that name a credential become `"<redacted>"`, in plugin configs,
//! registries and the YAML documents a ConfigMap carries (`higress-config`'s tracing
//! `access_token`, say). Secrets themselves serialize with their data redacted
//! (`secret.rs`).

use serde_json::Value;

/// What a key holding a secret looks like once lowercased without `_` and `-`.
const SECRET_KEYS: [&str; 9] = [
    "credential",
    "password",
    "passwd",
    "apikey",
    "privatekey",
    "authorization",
    "secretkey",
    "accesskey",
    "clientsecret",
];

/// Whether a value under `key` is a secret: a credential's name, or any token
/// (`access_token`, `apiTokens`), which counts are not.
fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.iter().any(|s| k.contains(s)) || k.ends_with("token") || k.ends_with("tokens")
}

/// Redact in place; returns whether anything was.
pub fn redact(v: &mut Value) -> bool {
    let mut changed = false;
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let holds_text = matches!(x, Value::String(_) | Value::Array(_) | Value::Object(_));
                if is_secret_key(k) && holds_text {
                    *x = Value::String("<redacted>".into());
                    changed = true;
                } else {
                    changed |= redact(x);
                }
            }
        }
        Value::Array(a) => {
            for x in a {
                changed |= redact(x);
            }
        }
        _ => {}
    }
    changed
}

/// A ConfigMap's `data` value: a YAML (or JSON) mapping is redacted and written back as
/// YAML; other text is left as it is.
pub fn redact_document(text: &str) -> Option<String> {
    let mut doc: Value = serde_yaml::from_str(text).ok()?;
    if !doc.is_object() || !redact(&mut doc) {
        return None;
    }
    serde_yaml::to_string(&doc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_and_tokens_go_counts_and_names_stay() {
        let mut v = json!({
            "consumers": [{"name": "c1", "credential": "k-1"}],
            "redis": {"service_name": "r", "password": "p"},
            "provider": {"apiTokens": ["t1", "t2"], "max_tokens": 100},
            "skywalking": {"access_token": "x", "service": "oap"},
            "imagePullSecret": "regcred",
            "nacosSecretKey": "s",
            "tls": [{"secretName": "cert"}],
        });
        assert!(redact(&mut v));
        let text = v.to_string();
        for gone in ["k-1", "\"p\"", "t1", "\"x\"", "\"s\""] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        for kept in ["c1", "regcred", "cert", "100", "oap"] {
            assert!(text.contains(kept), "{kept} not in {text}");
        }
        let mut plain = json!({"a": 1, "b": ["x"]});
        assert!(!redact(&mut plain));
    }

    #[test]
    fn a_configmap_document_is_redacted_as_yaml() {
        let doc = "tracing:\n  skywalking:\n    access_token: abc\n    service: oap\n";
        let out = redact_document(doc).unwrap();
        assert!(
            !out.contains("abc") && out.contains("<redacted>") && out.contains("oap"),
            "{out}"
        );
        assert_eq!(redact_document("tracing:\n  enable: true\n"), None);
        assert_eq!(redact_document("just text"), None);
    }
}
