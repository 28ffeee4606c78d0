//! `gateway validate DIR`: every problem as `<file>: <Kind> <namespace>/<name>: <field
//! path>: <message>`: each object's own, then those across objects (a canary Ingress
//! without its main Ingress). The console checks its writes with the same code
//! ([`check`] on the directory as it would be, [`check_object`] on one API object).

use std::path::Path;

use crate::controllers::ConfigmapMgr;
use crate::error::FieldError;
use crate::resources::{Ingress, Resource};
use crate::sources::file::{FileSourceError, Scan};
use crate::sources::Change;
use crate::translate::canary;

/// One problem: the file (or API object) it came from, the object, the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    /// `<Kind> <namespace>/<name>`.
    pub object: String,
    pub error: FieldError,
}

impl Problem {
    /// `<file>: <Kind> <namespace>/<name>: <field path>: <message>`.
    pub fn line(&self) -> String {
        format!("{}: {}: {}", self.origin, self.object, self.error.located())
    }
}

/// Problems found in `dir`, one line each; empty when it is valid.
pub fn check_dir(dir: &Path) -> Result<Vec<String>, FileSourceError> {
    let mut scan = Scan::read(dir)?;
    Ok(check(&scan.all()).iter().map(Problem::line).collect())
}

/// Problems found in what Nacos holds (`gateway validate --config nacos://...`), the
/// origin of each `nacos:<group>/<dataId>`.
pub async fn check_nacos(
    opts: &crate::sources::nacos::NacosOptions,
) -> Result<Vec<String>, crate::sources::nacos::NacosError> {
    let client = opts.client();
    let (_, changes) = crate::sources::nacos::load(&client, opts.crypt.as_ref()).await?;
    Ok(check(&changes).iter().map(Problem::line).collect())
}

/// The checks an object gets beyond its parse, as the config loop runs them: the whole
/// `higress-config` through its item controllers, a native filter's configuration
/// against its schema.
pub fn check_object(res: &Resource) -> Result<(), FieldError> {
    match res {
        Resource::ConfigMap(cm) => match &cm.higress {
            Some(c) => ConfigmapMgr::new()
                .validate(c)
                .map_err(|e| e.under("data.higress")),
            None => Ok(()),
        },
        Resource::WasmPlugin(wp) => crate::translate::wasm_plugins::check_native(wp),
        _ => Ok(()),
    }
}

/// Problems of a set of objects as read (the upserts of a full scan).
pub fn check(changes: &[Change]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut ingresses = Vec::new();
    for change in changes {
        let Change::Upsert {
            key,
            origin,
            result,
        } = change
        else {
            continue;
        };
        let err = match result {
            Err(e) => Some(e.clone()),
            Ok(Resource::Ingress(ing)) => {
                ingresses.push((origin.clone(), ing));
                None
            }
            Ok(res) => check_object(res).err(),
        };
        if let Some(error) = err {
            problems.push(Problem {
                origin: origin.clone(),
                object: key.to_string(),
                error,
            });
        }
    }
    problems.extend(unpaired_canaries(&ingresses));
    problems
}

/// Canary paths without a main Ingress, among the Ingresses of each class (the run
/// serves one class; without the flags here, every class is checked on its own).
fn unpaired_canaries(ingresses: &[(String, &Ingress)]) -> Vec<Problem> {
    let mut classes: Vec<Option<&str>> = ingresses.iter().map(|(_, i)| i.class()).collect();
    classes.sort();
    classes.dedup();
    let mut out = Vec::new();
    for class in classes {
        let mut same: Vec<&(String, &Ingress)> = ingresses
            .iter()
            .filter(|(_, i)| i.class() == class)
            .collect();
        // Oldest first, as the run pairs them.
        same.sort_by_key(|(_, i)| i.metadata.creation_timestamp.as_deref().unwrap_or(""));
        let list: Vec<&Ingress> = same.iter().map(|(_, i)| *i).collect();
        for u in canary::pair(&list).unpaired {
            let origin = same
                .iter()
                .find(|(_, i)| std::ptr::eq(*i, u.ingress))
                .map_or("", |(o, _)| o.as_str());
            out.push(Problem {
                origin: origin.to_string(),
                object: format!(
                    "Ingress {}/{}",
                    u.ingress.metadata.namespace, u.ingress.metadata.name
                ),
                error: u.error.clone(),
            });
        }
    }
    out
}
