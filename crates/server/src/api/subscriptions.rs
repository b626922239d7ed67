//! Subscriptions: webhooks per event filter (Octopus's `SubscriptionResource`).
//!
//! `GET|POST /api/{space}/subscriptions`, `GET|PUT|DELETE /api/{space}/subscriptions/{id}`,
//! `GET /api/{space}/subscriptions/all` and the delivery log
//! `GET /api/{space}/subscriptions/{id}/deliveries`. `WebhookHeaderValue` is write-only: sealed
//! with the master key and shown as `{"HasValue": …, "NewValue": null}`.
//!
//! Delivery ([`deliver_forever`]) follows the `events` table by `seq`. Each enabled webhook
//! subscription has a state document (collection `SubscriptionStates`) holding the last event
//! it processed and a bounded delivery log; the state is saved after every delivered event, so
//! a restart resumes there (at-least-once: an event being delivered when the server stopped is
//! sent again). Every hop of every request is checked against [`crate::outbound::Policy`]
//! after resolving its host; connections go only to the checked addresses; redirects are
//! followed by hand (at most five) and each target is checked again. See
//! `docs/subscriptions.md`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use ferry_domain::time::{format_ms, now_ms};
use ferry_store::{DocQuery, DocRow, EventRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;
use crate::authz::{Target, require};
use crate::input::Body;
use crate::outbound::{Policy, backoff};
use crate::routes::{Permission, Routes};

pub(crate) const C: &str = "Subscriptions";
/// Per-subscription delivery state: last processed event and the delivery log.
const STATES: &str = "SubscriptionStates";
/// Entries kept in a subscription's delivery log (oldest dropped first).
pub const LOG_LIMIT: usize = 200;
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;
/// How often the worker looks for new events.
const POLL: Duration = Duration::from_millis(500);
/// Events read per batch.
const BATCH: i64 = 50;

/// Event groups a filter may name, with the categories each stands for.
const EVENT_GROUPS: &[(&str, &[&str])] = &[
    ("Document", &["Created", "Modified", "Deleted"]),
    ("DocumentCreated", &["Created"]),
    ("DocumentModified", &["Modified"]),
    ("DocumentDeleted", &["Deleted"]),
    (
        "Deployment",
        &[
            "DeploymentQueued",
            "DeploymentStarted",
            "DeploymentSucceeded",
            "DeploymentFailed",
            "DeploymentResumed",
        ],
    ),
    ("DeploymentCritical", &["DeploymentFailed"]),
    (
        "Task",
        &[
            "TaskCanceled",
            "TaskFailed",
            "TaskSucceeded",
            "TaskTimedOut",
        ],
    ),
    ("TaskCritical", &["TaskFailed", "TaskTimedOut"]),
    (
        "Machine",
        &[
            "MachineCreated",
            "MachineDeleted",
            "MachineEnabled",
            "MachineDisabled",
            "MachineHealthChanged",
            "MachineAvailableForDeployment",
            "MachineUnavailableForDeployment",
        ],
    ),
    (
        "MachineCritical",
        &["MachineUnavailableForDeployment", "MachineDeleted"],
    ),
    (
        "Interruption",
        &[
            "ManualInterventionInterruptionRaised",
            "GuidedFailureInterruptionRaised",
        ],
    ),
];

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Filter {
    pub users: Vec<String>,
    pub projects: Vec<String>,
    pub project_groups: Vec<String>,
    pub environments: Vec<String>,
    pub event_groups: Vec<String>,
    pub event_categories: Vec<String>,
    pub event_agents: Vec<String>,
    pub tenants: Vec<String>,
    pub tags: Vec<String>,
    pub document_types: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventNotification {
    pub filter: Filter,
    pub email_teams: Vec<String>,
    pub email_frequency_period: String,
    pub email_priority: String,
    pub email_show_dates_in_time_zone_id: String,
    #[serde(rename = "WebhookURI")]
    pub webhook_uri: String,
    pub webhook_teams: Vec<String>,
    pub webhook_timeout: String,
    pub webhook_header_key: Option<String>,
    /// Input only: a string or `{"HasValue", "NewValue"}`; never stored or shown.
    #[serde(skip_serializing)]
    pub webhook_header_value: Value,
    /// The sealed header value (stored; never rendered; ignored on input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_webhook_header_value: Option<String>,
    pub webhook_last_processed: Option<String>,
    pub webhook_last_processed_event_auto_id: i64,
}

impl Default for EventNotification {
    fn default() -> Self {
        EventNotification {
            filter: Filter::default(),
            email_teams: Vec::new(),
            email_frequency_period: "01:00:00".into(),
            email_priority: "Normal".into(),
            email_show_dates_in_time_zone_id: "UTC".into(),
            webhook_uri: String::new(),
            webhook_teams: Vec::new(),
            webhook_timeout: "00:00:10".into(),
            webhook_header_key: None,
            webhook_header_value: Value::Null,
            sealed_webhook_header_value: None,
            webhook_last_processed: None,
            webhook_last_processed_event_auto_id: 0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Subscription {
    pub id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub is_disabled: bool,
    pub space_id: String,
    pub event_notification_subscription: EventNotification,
}

/// One attempt to deliver one event.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Delivery {
    pub event_id: String,
    pub event_seq: i64,
    pub attempt: u32,
    /// RFC 3339.
    pub time: String,
    pub url: String,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// `Delivered`, `Failed` (will be retried), `GaveUp` (last attempt failed) or `Denied`
    /// (the address policy refused a hop; not retried).
    pub outcome: String,
}

/// The worker's progress for one subscription.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeliveryState {
    pub subscription_id: String,
    pub last_event_seq: i64,
    pub last_processed: Option<String>,
    pub log: Vec<Delivery>,
}

fn state_id(sub_id: &str) -> String {
    format!("{STATES}-{}", id_seq(sub_id))
}

fn header_aad(sub_id: &str) -> Vec<u8> {
    format!("ferry/subscription/{sub_id}/WebhookHeaderValue").into_bytes()
}

/// The subscription as the API shows it: the header value only as `HasValue`, the progress
/// from its delivery state.
fn render(space: &str, s: &Subscription, state: Option<&DeliveryState>) -> Value {
    let base = format!("/api/{space}/subscriptions/{}", s.id);
    let mut v = with_links(
        s,
        links(
            base.clone(),
            &[("Deliveries", format!("{base}/deliveries"))],
        ),
    );
    if let Some(n) = v
        .get_mut("EventNotificationSubscription")
        .and_then(Value::as_object_mut)
    {
        n.remove("SealedWebhookHeaderValue");
        n.insert(
            "WebhookHeaderValue".into(),
            json!({"HasValue": s.event_notification_subscription.sealed_webhook_header_value.is_some(), "NewValue": null}),
        );
        if let Some(st) = state {
            n.insert("WebhookLastProcessed".into(), json!(st.last_processed));
            n.insert(
                "WebhookLastProcessedEventAutoId".into(),
                json!(st.last_event_seq),
            );
        }
    }
    v
}

fn query(space: &str, collection: &str) -> DocQuery {
    let mut q = DocQuery::new(collection);
    q.space_id = Some(space.to_string());
    q
}

async fn load_state(st: &AppState, sub_id: &str) -> ApiResult<Option<(DocRow, DeliveryState)>> {
    match st.db.get_doc(&state_id(sub_id)).await? {
        Some(d) if d.collection == STATES => {
            let s = parse_body(&d)?;
            Ok(Some((d, s)))
        }
        _ => Ok(None),
    }
}

fn state_row(space: &str, s: &DeliveryState) -> ApiResult<DocRow> {
    let id = state_id(&s.subscription_id);
    doc_row(
        STATES,
        &id,
        space,
        "",
        &s.subscription_id,
        "",
        0,
        id_seq(&s.subscription_id),
        s,
    )
}

fn sub_row(s: &Subscription, seq: i64) -> ApiResult<DocRow> {
    doc_row(
        C,
        &s.id,
        &s.space_id,
        "",
        &s.name,
        &slugify(&s.name),
        0,
        seq,
        s,
    )
}

fn slugify(name: &str) -> String {
    ferry_domain::ids::slugify(name)
}

/// Parses `hh:mm:ss` (or a number of seconds) into a timeout of 1 s to 5 min.
fn parse_timeout(t: &str) -> Option<Duration> {
    let t = t.trim();
    if t.is_empty() {
        return Some(Duration::from_secs(10));
    }
    let secs: u64 = if let Ok(n) = t.parse::<u64>() {
        n
    } else {
        let parts: Vec<&str> = t.split(':').collect();
        let [h, m, s] = parts.as_slice() else {
            return None;
        };
        let s = s.split('.').next().unwrap_or("0");
        h.parse::<u64>().ok()? * 3600 + m.parse::<u64>().ok()? * 60 + s.parse::<u64>().ok()?
    };
    (1..=300).contains(&secs).then(|| Duration::from_secs(secs))
}

/// Why a webhook URL is refused at save time: not absolute http(s), or a literal address the
/// policy denies. Host names are checked when delivering (after resolving them).
pub fn check_url(policy: &Policy, uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri.trim())
        .map_err(|e| format!("WebhookURI '{uri}' is not an absolute URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "WebhookURI '{uri}' must use http or https, not {}",
            url.scheme()
        ));
    }
    match host_of(&url) {
        None => Err(format!("WebhookURI '{uri}' has no host")),
        Some(Host::Ip(ip)) => policy
            .check(ip)
            .map_err(|r| format!("WebhookURI '{uri}' is refused: {r}")),
        Some(Host::Name(_)) => Ok(()),
    }
}

/// A URL's host: an address (the URL parser has already turned decimal, hex and short IPv4
/// forms into dotted quads) or a name.
enum Host {
    Ip(IpAddr),
    Name(String),
}

fn host_of(url: &url::Url) -> Option<Host> {
    let h = url.host_str()?;
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(h.to_string()),
    })
}

