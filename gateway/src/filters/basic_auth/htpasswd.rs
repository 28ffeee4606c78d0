//! htpasswd files as nginx's `auth_basic_user_file` reads them, and the password hashes
//! it accepts: bcrypt (`$2y$`, `$2a$`, `$2b$`), Apache's MD5 (`$apr1$`) and the MD5
//! crypt it derives from (`$1$`), `{SHA}` (base64 SHA-1), `{SSHA}` (salted SHA-1) and
//! `{PLAIN}`. nginx hands any other form to the system's `crypt()` (DES, SHA-crypt);
//! those are reported when the file is read and never match.

use base64::Engine;
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// Base64 as htpasswd writes it (standard alphabet, padded).
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One user's password hash, parsed when the file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordHash {
    Bcrypt(String),
    /// `$apr1$` or `$1$`: the magic, the salt (at most 8 characters), the 22-character
    /// digest.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        digest: String,
    },
    Sha1([u8; 20]),
    SaltedSha1 {
        digest: [u8; 20],
        salt: Vec<u8>,
    },
    Plain(String),
    /// A form this gateway cannot check (what it starts with, for the report).
    Unsupported(String),
}

impl PasswordHash {
    pub fn parse(s: &str) -> PasswordHash {
        if s.starts_with("$2y$") || s.starts_with("$2a$") || s.starts_with("$2b$") {
            return PasswordHash::Bcrypt(s.to_string());
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = s.strip_prefix(magic) {
                if let Some((salt, digest)) = rest.split_once('$') {
                    if salt.len() <= 8 && digest.len() == 22 {
                        return PasswordHash::Md5Crypt {
                            magic,
                            salt: salt.to_string(),
                            digest: digest.to_string(),
                        };
                    }
                }
                return PasswordHash::Unsupported(magic.to_string());
            }
        }
        if let Some(b) = s.strip_prefix("{SHA}") {
            if let Ok(Ok(d)) = B64.decode(b).map(<[u8; 20]>::try_from) {
                return PasswordHash::Sha1(d);
            }
            return PasswordHash::Unsupported("{SHA}".into());
        }
        if let Some(b) = s.strip_prefix("{SSHA}") {
            match B64.decode(b) {
                Ok(raw) if raw.len() > 20 => {
                    let (digest, salt) = raw.split_at(20);
                    return PasswordHash::SaltedSha1 {
                        digest: digest.try_into().expect("20 bytes"),
                        salt: salt.to_vec(),
                    };
                }
                _ => return PasswordHash::Unsupported("{SSHA}".into()),
            }
        }
        if let Some(p) = s.strip_prefix("{PLAIN}") {
            return PasswordHash::Plain(p.to_string());
        }
        let kind = match s.strip_prefix('$').and_then(|r| r.split_once('$')) {
            Some((id, _)) => format!("${id}$"),
            None => "crypt(3) DES".to_string(),
        };
        PasswordHash::Unsupported(kind)
    }

    /// Whether `password` matches. Digests are compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Md5Crypt {
                magic,
                salt,
                digest,
            } => same(
                md5_crypt(password, salt.as_bytes(), magic).as_bytes(),
                digest.as_bytes(),
            ),
            PasswordHash::Sha1(d) => same(&Sha1::digest(password), d),
            PasswordHash::SaltedSha1 { digest, salt } => {
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                same(&h.finalize(), digest)
            }
            PasswordHash::Plain(p) => same(password, p.as_bytes()),
            PasswordHash::Unsupported(_) => false,
        }
    }
}

/// Constant-time equality (the length is not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 22-character digest of MD5 crypt (Poul-Henning Kamp's algorithm, which Apache's
/// `$apr1$` runs with its own magic): 1,000 rounds of MD5 over the password and salt.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &str) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alt = {
        let mut h = Md5::new();
        h.update(password);
        h.update(salt);
        h.update(password);
        h.finalize()
    };
    let mut h = Md5::new();
    h.update(password);
    h.update(magic.as_bytes());
    h.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        h.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            h.update([0u8]);
        } else {
            h.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = h.finalize();
    for round in 0..1000 {
        let mut h = Md5::new();
        if round & 1 == 1 {
            h.update(password);
        } else {
            h.update(fin);
        }
        if round % 3 != 0 {
            h.update(salt);
        }
        if round % 7 != 0 {
            h.update(password);
        }
        if round & 1 == 1 {
            h.update(fin);
        } else {
            h.update(password);
        }
        fin = h.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut put = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

/// The users of an htpasswd file, in file order: `user:hash[:comment]` lines; lines
/// starting with `#` and lines without `:` are skipped, as nginx skips them. Also the
/// users whose hash cannot be checked here.
pub fn parse_file(text: &str) -> (Vec<(String, PasswordHash)>, Vec<String>) {
    let mut users = Vec::new();
    let mut unsupported = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') {
            continue;
        }
        let Some((user, rest)) = line.split_once(':') else {
            continue;
        };
        let hash = rest.split(':').next().unwrap_or("");
        push_user(&mut users, &mut unsupported, user, hash);
    }
    (users, unsupported)
}

