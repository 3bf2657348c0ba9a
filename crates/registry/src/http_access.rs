//! Access control at the HTTP boundary: the caller's address (behind trusted proxies), the
//! credential in the `Authorization` header, and the 401/403/429/503 answers of the Docker token
//! protocol for the decisions of `service::access`.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine;
use service::access::{AccessControl, AccessError, Caller, Challenge, Cidr, Credential, Need};

use crate::error::{ApiError, Code};

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (addresses left of
/// it were written by the client and prove nothing).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// The source address of a request, set by the connection loop.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The client's address when it differs from the peer's (behind a trusted proxy), set by the
/// router from [`resolve_client`].
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// Where a request comes from: the client's address (the connection's peer, or the client a
/// trusted proxy named), and the common name of a client certificate the TLS handshake verified.
pub fn request_origin(ext: &axum::http::Extensions) -> (Option<IpAddr>, Option<&str>) {
    let source = ext
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| ext.get::<PeerAddr>().map(|p| p.0.ip()));
    let cert = ext
        .get::<crate::tls::ClientIdentity>()
        .and_then(|c| c.common_name());
    (source, cert)
}

/// Sets the client's address on a request that came through one of `ac`'s trusted proxies.
pub fn resolve_client(ac: &AccessControl, req: &mut axum::extract::Request) {
    let trusted = ac.trusted_proxies();
    if trusted.is_empty() {
        return;
    }
    let Some(peer) = req.extensions().get::<PeerAddr>().map(|p| p.0.ip()) else {
        return;
    };
    let client = client_address(peer, req.headers(), trusted);
    if client != peer {
        req.extensions_mut().insert(ClientAddr(client));
    }
}

/// The credential a request presents in its `Authorization` header.
pub fn credential(headers: &HeaderMap) -> Credential {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credential::None;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return match decode_basic(rest.trim()) {
            Some((user, password)) => Credential::Basic { user, password },
            None => Credential::Unusable("malformed Basic credentials".into()),
        };
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credential::Bearer(rest.trim().to_owned());
    }
    Credential::Unusable("unsupported authorization scheme".into())
}

/// Decides a request with `ac`: the caller, or the answer to send (a 401 challenge names the
/// token endpoint, derived from the request's Host when no realm is configured). The caller is
/// named in the request's access log line.
pub async fn authorize(
    ac: &AccessControl,
    headers: &HeaderMap,
    source: Option<IpAddr>,
    cert_user: Option<&str>,
    need: &Need,
) -> Result<Caller, ApiError> {
    let caller = ac
        .authorize(&credential(headers), source, cert_user, need)
        .await
        .map_err(|e| refusal(e, headers))?;
    crate::access_log::note_user(caller.principal.display());
    Ok(caller)
}

/// The HTTP answer to a refusal of access control; `headers` are the request's (for the realm).
pub fn refusal(e: AccessError, headers: &HeaderMap) -> ApiError {
    match e {
        AccessError::Unauthorized(m) => ApiError::new(Code::Unauthorized, m),
        AccessError::Challenge(c) => {
            let realm = realm(&c, headers);
            let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", c.service);
            if let Some(scope) = &c.scope {
                v.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(e) = c.error {
                v.push_str(&format!(",error=\"{e}\""));
            }
            ApiError::new(Code::Unauthorized, c.message).with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
            )
        }
        AccessError::Denied(m) => ApiError::new(Code::Denied, m),
        AccessError::Throttled {
            message,
            retry_after_secs,
        } => ApiError::new(Code::TooManyRequests, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs)),
        AccessError::Busy {
            message,
            retry_after_secs,
        } => ApiError::new(Code::Unavailable, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs)),
        AccessError::Invalid(m) => {
            ApiError::new(Code::Unsupported, m).with_status(StatusCode::BAD_REQUEST)
        }
    }
}

impl From<AccessError> for ApiError {
    /// A refusal outside a request's headers (login, token issue): a challenge, which those
    /// never produce, would name a realm on `localhost`.
    fn from(e: AccessError) -> Self {
        refusal(e, &HeaderMap::new())
    }
}

/// The token endpoint named in challenges: the configured `realm`, else one derived from the
/// request's Host header (which any client chooses).
fn realm(c: &Challenge, headers: &HeaderMap) -> String {
    if let Some(r) = &c.realm {
        return r.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{}://{host}/token", c.scheme)
}

/// Decodes `base64(user:password)`.
pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let trusted = [
            Cidr::parse("127.0.0.0/8").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap(),
        ];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.7, 10.1.2.3"),
        );
        // From an untrusted peer the header proves nothing.
        assert_eq!(
            client_address(ip("192.0.2.9"), &h, &trusted),
            ip("192.0.2.9")
        );
        // From a trusted one: the right-most address that is not a trusted proxy.
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("203.0.113.7")
        );
        // Several header lines are one list; garbage stops the walk at the last good hop.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("garbage"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("10.9.9.9"));
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(client_address(ip("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
    }
}
