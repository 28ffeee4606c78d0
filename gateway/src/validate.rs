//! `gateway validate DIR`: every problem as `<file>: <Kind> <namespace>/<name>: <field
//! path>: <message>`: each object's own, then those across objects (a canary Ingress
//! without its main Ingress).

use std::path::Path;

use crate::controllers::ConfigmapMgr;
use crate::error::FieldError;
use crate::resources::{Ingress, Resource};
use crate::sources::file::{FileSourceError, Scan};
use crate::sources::Change;
use crate::translate::canary;

/// Problems found in `dir`, one line each; empty when it is valid.
pub fn check_dir(dir: &Path) -> Result<Vec<String>, FileSourceError> {
    let mut scan = Scan::read(dir)?;
    let mgr = ConfigmapMgr::new();
    let mut problems = Vec::new();
    let mut ingresses = Vec::new();
    for change in scan.all() {
        let Change::Upsert {
            key,
            origin,
            result,
        } = change
        else {
            continue;
        };
        let err = match result {
            Err(e) => Some(e),
            Ok(Resource::ConfigMap(cm)) => cm
                .higress
                .as_ref()
                .and_then(|c| mgr.validate(c).err())
                .map(|e| e.under("data.higress")),
            Ok(Resource::Ingress(ing)) => {
                ingresses.push((origin.clone(), ing));
                None
            }
            Ok(Resource::WasmPlugin(wp)) => crate::translate::wasm_plugins::check_native(&wp).err(),
            Ok(_) => None,
        };
        if let Some(e) = err {
            problems.push(line(&origin, &key.to_string(), &e));
        }
    }
    problems.extend(unpaired_canaries(&ingresses));
    Ok(problems)
}

fn line(origin: &str, object: &str, e: &FieldError) -> String {
    format!("{origin}: {object}: {}", e.located())
}

/// Canary paths without a main Ingress, among the Ingresses of each class (the run
/// serves one class; without the flags here, every class is checked on its own).
fn unpaired_canaries(ingresses: &[(String, Ingress)]) -> Vec<String> {
    let mut classes: Vec<Option<&str>> = ingresses.iter().map(|(_, i)| i.class()).collect();
    classes.sort();
    classes.dedup();
    let mut out = Vec::new();
    for class in classes {
        let mut same: Vec<&(String, Ingress)> = ingresses
            .iter()
            .filter(|(_, i)| i.class() == class)
            .collect();
        // Oldest first, as the run pairs them.
        same.sort_by_key(|(_, i)| i.metadata.creation_timestamp.as_deref().unwrap_or(""));
        let list: Vec<&Ingress> = same.iter().map(|(_, i)| i).collect();
        for u in canary::pair(&list).unpaired {
            let origin = same
                .iter()
                .find(|(_, i)| std::ptr::eq(i, u.ingress))
                .map_or("", |(o, _)| o.as_str());
            let object = format!(
                "Ingress {}/{}",
                u.ingress.metadata.namespace, u.ingress.metadata.name
            );
            out.push(line(origin, &object, &u.error));
        }
    }
    out
}
