//! The token endpoint of the Docker registry token protocol: `GET /token` with Basic
//! credentials (docker, skopeo, podman), and `POST /token` with OAuth2 password and refresh-token
//! grants (containerd, `docker login`).

use auth::{Principal, Scope};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Registry;
use crate::error::{ApiError, Code};
use crate::http_access::{decode_basic, request_origin};
use service::access::AccessControl;

fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (crate::api::percent_decode(k), crate::api::percent_decode(v))
        })
        .collect()
}

fn access(reg: &Registry) -> Result<&AccessControl, ApiError> {
    reg.access().map(|a| a.as_ref()).ok_or_else(|| {
        ApiError::new(Code::Unsupported, "token authentication is not configured")
            .with_status(StatusCode::NOT_FOUND)
    })
}

fn source(parts: &Parts) -> Option<std::net::IpAddr> {
    request_origin(&parts.extensions).0
}

fn check_service(ac: &AccessControl, service: Option<&str>) -> Result<(), ApiError> {
    match service {
        Some(s) if !s.is_empty() && s != ac.service() => Err(ApiError::new(
            Code::Denied,
            format!("this token service is {:?}, not {s:?}", ac.service()),
        )
        .with_status(StatusCode::BAD_REQUEST)),
        _ => Ok(()),
    }
}

fn token_json(
    ac: &AccessControl,
    principal: &Principal,
    scopes: &[Scope],
    refresh: Option<String>,
) -> Result<Response, ApiError> {
    let (token, granted) = ac.issue(principal, scopes)?;
    let scope = granted
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ac.token_ttl(),
        "issued_at": oci::time::rfc3339(auth::now()),
        "scope": scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = serde_json::Value::String(r);
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response())
}

/// Refuses more scopes than a token may carry before any password is checked.
fn check_scope_count(scopes: &[Scope]) -> Result<(), ApiError> {
    if scopes.len() > service::access::MAX_TOKEN_SCOPES {
        return Err(ApiError::new(
            Code::Unsupported,
            format!(
                "{} scopes requested; a token carries at most {} scopes",
                scopes.len(),
                service::access::MAX_TOKEN_SCOPES
            ),
        )
        .with_status(StatusCode::BAD_REQUEST));
    }
    Ok(())
}

/// `GET /token?service=..&scope=..&offline_token=true`, with optional Basic credentials.
pub(crate) async fn get_token(State(reg): State<Registry>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    match get_token_inner(&reg, &parts).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn get_token_inner(reg: &Registry, parts: &Parts) -> Result<Response, ApiError> {
    let ac = access(reg)?;
    let q = form_pairs(parts.uri.query().unwrap_or(""));
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    check_service(ac, get("service"))?;
    let scopes: Vec<Scope> = q
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
        .collect();
    check_scope_count(&scopes)?;
    let principal = match parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => Principal::anonymous(),
        Some(v) => {
            let b64 = v
                .strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
                .ok_or_else(|| {
                    ApiError::new(
                        Code::Unauthorized,
                        "the token endpoint takes Basic credentials",
                    )
                })?;
            let (user, pass) = decode_basic(b64.trim())
                .ok_or_else(|| ApiError::new(Code::Unauthorized, "malformed Basic credentials"))?;
            ac.login(&user, &pass, source(parts)).await?
        }
    };
    crate::access_log::note_user(principal.display());
    let offline =
        get("offline_token") == Some("true") && principal.kind != auth::PrincipalKind::Anonymous;
    let refresh = offline.then(|| ac.issue_refresh(&principal));
    token_json(ac, &principal, &scopes, refresh)
}

/// `POST /token` with an `application/x-www-form-urlencoded` OAuth2 body.
pub(crate) async fn post_token(State(reg): State<Registry>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                Code::Unsupported,
                "token request body too large or interrupted",
            )
            .with_status(StatusCode::BAD_REQUEST)
            .into_response();
        }
    };
    match post_token_inner(&reg, &parts, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn post_token_inner(
    reg: &Registry,
    parts: &Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ac = access(reg)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(Code::Unsupported, "form body is not UTF-8")
            .with_status(StatusCode::BAD_REQUEST)
    })?;
    let form = form_pairs(text);
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    check_service(ac, get("service"))?;
    let scopes: Vec<Scope> = get("scope")
        .unwrap_or("")
        .split(' ')
        .filter_map(Scope::parse)
        .collect();
    check_scope_count(&scopes)?;
    let bad = |m: &str| {
        ApiError::new(Code::Unsupported, m.to_owned()).with_status(StatusCode::BAD_REQUEST)
    };
    match get("grant_type") {
        Some("password") => {
            let user = get("username").ok_or_else(|| bad("username is required"))?;
            let pass = get("password").ok_or_else(|| bad("password is required"))?;
            let principal = ac.login(user, pass, source(parts)).await?;
            crate::access_log::note_user(principal.display());
            let refresh =
                (get("access_type") == Some("offline")).then(|| ac.issue_refresh(&principal));
            token_json(ac, &principal, &scopes, refresh)
        }
        Some("refresh_token") => {
            let rt = get("refresh_token").ok_or_else(|| bad("refresh_token is required"))?;
            let principal = ac.redeem_refresh(rt)?;
            crate::access_log::note_user(principal.display());
            token_json(ac, &principal, &scopes, Some(rt.to_owned()))
        }
        Some(other) => Err(bad(&format!("unsupported grant_type {other:?}"))),
        None => Err(bad("grant_type is required")),
    }
}
