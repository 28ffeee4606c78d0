//! A cookie's value in a request's `Cookie` headers (every header, `; `-separated
//! pairs), shared by route matching, the cluster key rate limit and the console's login.

use http::HeaderMap;

/// The value of the first cookie called `name`, spaces around the pair trimmed.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        // UTF-8, not only visible ASCII: route matching compared such values too.
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_pair_of_that_name_in_any_header() {
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; b=2 ".parse().unwrap());
        h.append(http::header::COOKIE, "c=3;b=4".parse().unwrap());
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
        assert_eq!(cookie(&HeaderMap::new(), "a"), None);
    }
}