/// Checks a subscription and normalises it; every problem is reported at once.
async fn validate(st: &AppState, space: &str, s: &mut Subscription) -> ApiResult<()> {
    let mut errors = Vec::new();
    match require_name(&s.name, "subscription", 200) {
        Ok(n) => s.name = n,
        Err(e) => errors.extend(e.errors),
    }
    if s.kind.trim().is_empty() {
        s.kind = "Event".into();
    }
    if s.kind != "Event" {
        errors.push(format!("Type '{}' is not supported: use Event", s.kind));
    }
    let n = &mut s.event_notification_subscription;
    n.webhook_uri = n.webhook_uri.trim().to_string();
    if !n.webhook_uri.is_empty() {
        if let Err(e) = check_url(&st.config.webhooks.policy, &n.webhook_uri) {
            errors.push(e);
        }
    }
    if parse_timeout(&n.webhook_timeout).is_none() {
        errors.push(format!(
            "WebhookTimeout '{}' must be a duration (hh:mm:ss) from 1 second to 5 minutes",
            n.webhook_timeout
        ));
    }
    if let Some(k) = &n.webhook_header_key {
        let k = k.trim().to_string();
        if !k.is_empty() && axum::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            errors.push(format!("WebhookHeaderKey '{k}' is not an HTTP header name"));
        }
        n.webhook_header_key = (!k.is_empty()).then_some(k);
    }
    let f = &mut n.filter;
    for (list, collection, what) in [
        (&f.projects, "Projects", "project"),
        (&f.project_groups, "ProjectGroups", "project group"),
        (&f.environments, "Environments", "environment"),
        (&f.tenants, "Tenants", "tenant"),
    ] {
        for id in list {
            match st.db.get_doc(id.trim()).await? {
                Some(d) if d.collection == collection && d.space_id == space => {}
                _ => errors.push(format!(
                    "Filter: the {what} '{id}' was not found in this space"
                )),
            }
        }
    }
    for g in &f.event_groups {
        if !EVENT_GROUPS.iter().any(|(name, _)| name == g) {
            errors.push(format!(
                "Filter: the event group '{g}' is not known (known: {})",
                EVENT_GROUPS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for list in [
        &mut f.projects,
        &mut f.project_groups,
        &mut f.environments,
        &mut f.tenants,
        &mut f.event_categories,
        &mut f.users,
        &mut f.document_types,
    ] {
        for x in list.iter_mut() {
            *x = x.trim().to_string();
        }
        list.retain(|x| !x.is_empty());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        Err(e)
    }
}

/// Applies the write-only header value of a request: a string or `{"NewValue": "…"}` sets it,
/// `{"HasValue": false}` or `""` clears it, null / `{"HasValue": true}` keeps `old`.
fn apply_header(st: &AppState, s: &mut Subscription, old: Option<String>) -> ApiResult<()> {
    let n = &mut s.event_notification_subscription;
    let input = std::mem::take(&mut n.webhook_header_value);
    let new_value = match &input {
        Value::Null => None,
        Value::String(v) => Some(Some(v.clone())),
        Value::Object(o) => match o.get("NewValue") {
            Some(Value::String(v)) => Some(Some(v.clone())),
            _ if !o.get("HasValue").and_then(Value::as_bool).unwrap_or(true) => Some(None),
            _ => None,
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "WebhookHeaderValue must be a string or {{\"HasValue\": …, \"NewValue\": \"…\"}}, not {}",
                match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    _ => "an array",
                }
            )));
        }
    };
    n.sealed_webhook_header_value = match new_value {
        None => old,
        Some(None) => None,
        Some(Some(v)) if v.is_empty() => None,
        Some(Some(v)) => {
            if axum::http::HeaderValue::from_str(&v).is_err() {
                return Err(ApiError::bad_request(
                    "WebhookHeaderValue is not a valid HTTP header value (no line breaks or control characters)",
                ));
            }
            Some(ferry_crypto::seal(&st.master_key, &header_aad(&s.id), &v))
        }
    };
    Ok(())
}

