//! The `nacos` registry watcher (being built: reports that it is not yet).

use super::{RegistryConfig, Reporter};

pub async fn run(cfg: RegistryConfig, reporter: Reporter) {
    let _ = cfg;
    reporter
        .failed("this registry type is not watched yet")
        .await;
}
