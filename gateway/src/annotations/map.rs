//! An object's `metadata.annotations`: its pairs sorted by key in one exact-size list.
//! Objects carry a few annotations, and a `BTreeMap` allocates a node with room for
//! eleven (over 500 bytes): with 10,000 Ingresses that showed in the resident memory.
//! It reads like the `BTreeMap` it replaces (the same order, the last of duplicate keys
//! wins) and serializes the same way.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// Sorted by key, keys unique.
    pairs: Vec<(String, String)>,
}

impl Annotations {
    pub fn new() -> Annotations {
        Annotations::default()
    }

    fn at(&self, key: &str) -> Result<usize, usize> {
        self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.get_key_value(key).map(|(_, v)| v)
    }

    pub fn get_key_value(&self, key: &str) -> Option<(&String, &String)> {
        let i = self.at(key).ok()?;
        let (k, v) = &self.pairs[i];
        Some((k, v))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.at(key).is_ok()
    }

    /// Set `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.at(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.pairs[i].1, value)),
            Err(i) => {
                self.pairs.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.at(key).ok()?;
        Some(self.pairs.remove(i).1)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.pairs.iter().map(|(k, v)| (k, v))
    }

    /// The pairs whose key is `from` or after it, in key order.
    pub fn iter_from<'a>(&'a self, from: &str) -> impl Iterator<Item = (&'a String, &'a String)> {
        let start = self.at(from).unwrap_or_else(|i| i);
        self.pairs[start..].iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.pairs.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl From<BTreeMap<String, String>> for Annotations {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Exact size: the map's iterator knows its length.
        Annotations {
            pairs: map.into_iter().collect(),
        }
    }
}

impl FromIterator<(String, String)> for Annotations {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        iter.into_iter().collect::<BTreeMap<_, _>>().into()
    }
}

impl<'a> IntoIterator for &'a Annotations {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.pairs.iter().map(|(k, v)| (k, v))
    }
}

impl fmt::Debug for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Annotations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through the map: the same duplicate-key rule and error paths as before.
        BTreeMap::<String, String>::deserialize(d).map(Annotations::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_a_sorted_map() {
        let mut m: Annotations = [("b", "1"), ("a", "2"), ("b", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.get("b").map(String::as_str), Some("3"));
        assert_eq!(m.insert("c".into(), "4".into()), None);
        assert_eq!(m.insert("a".into(), "5".into()).as_deref(), Some("2"));
        let from_b: Vec<_> = m.iter_from("aa").map(|(k, _)| k.as_str()).collect();
        assert_eq!(from_b, ["b", "c"]);
        assert_eq!(format!("{m:?}"), r#"{"a": "5", "b": "3", "c": "4"}"#);
        let y: Annotations = serde_yaml::from_str("z: x\ny: w\n").unwrap();
        assert_eq!(serde_json::to_string(&y).unwrap(), r#"{"y":"w","z":"x"}"#);
        assert_eq!(m.remove("b").as_deref(), Some("3"));
        assert_eq!(m.len(), 2);
    }
}