pub async fn list(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionView,
        &Target::ANY,
    )
    .await?;
    let params = Params::parse(raw.as_deref());
    let states = states_of(&st, &space).await?;
    let base = format!("/api/{space}/subscriptions");
    let v = list_page(
        &st,
        query(&space, C),
        &params,
        "Subscription",
        &base,
        &list_template(&base),
        |d| {
            let s: Subscription = parse_body(d)?;
            Ok(render(&space, &s, states.get(&s.id)))
        },
    )
    .await?;
    Ok(Json(v))
}

pub async fn all(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require_space(&st, &space).await?;
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionView,
        &Target::ANY,
    )
    .await?;
    let states = states_of(&st, &space).await?;
    let v = list_all(&st, query(&space, C), |d| {
        let s: Subscription = parse_body(d)?;
        Ok(render(&space, &s, states.get(&s.id)))
    })
    .await?;
    Ok(Json(v))
}

async fn states_of(st: &AppState, space: &str) -> ApiResult<HashMap<String, DeliveryState>> {
    let (rows, _) = st.db.list_docs(&query(space, STATES)).await?;
    let mut m = HashMap::new();
    for r in &rows {
        let s: DeliveryState = parse_body(r)?;
        m.insert(s.subscription_id.clone(), s);
    }
    Ok(m)
}

