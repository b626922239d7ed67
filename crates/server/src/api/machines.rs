//! Deployment targets (Octopus's machines): Ferry agents reached by listening
//! (`TentaclePassive`) or polling (`TentacleActive`), each pinned by its certificate's SHA-256
//! thumbprint, and SSH hosts (`Ssh`: `Host`, `Port`, the host key's SHA-256 `Fingerprint` and
//! the `AccountId` of an `SshKeyPair` or `UsernamePassword` account). Names, and agents'
//! thumbprints, are unique per space. The store keeps the thumbprint in `ref1` (empty for SSH)
//! and the communication style in `ref2`, so those filters run in the query; the
//! multi-valued filters (roles, environments, health, disabled) run over the space's machines
//! in memory before paging.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ids::slugify;
use ferry_domain::{Account, Environment, Machine, MachinePolicy};
use ferry_store::{DocQuery, DocRow};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;
use crate::query::MAX_TAKE;

const C: &str = "Machines";
const PASSIVE: &str = "TentaclePassive";
const ACTIVE: &str = "TentacleActive";
const SSH: &str = "Ssh";
const SSH_DEFAULT_PORT: u16 = 22;
const SSH_DEFAULT_PLATFORM: &str = "linux-x64";
const PARTICIPATION: [&str; 3] = ["Untenanted", "TenantedOrUntenanted", "Tenanted"];

fn template(base: &str) -> String {
    format!(
        "{base}{{/id}}{{?skip,take,name,ids,partialName,roles,isDisabled,healthStatuses,commStyles,tenantIds,tenantTags,environmentIds,thumbprint,deploymentId,shellNames}}"
    )
}

fn render(space: &str, m: &Machine) -> Value {
    with_links(
        m,
        links(
            format!("/api/{space}/machines/{}", m.id),
            &[(
                "Web",
                format!("/app#/{space}/infrastructure/machines/{}", m.id),
            )],
        ),
    )
}

fn query(space: &str) -> DocQuery {
    let mut q = DocQuery::new(C);
    q.space_id = Some(space.to_string());
    q
}

fn row(m: &Machine, seq: i64) -> ApiResult<DocRow> {
    let mut r = doc_row(C, &m.id, &m.space_id, "", &m.name, &m.slug, 0, seq, m)?;
    r.ref1 = m.endpoint.thumbprint.clone();
    r.ref2 = m.endpoint.communication_style.clone();
    Ok(r)
}

fn any_eq(wanted: &[String], have: &[String]) -> bool {
    wanted
        .iter()
        .any(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w)))
}

/// Lists the space's machines matching the query's filters, paged (all of them with `ids`).
async fn filtered_page(
    st: &AppState,
    ctx: &Ctx,
    space: &str,
    params: &Params,
    environment: Option<&str>,
    base: &str,
) -> ApiResult<Value> {
    // Only the machines in environments the caller may see machines of.
    let visible = crate::visibility::Visibility::of(
        st,
        ctx,
        Some(space),
        crate::routes::Permission::MachineView,
    )
    .await?;
    let mut q = query(space);
    q.ids = params.list("ids");
    q.partial_name = params.get("partialName").map(str::to_string);
    q.name = params.get("name").map(str::to_string);
    q.ref1_in = params
        .list("thumbprint")
        .iter()
        .map(|t| t.to_ascii_uppercase())
        .collect();
    q.ref2_in = params.list("commStyles");
    let roles = params.list("roles");
    let mut envs = params.list("environmentIds");
    if let Some(e) = environment {
        envs = vec![e.to_string()];
    }
    let health = params.list("healthStatuses");
    let disabled = params.bool("isDisabled");
    let (rows, _) = st.db.list_docs(&q).await?;
    let mut items = Vec::new();
    for r in rows
        .iter()
        .filter(|r| visible.as_ref().is_none_or(|v| v.doc(r)))
    {
        let m: Machine = parse_body(r)?;
        let keep = (roles.is_empty() || any_eq(&roles, &m.roles))
            && (envs.is_empty() || any_eq(&envs, &m.environment_ids))
            && (health.is_empty() || any_eq(&health, std::slice::from_ref(&m.health_status)))
            && disabled.is_none_or(|d| d == m.is_disabled);
        if keep {
            items.push(m);
        }
    }
    let total = i64::try_from(items.len()).unwrap_or(MAX_TAKE);
    let (skip, take) = if q.ids.is_empty() {
        (params.skip(), params.take())
    } else {
        (0, total.max(params.take()))
    };
    let page_items = items
        .iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .map(|m| render(space, m))
        .collect();
    Ok(page(
        "DeploymentTarget",
        page_items,
        total,
        skip,
        take,
        base,
        &template(base),
    ))
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/machines");
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        filtered_page(&st, &ctx, &space, &params, None, &base).await?,
    ))
}

