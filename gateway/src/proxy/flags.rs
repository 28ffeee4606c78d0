//! Envoy response flags, rendered in Envoy's order (`UF,URX`), `-` when none.

use std::borrow::Cow;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseFlags(u16);

impl ResponseFlags {
    pub const NO_HEALTHY_UPSTREAM: u16 = 1 << 0; // UH
    pub const UPSTREAM_TIMEOUT: u16 = 1 << 1; // UT
    pub const LOCAL_RESET: u16 = 1 << 2; // LR
    pub const CONNECT_FAILURE: u16 = 1 << 3; // UF
    pub const CONNECTION_TERMINATION: u16 = 1 << 4; // UC
    pub const NO_ROUTE: u16 = 1 << 5; // NR
    pub const DOWNSTREAM_CLOSED: u16 = 1 << 6; // DC
    pub const RETRY_EXHAUSTED: u16 = 1 << 7; // URX
    pub const RATE_LIMITED: u16 = 1 << 8; // RL
    pub const OVERLOAD: u16 = 1 << 9; // OM
    pub const UPSTREAM_REMOTE_RESET: u16 = 1 << 10; // UR

    const NAMES: [(u16, &'static str); 11] = [
        (Self::NO_HEALTHY_UPSTREAM, "UH"),
        (Self::UPSTREAM_TIMEOUT, "UT"),
        (Self::LOCAL_RESET, "LR"),
        (Self::UPSTREAM_REMOTE_RESET, "UR"),
        (Self::CONNECT_FAILURE, "UF"),
        (Self::CONNECTION_TERMINATION, "UC"),
        (Self::NO_ROUTE, "NR"),
        (Self::RATE_LIMITED, "RL"),
        (Self::DOWNSTREAM_CLOSED, "DC"),
        (Self::RETRY_EXHAUSTED, "URX"),
        (Self::OVERLOAD, "OM"),
    ];

    pub fn set(&mut self, flag: u16) {
        self.0 |= flag;
    }

    pub fn clear(&mut self, flag: u16) {
        self.0 &= !flag;
    }

    pub fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    /// The flags as Envoy's `ResponseFlag` bits (the `response.flags` attribute).
    pub fn envoy_bits(self) -> u64 {
        const ENVOY: [(u16, u64); 11] = [
            (ResponseFlags::NO_HEALTHY_UPSTREAM, 0x2),
            (ResponseFlags::UPSTREAM_TIMEOUT, 0x4),
            (ResponseFlags::LOCAL_RESET, 0x8),
            (ResponseFlags::UPSTREAM_REMOTE_RESET, 0x10),
            (ResponseFlags::CONNECT_FAILURE, 0x20),
            (ResponseFlags::CONNECTION_TERMINATION, 0x40),
            (ResponseFlags::NO_ROUTE, 0x100),
            (ResponseFlags::RATE_LIMITED, 0x800),
            (ResponseFlags::DOWNSTREAM_CLOSED, 0x4000),
            (ResponseFlags::RETRY_EXHAUSTED, 0x8000),
            (ResponseFlags::OVERLOAD, 0x200_0000),
        ];
        ENVOY
            .iter()
            .filter(|(ours, _)| self.has(*ours))
            .map(|(_, bit)| bit)
            .sum()
    }

    pub fn render(self) -> Cow<'static, str> {
        if self.0 == 0 {
            return Cow::Borrowed("-");
        }
        let mut s = String::new();
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                if !s.is_empty() {
                    s.push(',');
                }
                s.push_str(name);
            }
        }
        Cow::Owned(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_envoy_order() {
        let mut f = ResponseFlags::default();
        assert_eq!(f.render(), "-");
        f.set(ResponseFlags::RETRY_EXHAUSTED);
        f.set(ResponseFlags::CONNECT_FAILURE);
        assert_eq!(f.render(), "UF,URX");
        f.set(ResponseFlags::RATE_LIMITED);
        assert_eq!(f.render(), "UF,RL,URX");
        assert_eq!(f.envoy_bits(), 0x20 | 0x800 | 0x8000);
        f.set(ResponseFlags::UPSTREAM_REMOTE_RESET);
        assert_eq!(f.render(), "UR,UF,RL,URX");
    }
}