/// One user of an `auth-map` Secret (or a file line).
pub fn push_user(
    users: &mut Vec<(String, PasswordHash)>,
    unsupported: &mut Vec<String>,
    user: &str,
    hash: &str,
) {
    let h = PasswordHash::parse(hash.trim());
    if let PasswordHash::Unsupported(kind) = &h {
        unsupported.push(format!("user {user:?}: {kind} hashes are not supported"));
    }
    users.push((user.to_string(), h));
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    // Every hash below was made by Apache's `htpasswd` 2.4.71 (Debian `apache2-utils`),
    // password `secret` unless said otherwise:
    //   htpasswd -nbB  -C 5 alice secret   (bcrypt $2y$)
    //   htpasswd -nbm  bob secret          (apr1)
    //   htpasswd -nbs  carol secret        ({SHA})
    //   htpasswd -nbp  dave secret         (plain, no prefix: nginx would crypt() it)
    // and by OpenSSL: `openssl passwd -apr1 -salt Dh.BOuWi foo`, `openssl passwd -1
    // -salt saltsalt secret`; the $2a$/$2b$ ones by libxcrypt's crypt(3) through
    // Python's `crypt.crypt("secret", "$2b$05$abcdefghijklmnopqrstuu")`.
    pub const BCRYPT_2Y: &str = "$2y$05$rnX8IgCtTYW3KkXSRaauU.PYG8cSDehE8nH24eTaPExxxrIxFt/jK";
    pub const APR1: &str = "$apr1$8AJL0E2t$WvoQK3yCEAQASngTUByTH/";
    pub const SHA: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    #[test]
    fn htpasswd_hashes_verify() {
        for h in [
            BCRYPT_2Y,
            "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
            "$2a$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
            APR1,
            "$1$saltsalt$9xy1btjgzLYfb7hivXtC//",
            SHA,
            "{PLAIN}secret",
        ] {
            let p = PasswordHash::parse(h);
            assert!(!matches!(p, PasswordHash::Unsupported(_)), "{h}");
            assert!(p.verify(b"secret"), "{h}");
            assert!(!p.verify(b"secreT"), "{h}");
            assert!(!p.verify(b""), "{h}");
        }
        let foo = PasswordHash::parse("$apr1$Dh.BOuWi$lHmAhYvtONQwNjc6EsX8n/");
        assert!(foo.verify(b"foo"));
        assert!(!foo.verify(b"fo"));
    }

    #[test]
    fn salted_sha1() {
        // base64(sha1("secret" + "salt") + "salt"), made with Python's hashlib.
        let p = PasswordHash::parse("{SSHA}gVK8WC9YyFT1gMsQHTGCgT3sSv5zYWx0");
        assert!(p.verify(b"secret"));
        assert!(!p.verify(b"secret2"));
    }

    #[test]
    fn unsupported_hashes_never_match() {
        for h in ["secret", "$6$salt$abc", "{SHA}not-base64"] {
            let p = PasswordHash::parse(h);
            assert!(matches!(p, PasswordHash::Unsupported(_)), "{h}");
            assert!(!p.verify(b"secret"));
        }
    }

    #[test]
    fn files_as_nginx_reads_them() {
        let text = format!(
            "# users\nalice:{BCRYPT_2Y}\r\nbob:{APR1}:Bob the builder\n\nnot a user line\ndave:secret\nalice:{{PLAIN}}other\n"
        );
        let (users, unsupported) = parse_file(&text);
        let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "dave", "alice"]);
        assert!(
            users[1].1.verify(b"secret"),
            "the comment field is not the hash"
        );
        assert_eq!(
            unsupported,
            ["user \"dave\": crypt(3) DES hashes are not supported"]
        );
    }
}