pub async fn get(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionView,
        &Target::ANY,
    )
    .await?;
    let (_, s): (_, Subscription) = load(&st, C, &space, &id, "Subscription").await?;
    let state = load_state(&st, &s.id).await?.map(|x| x.1);
    Ok(Json(render(&space, &s, state.as_ref())))
}

pub async fn create(
    State(st): State<AppState>,
    Path(space): Path<String>,
    ctx: Ctx,
    Body(mut s): Body<Subscription>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_space(&st, &space).await?;
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionCreate,
        &Target::ANY,
    )
    .await?;
    validate(&st, &space, &mut s).await?;
    let seq = next_seq(&st, C).await?;
    s.id = format!("{C}-{seq}");
    s.space_id = space.clone();
    apply_header(&st, &mut s, None)?;
    let n = &mut s.event_notification_subscription;
    n.webhook_last_processed = None;
    n.webhook_last_processed_event_auto_id = 0;
    // A new subscription starts with the events after its creation.
    let state = DeliveryState {
        subscription_id: s.id.clone(),
        last_event_seq: st.db.last_event_seq().await?,
        last_processed: None,
        log: Vec::new(),
    };
    let rendered = render(&space, &s, Some(&state));
    let mut tx = st.db.begin().await?;
    tx.insert_doc(&sub_row(&s, seq)?)
        .await
        .map_err(|e| name_conflict(e, "subscription", &s.name))?;
    tx.insert_doc(&state_row(&space, &state)?).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Created",
        format!("Subscription {} was created", s.name),
        &[&s.id],
        json!({"Document": rendered}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rendered)))
}

pub async fn update(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    Body(mut s): Body<Subscription>,
) -> ApiResult<Json<Value>> {
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionEdit,
        &Target::ANY,
    )
    .await?;
    let (old_row, old): (_, Subscription) = load(&st, C, &space, &id, "Subscription").await?;
    validate(&st, &space, &mut s).await?;
    s.id = old.id.clone();
    s.space_id = space.clone();
    apply_header(
        &st,
        &mut s,
        old.event_notification_subscription
            .sealed_webhook_header_value
            .clone(),
    )?;
    let mut row = sub_row(&s, old_row.seq)?;
    row.created_at = old_row.created_at;
    let salt = crate::audit_diff::salt(&st.master_key);
    let diff = crate::audit_diff::diff_of(&old, &s, &salt);
    let mut tx = st.db.begin().await?;
    tx.update_doc(&row)
        .await
        .map_err(|e| name_conflict(e, "subscription", &s.name))?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Modified",
        format!("Subscription {} was modified", s.name),
        &[&s.id],
        json!({"Diff": diff}),
    )
    .await?;
    tx.commit().await?;
    let state = load_state(&st, &s.id).await?.map(|x| x.1);
    Ok(Json(render(&space, &s, state.as_ref())))
}

