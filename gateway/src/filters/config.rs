//! Reading a plugin's JSON configuration the way Higress's Go plugins read it (gjson):
//! a string field also takes a number or a boolean, written as YAML users write it
//! (`key: 123456`), as its text. Every error names the field.

use serde_json::{Map, Value};

use crate::error::FieldError;

/// The configuration object, or an error at the top.
pub fn object(config: &Value) -> Result<&Map<String, Value>, FieldError> {
    config
        .as_object()
        .ok_or_else(|| FieldError::new("", "expected an object"))
}

/// A scalar as the text gjson's `String()` gives it: numbers and booleans too.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Optional string field `key`.
pub fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => text(v)
            .map(Some)
            .ok_or_else(|| FieldError::new(key, "expected a string")),
    }
}

/// Required, non-empty string field `key`.
pub fn string(obj: &Map<String, Value>, key: &str) -> Result<String, FieldError> {
    match opt_string(obj, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(FieldError::new(key, "must not be empty")),
        None => Err(FieldError::new(key, "is required")),
    }
}

/// Optional boolean field `key`.
pub fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(_) => Err(FieldError::new(key, "expected true or false")),
    }
}

/// Optional non-negative integer field `key` (a number, or a string of digits).
pub fn opt_u64(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, FieldError> {
    let bad = || FieldError::new(key, "expected a non-negative integer");
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// Optional list of strings `key` (scalars taken as text; empty strings kept).
pub fn opt_strings(obj: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, FieldError> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(FieldError::new(key, "expected a list of strings"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            text(item).ok_or_else(|| FieldError::new(format!("{key}[{i}]"), "expected a string"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Required, non-empty list of non-empty strings `key`.
pub fn strings(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, FieldError> {
    let list = opt_strings(obj, key)?.ok_or_else(|| FieldError::new(key, "is required"))?;
    if list.is_empty() {
        return Err(FieldError::new(key, "must not be empty"));
    }
    if let Some(i) = list.iter().position(|s| s.is_empty()) {
        return Err(FieldError::new(format!("{key}[{i}]"), "must not be empty"));
    }
    Ok(list)
}

/// Optional list of objects `key`.
pub fn opt_objects<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<&'a Map<String, Value>>>, FieldError> {
    let Some(v) = obj.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(FieldError::new(key, "expected a list of objects"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_object()
                .ok_or_else(|| FieldError::new(format!("{key}[{i}]"), "expected an object"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The query string's values of parameter `name`, undecoded, in order.
pub fn query_values<'a, 'n>(
    path: &'a str,
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query.split('&').filter_map(move |pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scalars_read_as_gjson_reads_them() {
        let v = json!({"key": 123456, "on": "true", "n": "7", "neg": -1, "list": [1, "a", true]});
        let o = object(&v).unwrap();
        assert_eq!(string(o, "key").unwrap(), "123456");
        assert_eq!(opt_bool(o, "on").unwrap(), Some(true));
        assert_eq!(opt_u64(o, "n").unwrap(), Some(7));
        assert_eq!(opt_u64(o, "neg").unwrap_err().path, "neg");
        assert_eq!(strings(o, "list").unwrap(), ["1", "a", "true"]);
        assert_eq!(strings(o, "none").unwrap_err().message, "is required");
        let bad = json!({"list": [{"a": 1}]});
        assert_eq!(
            strings(object(&bad).unwrap(), "list").unwrap_err().path,
            "list[0]"
        );
    }

    #[test]
    fn query_values_are_every_value_of_the_name() {
        let p = "/v1?apikey=a&x=1&apikey=b&apikey#frag";
        assert_eq!(
            query_values(p, "apikey").collect::<Vec<_>>(),
            ["a", "b", ""]
        );
        assert_eq!(query_values("/plain", "apikey").count(), 0);
    }
}
