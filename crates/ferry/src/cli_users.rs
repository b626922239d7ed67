//! Security commands: `ferry user …`, `ferry api-key …`, `ferry team …`, `ferry login` and
//! `ferry logout`. `ferry login` signs in with a password (session + CSRF token), mints an API
//! key for this machine and saves it with the server's address in
//! `$XDG_CONFIG_HOME/ferry/config.toml` (mode 0600); later commands use it when neither
//! `--api-key` nor `FERRY_API_KEY` is given. See `docs/users.md`.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::*;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// List users and service accounts
    List,
    /// Show a user
    Show {
        /// User, by user name or id
        user: String,
    },
    /// Create a user (password from the terminal or --password-stdin) or a service account
    Create {
        /// User name
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// A service account: no password, API keys only
        #[arg(long)]
        service: bool,
        /// Read the password from the first line of standard input
        #[arg(long, conflicts_with = "service")]
        password_stdin: bool,
    },
    /// Disable a user: its sessions end and its API keys stop working
    Disable { user: String },
    /// Enable a disabled user
    Enable { user: String },
    /// Set a user's password; for your own, the current password is asked first (with
    /// --password-stdin: current password on the first line, the new one on the second)
    SetPassword {
        user: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user with its API keys and sessions
    Delete { user: String },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create an API key (printed once)
    Create {
        /// What the key is for
        #[arg(long, default_value = "ferry CLI")]
        purpose: String,
        /// Expires after this many days [default: the server's default, 180]
        #[arg(long, value_name = "DAYS")]
        expires_days: Option<u32>,
        /// For this user (name or id) [default: yourself]
        #[arg(long)]
        user: Option<String>,
    },
    /// List API keys (never the keys themselves)
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an API key
    Revoke {
        /// The key's id (APIKeys-…)
        id: String,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TeamCommand {
    /// List system teams and the space's teams
    List,
    /// Create a team (a system team; a space team when --space is given)
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Add a user to a team
    AddMember { team: String, user: String },
    /// Remove a user from a team
    RemoveMember { team: String, user: String },
    /// Grant a team a role, optionally scoped
    Grant {
        team: String,
        /// Role, by name or id (e.g. "Project deployer", userroles-projectdeployer)
        role: String,
        #[arg(long = "project", value_name = "NAME|ID")]
        projects: Vec<String>,
        #[arg(long = "environment", value_name = "NAME|ID")]
        environments: Vec<String>,
        #[arg(long = "tenant", value_name = "NAME|ID")]
        tenants: Vec<String>,
        #[arg(long = "project-group", value_name = "NAME|ID")]
        project_groups: Vec<String>,
    },
    /// Delete a team
    Delete { team: String },
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User name [default: asked on the terminal]
    #[arg(long)]
    username: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,
}

// ---- saved login ---------------------------------------------------------------------------

/// What `ferry login` saved.
#[derive(Debug, Clone, Default)]
struct Saved {
    server: String,
    api_key: String,
    api_key_id: String,
    user_id: String,
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("ferry").join("config.toml"))
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads `key = "value"` lines (the subset of TOML this file is written in).
fn parse_saved(text: &str) -> Saved {
    let mut saved = Saved::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            continue;
        };
        let mut value = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            value.push(c);
                        }
                    }
                    Some(c) => value.push(c),
                    None => {}
                }
            } else {
                value.push(c);
            }
        }
        match k.trim() {
            "server" => saved.server = value,
            "api_key" => saved.api_key = value,
            "api_key_id" => saved.api_key_id = value,
            "user_id" => saved.user_id = value,
            _ => {}
        }
    }
    saved
}

fn load_saved() -> Option<(PathBuf, Saved)> {
    let path = config_path()?;
    let text = std::fs::read_to_string(&path).ok()?;
    let saved = parse_saved(&text);
    (!saved.api_key.is_empty() && !saved.server.is_empty()).then_some((path, saved))
}

