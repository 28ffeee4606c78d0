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
    pub const UPSTREAM_REMOTE_RESET: u16 = 1 << 9; // UR
    pub const UPSTREAM_PROTOCOL_ERROR: u16 = 1 << 10; // UPE
    pub const OVERLOAD: u16 = 1 << 11; // OM
    pub const DOWNSTREAM_PROTOCOL_ERROR: u16 = 1 << 12; // DPE

    const NAMES: [(u16, &'static str); 13] = [
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
        (Self::UPSTREAM_PROTOCOL_ERROR, "UPE"),
        (Self::OVERLOAD, "OM"),
        (Self::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
    ];

    /// How many flags there are: bit positions `0..COUNT`.
    pub const COUNT: usize = 13;

    /// The flags as a bit set, bit `i` for the flag [`ResponseFlags::short_name`]`(i)`.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Envoy's short name (`UF`) of the flag at bit position `index`.
    pub fn short_name(index: usize) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(bit, _)| bit.trailing_zeros() as usize == index)
            .map_or("", |(_, name)| name)
    }

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
        const ENVOY: [(u16, u64); 13] = [
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
            (ResponseFlags::UPSTREAM_PROTOCOL_ERROR, 0x80_0000),
            (ResponseFlags::OVERLOAD, 0x200_0000),
            (ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR, 0x4_0000),
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
        let mut g = ResponseFlags::default();
        g.set(ResponseFlags::UPSTREAM_PROTOCOL_ERROR);
        g.set(ResponseFlags::RETRY_EXHAUSTED);
        g.set(ResponseFlags::UPSTREAM_REMOTE_RESET);
        assert_eq!(g.render(), "UR,URX,UPE");
        assert_eq!(g.envoy_bits(), 0x10 | 0x8000 | 0x80_0000);
    }

    #[test]
    fn every_bit_has_a_short_name() {
        let names: Vec<_> = (0..ResponseFlags::COUNT)
            .map(ResponseFlags::short_name)
            .collect();
        assert_eq!(names[3], "UF");
        assert_eq!(names[7], "URX");
        assert!(names.iter().all(|n| !n.is_empty()), "{names:?}");
        assert_eq!(ResponseFlags::short_name(ResponseFlags::COUNT), "");
    }
}
