//! Accounts (Octopus's account library): the credentials SSH targets log in with. Two types are
//! supported, `SshKeyPair` (`Username`, `PrivateKeyFile`, optional `PrivateKeyPassphrase`) and
//! `UsernamePassword` (`Username`, `Password`); Octopus's cloud account types are refused.
//!
//! Secrets are write-only. Each is sent as Octopus's sensitive value
//! `{"HasValue": bool, "NewValue": "..."}`, sealed with the master key bound to the account id
//! and the field (`ferry_crypto::account_aad`), and stored only sealed; responses and audit
//! events show `{"HasValue": true, "NewValue": null}` in its place. The private key's
//! `NewValue` is the key file in base64 (what Octopus's clients send) or its PEM text.
//! The store keeps the account type in `ref2`, so the `accountType` filter runs in the query.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_crypto::{account_aad, seal};
use ferry_domain::ids::slugify;
use ferry_domain::{Account, Environment, Machine};
use ferry_store::{DocQuery, DocRow};
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::input::Body;

pub(crate) const C: &str = "Accounts";
pub(crate) const SSH_KEY_PAIR: &str = "SshKeyPair";
pub(crate) const USERNAME_PASSWORD: &str = "UsernamePassword";
const SUPPORTED: [&str; 2] = [SSH_KEY_PAIR, USERNAME_PASSWORD];
/// Octopus's other account types: known, but not supported by Ferry.
const UNSUPPORTED: [&str; 7] = [
    "AzureServicePrincipal",
    "AzureOidc",
    "AzureSubscription",
    "AmazonWebServicesAccount",
    "AmazonWebServicesRoleAccount",
    "AmazonWebServicesOidcAccount",
    "Token",
];
const PARTICIPATION: [&str; 3] = ["Untenanted", "TenantedOrUntenanted", "Tenanted"];
const KEY_FIELD: &str = "PrivateKeyFile";
const PASSPHRASE_FIELD: &str = "PrivateKeyPassphrase";
const PASSWORD_FIELD: &str = "Password";

/// An account as sent: the common fields, the username and the secrets as sensitive values.
/// Whatever a client sends as `Sealed*` is ignored (only the server seals).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AccountInput {
    pub account_type: String,
    pub name: String,
    pub description: String,
    pub environment_ids: Vec<String>,
    pub tenanted_deployment_participation: String,
    pub tenant_ids: Vec<String>,
    pub tenant_tags: Vec<String>,
    pub username: String,
    pub private_key_file: Option<Value>,
    pub private_key_passphrase: Option<Value>,
    pub password: Option<Value>,
}

/// What a sensitive value sent by a client asks for.
#[derive(Debug, PartialEq)]
enum Secret {
    /// Not sent, or sent without a new value and `HasValue` not false: keep the stored one.
    Keep,
    /// `{"HasValue": false}` without a new value: remove it.
    Clear,
    /// A new value.
    Set(String),
}

/// Reads a sensitive value: `{"HasValue": bool, "NewValue": "..."}` or a bare string. An empty
/// `NewValue` counts as none.
fn secret(v: Option<&Value>, field: &str) -> Result<Secret, String> {
    match v {
        None | Some(Value::Null) => Ok(Secret::Keep),
        Some(Value::String(s)) if s.is_empty() => Ok(Secret::Keep),
        Some(Value::String(s)) => Ok(Secret::Set(s.clone())),
        Some(Value::Object(o)) => {
            let new_value = match o.get("NewValue") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(format!("{field}: NewValue must be a string"));
                }
            };
            let has_value = match o.get("HasValue") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(format!("{field}: HasValue must be true or false")),
            };
            Ok(match (new_value, has_value) {
                (Some(s), _) => Secret::Set(s),
                (None, Some(false)) => Secret::Clear,
                (None, _) => Secret::Keep,
            })
        }
        Some(_) => Err(format!(
            "{field}: expected a sensitive value like {{\"HasValue\": true, \"NewValue\": \"...\"}}"
        )),
    }
}

/// The type's canonical spelling when it is one Ferry supports.
fn canonical_type(t: &str) -> Option<&'static str> {
    SUPPORTED.into_iter().find(|s| s.eq_ignore_ascii_case(t))
}