/// Writes the file with mode 0600 (its directory 0700) through a temporary file, so it is
/// never readable by others, not even for a moment.
fn store_saved(path: &Path, saved: &Saved) -> Result<(), Failure> {
    let local = |what: &str, e: io::Error| Failure::Local(format!("cannot {what}: {e}"));
    let dir = path
        .parent()
        .ok_or_else(|| Failure::Local("the config path has no directory".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| local(&format!("create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| local(&format!("restrict {}", dir.display()), e))?;
    let text = format!(
        "# Written by `ferry login`. It holds an API key: keep it private (mode 0600).\n\
         server = {}\napi_key = {}\napi_key_id = {}\nuser_id = {}\n",
        toml_string(&saved.server),
        toml_string(&saved.api_key),
        toml_string(&saved.api_key_id),
        toml_string(&saved.user_id),
    );
    let tmp = dir.join(format!(".config.toml.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| local(&format!("write {}", tmp.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| local(&format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| local(&format!("write {}", path.display()), e))
}

fn same_server(a: &str, b: &str) -> bool {
    match (
        ferry_client::url::normalize_base(a),
        ferry_client::url::normalize_base(b),
    ) {
        (Ok(a), Ok(b)) => a.eq_ignore_ascii_case(&b),
        _ => false,
    }
}

/// Whether a global option was given on the command line or through its variable (clap's
/// defaults make the parsed value alone ambiguous).
fn given(flag: &str, var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
        || std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// Fills in the saved server and key when `--api-key`/`FERRY_API_KEY` are not given. The
/// saved key is only ever sent to the server it was minted by.
pub fn with_saved_login(mut conn: ConnArgs) -> ConnArgs {
    if conn
        .api_key
        .as_deref()
        .is_some_and(|k| !k.trim().is_empty())
    {
        return conn;
    }
    let Some((_, saved)) = load_saved() else {
        return conn;
    };
    if !given("--server", "FERRY_URL") {
        conn.server = saved.server.clone();
    }
    if same_server(&conn.server, &saved.server) {
        conn.api_key = Some(saved.api_key);
    }
    conn
}

// ---- reading secrets -------------------------------------------------------------------------

fn read_stdin_lines(n: usize) -> Result<Vec<String>, Failure> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| Failure::Usage(format!("cannot read standard input: {e}")))?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .take(n)
        .collect();
    if lines.len() < n || lines.iter().any(String::is_empty) {
        return Err(Failure::Usage(format!(
            "expected {n} non-empty line(s) on standard input"
        )));
    }
    Ok(lines)
}

/// Asks on the terminal, without echo for secrets.
fn prompt(label: &str, secret: bool) -> Result<String, Failure> {
    use std::io::IsTerminal;
    if !io::stdin().is_terminal() {
        return Err(Failure::Usage(format!(
            "{} is needed: standard input is not a terminal (use --password-stdin or --username)",
            label.trim_end_matches(": ")
        )));
    }
    eprint!("{label}");
    let _ = io::stderr().flush();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
    };
    if secret {
        let _ = stty("-echo");
    }
    let mut line = String::new();
    let read = io::stdin().read_line(&mut line);
    if secret {
        let _ = stty("echo");
        eprintln!();
    }
    read.map_err(|e| Failure::Usage(format!("cannot read the terminal: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Err(Failure::Usage(format!(
            "{} is needed",
            label.trim_end_matches(": ")
        )));
    }
    Ok(line)
}

// ---- helpers ---------------------------------------------------------------------------------

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn page_items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => other
            .get("Items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

fn show_or_json(session: &Session, v: &Value, lines: Vec<String>) -> Result<(), Failure> {
    if session.json() {
        return print_json(v);
    }
    print_raw(&lines.join("\n"))
}

fn not_found(what: &str, key: &str) -> Failure {
    Failure::Client(ClientError::Api {
        status: 404,
        message: format!("{what} '{key}' was not found"),
        errors: Vec::new(),
    })
}

/// A user by id (`Users-…`), `me`, or user name (compared ignoring case).
async fn find_user(session: &Session, key: &str) -> Result<Value, Failure> {
    let client = &session.client;
    if key.eq_ignore_ascii_case("me") {
        return Ok(client.get_json("/api/users/me").await?);
    }
    if key.starts_with("Users-") {
        return Ok(client
            .get_json(&format!("/api/users/{}", segment(key)))
            .await?);
    }
    let page = client
        .get_json(&format!(
            "/api/users?take=2147483647&filter={}",
            segment(key)
        ))
        .await?;
    page_items(&page)
        .into_iter()
        .find(|u| text(u, "Username").eq_ignore_ascii_case(key.trim()))
        .ok_or_else(|| not_found("User", key))
}

async fn user_id(session: &Session, key: Option<&str>) -> Result<String, Failure> {
    Ok(text(&find_user(session, key.unwrap_or("me")).await?, "Id"))
}

fn yes_no(v: &Value, key: &str) -> String {
    if v.get(key).and_then(Value::as_bool).unwrap_or(false) {
        "yes".into()
    } else {
        "no".into()
    }
}

fn user_lines(u: &Value) -> Vec<String> {
    vec![
        format!("Id:           {}", text(u, "Id")),
        format!("Username:     {}", text(u, "Username")),
        format!("Display name: {}", text(u, "DisplayName")),
        format!("Email:        {}", text(u, "EmailAddress")),
        format!(
            "Kind:         {}",
            if u.get("IsService").and_then(Value::as_bool).unwrap_or(false) {
                "service account"
            } else {
                "user"
            }
        ),
        format!("Active:       {}", yes_no(u, "IsActive")),
        format!("Created:      {}", text(u, "Created")),
    ]
}

// ---- ferry user ------------------------------------------------------------------------------

pub(super) async fn user(session: &Session, command: UserCommand) -> Result<(), Failure> {
    let client = &session.client;
    match command {
        UserCommand::List => {
            let page = client.get_json("/api/users?take=2147483647").await?;
            if session.json() {
                return print_json(&page);
            }
            let rows = page_items(&page)
                .iter()
                .map(|u| {
                    vec![
                        text(u, "Id"),
                        text(u, "Username"),
                        text(u, "DisplayName"),
                        if u.get("IsService").and_then(Value::as_bool).unwrap_or(false) {
                            "service".into()
                        } else {
                            "user".into()
                        },
                        yes_no(u, "IsActive"),
                    ]
                })
                .collect();
            print_table(&["ID", "USERNAME", "DISPLAY NAME", "KIND", "ACTIVE"], rows)
        }
        UserCommand::Show { user } => {
            let u = find_user(session, &user).await?;
            show_or_json(session, &u, user_lines(&u))
        }
        UserCommand::Create {
            username,
            display_name,
            email,
            service,
            password_stdin,
        } => {
            let password = if service {
                None
            } else if password_stdin {
                read_stdin_lines(1)?.pop()
            } else {
                let p = prompt("Password: ", true)?;
                if prompt("Repeat the password: ", true)? != p {
                    return Err(Failure::Usage("the passwords differ".into()));
                }
                Some(p)
            };
            let body = serde_json::json!({
                "Username": username,
                "DisplayName": display_name.unwrap_or_else(|| username.clone()),
                "EmailAddress": email.unwrap_or_default(),
                "IsService": service,
                "IsActive": true,
                "Password": password,
            });
            let u = client.post_json("/api/users", &body).await?;
            let mut lines = vec![format!(
                "Created {} {} ({})",
                if service { "service account" } else { "user" },
                text(&u, "Username"),
                text(&u, "Id")
            )];
            if service {
                lines.push(format!(
                    "Give it an API key: ferry api-key create --user {} --purpose …",
                    text(&u, "Id")
                ));
            }
            show_or_json(session, &u, lines)
        }
        UserCommand::Disable { user } => set_active(session, &user, false).await,
        UserCommand::Enable { user } => set_active(session, &user, true).await,
        UserCommand::SetPassword {
            user,
            password_stdin,
        } => {
            let u = find_user(session, &user).await?;
            let me = client.get_json("/api/users/me").await?;
            let own = text(&u, "Id") == text(&me, "Id");
            let (current, new) = if password_stdin {
                let mut lines = read_stdin_lines(if own { 2 } else { 1 })?;
                let new = lines.pop().unwrap_or_default();
                (lines.pop(), new)
            } else {
                let current = if own {
                    Some(prompt("Current password: ", true)?)
                } else {
                    None
                };
                let new = prompt("New password: ", true)?;
                if prompt("Repeat the new password: ", true)? != new {
                    return Err(Failure::Usage("the passwords differ".into()));
                }
                (current, new)
            };
            let mut body = serde_json::json!({"Password": new});
            if let Some(c) = current {
                body["CurrentPassword"] = Value::String(c);
            }
            let updated = client
                .put_json(&format!("/api/users/{}", segment(&text(&u, "Id"))), &body)
                .await?;
            show_or_json(
                session,
                &updated,
                vec![format!(
                    "Changed the password of {}; its other sessions were ended",
                    text(&u, "Username")
                )],
            )
        }
        UserCommand::Delete { user } => {
            let u = find_user(session, &user).await?;
            client
                .delete(&format!("/api/users/{}", segment(&text(&u, "Id"))))
                .await?;
            print_line(format!(
                "Deleted user {} ({}) with its API keys and sessions",
                text(&u, "Username"),
                text(&u, "Id")
            ))
        }
    }
}

async fn set_active(session: &Session, user: &str, active: bool) -> Result<(), Failure> {
    let u = find_user(session, user).await?;
    let updated = session
        .client
        .put_json(
            &format!("/api/users/{}", segment(&text(&u, "Id"))),
            &serde_json::json!({"IsActive": active}),
        )
        .await?;
    show_or_json(
        session,
        &updated,
        vec![format!(
            "{} user {} ({})",
            if active { "Enabled" } else { "Disabled" },
            text(&u, "Username"),
            text(&u, "Id")
        )],
    )
}

// ---- ferry api-key ---------------------------------------------------------------------------

const DAY_MS: i64 = 24 * 3600 * 1000;

pub(super) async fn api_key(session: &Session, command: ApiKeyCommand) -> Result<(), Failure> {
    let client = &session.client;
    match command {
        ApiKeyCommand::Create {
            purpose,
            expires_days,
            user,
        } => {
            let id = user_id(session, user.as_deref()).await?;
            let mut body = serde_json::json!({"Purpose": purpose});
            if let Some(days) = expires_days {
                body["Expires"] = Value::String(ferry_domain::time::format_ms(
                    ferry_domain::time::now_ms() + i64::from(days) * DAY_MS,
                ));
            }
            let k = client
                .post_json(&format!("/api/users/{}/apikeys", segment(&id)), &body)
                .await?;
            show_or_json(
                session,
                &k,
                vec![
                    format!(
                        "Created API key {} ({}) for {}, expiring {}:",
                        text(&k, "Id"),
                        text(&k, "Purpose"),
                        id,
                        text(&k, "Expires")
                    ),
                    text(&k, "ApiKey"),
                    "Store it now: it is not shown again.".into(),
                ],
            )
        }
        ApiKeyCommand::List { user } => {
            let id = user_id(session, user.as_deref()).await?;
            let page = client
                .get_json(&format!(
                    "/api/users/{}/apikeys?take=2147483647",
                    segment(&id)
                ))
                .await?;
            if session.json() {
                return print_json(&page);
            }
            let rows = page_items(&page)
                .iter()
                .map(|k| {
                    vec![
                        text(k, "Id"),
                        text(k, "Purpose"),
                        text(k, "Created"),
                        text(k, "Expires"),
                    ]
                })
                .collect();
            print_table(&["ID", "PURPOSE", "CREATED", "EXPIRES"], rows)
        }
        ApiKeyCommand::Revoke { id, user } => {
            let uid = user_id(session, user.as_deref()).await?;
            client
                .delete(&format!(
                    "/api/users/{}/apikeys/{}",
                    segment(&uid),
                    segment(&id)
                ))
                .await?;
            print_line(format!("Revoked API key {id}"))
        }
    }
}

// ---- ferry team ------------------------------------------------------------------------------

async fn all_pages(session: &Session, path: &str) -> Result<Vec<Value>, Failure> {
    let sep = if path.contains('?') { '&' } else { '?' };
    Ok(page_items(
        &session
            .client
            .get_json(&format!("{path}{sep}take=2147483647"))
            .await?,
    ))
}

async fn teams(session: &Session) -> Result<Vec<Value>, Failure> {
    let mut all = all_pages(session, "/api/teams").await?;
    for t in all_pages(
        session,
        &format!("/api/{}/teams", segment(&session.space_id)),
    )
    .await?
    {
        if !all.iter().any(|a| text(a, "Id") == text(&t, "Id")) {
            all.push(t);
        }
    }
    Ok(all)
}

async fn find_team(session: &Session, key: &str) -> Result<Value, Failure> {
    teams(session)
        .await?
        .into_iter()
        .find(|t| text(t, "Id") == key || text(t, "Name").eq_ignore_ascii_case(key))
        .ok_or_else(|| not_found("Team", key))
}

/// Ids of space documents named by name or id.
async fn ids_of(
    session: &Session,
    collection: &str,
    keys: &[String],
) -> Result<Vec<String>, Failure> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let all = all_pages(
        session,
        &format!("/api/{}/{collection}", segment(&session.space_id)),
    )
    .await?;
    keys.iter()
        .map(|k| {
            all.iter()
                .find(|d| text(d, "Id") == *k || text(d, "Name").eq_ignore_ascii_case(k))
                .map(|d| text(d, "Id"))
                .ok_or_else(|| not_found(collection, k))
        })
        .collect()
}

async fn put_members(session: &Session, team: &str, user: &str, add: bool) -> Result<(), Failure> {
    let mut t = find_team(session, team).await?;
    let uid = user_id(session, Some(user)).await?;
    let mut members: Vec<String> = t
        .get("MemberUserIds")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    members.retain(|m| *m != uid);
    if add {
        members.push(uid.clone());
    }
    t["MemberUserIds"] = serde_json::json!(members);
    let saved = session
        .client
        .put_json(&format!("/api/teams/{}", segment(&text(&t, "Id"))), &t)
        .await?;
    show_or_json(
        session,
        &saved,
        vec![format!(
            "{} {uid} {} team {}",
            if add { "Added" } else { "Removed" },
            if add { "to" } else { "from" },
            text(&t, "Name")
        )],
    )
}

pub(super) async fn team(session: &Session, command: TeamCommand) -> Result<(), Failure> {
    let client = &session.client;
    match command {
        TeamCommand::List => {
            let all = teams(session).await?;
            if session.json() {
                return print_json(&Value::Array(all));
            }
            let rows = all
                .iter()
                .map(|t| {
                    vec![
                        text(t, "Id"),
                        text(t, "Name"),
                        match t.get("SpaceId").and_then(Value::as_str) {
                            Some(s) => s.to_owned(),
                            None => "(system)".into(),
                        },
                        t.get("MemberUserIds")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                            .to_string(),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "SPACE", "MEMBERS"], rows)
        }
        TeamCommand::Create { name, description } => {
            let in_space = given("--space", "FERRY_SPACE");
            let body = serde_json::json!({
                "Name": name,
                "Description": description.unwrap_or_default(),
                "MemberUserIds": [],
                "ExternalSecurityGroups": [],
                "SpaceId": if in_space { Value::String(session.space_id.clone()) } else { Value::Null },
            });
            let path = if in_space {
                format!("/api/{}/teams", segment(&session.space_id))
            } else {
                "/api/teams".to_owned()
            };
            let t = client.post_json(&path, &body).await?;
            show_or_json(
                session,
                &t,
                vec![format!(
                    "Created team {} ({})",
                    text(&t, "Name"),
                    text(&t, "Id")
                )],
            )
        }
        TeamCommand::AddMember { team, user } => put_members(session, &team, &user, true).await,
        TeamCommand::RemoveMember { team, user } => put_members(session, &team, &user, false).await,
        TeamCommand::Grant {
            team,
            role,
            projects,
            environments,
            tenants,
            project_groups,
        } => {
            let t = find_team(session, &team).await?;
            let roles = all_pages(session, "/api/userroles").await?;
            let r = roles
                .iter()
                .find(|r| text(r, "Id") == role || text(r, "Name").eq_ignore_ascii_case(&role))
                .ok_or_else(|| not_found("User role", &role))?;
            let space_level = r
                .get("GrantedSpacePermissions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            let space = match t.get("SpaceId").and_then(Value::as_str) {
                Some(s) => Value::String(s.to_owned()),
                None if space_level => Value::String(session.space_id.clone()),
                None => Value::Null,
            };
            let body = serde_json::json!({
                "TeamId": text(&t, "Id"),
                "UserRoleId": text(r, "Id"),
                "SpaceId": space,
                "ProjectIds": ids_of(session, "projects/all", &projects).await?,
                "EnvironmentIds": ids_of(session, "environments/all", &environments).await?,
                "TenantIds": ids_of(session, "tenants/all", &tenants).await?,
                "ProjectGroupIds": ids_of(session, "projectgroups/all", &project_groups).await?,
            });
            let g = client.post_json("/api/scopeduserroles", &body).await?;
            show_or_json(
                session,
                &g,
                vec![format!(
                    "Granted {} to team {} ({})",
                    text(r, "Name"),
                    text(&t, "Name"),
                    text(&g, "Id")
                )],
            )
        }
        TeamCommand::Delete { team } => {
            let t = find_team(session, &team).await?;
            client
                .delete(&format!("/api/teams/{}", segment(&text(&t, "Id"))))
                .await?;
            print_line(format!(
                "Deleted team {} ({})",
                text(&t, "Name"),
                text(&t, "Id")
            ))
        }
    }
}

// ---- ferry login / logout --------------------------------------------------------------------

/// The value a `Set-Cookie` header gives cookie `name`.
fn set_cookie_value(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

async fn api_failure(response: reqwest::Response) -> Failure {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Failure::Client(ClientError::from_error_body(
        status.as_u16(),
        status.canonical_reason(),
        &body,
    ))
}

fn transport(base: &str, e: &reqwest::Error) -> Failure {
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    Failure::Client(ClientError::Transport(format!(
        "the server could not be reached at {base}: {cause}"
    )))
}

pub(super) async fn login(conn: &ConnArgs, args: LoginArgs) -> Result<(), Failure> {
    let base = ferry_client::url::normalize_base(&conn.server)?;
    let path = config_path()
        .ok_or_else(|| Failure::Usage("neither XDG_CONFIG_HOME nor HOME is set".into()))?;
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ", false)?,
    };
    let password = if args.password_stdin {
        read_stdin_lines(1)?.pop().unwrap_or_default()
    } else {
        prompt("Password: ", true)?
    };
    let http = reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Failure::Local(format!("cannot start the HTTP client: {e}")))?;
    let url = |p: &str| format!("{base}{p}");

    let r = http
        .post(url("/api/users/login"))
        .json(&serde_json::json!({"Username": username, "Password": password, "RememberMe": true}))
        .send()
        .await
        .map_err(|e| transport(&base, &e))?;
    if !r.status().is_success() {
        return Err(api_failure(r).await);
    }
    let (Some(token), Some(csrf)) = (
        set_cookie_value(r.headers(), "OctopusIdentificationToken"),
        set_cookie_value(r.headers(), "Octopus-Csrf-Token"),
    ) else {
        return Err(Failure::Local(
            "the server signed in but set no session cookie".into(),
        ));
    };
    let me: Value = r
        .json()
        .await
        .map_err(|e| Failure::Client(ClientError::Decode(e.to_string())))?;
    let user_id = text(&me, "Id");
    let cookies = format!("OctopusIdentificationToken={token}; Octopus-Csrf-Token={csrf}");
    let minted = http
        .post(url(&format!("/api/users/{}/apikeys", segment(&user_id))))
        .header(reqwest::header::COOKIE, &cookies)
        .header("X-Octopus-Csrf-Token", &csrf)
        .json(&serde_json::json!({"Purpose": format!("ferry CLI on {}", hostname())}))
        .send()
        .await
        .map_err(|e| transport(&base, &e))?;
    let minted_ok = minted.status().is_success();
    let key = if minted_ok {
        Ok(minted
            .json::<Value>()
            .await
            .map_err(|e| Failure::Client(ClientError::Decode(e.to_string())))?)
    } else {
        Err(api_failure(minted).await)
    };
    // The session was only needed to mint the key.
    let _ = http
        .post(url("/api/users/logout"))
        .header(reqwest::header::COOKIE, &cookies)
        .header("X-Octopus-Csrf-Token", &csrf)
        .send()
        .await;
    let key = key?;
    let saved = Saved {
        server: base.clone(),
        api_key: text(&key, "ApiKey"),
        api_key_id: text(&key, "Id"),
        user_id: user_id.clone(),
    };
    if !ferry_crypto::is_valid_api_key(&saved.api_key) {
        return Err(Failure::Local("the server returned no API key".into()));
    }
    store_saved(&path, &saved)?;
    print_line(format!(
        "Signed in to {base} as {} ({user_id}). API key {} expires {}; saved in {}",
        text(&me, "Username"),
        saved.api_key_id,
        text(&key, "Expires"),
        path.display()
    ))
}

pub(super) async fn logout(conn: &ConnArgs) -> Result<(), Failure> {
    let Some((path, saved)) = load_saved() else {
        return print_line("Not signed in: there is no saved API key");
    };
    let server = if given("--server", "FERRY_URL") {
        conn.server.clone()
    } else {
        saved.server.clone()
    };
    if !same_server(&server, &saved.server) {
        return Err(Failure::Usage(format!(
            "the saved API key belongs to {}, not {server}",
            saved.server
        )));
    }
    let client = Client::new(&saved.server, Some(saved.api_key.clone()))?;
    let revoked = client
        .delete(&format!(
            "/api/users/{}/apikeys/{}",
            segment(&saved.user_id),
            segment(&saved.api_key_id)
        ))
        .await;
    match revoked {
        Ok(_) => {}
        // Already revoked or expired, or the user is gone: nothing left to revoke.
        Err(ClientError::Api { status, .. }) if status == 401 || status == 404 => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::remove_file(&path)
        .map_err(|e| Failure::Local(format!("cannot remove {}: {e}", path.display())))?;
    print_line(format!(
        "Signed out of {}: API key {} revoked and removed from {}",
        saved.server,
        saved.api_key_id,
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_round_trip() {
        let s = Saved {
            server: "http://127.0.0.1:8080".into(),
            api_key: "API-ABC\"\\x".into(),
            api_key_id: "APIKeys-3".into(),
            user_id: "Users-1".into(),
        };
        let text = format!(
            "# c\nserver = {}\napi_key = {}\napi_key_id = {}\nuser_id = {}\n",
            toml_string(&s.server),
            toml_string(&s.api_key),
            toml_string(&s.api_key_id),
            toml_string(&s.user_id)
        );
        let back = parse_saved(&text);
        assert_eq!(back.server, s.server);
        assert_eq!(back.api_key, s.api_key);
        assert_eq!(back.api_key_id, s.api_key_id);
        assert_eq!(back.user_id, s.user_id);
    }
}
