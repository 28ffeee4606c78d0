//! `enable-cors` and `cors-*` compiled into the CORS filter of `filters/cors`.

use std::sync::Arc;

use crate::annotations::cors::{origin_matches, OriginMatch};
use crate::annotations::CorsAnnotations;
use crate::error::FieldError;
use crate::filters::cors::{CorsConfig, CorsFilter, Origin};
use crate::model::http_filter::HttpFilter;

/// The CORS filter of `enable-cors`: Higress's origin conversion, compiled.
pub fn cors_filter(c: &CorsAnnotations) -> Result<Arc<dyn HttpFilter>, FieldError> {
    let err = |e: String| FieldError::new("metadata.annotations", format!("cors: {e}"));
    let origins = origin_matches(&c.allow_origin)
        .into_iter()
        .map(|o| match o {
            OriginMatch::Exact(s) => Ok(Origin::Exact(s)),
            OriginMatch::Regex(r) => Origin::regex(&r).map_err(|e| err(e.to_string())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let config = CorsConfig::new(
        origins,
        &c.allow_methods,
        &c.allow_headers,
        &c.expose_headers,
        c.allow_credentials,
        Some(c.max_age),
    )
    .map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(CorsFilter::new(config)))
}