pub async fn remove(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
) -> ApiResult<Json<Value>> {
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionDelete,
        &Target::ANY,
    )
    .await?;
    let (_, s): (_, Subscription) = load(&st, C, &space, &id, "Subscription").await?;
    let rendered = render(&space, &s, None);
    let mut tx = st.db.begin().await?;
    tx.delete_doc(&s.id).await?;
    tx.delete_doc(&state_id(&s.id)).await?;
    audit(
        &mut tx,
        &ctx,
        &space,
        "Deleted",
        format!("Subscription {} was deleted", s.name),
        &[&s.id],
        json!({"Document": rendered}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// The delivery log, newest first, paged with `skip`/`take`.
pub async fn deliveries(
    State(st): State<AppState>,
    Path((space, id)): Path<(String, String)>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require(
        &st,
        &ctx,
        Some(&space),
        Permission::SubscriptionView,
        &Target::ANY,
    )
    .await?;
    let (_, s): (_, Subscription) = load(&st, C, &space, &id, "Subscription").await?;
    let params = Params::parse(raw.as_deref());
    let state = load_state(&st, &s.id)
        .await?
        .map(|x| x.1)
        .unwrap_or_default();
    let (skip, take) = (params.skip(), params.take());
    let items: Vec<Value> = state
        .log
        .iter()
        .rev()
        .skip(usize::try_from(skip).unwrap_or(0))
        .take(usize::try_from(take).unwrap_or(0))
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .collect();
    let base = format!("/api/{space}/subscriptions/{}/deliveries", s.id);
    Ok(Json(crate::query::page(
        "SubscriptionDelivery",
        items,
        i64::try_from(state.log.len()).unwrap_or(0),
        skip,
        take,
        &base,
        &format!("{base}{{?skip,take}}"),
    )))
}

/// This module's routes.
pub fn routes(r: Routes) -> Routes {
    use Method as M;
    use Permission as P;
    r.add(
        M::GET,
        "/api/{space_id}/subscriptions",
        P::SubscriptionView,
        "List subscriptions",
        list,
    )
    .add(
        M::GET,
        "/api/{space_id}/subscriptions/all",
        P::SubscriptionView,
        "All subscriptions",
        all,
    )
    .add(
        M::POST,
        "/api/{space_id}/subscriptions",
        P::SubscriptionCreate,
        "Create a subscription",
        create,
    )
    .add(
        M::GET,
        "/api/{space_id}/subscriptions/{id}",
        P::SubscriptionView,
        "Get a subscription",
        get,
    )
    .add(
        M::PUT,
        "/api/{space_id}/subscriptions/{id}",
        P::SubscriptionEdit,
        "Modify a subscription",
        update,
    )
    .add(
        M::DELETE,
        "/api/{space_id}/subscriptions/{id}",
        P::SubscriptionDelete,
        "Delete a subscription",
        remove,
    )
    .add(
        M::GET,
        "/api/{space_id}/subscriptions/{id}/deliveries",
        P::SubscriptionView,
        "A subscription's webhook delivery log",
        deliveries,
    )
}

// ---- delivery ----

/// Whether `e` passes the filter. `group_projects`: the projects of the filter's project
/// groups. An empty filter passes every event (of the subscription's space).
pub fn matches(f: &Filter, e: &EventRow, group_projects: &[String]) -> bool {
    let related: Vec<&str> = e
        .related_document_ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let has = |list: &[String]| related.iter().any(|r| list.iter().any(|x| x == r));
    if !f.event_categories.is_empty() || !f.event_groups.is_empty() {
        let in_cat = f
            .event_categories
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&e.category));
        let in_group = f.event_groups.iter().any(|g| {
            EVENT_GROUPS
                .iter()
                .any(|(n, cats)| n == g && cats.contains(&e.category.as_str()))
        });
        if !in_cat && !in_group {
            return false;
        }
    }
    if !f.projects.is_empty() || !f.project_groups.is_empty() {
        if !has(&f.projects) && !has(&f.project_groups) && !has(group_projects) {
            return false;
        }
    }
    if !f.environments.is_empty() && !has(&f.environments) {
        return false;
    }
    if !f.tenants.is_empty() && !has(&f.tenants) {
        return false;
    }
    if !f.users.is_empty()
        && !f
            .users
            .iter()
            .any(|u| u == &e.user_id || u.eq_ignore_ascii_case(&e.username))
    {
        return false;
    }
    if !f.document_types.is_empty() {
        let types: HashSet<&str> = related
            .iter()
            .filter_map(|r| r.rsplit_once('-').map(|(t, _)| t))
            .collect();
        if !f.document_types.iter().any(|t| types.contains(t.as_str())) {
            return false;
        }
    }
    true
}

/// Octopus's webhook body for one event.
pub fn payload(st: &AppState, s: &Subscription, e: &EventRow, batch_id: &str) -> Value {
    let now = format_ms(now_ms());
    let server = st.config.public_url.trim_end_matches('/').to_string();
    json!({
        "Timestamp": now,
        "EventType": "SubscriptionPayload",
        "Payload": {
            "ServerUri": server,
            "ServerAuditUri": format!("{server}/app#/{}/configuration/audit", s.space_id),
            "BatchProcessingDate": now,
            "Subscription": render(&s.space_id, s, None),
            "Event": super::events::render(e),
            "BatchId": batch_id,
            "TotalEventsInBatch": 1,
            "EventNumberInBatch": 1,
        }
    })
}

/// A URL as logs show it: scheme, host and port only (webhook paths and queries often carry
/// tokens, as Slack's do; user info never appears).
pub fn shown(url: &url::Url) -> String {
    format!("{}/…", url.origin().ascii_serialization())
}

/// How one request ended.
#[derive(Debug)]
pub enum SendError {
    /// The address policy refused a hop (not retried).
    Denied(String),
    /// Anything else: connection, timeout, bad redirect (retried).
    Failed(String),
}

/// The addresses of a URL's host, each checked against the policy (a denied one refuses the
/// whole hop, so a name cannot smuggle a denied address among allowed ones).
async fn checked_addrs(policy: &Policy, url: &url::Url) -> Result<Vec<SocketAddr>, SendError> {
    let u = shown(url);
    let port = url
        .port_or_known_default()
        .ok_or_else(|| SendError::Failed(format!("{u} has no port")))?;
    let addrs: Vec<SocketAddr> = match host_of(url) {
        Some(Host::Ip(ip)) => vec![SocketAddr::new(ip, port)],
        Some(Host::Name(d)) => tokio::net::lookup_host((d.as_str(), port))
            .await
            .map_err(|e| SendError::Failed(format!("could not resolve {d}: {e}")))?
            .collect(),
        None => return Err(SendError::Failed(format!("{u} has no host"))),
    };
    if addrs.is_empty() {
        return Err(SendError::Failed(format!("{u}: the host has no address")));
    }
    for a in &addrs {
        policy
            .check(a.ip())
            .map_err(|r| SendError::Denied(format!("{u}: {r}")))?;
    }
    Ok(addrs)
}

