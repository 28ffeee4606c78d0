//! Secrets in Nacos as Higress standalone stores them: AES-CBC with the key of
//! `--nacos-encryption-key-file` (16, 24 or 32 bytes: AES-128/192/256), the IV the
//! key's first 16 bytes, PKCS#5 padding, base64 with the URL alphabet (padded), behind
//! the mark `enc|`. Content without the mark is plain text.

use base64::Engine as _;
use openssl::symm::{decrypt, encrypt, Cipher};

/// What marks encrypted content.
pub const MARK: &str = "enc|";

#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("the encryption key is {0} bytes; it must be 16, 24 or 32 (the file is read as is, a trailing newline included)")]
    KeyLength(usize),
    #[error("the content is encrypted (enc|...) but no --nacos-encryption-key-file is given")]
    NoKey,
    #[error("cannot decrypt the content: {0}")]
    Decrypt(String),
}

#[derive(Clone)]
pub struct Crypt {
    key: Vec<u8>,
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        write!(f, "Crypt(AES-{})", self.key.len() * 8)
    }
}

impl Crypt {
    pub fn new(key: Vec<u8>) -> Result<Crypt, CryptError> {
        match key.len() {
            16 | 24 | 32 => Ok(Crypt { key }),
            n => Err(CryptError::KeyLength(n)),
        }
    }

    fn cipher(&self) -> Cipher {
        match self.key.len() {
            16 => Cipher::aes_128_cbc(),
            24 => Cipher::aes_192_cbc(),
            _ => Cipher::aes_256_cbc(),
        }
    }

    /// `enc|<base64url(AES-CBC(plain))>`.
    pub fn encrypt(&self, plain: &str) -> String {
        let sealed = encrypt(
            self.cipher(),
            &self.key,
            Some(&self.key[..16]),
            plain.as_bytes(),
        )
        // AES-CBC with a valid key and IV length cannot fail.
        .expect("AES-CBC encryption");
        format!(
            "{MARK}{}",
            base64::engine::general_purpose::URL_SAFE.encode(sealed)
        )
    }
}

/// The plain text of stored `content`: decrypted when it has the mark.
pub fn open(crypt: Option<&Crypt>, content: &str) -> Result<String, CryptError> {
    let Some(sealed) = content.strip_prefix(MARK) else {
        return Ok(content.to_string());
    };
    let c = crypt.ok_or(CryptError::NoKey)?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(sealed.trim())
        .map_err(|e| CryptError::Decrypt(format!("not base64: {e}")))?;
    let plain = decrypt(c.cipher(), &c.key, Some(&c.key[..16]), &bytes)
        .map_err(|_| CryptError::Decrypt("wrong key or damaged content".into()))?;
    String::from_utf8(plain).map_err(|_| CryptError::Decrypt("not UTF-8 once decrypted".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_answer() {
        let c = Crypt::new(b"0123456789abcdef".to_vec()).unwrap();
        let sealed = c.encrypt("hello");
        // AES-128-CBC, key = IV = "0123456789abcdef", "hello" + 11 bytes of padding 0x0b.
        assert_eq!(sealed, "enc|MOfLtxzZ0YgS4-5cPylFYw==");
        assert_eq!(open(Some(&c), &sealed).unwrap(), "hello");
        assert_eq!(open(None, "plain: text").unwrap(), "plain: text");
        assert!(matches!(open(None, &sealed), Err(CryptError::NoKey)));
        let other = Crypt::new(b"fedcba9876543210fedcba98".to_vec()).unwrap();
        assert!(matches!(
            open(Some(&other), &sealed),
            Err(CryptError::Decrypt(_))
        ));
        assert!(matches!(
            Crypt::new(b"0123456789abcdef\n".to_vec()),
            Err(CryptError::KeyLength(17))
        ));
        let c32 = Crypt::new([7u8; 32].to_vec()).unwrap();
        assert_eq!(open(Some(&c32), &c32.encrypt("x: y\n")).unwrap(), "x: y\n");
    }
}
