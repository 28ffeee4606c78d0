//! Which exposition format a scrape gets: Prometheus text 0.0.4 unless the scraper's
//! `Accept` asks for OpenMetrics at least as much as for text.

/// The exposition format of a rendering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (Envoy's `/stats/prometheus`).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0.0 text: same sample lines, plus exemplars and `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` to answer a scrape rendered in this format with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The format to answer a request with this `Accept` header.
///
/// OpenMetrics only when `application/openmetrics-text` (no version, 1.0.0 or 0.0.1) is
/// listed explicitly with a q at least as high as the one that applies to `text/plain`
/// (the most specific of `text/plain`, `text/*`, `*/*`). Wildcards never pick
/// OpenMetrics: a client that did not name it may not parse `# EOF` or exemplars.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    // q in thousandths, as RFC 9110 allows at most three decimals.
    let mut om_q: u16 = 0;
    // (specificity, q) of the range that applies to text/plain.
    let mut text: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        let mut q = 1000;
        let mut version = None;
        let mut valid = true;
        for p in params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = v.trim().trim_matches('"');
            match k.trim() {
                k if k.eq_ignore_ascii_case("q") => match parse_q(v) {
                    Some(parsed) => q = parsed,
                    None => valid = false,
                },
                k if k.eq_ignore_ascii_case("version") => version = Some(v),
                _ => {}
            }
        }
        if !valid {
            continue;
        }
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            if matches!(version, None | Some("1.0.0") | Some("0.0.1")) {
                om_q = om_q.max(q);
            }
            continue;
        }
        let specificity = if media.eq_ignore_ascii_case("text/plain") {
            3
        } else if media.eq_ignore_ascii_case("text/*") {
            2
        } else if media == "*/*" {
            1
        } else {
            continue;
        };
        text = match text {
            Some((s, _)) if s > specificity => text,
            Some((s, old)) if s == specificity => Some((s, old.max(q))),
            _ => Some((specificity, q)),
        };
    }
    let text_q = text.map_or(0, |(_, q)| q);
    if om_q > 0 && om_q >= text_q {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

fn parse_q(v: &str) -> Option<u16> {
    let q: f32 = v.parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

/// A `# HELP` text: both formats escape `\` and newlines; OpenMetrics also `"`.
pub(super) fn push_help(out: &mut String, help: &str, format: Format) {
    for ch in help.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn prometheus_scrapers_get_openmetrics() {
        assert_eq!(negotiate(Some(PROMETHEUS_2_42)), Format::OpenMetrics);
        // 2.42 with the native-histogram feature on: protobuf first, OpenMetrics next.
        assert_eq!(
            negotiate(Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some("Application/OpenMetrics-Text; Version=\"1.0.0\"")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn everyone_else_gets_text() {
        for accept in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4;q=0.3,*/*;q=0.1"),
            Some("application/json"),
            // Older Prometheus: protobuf, then text.
            Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"),
            // Asked for, but less than text.
            Some("application/openmetrics-text;q=0.4,text/plain;q=0.5"),
            // text/* outranks */* for text/plain.
            Some("application/openmetrics-text;q=0.5,text/*;q=0.9,*/*;q=0.1"),
            // Refused explicitly, or a version we do not write.
            Some("application/openmetrics-text;q=0"),
            Some("application/openmetrics-text;version=2.0.0"),
            // A malformed q makes the range void.
            Some("application/openmetrics-text;q=high"),
        ] {
            assert_eq!(negotiate(accept), Format::Prometheus, "{accept:?}");
        }
    }

    #[test]
    fn equal_q_prefers_openmetrics() {
        assert_eq!(
            negotiate(Some("text/plain;q=0.5, application/openmetrics-text;q=0.5")),
            Format::OpenMetrics
        );
        // The most specific range decides for text/plain, even if a wildcard is higher.
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;q=0.6,text/plain;q=0.5,*/*;q=1"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Prometheus.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    #[test]
    fn help_escaping_per_format() {
        let mut s = String::new();
        push_help(&mut s, "a \"b\" \\ c\nd", Format::Prometheus);
        assert_eq!(s, "a \"b\" \\\\ c\\nd");
        let mut s = String::new();
        push_help(&mut s, "a \"b\" \\ c\nd", Format::OpenMetrics);
        assert_eq!(s, "a \\\"b\\\" \\\\ c\\nd");
    }
}