/// `GET /api/{space}/environments/{id}/machines`: the machines in one environment.
pub async fn in_environment(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let Some((_, env)) = find::<Environment>(&st, "Environments", &space, None, &id).await? else {
        return Err(ApiError::not_found(format!(
            "Environment '{id}' was not found"
        )));
    };
    let base = format!("/api/{space}/environments/{}/machines", env.id);
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        filtered_page(&st, &ctx, &space, &params, Some(&env.id), &base).await?,
    ))
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
    match find::<Machine>(&st, C, &space, None, &id).await? {
        Some((_, m)) => Ok(Json(render(&space, &m))),
        None => Err(ApiError::not_found(format!("Machine '{id}' was not found"))),
    }
}

/// A new machine or worker: the fields health checks own start unknown, whatever was sent.
pub(crate) fn reset_server_owned(m: &mut Machine, what: &str) {
    m.health_status = "Unknown".to_string();
    m.status = if m.is_disabled { "Disabled" } else { "Unknown" }.to_string();
    m.status_summary = format!("This {what} has not been health-checked yet.");
    m.has_latest_calamari = false;
    m.is_in_process = false;
    m.operating_system = "Unknown".to_string();
    m.shell_name = "Unknown".to_string();
    m.shell_version = String::new();
}

/// An update: what the server learned from health checks is not the caller's to set.
pub(crate) fn keep_server_owned(m: &mut Machine, old: &Machine) {
    m.health_status = old.health_status.clone();
    m.status = if m.is_disabled {
        "Disabled".to_string()
    } else if old.status == "Disabled" {
        "Unknown".to_string()
    } else {
        old.status.clone()
    };
    m.status_summary = old.status_summary.clone();
    m.has_latest_calamari = old.has_latest_calamari;
    m.is_in_process = old.is_in_process;
    m.operating_system = old.operating_system.clone();
    m.shell_name = old.shell_name.clone();
    m.shell_version = old.shell_version.clone();
    // The agent version is learned from the agent itself, so only an agent keeps it.
    m.endpoint.tentacle_version_details = if m.endpoint.communication_style
        == old.endpoint.communication_style
        && m.endpoint.communication_style != SSH
    {
        old.endpoint.tentacle_version_details.clone()
    } else {
        None
    };
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(input): Body<Machine>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    let mut m = validate(&st, &space, input).await?;
    let seq = next_seq(&st, C).await?;
    m.id = format!("{C}-{seq}");
    m.space_id = space.clone();
    reset_server_owned(&mut m, "machine");
    thumbprint_unused(&st, &space, &m).await?;
    let r = row(&m, seq)?;
    insert_audited(
        &st,
        &ctx,
        Named {
            what: "machine",
            name: &m.name,
        },
        r,
        &m,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(render(&space, &m))))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(input): Body<Machine>,
) -> ApiResult<Json<Value>> {
    let (old_row, old): (_, Machine) = load(&st, C, &space, &id, "Machine").await?;
    let mut m = validate(&st, &space, input).await?;
    m.id = old.id.clone();
    m.space_id = space.clone();
    keep_server_owned(&mut m, &old);
    thumbprint_unused(&st, &space, &m).await?;
    let r = row(&m, old_row.seq)?;
    update_audited(
        &st,
        &ctx,
        Named {
            what: "machine",
            name: &m.name,
        },
        &old_row,
        r,
        &old,
        &m,
    )
    .await?;
    Ok(Json(render(&space, &m)))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    let (_, m): (_, Machine) = load(&st, C, &space, &id, "Machine").await?;
    delete_audited(
        &st,
        &ctx,
        Named {
            what: "machine",
            name: &m.name,
        },
        &space,
        &m.id,
        &m,
    )
    .await?;
    Ok(Json(json!({})))
}

/// 409 when another machine of the space pins the same certificate. SSH targets have none.
async fn thumbprint_unused(st: &AppState, space: &str, m: &Machine) -> ApiResult<()> {
    thumbprint_unused_in(st, C, "machine", space, m).await
}