fn sensitive(has: bool) -> Value {
    json!({"HasValue": has, "NewValue": null})
}

/// The account as clients see it: no `Sealed*` member, each secret as
/// `{"HasValue": bool, "NewValue": null}`. Audit events record this view too.
pub fn public_view(a: &Account) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| !k.starts_with("Sealed"));
        match a.account_type.as_str() {
            SSH_KEY_PAIR => {
                o.insert(KEY_FIELD.into(), sensitive(a.sealed_private_key.is_some()));
                o.insert(
                    PASSPHRASE_FIELD.into(),
                    sensitive(a.sealed_private_key_passphrase.is_some()),
                );
            }
            USERNAME_PASSWORD => {
                o.insert(
                    PASSWORD_FIELD.into(),
                    sensitive(a.sealed_password.is_some()),
                );
            }
            _ => {}
        }
    }
    v
}

fn render(space: &str, a: &Account) -> Value {
    let mut v = public_view(a);
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "Links".into(),
            links(
                format!("/api/{space}/accounts/{}", a.id),
                &[
                    ("Usages", format!("/api/{space}/accounts/{}/usages", a.id)),
                    (
                        "Web",
                        format!("/app#/{space}/infrastructure/accounts/{}", a.id),
                    ),
                ],
            ),
        );
    }
    v
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

fn row(a: &Account, seq: i64) -> ApiResult<DocRow> {
    let mut r = doc_row(C, &a.id, &a.space_id, "", &a.name, &a.slug, 0, seq, a)?;
    r.ref2 = a.account_type.clone();
    Ok(r)
}

fn named(a: &Account) -> Named<'_> {
    Named {
        what: "account",
        name: &a.name,
    }
}

async fn find_account(st: &AppState, space: &str, key: &str) -> ApiResult<(DocRow, Account)> {
    require_space(st, space).await?;
    match find::<Account>(st, C, space, None, key).await? {
        Some(found) => Ok(found),
        None => Err(ApiError::not_found(format!(
            "Account '{key}' was not found"
        ))),
    }
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/accounts");
    let params = Params::parse(raw.as_deref());
    let mut q = query(&space);
    q.ref2_in = params
        .list("accountType")
        .iter()
        .map(|t| canonical_type(t).map_or_else(|| t.clone(), str::to_string))
        .collect();
    let template = format!("{base}{{/id}}{{?skip,take,ids,partialName,accountType}}");
    let v = list_page(&st, q, &params, "Account", &base, &template, |d| {
        Ok(render(&space, &parse_body(d)?))
    })
    .await?;
    Ok(Json(v))
}

pub async fn all(State(st): State<AppState>, Path(space): Path<String>) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    Ok(Json(
        list_all(&st, query(&space), |d| Ok(render(&space, &parse_body(d)?))).await?,
    ))
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, a) = find_account(&st, &space, &id).await?;
    Ok(Json(render(&space, &a)))
}

