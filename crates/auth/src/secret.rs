//! Passwords (argon2id, and bcrypt from htpasswd files), robot secrets and constant-time checks.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The system's random source failed.
    #[error("no randomness available: {0}")]
    Random(String),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Fills a buffer from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(b)
}

/// Hashes a password with argon2id (PHC string with a random salt).
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Checks a password against an argon2 PHC string or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
/// The comparison inside both algorithms is constant-time; a malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A new high-entropy secret for a robot account (256 bits, URL-safe base64).
pub fn generate_secret() -> Result<String, SecretError> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// Hash under which a high-entropy secret is stored. Robot secrets are random, so a fast hash
/// is enough (no dictionary to attack) and keeps every request's check cheap.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time check of a secret against its stored hash.
pub fn verify_secret(secret: &str, stored_hash: &str) -> bool {
    let h = hash_secret(secret);
    h.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time equality of two byte strings (lengths may leak, contents do not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// One `user:hash` line of an htpasswd file (bcrypt entries only; others are skipped with the
/// reason).
pub fn parse_htpasswd(text: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut users = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, h)) if h.starts_with("$2") && !u.is_empty() => {
                users.push((u.to_owned(), h.to_owned()))
            }
            Some((u, _)) => skipped.push(format!(
                "line {}: user {u:?} does not use bcrypt (only bcrypt htpasswd entries are supported)",
                i + 1
            )),
            None => skipped.push(format!("line {}: not user:hash", i + 1)),
        }
    }
    (users, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        assert!(!verify_password("s3cret", "garbage"));
        let b = bcrypt::hash("pw", 4).unwrap();
        assert!(verify_password("pw", &b));
        assert!(!verify_password("nope", &b));
    }

    #[test]
    fn secrets() {
        let s = generate_secret().unwrap();
        assert_eq!(s.len(), 43);
        let h = hash_secret(&s);
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret("x", &h));
        assert_ne!(generate_secret().unwrap(), s);
    }

    #[test]
    fn htpasswd() {
        let b = bcrypt::hash("pw", 4).unwrap();
        let (u, s) = parse_htpasswd(&format!("# c\nalice:{b}\nbob:{{SHA}}xyz\nbroken\n"));
        assert_eq!(u, vec![("alice".to_owned(), b)]);
        assert_eq!(s.len(), 2);
    }
}