/// 409 when another document of `collection` (`Machines` or `Workers`) in the space pins the
/// same certificate as `m`; `what` names that kind in the message. SSH endpoints have none.
pub(crate) async fn thumbprint_unused_in(
    st: &AppState,
    collection: &str,
    what: &str,
    space: &str,
    m: &Machine,
) -> ApiResult<()> {
    if m.endpoint.communication_style == SSH || m.endpoint.thumbprint.is_empty() {
        return Ok(());
    }
    let mut q = DocQuery::new(collection);
    q.space_id = Some(space.to_string());
    q.ref1_in = vec![m.endpoint.thumbprint.clone()];
    let (rows, _) = st.db.list_docs(&q).await?;
    match rows.iter().find(|r| r.id != m.id) {
        Some(other) => Err(ApiError::conflict(format!(
            "Thumbprint: the certificate {} is already used by the {what} '{}' ({}) in this space",
            m.endpoint.thumbprint, other.name, other.id
        ))),
        None => Ok(()),
    }
}

/// Validates and normalises a machine as sent; every problem found is reported, each naming
/// its field.
async fn validate(st: &AppState, space: &str, m: Machine) -> ApiResult<Machine> {
    validate_as(st, space, m, false, Vec::new()).await
}

/// Validates and normalises a deployment target or, with `worker`, a worker: the name, the
/// machine policy and the endpoint alike. A target needs roles and environments (and may have
/// tenants); a worker has none of them (they are cleared) and the caller checks its
/// `WorkerPoolIds`, passing what it found wrong in `errors` so every problem is reported
/// together.
pub(crate) async fn validate_as(
    st: &AppState,
    space: &str,
    mut m: Machine,
    worker: bool,
    mut errors: Vec<String>,
) -> ApiResult<Machine> {
    let name = require_name(&m.name, if worker { "worker" } else { "machine" }, 200)?;
    m.name = name.clone();
    m.slug = slugify(&name);
    if worker {
        m.roles.clear();
        m.environment_ids.clear();
        m.tenant_ids.clear();
        m.tenant_tags.clear();
        m.tenanted_deployment_participation = String::new();
    } else {
        validate_placement(st, space, &mut m, &mut errors).await?;
    }
    validate_policy_and_endpoint(st, space, &mut m, &mut errors).await?;
    if errors.is_empty() {
        Ok(m)
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

/// A target's roles, environments and tenants.
async fn validate_placement(
    st: &AppState,
    space: &str,
    m: &mut Machine,
    errors: &mut Vec<String>,
) -> ApiResult<()> {
    // Roles: free-form, trimmed, unique (case-insensitively), at least one.
    let mut roles: Vec<String> = Vec::new();
    for r in m.roles.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        if r.contains(',') {
            errors.push(format!("Roles: the role '{r}' must not contain a comma"));
        } else if !roles.iter().any(|x| x.eq_ignore_ascii_case(r)) {
            roles.push(r.to_string());
        }
    }
    if roles.is_empty() {
        errors.push("Roles: please provide at least one role".to_string());
    }
    m.roles = roles;

    // Environments: at least one, each in this space (by id, slug or name; stored as ids).
    let mut envs: Vec<String> = Vec::new();
    for key in m
        .environment_ids
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
    {
        match find::<Environment>(st, "Environments", space, None, key).await? {
            Some((_, e)) if !envs.contains(&e.id) => envs.push(e.id),
            Some(_) => {}
            None => errors.push(format!(
                "EnvironmentIds: the environment '{key}' was not found in this space"
            )),
        }
    }
    if envs.is_empty() && errors.iter().all(|e| !e.starts_with("EnvironmentIds")) {
        errors.push("EnvironmentIds: please provide at least one environment".to_string());
    }
    m.environment_ids = envs;

    // Tenants: by id or name, stored as ids.
    let mut tenants: Vec<String> = Vec::new();
    for key in m
        .tenant_ids
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        match find::<Value>(st, "Tenants", space, None, key).await? {
            Some((d, _)) if !tenants.contains(&d.id) => tenants.push(d.id),
            Some(_) => {}
            None => errors.push(format!(
                "TenantIds: the tenant '{key}' was not found in this space"
            )),
        }
    }
    m.tenant_ids = tenants;
    // Tenant tags: existing canonical `Set/Tag` names (any case), stored canonical.
    m.tenant_tags =
        super::tagsets::canonical_tags(st, space, &m.tenant_tags, "TenantTags", errors).await?;
    if m.tenanted_deployment_participation.trim().is_empty() {
        m.tenanted_deployment_participation = "Untenanted".to_string();
    } else if !PARTICIPATION.contains(&m.tenanted_deployment_participation.as_str()) {
        errors.push(format!(
            "TenantedDeploymentParticipation: '{}' must be one of {}",
            m.tenanted_deployment_participation,
            PARTICIPATION.join(", ")
        ));
    }
    Ok(())
}