/// `GET /api/{space}/accounts/{id}/usages`: Octopus's usage report; Ferry's accounts are used
/// by SSH targets only.
pub async fn usages(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_, a) = find_account(&st, &space, &id).await?;
    let targets: Vec<Value> = machines_using(&st, &space, &a.id)
        .await?
        .iter()
        .map(|m| json!({"TargetId": m.id, "TargetName": m.name}))
        .collect();
    Ok(Json(json!({
        "Targets": targets,
        "DeploymentProcesses": [],
        "Releases": [],
        "ProjectVariableSets": [],
        "LibraryVariableSets": [],
        "RunbookProcesses": [],
        "RunbookSnapshots": [],
    })))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(input): Body<AccountInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let (mut a, secrets) = validate(&st, &space, input, None).await?;
    // The id is part of each secret's sealing context, so it comes first.
    let seq = next_seq(&st, C).await?;
    a.id = format!("{C}-{seq}");
    a.space_id = space.clone();
    apply_secrets(&st, &mut a, secrets, None);
    let view = public_view(&a);
    insert_audited(&st, &ctx, named(&a), row(&a, seq)?, &view).await?;
    Ok((StatusCode::CREATED, Json(render(&space, &a))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(input): Body<AccountInput>,
) -> ApiResult<Json<Value>> {
    let (old_row, old) = find_account(&st, &space, &id).await?;
    let (mut a, secrets) = validate(&st, &space, input, Some(&old)).await?;
    a.id = old.id.clone();
    a.space_id = space.clone();
    apply_secrets(&st, &mut a, secrets, Some(&old));
    let r = row(&a, old_row.seq)?;
    update_audited(
        &st,
        &ctx,
        named(&a),
        &old_row,
        r,
        &public_view(&old),
        &public_view(&a),
    )
    .await?;
    Ok(Json(render(&space, &a)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, a) = find_account(&st, &space, &id).await?;
    let users = machines_using(&st, &space, &a.id).await?;
    if !users.is_empty() {
        let list: Vec<String> = users
            .iter()
            .map(|m| format!("'{}' ({})", m.name, m.id))
            .collect();
        return Err(ApiError::conflict(format!(
            "The account '{}' is used by the deployment targets {}; change or delete them first",
            a.name,
            list.join(", ")
        )));
    }
    delete_audited(&st, &ctx, named(&a), &space, &a.id, &public_view(&a)).await?;
    Ok(Json(json!({})))
}

/// The space's machines whose endpoint logs in with the account.
async fn machines_using(st: &AppState, space: &str, account_id: &str) -> ApiResult<Vec<Machine>> {
    let mut q = DocQuery::new("Machines");
    q.space_id = Some(space.to_string());
    let (rows, _) = st.db.list_docs(&q).await?;
    let mut out = Vec::new();
    for r in &rows {
        let m: Machine = parse_body(r)?;
        if m.endpoint.account_id.as_deref() == Some(account_id) {
            out.push(m);
        }
    }
    Ok(out)
}

/// The secrets a request asks for, validated but not yet sealed (the id may not exist yet).
#[derive(Debug)]
struct Secrets {
    private_key: Secret,
    passphrase: Secret,
    password: Secret,
}

/// Seals the new secrets under the account's id; kept ones come from `old`; secrets that do
/// not belong to the account's type are dropped.
fn apply_secrets(st: &AppState, a: &mut Account, s: Secrets, old: Option<&Account>) {
    let key = &st.master_key;
    let id = a.id.clone();
    let pick = |sec: Secret, field: &str, kept: Option<&String>| match sec {
        Secret::Set(plain) => Some(seal(key, &account_aad(&id, field), &plain)),
        Secret::Clear => None,
        Secret::Keep => kept.cloned(),
    };
    a.sealed_private_key = None;
    a.sealed_private_key_passphrase = None;
    a.sealed_password = None;
    match a.account_type.as_str() {
        SSH_KEY_PAIR => {
            a.sealed_private_key = pick(
                s.private_key,
                KEY_FIELD,
                old.and_then(|o| o.sealed_private_key.as_ref()),
            );
            a.sealed_private_key_passphrase = pick(
                s.passphrase,
                PASSPHRASE_FIELD,
                old.and_then(|o| o.sealed_private_key_passphrase.as_ref()),
            );
        }
        USERNAME_PASSWORD => {
            a.sealed_password = pick(
                s.password,
                PASSWORD_FIELD,
                old.and_then(|o| o.sealed_password.as_ref()),
            );
        }
        _ => {}
    }
}

/// Validates and normalises an account as sent (`old` on update); every problem found is
/// reported, each naming its field. No message repeats a secret.
async fn validate(
    st: &AppState,
    space: &str,
    input: AccountInput,
    old: Option<&Account>,
) -> ApiResult<(Account, Secrets)> {
    let name = require_name(&input.name, "account", 200)?;
    let mut errors = Vec::new();

    // The type: one of the supported ones; fixed once created.
    let sent = input.account_type.trim();
    let account_type = match (canonical_type(sent), old) {
        (_, Some(o)) if sent.is_empty() => o.account_type.clone(),
        (Some(t), Some(o)) if t != o.account_type => {
            return Err(ApiError::bad_request(format!(
                "AccountType: an account's type cannot be changed (this one is {}); create a new account instead",
                o.account_type
            )));
        }
        (Some(t), _) => t.to_string(),
        (None, _) if sent.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "AccountType: please provide the account type ({})",
                SUPPORTED.join(" or ")
            )));
        }
        (None, _) => {
            let known = UNSUPPORTED.iter().any(|u| u.eq_ignore_ascii_case(sent));
            return Err(ApiError::bad_request(format!(
                "AccountType: {} accounts are not supported; Ferry supports {}",
                if known { sent } else { "such" },
                SUPPORTED.join(" and ")
            )));
        }
    };

    let mut a = Account {
        account_type: account_type.clone(),
        name: name.clone(),
        slug: slugify(&name),
        description: input.description.trim().to_string(),
        username: input.username.trim().to_string(),
        ..Account::default()
    };
    if a.username.is_empty() {
        errors.push("Username: please provide the user name to log in as".to_string());
    } else if a.username.chars().any(char::is_whitespace) {
        errors.push("Username: the user name must not contain spaces".to_string());
    }

    // Environments: optional, each in this space (by id, slug or name; stored as ids).
    for key in input
        .environment_ids
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
    {
        match find::<Environment>(st, "Environments", space, None, key).await? {
            Some((_, e)) if !a.environment_ids.contains(&e.id) => a.environment_ids.push(e.id),
            Some(_) => {}
            None => errors.push(format!(
                "EnvironmentIds: the environment '{key}' was not found in this space"
            )),
        }
    }

    // Tenants, by id, name or slug.
    for key in input
        .tenant_ids
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        match find::<Value>(st, "Tenants", space, None, key).await? {
            Some((d, _)) if !a.tenant_ids.contains(&d.id) => a.tenant_ids.push(d.id),
            Some(_) => {}
            None => errors.push(format!(
                "TenantIds: the tenant '{key}' was not found in this space"
            )),
        }
    }
    // Tags must exist; they are stored canonical (`Set/Tag`).
    for t in
        super::tagsets::canonical_tags(st, space, &input.tenant_tags, "TenantTags", &mut errors)
            .await?
    {
        if !a.tenant_tags.contains(&t) {
            a.tenant_tags.push(t);
        }
    }
    let participation = input.tenanted_deployment_participation.trim();
    if participation.is_empty() {
        a.tenanted_deployment_participation = "Untenanted".to_string();
    } else if let Some(p) = PARTICIPATION
        .iter()
        .find(|p| p.eq_ignore_ascii_case(participation))
    {
        a.tenanted_deployment_participation = (*p).to_string();
    } else {
        errors.push(format!(
            "TenantedDeploymentParticipation: '{participation}' must be one of {}",
            PARTICIPATION.join(", ")
        ));
    }

    // Secrets.
    let mut read = |v: Option<&Value>, field: &str| match secret(v, field) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            Secret::Keep
        }
    };
    let mut secrets = Secrets {
        private_key: read(input.private_key_file.as_ref(), KEY_FIELD),
        passphrase: read(input.private_key_passphrase.as_ref(), PASSPHRASE_FIELD),
        password: read(input.password.as_ref(), PASSWORD_FIELD),
    };
    match account_type.as_str() {
        SSH_KEY_PAIR => {
            let stored = old.is_some_and(|o| o.sealed_private_key.is_some());
            match &secrets.private_key {
                Secret::Set(v) => match private_key_pem(v) {
                    Ok(pem) => secrets.private_key = Secret::Set(pem),
                    Err(e) => errors.push(e),
                },
                // The key is required: it cannot be removed, only replaced.
                Secret::Keep | Secret::Clear if stored => secrets.private_key = Secret::Keep,
                _ => errors.push(format!(
                    "{KEY_FIELD}: please provide the private key file (its base64 or PEM text) in NewValue"
                )),
            }
        }
        _ => {
            let stored = old.is_some_and(|o| o.sealed_password.is_some());
            match &secrets.password {
                Secret::Set(_) => {}
                Secret::Keep | Secret::Clear if stored => secrets.password = Secret::Keep,
                _ => errors.push(format!(
                    "{PASSWORD_FIELD}: please provide the password in NewValue"
                )),
            }
        }
    }

    if errors.is_empty() {
        Ok((a, secrets))
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

/// The private key's PEM text from what a client sent: the key file in base64 (Octopus's
/// clients) or the PEM/OpenSSH text itself. Line endings become `\n`, with one at the end.
fn private_key_pem(sent: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{KEY_FIELD}: the value is not a private key file; send the key file (PEM or OpenSSH format, starting with -----BEGIN ... PRIVATE KEY-----) as base64 or as text"
        )
    };
    let trimmed = sent.trim();
    let text = if trimmed.starts_with("-----BEGIN") {
        trimmed.to_string()
    } else {
        let bytes = base64_decode(trimmed).ok_or_else(bad)?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let text = text.trim().to_string();
        if !text.starts_with("-----BEGIN") {
            return Err(bad());
        }
        text
    };
    let text = text.replace("\r\n", "\n");
    let first = text.lines().next().unwrap_or_default().trim();
    let last = text.lines().last().unwrap_or_default().trim();
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(bad)?;
    let body_lines = text.lines().count().saturating_sub(2);
    if !label.ends_with("PRIVATE KEY")
        || last != format!("-----END {label}-----")
        || body_lines == 0
    {
        return Err(bad());
    }
    Ok(format!("{text}\n"))
}