/// POSTs `body` to `uri`, checking every hop and following at most [`MAX_REDIRECTS`]
/// redirects by hand. Each hop connects only to an address [`checked_addrs`] admitted (the
/// name is never resolved again by anyone else, so a DNS answer cannot change between check
/// and connection). The extra header goes only to the first hop's origin (scheme, host,
/// port). `https` is verified against the system's CA certificates. Returns the final status.
pub async fn send(
    policy: &Policy,
    uri: &str,
    header: Option<(&str, &str)>,
    body: &str,
    timeout: Duration,
) -> Result<u16, SendError> {
    let mut url = url::Url::parse(uri)
        .map_err(|e| SendError::Failed(format!("'{uri}' is not a URL: {e}")))?;
    let origin = url.origin();
    let mut post = true;
    for hop in 0..=MAX_REDIRECTS {
        let u = shown(&url);
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(SendError::Denied(format!(
                "{u}: only http and https are followed"
            )));
        }
        let addrs = checked_addrs(policy, &url).await?;
        let extra = header.filter(|_| url.origin() == origin);
        let (status, location) = tokio::time::timeout(
            timeout,
            request_once(&url, &addrs, post.then_some(body), extra),
        )
        .await
        .map_err(|_| {
            SendError::Failed(format!("{u}: no answer within {} s", timeout.as_secs()))
        })??;
        let Some(location) = location.filter(|_| (300..400).contains(&status)) else {
            return Ok(status);
        };
        let next = url
            .join(&location)
            .map_err(|e| SendError::Failed(format!("{u}: bad redirect Location: {e}")))?;
        if hop == MAX_REDIRECTS {
            return Err(SendError::Failed(format!(
                "more than {MAX_REDIRECTS} redirects (last to {})",
                shown(&next)
            )));
        }
        // 307 and 308 repeat the POST; the others continue with a GET, as browsers do.
        if !matches!(status, 307 | 308) {
            post = false;
        }
        url = next;
    }
    Err(SendError::Failed("too many redirects".into()))
}

/// One HTTP/1.1 request on a new connection to the first reachable address of `addrs`;
/// returns the status and the `Location` header.
async fn request_once(
    url: &url::Url,
    addrs: &[SocketAddr],
    body: Option<&str>,
    header: Option<(&str, &str)>,
) -> Result<(u16, Option<String>), SendError> {
    use axum::http::header as h;
    let u = shown(url);
    let fail = |what: &str, e: &dyn std::error::Error| {
        SendError::Failed(format!("{u}: {what}: {}", error_chain(e)))
    };
    let mut stream = None;
    let mut last = None;
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(stream) = stream else {
        return Err(match last {
            Some(e) => fail("could not connect", &e),
            None => SendError::Failed(format!("{u}: no address to connect to")),
        });
    };
    let host = url.host_str().unwrap_or_default().to_string();
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut rb = axum::http::Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(target)
        .header(h::HOST, authority)
        .header(h::USER_AGENT, concat!("Ferry/", env!("CARGO_PKG_VERSION")))
        .header(h::CONNECTION, "close");
    if body.is_some() {
        rb = rb.header(h::CONTENT_TYPE, "application/json");
    }
    if let Some((k, v)) = header {
        rb = rb.header(k, v);
    }
    let req = rb
        .body(http_body_util::Full::new(axum::body::Bytes::from(
            body.unwrap_or_default().to_string(),
        )))
        .map_err(|e| fail("bad request", &e))?;
    if url.scheme() == "https" {
        let cfg = tls_config().map_err(SendError::Failed)?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| fail("bad TLS server name", &e))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await
            .map_err(|e| fail("TLS handshake failed", &e))?;
        exchange(tls, req, url).await
    } else {
        exchange(stream, req, url).await
    }
}

async fn exchange<S>(
    io: S,
    req: axum::http::Request<http_body_util::Full<axum::body::Bytes>>,
    url: &url::Url,
) -> Result<(u16, Option<String>), SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let u = shown(url);
    let fail = |e: hyper::Error| SendError::Failed(format!("{u}: {}", error_chain(&e)));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(fail)?;
    let driver = tokio::spawn(conn);
    let result = sender.send_request(req).await;
    driver.abort();
    let resp = result.map_err(fail)?;
    let location = resp
        .headers()
        .get(axum::http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    Ok((resp.status().as_u16(), location))
}