/// The machine policy and the endpoint, shared by targets and workers.
async fn validate_policy_and_endpoint(
    st: &AppState,
    space: &str,
    m: &mut Machine,
    errors: &mut Vec<String>,
) -> ApiResult<()> {
    // Machine policy: the space's default unless given; must exist in the space.
    let policy = m.machine_policy_id.trim().to_string();
    if policy.is_empty() {
        m.machine_policy_id = super::machinepolicies::ensure_default(st, space).await?.id;
    } else {
        match find::<MachinePolicy>(st, super::machinepolicies::C, space, None, &policy).await? {
            Some((_, p)) => m.machine_policy_id = p.id,
            None => errors.push(format!(
                "MachinePolicyId: the machine policy '{policy}' was not found in this space"
            )),
        }
    }

    // Endpoint: the agent's address and certificate (the top-level Uri and Thumbprint mirror
    // it), or the SSH host, its key and the account to log in with.
    m.endpoint.communication_style = m.endpoint.communication_style.trim().to_string();
    match m.endpoint.communication_style.as_str() {
        PASSIVE | ACTIVE => {
            let ep = &mut m.endpoint;
            if ep.uri.trim().is_empty() {
                ep.uri = m.uri.clone();
            }
            if ep.thumbprint.trim().is_empty() {
                ep.thumbprint = m.thumbprint.clone();
            }
            match normalize_uri(&ep.communication_style, &ep.uri) {
                Ok(u) => ep.uri = u,
                Err(e) => errors.push(e),
            }
            match normalize_thumbprint(&ep.thumbprint) {
                Ok(t) => ep.thumbprint = t,
                Err(e) => errors.push(e),
            }
            if ep.certificate_signature_algorithm.is_none() {
                ep.certificate_signature_algorithm = Some("sha256RSA".to_string());
            }
            ep.host = None;
            ep.port = None;
            ep.fingerprint = None;
            ep.account_id = None;
            ep.dot_net_core_platform = None;
        }
        SSH => validate_ssh(st, space, m, errors).await?,
        "" => errors.push(format!(
            "Endpoint.CommunicationStyle: please provide {PASSIVE} (listening agent), {ACTIVE} (polling agent) or {SSH}"
        )),
        other => errors.push(format!(
            "Endpoint.CommunicationStyle: '{other}' is not supported; use {PASSIVE}, {ACTIVE} or {SSH}"
        )),
    }
    m.uri = m.endpoint.uri.clone();
    m.thumbprint = m.endpoint.thumbprint.clone();
    Ok(())
}