/// Standard base64 (padding optional, whitespace ignored); `None` when it is not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = match clean.iter().position(|c| *c == b'=') {
        Some(i) if clean[i..].iter().all(|c| *c == b'=') && clean.len() - i <= 2 => &clean[..i],
        Some(_) => return None,
        None => &clean[..],
    };
    if data.is_empty() || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let mut n = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                n |= u32::from(*b) << (16 - 8 * i);
            }
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "hello world\n", PEM] {
            if s.is_empty() {
                assert_eq!(base64_decode(""), None);
                continue;
            }
            assert_eq!(
                base64_decode(&b64(s.as_bytes())).as_deref(),
                Some(s.as_bytes())
            );
            let unpadded = b64(s.as_bytes()).trim_end_matches('=').to_string();
            assert_eq!(base64_decode(&unpadded).as_deref(), Some(s.as_bytes()));
        }
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("ab=c"), None);
        assert_eq!(base64_decode("a*bc"), None);
    }

    #[test]
    fn private_keys_are_accepted_as_base64_or_text() {
        let want = format!("{PEM}\n");
        assert_eq!(private_key_pem(PEM).as_deref(), Ok(want.as_str()));
        assert_eq!(
            private_key_pem(&b64(PEM.as_bytes())).as_deref(),
            Ok(want.as_str())
        );
        let crlf = PEM.replace('\n', "\r\n");
        assert_eq!(private_key_pem(&crlf).as_deref(), Ok(want.as_str()));
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n";
        assert!(private_key_pem(rsa).is_ok());
        for bad in [
            "hello",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
            &b64(b"not a key"),
        ] {
            let e = private_key_pem(bad).err().unwrap_or_default();
            assert!(e.starts_with(KEY_FIELD), "{e}");
            assert!(!e.contains("abc"), "{e}");
        }
    }

    #[test]
    fn sensitive_values_are_read() {
        let f = "F";
        assert_eq!(secret(None, f), Ok(Secret::Keep));
        assert_eq!(
            secret(Some(&json!({"HasValue": true})), f),
            Ok(Secret::Keep)
        );
        assert_eq!(
            secret(Some(&json!({"HasValue": false})), f),
            Ok(Secret::Clear)
        );
        assert_eq!(
            secret(Some(&json!({"HasValue": false, "NewValue": "x"})), f),
            Ok(Secret::Set("x".into()))
        );
        assert_eq!(secret(Some(&json!("x")), f), Ok(Secret::Set("x".into())));
        assert!(secret(Some(&json!(5)), f).is_err());
    }

    #[test]
    fn public_view_hides_sealed_values() {
        let a = Account {
            id: "Accounts-1".into(),
            account_type: SSH_KEY_PAIR.into(),
            sealed_private_key: Some("FERRY1:abc".into()),
            ..Account::default()
        };
        let v = public_view(&a);
        assert!(!v.to_string().contains("FERRY1"), "{v}");
        assert_eq!(v[KEY_FIELD], json!({"HasValue": true, "NewValue": null}));
        assert_eq!(v[PASSPHRASE_FIELD]["HasValue"], false);
    }
}
