//! A `WasmPlugin`'s place in the filter chain: its `spec.phase` as the model's
//! [`Phase`]. The ordering itself (phase, priority, name) is `model::plugin_chain`'s.

use crate::model::plugin_chain::Phase;
use crate::resources::wasmplugin;

impl From<wasmplugin::Phase> for Phase {
    fn from(p: wasmplugin::Phase) -> Phase {
        match p {
            wasmplugin::Phase::Authn => Phase::Authn,
            wasmplugin::Phase::Authz => Phase::Authz,
            wasmplugin::Phase::Stats => Phase::Stats,
            wasmplugin::Phase::Unspecified => Phase::Unspecified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_keep_their_order_and_config_names() {
        let all = [
            wasmplugin::Phase::Authn,
            wasmplugin::Phase::Authz,
            wasmplugin::Phase::Stats,
            wasmplugin::Phase::Unspecified,
        ];
        for (a, b) in all.iter().zip(&all[1..]) {
            assert!(Phase::from(*a) < Phase::from(*b));
        }
        for p in all {
            // `/debug/configz` shows the model's name: the config's spelling.
            assert_eq!(serde_json::json!(p), Phase::from(p).as_str());
        }
        assert_eq!(Phase::from(wasmplugin::Phase::default()), Phase::default());
    }
}
