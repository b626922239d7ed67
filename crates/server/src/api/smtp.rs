//! The server's SMTP settings (Octopus's `SmtpConfigurationResource`), used by the email step:
//! `GET|PUT /api/smtpconfiguration` and `GET /api/smtpconfiguration/isconfigured`. The password
//! is write-only: sealed with the master key, shown as `{"HasValue": true, "NewValue": null}`.

use axum::Json;
use axum::extract::State;
use ferry_executor::email::{
    CONFIG_COLLECTION, SMTP_DOC_ID, SmtpSettings, password_aad, valid_address,
};
use ferry_store::DocRow;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::auth::Ctx;
use crate::input::Body;

async fn current(st: &AppState) -> ApiResult<(Option<DocRow>, SmtpSettings)> {
    match st.db.get_doc(SMTP_DOC_ID).await? {
        Some(d) if d.collection == CONFIG_COLLECTION => {
            let s = parse_body(&d)?;
            Ok((Some(d), s))
        }
        _ => Ok((
            None,
            SmtpSettings {
                smtp_port: 25,
                timeout: 12_000,
                ..SmtpSettings::default()
            },
        )),
    }
}

fn render(s: &SmtpSettings) -> Value {
    json!({
        "Id": SMTP_DOC_ID,
        "SmtpHost": s.smtp_host,
        "SmtpPort": s.smtp_port,
        "SendEmailFrom": s.send_email_from,
        "SmtpLogin": s.smtp_login,
        "SmtpPassword": {"HasValue": s.sealed_password.is_some(), "NewValue": Value::Null},
        "EnableSsl": s.enable_ssl,
        "Timeout": s.timeout,
        "CredentialType": "UsernamePassword",
        "Links": {"Self": "/api/smtpconfiguration", "IsConfigured": "/api/smtpconfiguration/isconfigured"},
    })
}

pub async fn get(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(render(&current(&st).await?.1)))
}

pub async fn is_configured(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"IsConfigured": current(&st).await?.1.is_configured()}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutBody {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    pub send_email_from: Option<String>,
    pub smtp_login: Option<String>,
    /// `{"HasValue": bool, "NewValue": "…"}` or a plain string.
    pub smtp_password: Option<Value>,
    pub enable_ssl: Option<bool>,
    pub timeout: Option<i64>,
}

pub async fn put(
    State(st): State<AppState>,
    ctx: Ctx,
    Body(b): Body<PutBody>,
) -> ApiResult<Json<Value>> {
    let (row, mut s) = current(&st).await?;
    let mut errors = Vec::new();
    if let Some(h) = b.smtp_host {
        let h = h.trim().to_string();
        if h.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(format!("SmtpHost: '{h}' is not a host name"));
        }
        s.smtp_host = h;
    }
    if let Some(p) = b.smtp_port {
        match u16::try_from(p) {
            Ok(p) if p > 0 => s.smtp_port = p,
            _ => errors.push(format!("SmtpPort: {p} is not a port (1-65535)")),
        }
    }
    if let Some(f) = b.send_email_from {
        let f = f.trim().to_string();
        if !f.is_empty() && !valid_address(&f) {
            errors.push(format!("SendEmailFrom: '{f}' is not an email address"));
        }
        s.send_email_from = f;
    }
    if let Some(l) = b.smtp_login {
        s.smtp_login = l.trim().to_string();
    }
    if let Some(e) = b.enable_ssl {
        s.enable_ssl = e;
    }
    if let Some(t) = b.timeout {
        match u64::try_from(t) {
            Ok(t) if t <= 600_000 => s.timeout = t,
            _ => errors.push(format!(
                "Timeout: {t} is not a number of milliseconds from 0 to 600000"
            )),
        }
    }
    match b.smtp_password {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) => {
            s.sealed_password =
                (!p.is_empty()).then(|| ferry_crypto::seal(&st.master_key, &password_aad(), &p));
        }
        Some(Value::Object(o)) => {
            let has = o.get("HasValue").and_then(Value::as_bool).unwrap_or(false);
            match o.get("NewValue") {
                Some(Value::String(p)) => {
                    s.sealed_password =
                        Some(ferry_crypto::seal(&st.master_key, &password_aad(), p));
                }
                _ if !has => s.sealed_password = None,
                _ => {}
            }
        }
        Some(other) => errors.push(format!(
            "SmtpPassword must be {{\"HasValue\": …, \"NewValue\": \"…\"}} or a string, not {other}"
        )),
    }
    if !errors.is_empty() {
        let mut e = ApiError::bad_request(String::new());
        e.errors = errors;
        return Err(e);
    }
    let now = ferry_domain::time::now_ms();
    let body = serde_json::to_string(&s).map_err(ApiError::internal)?;
    let mut tx = st.db.begin().await?;
    match row {
        Some(mut r) => {
            r.body = body;
            r.updated_at = now;
            tx.update_doc(&r).await?;
        }
        None => {
            tx.insert_doc(&DocRow {
                id: SMTP_DOC_ID.to_string(),
                collection: CONFIG_COLLECTION.to_string(),
                space_id: String::new(),
                owner_id: String::new(),
                name: "SMTP".to_string(),
                name_key: ferry_store::name_key("SMTP"),
                slug: String::new(),
                sort_order: 0,
                ref1: String::new(),
                ref2: String::new(),
                seq: 0,
                body,
                created_at: now,
                updated_at: now,
            })
            .await?;
        }
    }
    audit(
        &mut tx,
        &ctx,
        "",
        "Modified",
        format!(
            "SMTP settings were changed ({}:{}, from {})",
            s.smtp_host, s.smtp_port, s.send_email_from
        ),
        &[SMTP_DOC_ID],
        json!({"SmtpHost": s.smtp_host, "SmtpPort": s.smtp_port, "SendEmailFrom": s.send_email_from, "EnableSsl": s.enable_ssl, "PasswordSet": s.sealed_password.is_some()}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(render(&s)))
}
