//! Deployment targets (Octopus's machines): Ferry agents reached by listening
//! (`TentaclePassive`) or polling (`TentacleActive`), each pinned by its certificate's SHA-256
//! thumbprint. Names and thumbprints are unique per space. The store keeps the thumbprint in
//! `ref1` and the communication style in `ref2`, so those filters run in the query; the
//! multi-valued filters (roles, environments, health, disabled) run over the space's machines
//! in memory before paging.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use ferry_domain::ids::slugify;
use ferry_domain::{Environment, Machine, MachinePolicy};
use ferry_store::{DocQuery, DocRow};
use serde_json::{Value, json};

use super::*;
use crate::input::Body;
use crate::query::MAX_TAKE;

const C: &str = "Machines";
const PASSIVE: &str = "TentaclePassive";
const ACTIVE: &str = "TentacleActive";
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
    space: &str,
    params: &Params,
    environment: Option<&str>,
    base: &str,
) -> ApiResult<Value> {
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
    for r in &rows {
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
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    let base = format!("/api/{space}/machines");
    let params = Params::parse(raw.as_deref());
    Ok(Json(
        filtered_page(&st, &space, &params, None, &base).await?,
    ))
}

/// `GET /api/{space}/environments/{id}/machines`: the machines in one environment.
pub async fn in_environment(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
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
        filtered_page(&st, &space, &params, Some(&env.id), &base).await?,
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
    m.health_status = "Unknown".to_string();
    m.status = if m.is_disabled { "Disabled" } else { "Unknown" }.to_string();
    m.status_summary = "This machine has not been health-checked yet.".to_string();
    m.has_latest_calamari = false;
    m.is_in_process = false;
    m.operating_system = "Unknown".to_string();
    m.shell_name = "Unknown".to_string();
    m.shell_version = String::new();
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
    // What the server learns from health checks is not the caller's to set.
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
    m.endpoint.tentacle_version_details = old.endpoint.tentacle_version_details.clone();
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

/// 409 when another machine of the space pins the same certificate.
async fn thumbprint_unused(st: &AppState, space: &str, m: &Machine) -> ApiResult<()> {
    let mut q = query(space);
    q.ref1_in = vec![m.endpoint.thumbprint.clone()];
    let (rows, _) = st.db.list_docs(&q).await?;
    match rows.iter().find(|r| r.id != m.id) {
        Some(other) => Err(ApiError::conflict(format!(
            "Thumbprint: the certificate {} is already used by the machine '{}' ({}) in this space",
            m.endpoint.thumbprint, other.name, other.id
        ))),
        None => Ok(()),
    }
}

/// Validates and normalises a machine as sent; every problem found is reported, each naming
/// its field.
async fn validate(st: &AppState, space: &str, mut m: Machine) -> ApiResult<Machine> {
    let name = require_name(&m.name, "machine", 200)?;
    m.name = name.clone();
    m.slug = slugify(&name);
    let mut errors = Vec::new();

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

    // Tenants: Ferry has no tenants yet, so any id is unknown.
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
    let mut tags: Vec<String> = Vec::new();
    for t in m
        .tenant_tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }
    m.tenant_tags = tags;
    if m.tenanted_deployment_participation.trim().is_empty() {
        m.tenanted_deployment_participation = "Untenanted".to_string();
    } else if !PARTICIPATION.contains(&m.tenanted_deployment_participation.as_str()) {
        errors.push(format!(
            "TenantedDeploymentParticipation: '{}' must be one of {}",
            m.tenanted_deployment_participation,
            PARTICIPATION.join(", ")
        ));
    }

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

    // Endpoint: the agent's address and certificate. The top-level Uri and Thumbprint mirror it.
    let ep = &mut m.endpoint;
    ep.communication_style = ep.communication_style.trim().to_string();
    if ep.uri.trim().is_empty() {
        ep.uri = m.uri.clone();
    }
    if ep.thumbprint.trim().is_empty() {
        ep.thumbprint = m.thumbprint.clone();
    }
    match ep.communication_style.as_str() {
        PASSIVE | ACTIVE => {
            match normalize_uri(&ep.communication_style, &ep.uri) {
                Ok(u) => ep.uri = u,
                Err(e) => errors.push(e),
            }
            match normalize_thumbprint(&ep.thumbprint) {
                Ok(t) => ep.thumbprint = t,
                Err(e) => errors.push(e),
            }
        }
        "" => errors.push(format!(
            "Endpoint.CommunicationStyle: please provide {PASSIVE} (listening agent) or {ACTIVE} (polling agent)"
        )),
        "Ssh" => errors.push(format!(
            "Endpoint.CommunicationStyle: Ssh targets are not supported yet; use {PASSIVE} or {ACTIVE}"
        )),
        other => errors.push(format!(
            "Endpoint.CommunicationStyle: '{other}' is not supported; use {PASSIVE} or {ACTIVE}"
        )),
    }
    if ep.certificate_signature_algorithm.is_none() {
        ep.certificate_signature_algorithm = Some("sha256RSA".to_string());
    }
    m.uri = m.endpoint.uri.clone();
    m.thumbprint = m.endpoint.thumbprint.clone();

    if errors.is_empty() {
        Ok(m)
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
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
