//! Whether the API server serves a custom resource, asked once at start-up: the optional
//! kinds (Knative's Ingress, Istio's networking kinds) are watched only when their CRD is
//! installed, as Higress enables its KIngress controller only then.

use std::collections::BTreeMap;
use std::time::Duration;

use ::kube::Client;

/// The discovery answers so far, one per group/version.
#[derive(Default)]
pub(super) struct Served {
    /// `group/version` → the resources it serves; `None`: not served (404).
    answers: BTreeMap<String, Option<Vec<String>>>,
}

/// One discovery request's bound, as for the other API calls.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Served {
    /// Whether `/apis/<group>/<version>` lists `plural`. A 404 is an answer (not
    /// served); any other failure is retried, with backoff, until the API server
    /// answers: until it does, no watcher could list anyway.
    pub(super) async fn serves(
        &mut self,
        client: &Client,
        group: &str,
        version: &str,
        plural: &str,
    ) -> bool {
        let gv = format!("{group}/{version}");
        if !self.answers.contains_key(&gv) {
            let answer = ask(client, &gv).await;
            self.answers.insert(gv.clone(), answer);
        }
        self.answers[&gv]
            .as_ref()
            .is_some_and(|rs| rs.iter().any(|r| r == plural))
    }
}

async fn ask(client: &Client, gv: &str) -> Option<Vec<String>> {
    let mut wait = Duration::from_millis(500);
    loop {
        match tokio::time::timeout(TIMEOUT, client.list_api_group_resources(gv)).await {
            Ok(Ok(list)) => return Some(list.resources.into_iter().map(|r| r.name).collect()),
            Ok(Err(::kube::Error::Api(s))) if s.code == 404 => return None,
            Ok(Err(e)) => {
                tracing::warn!(api = gv, error = %e, "API discovery failed; retrying")
            }
            Err(_) => tracing::warn!(api = gv, "API discovery timed out; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