/// Checks and normalises an SSH endpoint: `Host` (or the host of an `ssh://` `Uri`), `Port`
/// (22), `Fingerprint` (`SHA256:` + 43 base64 characters), `AccountId` (an SSH-capable account
/// of the space, stored as its id) and `DotNetCorePlatform` (`linux-x64`). `Uri` becomes
/// `ssh://host:port/`; there is no thumbprint.
async fn validate_ssh(
    st: &AppState,
    space: &str,
    m: &mut Machine,
    errors: &mut Vec<String>,
) -> ApiResult<()> {
    let top_uri = m.uri.trim().to_string();
    let target_envs = m.environment_ids.clone();
    let ep = &mut m.endpoint;
    let mut host = ep.host.as_deref().unwrap_or_default().trim().to_string();
    let mut port = ep.port;
    // A client that only sends the address: take the host and port from an ssh:// Uri.
    if host.is_empty() {
        let uri = if ep.uri.trim().is_empty() {
            top_uri.as_str()
        } else {
            ep.uri.trim()
        };
        if let Some((h, p)) = parse_ssh_uri(uri) {
            host = h;
            port = port.or(p);
        }
    }
    let port = port.unwrap_or(SSH_DEFAULT_PORT);
    if port == 0 {
        errors.push("Endpoint.Port: the SSH port must be between 1 and 65535".to_string());
    }
    let host = match normalize_host(&host) {
        Ok(h) => Some(h),
        Err(e) => {
            errors.push(e);
            None
        }
    };

    let shown_host = host.as_deref().unwrap_or("HOST");
    match normalize_fingerprint(ep.fingerprint.as_deref().unwrap_or_default()) {
        Ok(f) => ep.fingerprint = Some(f),
        Err(problem) => errors.push(format!(
            "Endpoint.Fingerprint: {problem}; get it with `ssh-keyscan -p {port} {shown_host} | ssh-keygen -lf -` (the SHA256:... value of the host key)"
        )),
    }

    let key = ep
        .account_id
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_string();
    if key.is_empty() {
        errors.push(
            "Endpoint.AccountId: please provide the SshKeyPair or UsernamePassword account to log in with"
                .to_string(),
        );
    } else {
        match find::<Account>(st, super::accounts::C, space, None, &key).await? {
            Some((_, a))
                if a.account_type == super::accounts::SSH_KEY_PAIR
                    || a.account_type == super::accounts::USERNAME_PASSWORD =>
            {
                // An account scoped to environments serves only targets within them.
                let outside: Vec<&String> = if a.environment_ids.is_empty() {
                    Vec::new()
                } else {
                    target_envs
                        .iter()
                        .filter(|e| !a.environment_ids.contains(e))
                        .collect()
                };
                if outside.is_empty() {
                    ep.account_id = Some(a.id);
                } else {
                    errors.push(format!(
                        "Endpoint.AccountId: the account '{}' may be used only in the environments {}; this target is also in {}",
                        a.name,
                        a.environment_ids.join(", "),
                        outside
                            .iter()
                            .map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            Some((_, a)) => errors.push(format!(
                "Endpoint.AccountId: the account '{}' is a {} account; SSH targets need an SshKeyPair or UsernamePassword account",
                a.name, a.account_type
            )),
            None => errors.push(format!(
                "Endpoint.AccountId: the account '{key}' was not found in this space"
            )),
        }
    }

    let platform = ep
        .dot_net_core_platform
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_string();
    ep.dot_net_core_platform = Some(if platform.is_empty() {
        SSH_DEFAULT_PLATFORM.to_string()
    } else {
        platform
    });

    ep.port = Some(port);
    ep.host = host.clone();
    ep.uri = match &host {
        Some(h) if h.contains(':') => format!("ssh://[{h}]:{port}/"),
        Some(h) => format!("ssh://{h}:{port}/"),
        None => String::new(),
    };
    ep.thumbprint = String::new();
    ep.certificate_signature_algorithm = None;
    ep.tentacle_version_details = None;
    Ok(())
}

/// The host and port of `ssh://host[:port][/]`.
fn parse_ssh_uri(uri: &str) -> Option<(String, Option<u16>)> {
    let (scheme, rest) = uri.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("ssh") {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((authority.to_string(), None)),
    }
}

/// A host name or an IP address (an IPv6 one with or without brackets), lower-cased.
fn normalize_host(host: &str) -> Result<String, String> {
    let h = host.trim();
    if h.is_empty() {
        return Err("Endpoint.Host: please provide the SSH host's name or IP address".to_string());
    }
    let bad = || {
        format!(
            "Endpoint.Host: '{h}' is not a host name or IP address (give the name alone, without a scheme, user, port or path)"
        )
    };
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if bare.contains(':') {
        return bare
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.to_string())
            .map_err(|_| bad());
    }
    let ok = bare.len() <= 253
        && !bare.starts_with(['.', '-'])
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    if ok {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(bad())
    }
}

/// The host key's SHA-256 fingerprint as OpenSSH prints it: `SHA256:` and 43 base64
/// characters (32 bytes, no padding). The prefix may be left out; padding is dropped.
fn normalize_fingerprint(f: &str) -> Result<String, String> {
    let f = f.trim();
    if f.is_empty() {
        return Err("please provide the SSH host key's SHA-256 fingerprint".to_string());
    }
    let b64 = match f.split_once(':') {
        Some((p, rest)) if p.eq_ignore_ascii_case("SHA256") => rest,
        _ => f,
    };
    let b64 = b64.trim_end_matches('=');
    // 32 bytes in 43 characters: the last one carries 4 bits, so its low 2 bits are zero.
    let valid = b64.len() == 43
        && b64
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        && b64.ends_with(|c: char| "AEIMQUYcgkosw048".contains(c));
    if valid {
        Ok(format!("SHA256:{b64}"))
    } else {
        Err(format!(
            "'{f}' is not a SHA-256 host key fingerprint (SHA256: followed by 43 base64 characters)"
        ))
    }
}

/// `https://host[:port]/` for a listening agent, `poll://subscription/` for a polling one.
fn normalize_uri(style: &str, uri: &str) -> Result<String, String> {
    let uri = uri.trim();
    let (scheme, example) = if style == PASSIVE {
        ("https", "https://web01:10933/")
    } else {
        ("poll", "poll://abcdef0123456789/")
    };
    let bad =
        || format!("Endpoint.Uri: '{uri}' is not a {style} address; expected one like {example}");
    let (s, rest) = uri.split_once("://").ok_or_else(bad)?;
    if !s.eq_ignore_ascii_case(scheme) {
        return Err(bad());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad());
    }
    if style == PASSIVE {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p)),
            _ => (authority, None),
        };
        if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().map_or(true, |n| n == 0)) {
            return Err(bad());
        }
    } else if !authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(bad());
    }
    Ok(format!("{scheme}://{}/", authority.to_ascii_lowercase()))
}

