//! `gateway validate DIR`: every problem as `<file>: <field path>: <message>`.

use std::path::Path;

use crate::controllers::ConfigmapMgr;
use crate::resources::Resource;
use crate::sources::file::{FileSourceError, Scan};
use crate::sources::Change;

/// Problems found in `dir`, one line each; empty when it is valid.
pub fn check_dir(dir: &Path) -> Result<Vec<String>, FileSourceError> {
    let scan = Scan::read(dir)?;
    let mgr = ConfigmapMgr::new();
    let mut problems = Vec::new();
    for change in scan.all() {
        let Change::Upsert { origin, result, .. } = change else {
            continue;
        };
        let err = match result {
            Err(e) => Some(e),
            Ok(Resource::ConfigMap(cm)) => cm
                .higress
                .as_ref()
                .and_then(|c| mgr.validate(c).err())
                .map(|e| e.under("data.higress")),
            Ok(_) => None,
        };
        if let Some(e) = err {
            let path = if e.path.is_empty() {
                "."
            } else {
                e.path.as_str()
            };
            problems.push(format!("{origin}: {path}: {}", e.message));
        }
    }
    Ok(problems)
}