/// Roots for `https` webhooks: the system's CA certificates (read once).
fn tls_config() -> Result<std::sync::Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    static CONFIG: std::sync::OnceLock<Result<std::sync::Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for path in [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
            ] {
                if let Ok(iter) = CertificateDer::pem_file_iter(path) {
                    for c in iter.flatten() {
                        let _ = roots.add(c);
                    }
                }
            }
            if roots.is_empty() {
                return Err("https webhooks need the system's CA certificates (/etc/ssl/certs/ca-certificates.crt), which were not found".to_string());
            }
            let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(std::sync::Arc::new(cfg))
        })
        .clone()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Delivers one event with retries; returns the log entries (one per attempt).
async fn deliver_event(st: &AppState, s: &Subscription, e: &EventRow) -> Vec<Delivery> {
    let n = &s.event_notification_subscription;
    let settings = &st.config.webhooks;
    let header_value = n
        .sealed_webhook_header_value
        .as_ref()
        .and_then(|sealed| ferry_crypto::open(&st.master_key, &header_aad(&s.id), sealed).ok());
    let header = match (&n.webhook_header_key, &header_value) {
        (Some(k), Some(v)) => Some((k.as_str(), v.as_str())),
        _ => None,
    };
    let timeout = parse_timeout(&n.webhook_timeout).unwrap_or(Duration::from_secs(10));
    let batch_id = uuid::Uuid::new_v4().to_string();
    let body = payload(st, s, e, &batch_id).to_string();
    let mut log = Vec::new();
    let attempts = settings.attempts.max(1);
    for attempt in 1..=attempts {
        let started = Instant::now();
        let time = format_ms(now_ms());
        let r = send(&settings.policy, &n.webhook_uri, header, &body, timeout).await;
        let last = attempt == attempts;
        let mut d = Delivery {
            event_id: e.id.clone(),
            event_seq: e.seq,
            attempt,
            time,
            url: url::Url::parse(&n.webhook_uri)
                .map(|u| shown(&u))
                .unwrap_or_default(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..Delivery::default()
        };
        let done = match r {
            Ok(code) if (200..300).contains(&code) => {
                d.status_code = Some(code);
                d.outcome = "Delivered".into();
                true
            }
            Ok(code) => {
                d.status_code = Some(code);
                d.error = Some(format!("the receiver answered {code}"));
                d.outcome = if last { "GaveUp" } else { "Failed" }.into();
                false
            }
            Err(SendError::Denied(why)) => {
                d.error = Some(format!("refused by the outbound address policy: {why}"));
                d.outcome = "Denied".into();
                true
            }
            Err(SendError::Failed(why)) => {
                d.error = Some(why);
                d.outcome = if last { "GaveUp" } else { "Failed" }.into();
                false
            }
        };
        if d.outcome != "Delivered" {
            tracing::warn!(subscription = %s.id, event = %e.id, attempt, outcome = %d.outcome, error = ?d.error, "webhook delivery did not succeed");
        }
        log.push(d);
        if done || last {
            break;
        }
        tokio::time::sleep(backoff(settings.retry_base, attempt)).await;
    }
    log
}

async fn save_state(st: &AppState, space: &str, state: &DeliveryState) -> ApiResult<bool> {
    let mut tx = st.db.begin().await?;
    let Some(old) = tx.get_doc(&state_id(&state.subscription_id)).await? else {
        // The subscription was deleted meanwhile.
        return Ok(false);
    };
    let mut row = state_row(space, state)?;
    row.created_at = old.created_at;
    let ok = tx.update_doc(&row).await?;
    tx.commit().await?;
    Ok(ok)
}

/// Processes the events after the subscription's position until caught up (or it is deleted
/// or disabled).
async fn run_subscription(st: AppState, sub_id: String) -> ApiResult<()> {
    loop {
        let s: Subscription = match st.db.get_doc(&sub_id).await? {
            Some(d) if d.collection == C => parse_body(&d)?,
            _ => return Ok(()),
        };
        let n = &s.event_notification_subscription;
        if s.is_disabled || n.webhook_uri.is_empty() {
            return Ok(());
        }
        let mut state = match load_state(&st, &s.id).await? {
            Some((_, x)) => x,
            None => {
                // Made before delivery existed: start from now.
                let state = DeliveryState {
                    subscription_id: s.id.clone(),
                    last_event_seq: st.db.last_event_seq().await?,
                    ..DeliveryState::default()
                };
                let mut tx = st.db.begin().await?;
                tx.insert_doc(&state_row(&s.space_id, &state)?).await?;
                tx.commit().await?;
                state
            }
        };
        let events = st
            .db
            .events_after(&s.space_id, state.last_event_seq, BATCH)
            .await?;
        if events.is_empty() {
            return Ok(());
        }
        let group_projects = projects_of_groups(&st, &s).await?;
        for e in &events {
            if matches(&n.filter, e, &group_projects) {
                let log = deliver_event(&st, &s, e).await;
                state.log.extend(log);
                let excess = state.log.len().saturating_sub(LOG_LIMIT);
                state.log.drain(..excess);
                state.last_event_seq = e.seq;
                state.last_processed = Some(format_ms(now_ms()));
                if !save_state(&st, &s.space_id, &state).await? {
                    return Ok(());
                }
                // A change made while delivering (disabled, deleted, new URL) applies from the
                // next event on.
                match st.db.get_doc(&sub_id).await? {
                    Some(d) if d.collection == C => {
                        let fresh: Subscription = parse_body(&d)?;
                        if fresh != s {
                            break;
                        }
                    }
                    _ => return Ok(()),
                }
            } else {
                state.last_event_seq = e.seq;
            }
        }
        if !save_state(&st, &s.space_id, &state).await? {
            return Ok(());
        }
    }
}

async fn projects_of_groups(st: &AppState, s: &Subscription) -> ApiResult<Vec<String>> {
    let groups = &s.event_notification_subscription.filter.project_groups;
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let (rows, _) = st.db.list_docs(&query(&s.space_id, "Projects")).await?;
    let mut out = Vec::new();
    for r in &rows {
        let p: Value = parse_body(r)?;
        if p.get("ProjectGroupId")
            .and_then(Value::as_str)
            .is_some_and(|g| groups.iter().any(|x| x == g))
        {
            out.push(r.id.clone());
        }
    }
    Ok(out)
}

/// The delivery worker: every half second, starts a task for each enabled webhook
/// subscription that is not already being processed; each task delivers the events after its
/// subscription's position in order, then ends.
pub async fn deliver_forever(st: AppState) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        running.retain(|_, h| !h.is_finished());
        let rows = match st.db.list_docs(&DocQuery::new(C)).await {
            Ok((rows, _)) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery could not list subscriptions");
                continue;
            }
        };
        for r in rows {
            let Ok(s) = parse_body::<Subscription>(&r) else {
                continue;
            };
            if s.is_disabled
                || s.event_notification_subscription.webhook_uri.is_empty()
                || running.contains_key(&s.id)
            {
                continue;
            }
            let st2 = st.clone();
            let id = s.id.clone();
            running.insert(
                s.id.clone(),
                tokio::spawn(async move {
                    if let Err(e) = run_subscription(st2, id.clone()).await {
                        tracing::warn!(subscription = %id, error = %e.message, "webhook delivery failed");
                    }
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(category: &str, related: &str) -> EventRow {
        EventRow {
            id: "Events-1".into(),
            seq: 1,
            space_id: "Spaces-1".into(),
            category: category.into(),
            message: String::new(),
            username: "admin".into(),
            user_id: "Users-1".into(),
            occurred: 0,
            related_document_ids: related.into(),
            details: "{}".into(),
            ip_address: String::new(),
        }
    }

    #[test]
    fn filters() {
        let empty = Filter::default();
        assert!(matches(&empty, &event("Created", "Environments-1"), &[]));
        let f = Filter {
            event_categories: vec!["DeploymentFailed".into()],
            ..Filter::default()
        };
        assert!(matches(&f, &event("DeploymentFailed", ""), &[]));
        assert!(!matches(&f, &event("DeploymentSucceeded", ""), &[]));
        let g = Filter {
            event_groups: vec!["Document".into()],
            environments: vec!["Environments-2".into()],
            ..Filter::default()
        };
        assert!(matches(&g, &event("Modified", "Environments-2"), &[]));
        assert!(!matches(&g, &event("Modified", "Environments-3"), &[]));
        assert!(!matches(
            &g,
            &event("DeploymentQueued", "Environments-2"),
            &[]
        ));
        let p = Filter {
            project_groups: vec!["ProjectGroups-1".into()],
            ..Filter::default()
        };
        assert!(matches(
            &p,
            &event("Created", "Projects-4"),
            &["Projects-4".into()]
        ));
        assert!(!matches(
            &p,
            &event("Created", "Projects-5"),
            &["Projects-4".into()]
        ));
        let d = Filter {
            document_types: vec!["Environments".into()],
            ..Filter::default()
        };
        assert!(matches(&d, &event("Created", "Environments-9"), &[]));
        assert!(!matches(&d, &event("Created", "Projects-9"), &[]));
    }

    #[test]
    fn urls_at_save_time() {
        let p = Policy::default();
        assert!(check_url(&p, "https://hooks.example.com/x").is_ok());
        assert!(check_url(&p, "http://localhost:9/x").is_ok());
        assert!(check_url(&p, "ftp://example.com/").is_err());
        assert!(check_url(&p, "/relative").is_err());
        for denied in [
            "http://127.0.0.1:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://10.1.2.3/",
            "http://0.0.0.0/",
        ] {
            assert!(
                check_url(&p, denied).is_err_and(|e| e.contains("denied")),
                "{denied}"
            );
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("00:00:10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout(""), Some(Duration::from_secs(10)));
        assert_eq!(parse_timeout("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout("01:00:00"), None);
        assert_eq!(parse_timeout("nope"), None);
    }
}