/// An uppercase SHA-256 thumbprint: 64 hexadecimal characters (colons and spaces dropped).
fn normalize_thumbprint(t: &str) -> Result<String, String> {
    let clean: String = t
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    if clean.is_empty() {
        return Err(
            "Endpoint.Thumbprint: please provide the agent certificate's SHA-256 thumbprint"
                .to_string(),
        );
    }
    if clean.len() != 64 || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "Endpoint.Thumbprint: '{t}' is not a SHA-256 thumbprint (64 hexadecimal characters)"
        ));
    }
    Ok(clean.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_checked_and_normalised() {
        assert_eq!(
            normalize_uri(PASSIVE, "HTTPS://Web01:10933").as_deref(),
            Ok("https://web01:10933/")
        );
        assert_eq!(
            normalize_uri(PASSIVE, "https://10.0.0.5/").as_deref(),
            Ok("https://10.0.0.5/")
        );
        assert!(normalize_uri(PASSIVE, "http://web01:10933/").is_err());
        assert!(normalize_uri(PASSIVE, "https://web01:99999/").is_err());
        assert!(normalize_uri(PASSIVE, "https://web01:10933/path").is_err());
        assert!(normalize_uri(PASSIVE, "web01").is_err());
        assert_eq!(
            normalize_uri(ACTIVE, "poll://ABC123/").as_deref(),
            Ok("poll://abc123/")
        );
        assert!(normalize_uri(ACTIVE, "https://web01:10933/").is_err());
        assert!(normalize_uri(ACTIVE, "poll:///").is_err());
    }

    #[test]
    fn ssh_fingerprints_hosts_and_uris() {
        let b = "nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8";
        let want = format!("SHA256:{b}");
        assert_eq!(normalize_fingerprint(&want), Ok(want.clone()));
        assert_eq!(normalize_fingerprint(b), Ok(want.clone()));
        assert_eq!(normalize_fingerprint(&format!(" sha256:{b}= ")), Ok(want));
        assert!(normalize_fingerprint("").is_err());
        assert!(normalize_fingerprint(&b[..42]).is_err());
        assert!(normalize_fingerprint(&format!("{}9", &b[..42])).is_err());
        assert!(
            normalize_fingerprint("MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48").is_err()
        );
        assert_eq!(
            normalize_host("Web01.Example.com"),
            Ok("web01.example.com".into())
        );
        assert_eq!(normalize_host("10.0.0.5"), Ok("10.0.0.5".into()));
        assert_eq!(normalize_host("[::1]"), Ok("::1".into()));
        for bad in [
            "",
            "ssh://web01",
            "root@web01",
            "web 01",
            "web01:22",
            "web01/x",
            "-x",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_ssh_uri("ssh://web01:2222/"),
            Some(("web01".into(), Some(2222)))
        );
        assert_eq!(parse_ssh_uri("ssh://web01"), Some(("web01".into(), None)));
        assert_eq!(
            parse_ssh_uri("ssh://[::1]:22/"),
            Some(("::1".into(), Some(22)))
        );
        assert_eq!(parse_ssh_uri("https://web01/"), None);
    }

    #[test]
    fn thumbprints_are_sha256_hex_in_upper_case() {
        let t = "ab".repeat(32);
        assert_eq!(normalize_thumbprint(&t), Ok("AB".repeat(32)));
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(normalize_thumbprint(&colons), Ok("AB".repeat(32)));
        assert!(normalize_thumbprint(&"ab".repeat(20)).is_err());
        assert!(normalize_thumbprint(&"zz".repeat(32)).is_err());
        assert!(normalize_thumbprint("").is_err());
    }
}
