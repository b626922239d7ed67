//! The client half of the `ferry` command line: environments, projects, deployment
//! processes, variables, releases, deployments, tasks, packages and deployment targets, over
//! the REST API through `ferry-client` (`ferry package pack` works locally, through
//! `ferry-packages`).
//!
//! `main.rs` flattens [`ClientCommand`] next to `ferry server` and calls [`run`], whose
//! return value is the process exit code. The codes are a contract for scripts and are
//! documented in `docs/cli.md`; see [`exit`].

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use ferry_client::model::{
    CreateRelease, DeployRelease, NewEnvironment, NewProject, Resource, ServerTask,
};
use ferry_client::process::{self, EditError, ScriptStep, ScriptSyntax};
use ferry_client::tasklog::{LogCursor, LogEvent};
use ferry_client::url::segment;
use ferry_client::variables::{self as vars, ExplainContext, NewValue};
use ferry_client::{Client, ClientError};
use serde_json::Value;

#[path = "cli_mgmt.rs"]
mod mgmt;
pub use mgmt::{ChannelCommand, LifecycleCommand, PromoteArgs, TenantCommand};
#[path = "cli_templates.rs"]
mod templates;
pub use templates::{AddTemplateArgs, StepTemplateCommand};
#[path = "cli_users.rs"]
mod users;
pub use users::{ApiKeyCommand, LoginArgs, TeamCommand, UserCommand};

/// Exit codes `ferry` client commands end with.
pub mod exit {
    /// The command did what it was asked.
    pub const SUCCESS: i32 = 0;
    /// The API refused or failed the request (4xx/5xx), or a name matched nothing.
    pub const API_ERROR: i32 = 1;
    /// The command line was wrong (clap uses 2 too).
    pub const USAGE: i32 = 2;
    /// A waited-for task ended Failed, Canceled or TimedOut.
    pub const TASK_UNSUCCESSFUL: i32 = 3;
    /// The server could not be reached.
    pub const UNREACHABLE: i32 = 4;
    /// `--timeout` passed before every waited-for task completed.
    pub const TIMED_OUT: i32 = 5;
}

/// How often task state and logs are polled while waiting.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where and as whom client commands talk to the server.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Address of the Ferry server
    #[arg(
        long,
        env = "FERRY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_name = "URL",
        help_heading = "Connection"
    )]
    pub server: String,

    /// API key sent as X-Octopus-ApiKey
    #[arg(
        long,
        env = "FERRY_API_KEY",
        hide_env_values = true,
        global = true,
        value_name = "KEY",
        help_heading = "Connection"
    )]
    pub api_key: Option<String>,

    /// Space to work in, by name or id
    #[arg(
        long,
        env = "FERRY_SPACE",
        default_value = "Default",
        global = true,
        value_name = "NAME|ID",
        help_heading = "Connection"
    )]
    pub space: String,

    /// Print a human table/summary, or the API's JSON
    #[arg(
        long,
        value_enum,
        default_value_t = OutputFormat::Table,
        global = true,
        help_heading = "Connection"
    )]
    pub output: OutputFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

// The client commands. (A `///` comment here would become the about text of `ferry`
// itself, since main.rs flattens this enum into its own command.)
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create and list environments
    #[command(subcommand)]
    Environment(EnvironmentCommand),
    /// Create and list projects
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Edit and show a project's deployment process
    #[command(subcommand)]
    Process(ProcessCommand),
    /// List, set and explain a project's variables
    #[command(subcommand)]
    Variables(VariablesCommand),
    /// Create and deploy releases
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Wait for, read and cancel server tasks
    #[command(subcommand)]
    Task(TaskCommand),
    /// Push, pack and list packages of the built-in feed
    #[command(subcommand)]
    Package(PackageCommand),
    /// List, show, disable, enable and delete deployment targets
    #[command(subcommand)]
    Target(TargetCommand),
    /// List, show, create and delete lifecycles
    #[command(subcommand)]
    Lifecycle(LifecycleCommand),
    /// List, create and delete a project's channels (with version rules)
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Tenants, their tags, project connections and variables
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Import, list and show step templates
    #[command(subcommand)]
    StepTemplate(StepTemplateCommand),
    /// Users and service accounts
    #[command(subcommand)]
    User(UserCommand),
    /// Create, list and revoke API keys
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Teams, their members and role grants
    #[command(subcommand)]
    Team(TeamCommand),
    /// Sign in with a password and save an API key for later commands
    Login(LoginArgs),
    /// Revoke the saved API key and forget it
    Logout,
}

#[derive(Subcommand, Debug)]
pub enum TargetCommand {
    /// List the deployment targets of the space
    List {
        /// Only targets with this role (repeatable: any of them)
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Only targets in this environment, by name or id (repeatable: any of them)
        #[arg(long = "environment", value_name = "NAME|ID")]
        environments: Vec<String>,
    },
    /// Show a deployment target
    Show {
        /// Target, by name or id
        #[arg(value_name = "NAME|ID")]
        target: String,
    },
    /// Disable a deployment target: deployments leave it out
    Disable {
        /// Target, by name or id
        #[arg(value_name = "NAME|ID")]
        target: String,
    },
    /// Enable a disabled deployment target
    Enable {
        /// Target, by name or id
        #[arg(value_name = "NAME|ID")]
        target: String,
    },
    /// Delete a deployment target
    Delete {
        /// Target, by name or id
        #[arg(value_name = "NAME|ID")]
        target: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PackageCommand {
    /// Upload package files (named PackageId.Version.ext) to the built-in feed
    Push {
        /// Package files, e.g. MyApp.1.2.3.zip
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// What to do when the version is already in the feed
        #[arg(long, value_enum, default_value_t = OverwriteArg::Fail)]
        overwrite_mode: OverwriteArg,
    },
    /// Make a package file (PackageId.Version.ext) from the contents of a directory
    Pack {
        /// Package id, e.g. MyApp
        #[arg(long)]
        id: String,
        /// Package version, e.g. 1.2.3
        #[arg(long)]
        version: String,
        #[arg(long, value_enum, default_value_t = PackFormatArg::Zip)]
        format: PackFormatArg,
        /// Directory whose contents go into the package
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Directory to write the package into [default: the current directory]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace a package file of the same name
        #[arg(long)]
        overwrite: bool,
    },
    /// List the packages in the built-in feed (by id, highest version first)
    List {
        /// Only package ids containing this text (case-insensitive)
        #[arg(long)]
        filter: Option<String>,
        /// Only the highest version of each package id
        #[arg(long)]
        latest: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverwriteArg {
    /// Fail when the version exists (FailIfExists)
    Fail,
    /// Replace the existing file (OverwriteExisting)
    Overwrite,
    /// Keep the existing file and succeed (IgnoreIfExists)
    Ignore,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackFormatArg {
    Zip,
    #[value(name = "tar.gz")]
    TarGz,
}

#[derive(Subcommand, Debug)]
pub enum EnvironmentCommand {
    /// Create an environment
    Create {
        /// Name of the new environment
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List the environments of the space
    List,
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create a project (default group and lifecycle unless given)
    Create {
        /// Name of the new project
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Project group, by name or id
        #[arg(long, value_name = "NAME|ID")]
        group: Option<String>,
        /// Lifecycle, by name or id
        #[arg(long, value_name = "NAME|ID")]
        lifecycle: Option<String>,
        /// Whether the project deploys per tenant [default: untenanted]
        #[arg(long, value_enum, value_name = "MODE")]
        tenanted: Option<TenantedArg>,
    },
    /// List the projects of the space
    List,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum TenantedArg {
    /// Untenanted deployments only
    Untenanted,
    /// Tenanted deployments only
    Tenanted,
    /// Either
    Both,
}

impl TenantedArg {
    fn octopus(self) -> &'static str {
        match self {
            TenantedArg::Untenanted => "Untenanted",
            TenantedArg::Tenanted => "Tenanted",
            TenantedArg::Both => "TenantedOrUntenanted",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ProcessCommand {
    /// Append a "Run a script" step to a project's deployment process
    AddScript(AddScriptArgs),
    /// Append a "Deploy a package" step (a package from the built-in feed)
    AddPackage(AddPackageArgs),
    /// Append a step using a step template (its latest version)
    AddTemplate(AddTemplateArgs),
    /// Show a project's deployment process
    Show {
        /// Project, by name, slug or id
        #[arg(long)]
        project: String,
    },
}

#[derive(Args, Debug)]
pub struct AddScriptArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// Name of the new step
    #[arg(long)]
    name: String,
    /// The script itself
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    script: Option<String>,
    /// Read the script from a file ("-" reads standard input)
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Script language [default: python for a .py file, else bash]
    #[arg(long, value_enum)]
    syntax: Option<SyntaxArg>,
    /// Run on deployment targets with this role (repeatable); without it the step runs
    /// on the server
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AddPackageArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// Name of the new step
    #[arg(long)]
    name: String,
    /// Package id in the built-in feed
    #[arg(long)]
    package: String,
    /// Substitute variables in the files matching this glob (repeatable)
    #[arg(long = "substitute", value_name = "GLOB")]
    substitute: Vec<String>,
    /// Apply structured configuration variables to the files matching this glob (repeatable)
    #[arg(long = "structured", value_name = "GLOB")]
    structured: Vec<String>,
    /// Deploy to targets with this role (repeatable); without it the server deploys it
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxArg {
    Bash,
    Python,
}

#[derive(Subcommand, Debug)]
pub enum VariablesCommand {
    /// List a project's variables (sensitive values show as ********)
    List {
        /// Project, by name, slug or id
        #[arg(long)]
        project: String,
    },
    /// Set a variable's value for a scope, replacing the value with the same name and scope
    Set(SetVariableArgs),
    /// Show which value of each variable wins in a context, and why
    Explain(ExplainArgs),
}

#[derive(Args, Debug)]
pub struct SetVariableArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// Name of the variable
    name: String,
    /// The value; "-" reads it from standard input (keeps secrets out of shell history)
    value: String,
    /// Scope the value to an environment, by name or id (repeatable)
    #[arg(long = "environment", value_name = "NAME|ID")]
    environments: Vec<String>,
    /// Scope the value to a target role (repeatable)
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Store the value as sensitive: sealed, never shown again, masked in task logs
    #[arg(long)]
    sensitive: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// Environment, by name or id
    #[arg(long, value_name = "NAME|ID")]
    environment: Option<String>,
    /// A role of the deployment target (repeatable)
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Step of the deployment process, by name or id
    #[arg(long, value_name = "NAME|ID")]
    step: Option<String>,
    /// Channel, by name or id
    #[arg(long, value_name = "NAME|ID")]
    channel: Option<String>,
    /// Deployment target id
    #[arg(long, value_name = "ID")]
    machine: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Create a release of a project
    Create {
        /// Project, by name, slug or id
        #[arg(long)]
        project: String,
        /// Release version [default: computed by the server]
        #[arg(long)]
        version: Option<String>,
        /// Channel, by name or id [default: the project's default channel]
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, value_name = "NOTES")]
        release_notes: Option<String>,
        /// A package version for one step or package: STEP-OR-PACKAGE:VERSION (repeatable)
        #[arg(long = "package", value_name = "STEP:VERSION")]
        packages: Vec<String>,
        /// The version of every package not given with --package [default: the latest that
        /// satisfies the channel's rules]
        #[arg(long, value_name = "VERSION")]
        package_version: Option<String>,
        /// Accept package versions that break the channel's version rules
        #[arg(long)]
        ignore_channel_rules: bool,
        /// Succeed without creating anything if the version exists
        #[arg(long)]
        ignore_existing: bool,
        /// Follow the lifecycle's automatic deployments of the new release until they end;
        /// exit 3 unless all succeed
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit 5)
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
    },
    /// Deploy a release to one or more environments (or, with --tenant/--tenant-tag, to
    /// tenants in one environment)
    Deploy(DeployArgs),
    /// Deploy the release last deployed successfully to one environment to others
    Promote(PromoteArgs),
    /// Stop a release from being deployed to environments it has not reached yet
    PreventProgression {
        #[arg(long)]
        project: String,
        #[arg(long)]
        version: String,
        /// Why (recorded with the release and in the audit log)
        #[arg(long)]
        reason: String,
    },
    /// Let a release progress again
    AllowProgression {
        #[arg(long)]
        project: String,
        #[arg(long)]
        version: String,
    },
    /// Show what changed between two releases of a project (packages, steps, variables)
    Diff {
        /// Project, by name, slug or id
        #[arg(long)]
        project: String,
        /// Version of the earlier release
        #[arg(value_name = "FROM")]
        from: String,
        /// Version of the later release
        #[arg(value_name = "TO")]
        to: String,
    },
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Project, by name, slug or id
    #[arg(long)]
    project: String,
    /// Version of the release to deploy
    #[arg(long)]
    version: String,
    /// Environment, by name or id (repeatable: one deployment each)
    #[arg(long = "environment", value_name = "NAME|ID", required = true)]
    environments: Vec<String>,
    /// Value of a prompted variable (repeatable)
    #[arg(long = "variable", value_name = "NAME:VALUE", value_parser = parse_variable)]
    variables: Vec<(String, String)>,
    /// Deploy to this tenant (repeatable; name or id)
    #[arg(long = "tenant", value_name = "NAME|ID")]
    tenants: Vec<String>,
    /// Deploy to every connected tenant with this tag (repeatable; Set/Tag)
    #[arg(long = "tenant-tag", value_name = "SET/TAG")]
    tenant_tags: Vec<String>,
    /// Only this target (repeatable; name or id)
    #[arg(long = "specific-target", value_name = "NAME|ID")]
    specific_targets: Vec<String>,
    /// Not this target (repeatable; name or id)
    #[arg(long = "exclude-target", value_name = "NAME|ID")]
    excluded_targets: Vec<String>,
    /// Skip this step (repeatable; required steps cannot be skipped)
    #[arg(long = "skip-step", value_name = "NAME")]
    skip_steps: Vec<String>,
    /// Start at this time (RFC 3339, e.g. 2030-01-01T10:00:00+00:00)
    #[arg(long, value_name = "TIME")]
    deploy_at: Option<String>,
    /// Drop the deployment if it has not started by this time
    #[arg(long, value_name = "TIME", requires = "deploy_at")]
    no_deploy_after: Option<String>,
    /// Download packages again even if the target has them
    #[arg(long)]
    force_package_download: bool,
    /// Pause for a decision when a step fails
    #[arg(long)]
    guided_failure: bool,
    /// Take a new snapshot of the project's variables first
    #[arg(long)]
    update_variables: bool,
    /// Deploy despite an active deployment freeze, for this reason (audited)
    #[arg(long, value_name = "REASON")]
    freeze_override_reason: Option<String>,
    /// Follow every deployment's log until it ends; exit 3 unless all succeed
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds (exit 5)
    #[arg(long, value_name = "SECS", requires = "wait")]
    timeout: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Wait until tasks complete; exit 3 unless all succeed
    Wait {
        /// Task ids, e.g. ServerTasks-12
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Give up after this many seconds (exit 5)
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        /// Print each task's log lines as they arrive
        #[arg(long)]
        log: bool,
    },
    /// Print a task's log (with --output json: the task details)
    Log {
        /// Task id, e.g. ServerTasks-12
        id: String,
    },
    /// Ask the server to cancel a task
    Cancel {
        /// Task id, e.g. ServerTasks-12
        id: String,
    },
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME:VALUE, got '{text}'")),
    }
}

/// Why a command did not succeed; each kind has its own exit code.
#[derive(Debug)]
enum Failure {
    Client(ClientError),
    Edit(EditError),
    Usage(String),
    /// A local operation failed (packing a directory).
    Local(String),
    /// Several operations failed, each already reported; the exit code of the first.
    Several(i32, String),
    TasksUnsuccessful(String),
    TimedOut(String),
    Output(io::Error),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

impl From<EditError> for Failure {
    fn from(error: EditError) -> Self {
        Failure::Edit(error)
    }
}

impl Failure {
    fn exit_code(&self) -> i32 {
        match self {
            Failure::Client(ClientError::Transport(_)) => exit::UNREACHABLE,
            Failure::Client(ClientError::InvalidUrl { .. }) | Failure::Usage(_) => exit::USAGE,
            Failure::Client(_) | Failure::Edit(_) | Failure::Local(_) => exit::API_ERROR,
            Failure::Several(code, _) => *code,
            Failure::TasksUnsuccessful(_) => exit::TASK_UNSUCCESSFUL,
            Failure::TimedOut(_) => exit::TIMED_OUT,
            Failure::Output(error) if error.kind() == io::ErrorKind::BrokenPipe => exit::SUCCESS,
            Failure::Output(_) => exit::API_ERROR,
        }
    }

    /// The lines printed to standard error.
    fn message_lines(&self, has_api_key: bool) -> Vec<String> {
        match self {
            Failure::Client(ClientError::Api {
                status,
                message,
                errors,
            }) => {
                let mut lines = vec![format!("error: {message}")];
                lines.extend(errors.iter().cloned());
                if *status == 401 && !has_api_key {
                    lines.push("hint: pass --api-key or set FERRY_API_KEY".to_owned());
                }
                lines
            }
            Failure::Client(error) => vec![format!("error: {error}")],
            Failure::Edit(error) => vec![format!("error: {error}")],
            Failure::Usage(message)
            | Failure::Local(message)
            | Failure::Several(_, message)
            | Failure::TasksUnsuccessful(message)
            | Failure::TimedOut(message) => vec![format!("error: {message}")],
            Failure::Output(error) if error.kind() == io::ErrorKind::BrokenPipe => Vec::new(),
            Failure::Output(error) => vec![format!("error: cannot write output: {error}")],
        }
    }
}

/// Runs one client command and returns the process exit code (see [`exit`]).
pub async fn run(conn: ConnArgs, command: ClientCommand) -> i32 {
    let conn = users::with_saved_login(conn);
    let has_api_key = conn
        .api_key
        .as_deref()
        .is_some_and(|key| !key.trim().is_empty());
    match execute(&conn, command).await {
        Ok(()) => exit::SUCCESS,
        Err(failure) => {
            let mut stderr = io::stderr().lock();
            for line in failure.message_lines(has_api_key) {
                // Nothing sensible is left to do if standard error is gone.
                let _ = writeln!(stderr, "{line}");
            }
            failure.exit_code()
        }
    }
}

/// The connection and the resolved space a command works in.
struct Session {
    client: Client,
    output: OutputFormat,
    space_id: String,
}

impl Session {
    async fn open(conn: &ConnArgs) -> Result<Session, Failure> {
        let mut session = Session::without_space(conn)?;
        session.space_id = session.client.resolve_space(&conn.space).await?.data.id;
        Ok(session)
    }

    /// For commands whose API paths are not space-scoped.
    fn without_space(conn: &ConnArgs) -> Result<Session, Failure> {
        Ok(Session {
            client: Client::new(&conn.server, conn.api_key.clone())?,
            output: conn.output,
            space_id: String::new(),
        })
    }

    fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

async fn execute(conn: &ConnArgs, command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Environment(command) => {
            let session = Session::open(conn).await?;
            environment(&session, command).await
        }
        ClientCommand::Project(command) => {
            let session = Session::open(conn).await?;
            project(&session, command).await
        }
        ClientCommand::Process(command) => {
            let session = Session::open(conn).await?;
            deployment_process(&session, command).await
        }
        ClientCommand::Variables(command) => {
            let session = Session::open(conn).await?;
            variables(&session, command).await
        }
        ClientCommand::Release(command) => {
            let session = Session::open(conn).await?;
            release(&session, command).await
        }
        ClientCommand::Task(TaskCommand::Cancel { id }) => {
            let session = Session::without_space(conn)?;
            cancel_task(&session, &id).await
        }
        ClientCommand::Task(command) => {
            let session = Session::open(conn).await?;
            task(&session, command).await
        }
        ClientCommand::Package(PackageCommand::Pack {
            id,
            version,
            format,
            dir,
            out,
            overwrite,
        }) => pack(
            conn.output == OutputFormat::Json,
            &id,
            &version,
            format,
            &dir,
            out,
            overwrite,
        ),
        ClientCommand::Package(command) => {
            let session = Session::open(conn).await?;
            package(&session, command).await
        }
        ClientCommand::Target(command) => {
            let session = Session::open(conn).await?;
            target(&session, command).await
        }
        ClientCommand::Lifecycle(command) => {
            let session = Session::open(conn).await?;
            mgmt::lifecycle(&session, command).await
        }
        ClientCommand::Channel(command) => {
            let session = Session::open(conn).await?;
            mgmt::channel(&session, command).await
        }
        ClientCommand::Tenant(command) => {
            let session = Session::open(conn).await?;
            mgmt::tenant(&session, command).await
        }
        ClientCommand::StepTemplate(command) => {
            let session = Session::open(conn).await?;
            templates::step_template(&session, command).await
        }
        ClientCommand::User(c) => users::user(&Session::without_space(conn)?, c).await,
        ClientCommand::ApiKey(c) => users::api_key(&Session::without_space(conn)?, c).await,
        ClientCommand::Team(c) => users::team(&Session::open(conn).await?, c).await,
        ClientCommand::Login(args) => users::login(conn, args).await,
        ClientCommand::Logout => users::logout(conn).await,
    }
}

// ---- deployment targets ----

async fn target(session: &Session, command: TargetCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    let environments = client.environments(space).await?;
    let env_name = |id: &str| {
        environments
            .iter()
            .find(|e| e.id == id)
            .map_or_else(|| id.to_owned(), |e| e.name.clone())
    };
    match command {
        TargetCommand::List {
            roles,
            environments: wanted,
        } => {
            let mut ids = Vec::new();
            for e in &wanted {
                ids.push(client.find_environment(space, e).await?.data.id);
            }
            let machines = client.machines(space, &roles, &ids).await?;
            if session.json() {
                return print_json_list(&machines);
            }
            if machines.is_empty() {
                return print_line("No deployment targets");
            }
            let rows = machines
                .iter()
                .map(|m| {
                    vec![
                        m.id.clone(),
                        m.name.clone(),
                        m.endpoint.communication_style.clone(),
                        health_text(m),
                        m.environment_ids
                            .iter()
                            .map(|id| env_name(id))
                            .collect::<Vec<_>>()
                            .join(","),
                        m.roles.join(","),
                    ]
                })
                .collect();
            print_table(
                &["ID", "NAME", "STYLE", "HEALTH", "ENVIRONMENTS", "ROLES"],
                rows,
            )
        }
        TargetCommand::Show { target } => {
            let m = client.machine(space, &target).await?;
            if session.json() {
                return print_json(&m.json);
            }
            let envs = m
                .environment_ids
                .iter()
                .map(|id| env_name(id))
                .collect::<Vec<_>>()
                .join(", ");
            let lines = [
                format!("{} ({})", m.name, m.id),
                format!("  Style:        {}", m.endpoint.communication_style),
                format!("  Uri:          {}", m.endpoint.uri),
                format!("  Thumbprint:   {}", m.endpoint.thumbprint),
                format!("  Health:       {}", health_text(&m)),
                format!("  Environments: {envs}"),
                format!("  Roles:        {}", m.roles.join(", ")),
                format!("  Policy:       {}", m.machine_policy_id),
            ];
            print_line(lines.join("\n"))
        }
        TargetCommand::Disable { target } => set_disabled(session, &target, true).await,
        TargetCommand::Enable { target } => set_disabled(session, &target, false).await,
        TargetCommand::Delete { target } => {
            let m = client.machine(space, &target).await?;
            client.delete_machine(space, &m.id).await?;
            if session.json() {
                return print_json(&m.json);
            }
            print_line(format!("Deleted target {} ({})", m.name, m.id))
        }
    }
}

// ---- environments ----

async fn environment(session: &Session, command: EnvironmentCommand) -> Result<(), Failure> {
    let client = &session.client;
    match command {
        EnvironmentCommand::Create { name, description } => {
            let created = client
                .create_environment(&session.space_id, &NewEnvironment { name, description })
                .await?;
            if session.json() {
                return print_json(&created.json);
            }
            print_line(format!(
                "Created environment {} ({})",
                created.name, created.id
            ))
        }
        EnvironmentCommand::List => {
            let environments = client.environments(&session.space_id).await?;
            if session.json() {
                return print_json_list(&environments);
            }
            if environments.is_empty() {
                return print_line("No environments");
            }
            let rows = environments
                .iter()
                .map(|environment| {
                    vec![
                        environment.id.clone(),
                        environment.name.clone(),
                        environment.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "DESCRIPTION"], rows)
        }
    }
}

/// Puts the target back with `IsDisabled` set; everything else as the server sent it.
async fn set_disabled(session: &Session, target: &str, disabled: bool) -> Result<(), Failure> {
    let client = &session.client;
    let m = client.machine(&session.space_id, target).await?;
    let mut doc = m.json.clone();
    if let Some(o) = doc.as_object_mut() {
        o.insert("IsDisabled".to_owned(), Value::Bool(disabled));
    }
    let saved = client.put_machine(&session.space_id, &m.id, &doc).await?;
    if session.json() {
        return print_json(&saved.json);
    }
    let verb = if disabled { "Disabled" } else { "Enabled" };
    print_line(format!("{verb} target {} ({})", saved.name, saved.id))
}

fn health_text(m: &ferry_client::model::Machine) -> String {
    if m.is_disabled {
        format!("{} (disabled)", m.health_status)
    } else {
        m.health_status.clone()
    }
}

// ---- projects ----

async fn project(session: &Session, command: ProjectCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        ProjectCommand::Create {
            name,
            description,
            group,
            lifecycle,
            tenanted,
        } => {
            let project_group_id = match group {
                Some(group) => Some(client.find_project_group(space, &group).await?.data.id),
                None => None,
            };
            let lifecycle_id = match lifecycle {
                Some(lifecycle) => Some(client.find_lifecycle(space, &lifecycle).await?.data.id),
                None => None,
            };
            let created = client
                .create_project(
                    space,
                    &NewProject {
                        name,
                        description,
                        project_group_id,
                        lifecycle_id,
                        tenanted_deployment_mode: tenanted.map(|t| t.octopus().to_owned()),
                    },
                )
                .await?;
            if session.json() {
                return print_json(&created.json);
            }
            print_line(format!("Created project {} ({})", created.name, created.id))
        }
        ProjectCommand::List => {
            let projects = client.projects(space).await?;
            if session.json() {
                return print_json_list(&projects);
            }
            if projects.is_empty() {
                return print_line("No projects");
            }
            let rows = projects
                .iter()
                .map(|project| {
                    vec![
                        project.id.clone(),
                        project.name.clone(),
                        project.slug.clone().unwrap_or_default(),
                        project.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["ID", "NAME", "SLUG", "DESCRIPTION"], rows)
        }
    }
}

// ---- deployment process ----

/// Appends a step to a project's deployment process; returns the project and the process as
/// the server saved it.
async fn append_step_to(
    session: &Session,
    project: &str,
    step: Value,
) -> Result<(Resource<ferry_client::model::Project>, Value), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    let project = client.project(space, project).await?;
    let mut process = client.deployment_process(space, &project.id).await?;
    process::append_step(&mut process, step)?;
    let saved = client
        .put_deployment_process(space, &project.id, &process)
        .await?;
    Ok((project, saved))
}

async fn deployment_process(session: &Session, command: ProcessCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        ProcessCommand::AddTemplate(args) => templates::add_template(session, args).await,
        ProcessCommand::AddPackage(args) => {
            let step = ferry_client::process::PackageStep {
                name: args.name.clone(),
                package_id: args.package.clone(),
                substitute: args.substitute.clone(),
                structured: args.structured.clone(),
                roles: args.roles.clone(),
            };
            let (project, saved) = append_step_to(session, &args.project, step.to_json()).await?;
            if session.json() {
                return print_json(&saved);
            }
            print_line(format!(
                "Added the step '{}' deploying {} to {}",
                args.name, args.package, project.name
            ))
        }
        ProcessCommand::AddScript(args) => {
            let script = match (&args.script, &args.file) {
                (Some(script), _) => script.clone(),
                (None, Some(path)) => read_script(path)?,
                (None, None) => {
                    return Err(Failure::Usage(
                        "give the script with --script or --file".into(),
                    ));
                }
            };
            let syntax = match args.syntax {
                Some(SyntaxArg::Bash) => ScriptSyntax::Bash,
                Some(SyntaxArg::Python) => ScriptSyntax::Python,
                None if args
                    .file
                    .as_ref()
                    .is_some_and(|path| path.extension().is_some_and(|ext| ext == "py")) =>
                {
                    ScriptSyntax::Python
                }
                None => ScriptSyntax::Bash,
            };
            let step = ScriptStep {
                name: args.name.clone(),
                script,
                syntax,
                roles: args.roles.clone(),
            };
            let (project, saved) = append_step_to(session, &args.project, step.to_json()).await?;
            let steps = saved.get("Steps").and_then(Value::as_array);
            let position = steps.and_then(|steps| {
                steps.iter().position(|candidate| {
                    candidate.get("Name").and_then(Value::as_str) == Some(args.name.as_str())
                })
            });
            if session.json() {
                let saved_step = steps
                    .zip(position)
                    .and_then(|(steps, index)| steps.get(index));
                return print_json(saved_step.unwrap_or(&saved));
            }
            let number = position.map_or_else(|| "?".to_owned(), |index| (index + 1).to_string());
            print_line(format!(
                "Added step {number} '{}' to {}: {} script, {}",
                args.name,
                project.name,
                syntax.as_octopus(),
                runs_on(step.roles.is_empty(), &step.roles)
            ))
        }
        ProcessCommand::Show { project } => {
            let project = client.project(space, &project).await?;
            let process = client.deployment_process(space, &project.id).await?;
            if session.json() {
                return print_json(&process);
            }
            let steps = process::summarize(&process);
            if steps.is_empty() {
                return print_line(format!("{} has no deployment steps", project.name));
            }
            let rows = steps
                .iter()
                .enumerate()
                .map(|(index, step)| {
                    vec![
                        (index + 1).to_string(),
                        step.name.clone(),
                        step.action_types.join(", "),
                        runs_on(step.run_on_server, &step.roles),
                        step.syntax.clone().unwrap_or_default(),
                        step.script.as_deref().map(first_line).unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["#", "STEP", "TYPE", "RUNS", "SYNTAX", "SCRIPT"], rows)
        }
    }
}

fn read_script(path: &PathBuf) -> Result<String, Failure> {
    let result = if path.as_os_str() == "-" {
        let mut script = String::new();
        io::stdin().read_to_string(&mut script).map(|_| script)
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|error| {
        Failure::Usage(format!(
            "cannot read the script file {}: {error}",
            path.display()
        ))
    })
}

fn runs_on(on_server: bool, roles: &[String]) -> String {
    match (on_server, roles.is_empty()) {
        (true, _) => "on the server".to_owned(),
        (false, true) => "on targets".to_owned(),
        (false, false) => format!("on targets with role {}", roles.join(", ")),
    }
}

/// The first non-empty line of a script, shortened for a table cell.
fn first_line(script: &str) -> String {
    let line = script
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    let more = script
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count()
        > 1;
    let shortened: String = line.chars().take(40).collect();
    if more || shortened.len() < line.len() {
        format!("{shortened} …")
    } else {
        shortened
    }
}

// ---- variables ----

async fn variables(session: &Session, command: VariablesCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        VariablesCommand::List { project } => {
            let project = client.project(space, &project).await?;
            let set = client.project_variables(space, &project.id).await?;
            if session.json() {
                return print_json(&set);
            }
            let rows = vars::summarize(&set);
            if rows.is_empty() {
                return print_line(format!("{} has no variables", project.name));
            }
            let rows = rows
                .into_iter()
                .map(|row| {
                    vec![
                        row.name,
                        row.value,
                        row.scope,
                        row.prompt.unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["NAME", "VALUE", "SCOPE", "PROMPT"], rows)
        }
        VariablesCommand::Set(args) => {
            let value = if args.value == "-" {
                read_value_from_stdin()?
            } else {
                args.value
            };
            let project = client.project(space, &args.project).await?;
            let mut environments = Vec::with_capacity(args.environments.len());
            for environment in &args.environments {
                environments.push(client.find_environment(space, environment).await?.data.id);
            }
            let mut set = client.project_variables(space, &project.id).await?;
            let set_id = set
                .get("Id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let replaced = vars::set_value(
                &mut set,
                &NewValue {
                    name: args.name.clone(),
                    value,
                    sensitive: args.sensitive,
                    environments,
                    roles: args.roles.clone(),
                },
            )
            .map_err(|error| Failure::Client(ClientError::Decode(error.to_string())))?;
            let saved = client.put_variable_set(space, &set_id, &set).await?;
            if session.json() {
                return print_json(&saved);
            }
            let mut scope = args.environments.clone();
            scope.extend(args.roles.iter().map(|role| format!("role {role}")));
            let scope = if scope.is_empty() {
                "unscoped".to_owned()
            } else {
                scope.join(", ")
            };
            // Never the value: it may be a secret.
            print_line(format!(
                "{} {}{} in {} ({scope})",
                if replaced { "Updated" } else { "Added" },
                if args.sensitive { "sensitive " } else { "" },
                args.name,
                project.name
            ))
        }
        VariablesCommand::Explain(args) => {
            let project = client.project(space, &args.project).await?;
            let context = ExplainContext {
                environment: args.environment,
                roles: args.roles,
                step: args.step,
                channel: args.channel,
                machine: args.machine,
                tenant: None,
            };
            let answer = client
                .explain_variables(space, &project.id, &context)
                .await?;
            if session.json() {
                return print_json(&answer);
            }
            let rows = vars::explain_rows(&answer);
            if rows.is_empty() {
                return print_line(format!("{} has no variables", project.name));
            }
            let rows = rows
                .into_iter()
                .map(|row| vec![row.name, row.value, row.source, row.why])
                .collect();
            print_table(&["NAME", "VALUE", "SOURCE", "WHY"], rows)
        }
    }
}

/// A value from standard input, without the newline that ends it.
fn read_value_from_stdin() -> Result<String, Failure> {
    let mut value = String::new();
    io::stdin().read_to_string(&mut value).map_err(|error| {
        Failure::Usage(format!(
            "cannot read the value from standard input: {error}"
        ))
    })?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

// ---- releases and deployments ----

async fn release(session: &Session, command: ReleaseCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        ReleaseCommand::Create {
            project,
            version,
            channel,
            release_notes,
            packages,
            package_version,
            ignore_channel_rules,
            ignore_existing,
            wait,
            timeout,
        } => {
            let created = client
                .create_release(
                    space,
                    &CreateRelease {
                        project_name: project.clone(),
                        release_version: version,
                        channel_name: channel,
                        release_notes,
                        packages,
                        package_version,
                        ignore_channel_rules,
                        ignore_if_already_exists: ignore_existing,
                    },
                )
                .await?;
            let auto: Vec<String> = created
                .json
                .get("AutomaticallyDeployedEnvironments")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if session.json() {
                print_json(&created.json)?;
            } else {
                print_line(format!(
                    "Created release {} ({}) of {project}",
                    created.release_version, created.release_id
                ))?;
                if !auto.is_empty() {
                    print_line(format!(
                        "The lifecycle deploys it automatically to {}",
                        auto.join(", ")
                    ))?;
                }
            }
            if !wait || auto.is_empty() {
                return Ok(());
            }
            let deployments = client
                .get_json(&format!(
                    "/api/{}/releases/{}/deployments?take=1000",
                    segment(space),
                    segment(&created.release_id)
                ))
                .await?;
            let tasks: Vec<String> = deployments
                .get("Items")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.get("TaskId").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            wait_for_tasks(session, &tasks, timeout, !session.json()).await
        }
        ReleaseCommand::Promote(args) => mgmt::promote(session, args).await,
        ReleaseCommand::PreventProgression {
            project,
            version,
            reason,
        } => mgmt::progression(session, &project, &version, Some(reason)).await,
        ReleaseCommand::AllowProgression { project, version } => {
            mgmt::progression(session, &project, &version, None).await
        }
        ReleaseCommand::Deploy(args) => {
            let environments = args.environments.join(", ");
            let tenanted = !args.tenants.is_empty() || !args.tenant_tags.is_empty();
            let created = if tenanted {
                let [environment] = args.environments.as_slice() else {
                    return Err(Failure::Usage(
                        "a tenanted deployment goes to one environment: give --environment once"
                            .to_owned(),
                    ));
                };
                client
                    .deploy_tenanted(
                        space,
                        &ferry_client::model::DeployTenanted {
                            project_name: args.project.clone(),
                            release_version: args.version.clone(),
                            environment_name: environment.clone(),
                            tenants: args.tenants.clone(),
                            tenant_tags: args.tenant_tags.clone(),
                            variables: args.variables.into_iter().collect::<BTreeMap<_, _>>(),
                            specific_machine_names: args.specific_targets,
                            excluded_machine_names: args.excluded_targets,
                            skip_step_names: args.skip_steps,
                            run_at: args.deploy_at,
                            no_run_after: args.no_deploy_after,
                            force_package_download: args.force_package_download,
                            use_guided_failure: args.guided_failure,
                            update_variable_snapshot: args.update_variables,
                            deployment_freeze_override_reason: args.freeze_override_reason,
                        },
                    )
                    .await?
            } else {
                client
                    .deploy_release(
                        space,
                        &DeployRelease {
                            project_name: args.project.clone(),
                            release_version: args.version.clone(),
                            environment_names: args.environments,
                            variables: args.variables.into_iter().collect::<BTreeMap<_, _>>(),
                            specific_machine_names: args.specific_targets,
                            excluded_machine_names: args.excluded_targets,
                            skip_step_names: args.skip_steps,
                            run_at: args.deploy_at,
                            no_run_after: args.no_deploy_after,
                            force_package_download: args.force_package_download,
                            use_guided_failure: args.guided_failure,
                            update_variable_snapshot: args.update_variables,
                            deployment_freeze_override_reason: args.freeze_override_reason,
                        },
                    )
                    .await?
            };
            let tasks: Vec<String> = created
                .deployment_server_tasks
                .iter()
                .map(|task| task.server_task_id.clone())
                .collect();
            if !args.wait {
                if session.json() {
                    return print_json(&created.json);
                }
                print_line(format!(
                    "Deploying {} {} to {environments}",
                    args.project, args.version
                ))?;
                for task in &created.deployment_server_tasks {
                    print_line(format!(
                        "  {}  task {}",
                        task.deployment_id, task.server_task_id
                    ))?;
                }
                return print_line(format!(
                    "Follow with: ferry task wait --log {}",
                    tasks.join(" ")
                ));
            }
            if !session.json() {
                print_line(format!(
                    "Deploying {} {} to {environments}: {}",
                    args.project,
                    args.version,
                    tasks.join(", ")
                ))?;
            }
            wait_for_tasks(session, &tasks, args.timeout, true).await
        }
        ReleaseCommand::Diff { project, from, to } => {
            let project = client.project(space, &project).await?;
            let release_id = |version: String| {
                let path = format!(
                    "/api/{}/projects/{}/releases/{}",
                    segment(space),
                    segment(&project.id),
                    segment(&version)
                );
                async move {
                    let release = client.get_json(&path).await?;
                    Ok::<String, Failure>(
                        release
                            .get("Id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                    )
                }
            };
            let from_id = release_id(from).await?;
            let to_id = release_id(to).await?;
            let diff = client
                .get_json(&format!(
                    "/api/{}/releases/{}/compare/{}",
                    segment(space),
                    segment(&from_id),
                    segment(&to_id)
                ))
                .await?;
            if session.json() {
                return print_json(&diff);
            }
            print_raw(&render_release_diff(&project.name, &diff))
        }
    }
}

/// The table form of `GET /releases/{id}/compare/{otherId}`: a section each for packages,
/// steps and variables, one line per difference marked `+` (added), `-` (removed) or `~`
/// (changed); `=` marks a sensitive variable whose value was checked and did not change.
/// Sensitive values are never in the answer, so they cannot be printed.
fn render_release_diff(project: &str, diff: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let value = |v: &Value| match v {
        Value::Null => "(no value)".to_owned(),
        Value::String(s) => format!("\"{s}\""),
        Value::Object(o) if o.get("Sensitive") == Some(&Value::Bool(true)) => {
            "(sensitive)".to_owned()
        }
        other => other.to_string(),
    };
    let list = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = format!(
        "Comparing {project} {} ({}) with {} ({})\n",
        text(&diff["From"]["Version"]),
        text(&diff["From"]["Id"]),
        text(&diff["To"]["Version"]),
        text(&diff["To"]["Id"])
    );

    out.push_str("\nPackages\n");
    let packages = diff["Packages"].as_array().cloned().unwrap_or_default();
    if packages.is_empty() {
        out.push_str("  (no changes)\n");
    }
    for p in &packages {
        let mut name = text(&p["ActionName"]);
        let reference = text(&p["PackageReferenceName"]);
        if !reference.is_empty() {
            name.push_str(&format!(" ({reference})"));
        }
        let line = match (&p["From"], &p["To"]) {
            (Value::Null, to) => format!("  + {name}: {}", text(to)),
            (from, Value::Null) => format!("  - {name}: {}", text(from)),
            (from, to) => format!("  ~ {name}: {} -> {}", text(from), text(to)),
        };
        out.push_str(&line);
        out.push('\n');
    }

    out.push_str("\nSteps\n");
    let steps = &diff["Steps"];
    let (added, removed, changed) = (
        list(steps, "Added"),
        list(steps, "Removed"),
        list(steps, "Changed"),
    );
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        out.push_str("  (no changes)\n");
    }
    for s in &added {
        out.push_str(&format!("  + {}\n", text(s)));
    }
    for s in &removed {
        out.push_str(&format!("  - {}\n", text(s)));
    }
    for s in &changed {
        out.push_str(&format!("  ~ {}\n", text(&s["Name"])));
        for c in list(s, "Changes") {
            out.push_str(&format!("      {}\n", text(&c)));
        }
        for script in list(s, "ScriptDiffs") {
            for line in list(&script, "Lines") {
                out.push_str(&format!("          {}\n", text(&line)));
            }
            if let Some(more) = script["MoreLines"].as_u64().filter(|m| *m > 0) {
                out.push_str(&format!("          ... {more} more changed lines\n"));
            }
        }
    }

    out.push_str("\nVariables\n");
    let variables = &diff["Variables"];
    let (added, removed, changed, unchanged) = (
        list(variables, "Added"),
        list(variables, "Removed"),
        list(variables, "Changed"),
        list(variables, "SensitiveUnchanged"),
    );
    if added.is_empty() && removed.is_empty() && changed.is_empty() {
        out.push_str("  (no changes)\n");
    }
    let label = |v: &Value| {
        let mut label = text(&v["Name"]);
        if let Some(scope) = v["Scope"].as_object().filter(|s| !s.is_empty()) {
            let parts: Vec<String> = scope
                .iter()
                .map(|(k, ids)| {
                    let ids: Vec<String> = ids
                        .as_array()
                        .map(|a| a.iter().map(&text).collect())
                        .unwrap_or_default();
                    format!("{k}: {}", ids.join(", "))
                })
                .collect();
            label.push_str(&format!(" [{}]", parts.join("; ")));
        }
        let source = text(&v["Source"]);
        if !source.is_empty() && source != "project" {
            label.push_str(&format!(" ({source})"));
        }
        label
    };
    for v in &added {
        out.push_str(&format!("  + {} = {}\n", label(v), value(&v["Value"])));
    }
    for v in &removed {
        out.push_str(&format!("  - {} = {}\n", label(v), value(&v["Value"])));
    }
    for v in &changed {
        let sensitive = v["From"].is_object() || v["To"].is_object();
        let what = if sensitive {
            let verdict = match v["To"]["Changed"] {
                Value::Bool(true) => "value changed",
                Value::Bool(false) => "value unchanged",
                _ => "value could not be compared",
            };
            format!("(sensitive) {verdict}")
        } else {
            format!("{} -> {}", value(&v["From"]), value(&v["To"]))
        };
        let others: Vec<String> = list(v, "Changes")
            .iter()
            .map(&text)
            .filter(|c| c != "Value")
            .collect();
        let others = if others.is_empty() {
            String::new()
        } else {
            format!(" ({} changed)", others.join(", "))
        };
        out.push_str(&format!("  ~ {}: {what}{others}\n", label(v)));
    }
    for v in &unchanged {
        out.push_str(&format!("  = {}: (sensitive) value unchanged\n", label(v)));
    }
    out
}

// ---- tasks ----

async fn task(session: &Session, command: TaskCommand) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    match command {
        TaskCommand::Wait { ids, timeout, log } => {
            wait_for_tasks(session, &ids, timeout, log).await
        }
        TaskCommand::Log { id } => {
            if session.json() {
                return print_json(&client.task_details(space, &id).await?);
            }
            let log = client.task_raw(space, &id).await?;
            print_raw(&log)
        }
        TaskCommand::Cancel { id } => cancel_task(session, &id).await,
    }
}

async fn cancel_task(session: &Session, id: &str) -> Result<(), Failure> {
    let task = session.client.cancel_task(id).await?;
    match task {
        Some(task) if session.json() => print_json(&task.json),
        Some(task) => print_line(format!("Cancel requested for {id}: now {}", task.state)),
        None if session.json() => print_json(&Value::Null),
        None => print_line(format!("Cancel requested for {id}")),
    }
}

/// One task being waited for.
struct Watched {
    id: String,
    log: LogCursor,
    finished: Option<Resource<ServerTask>>,
}

/// Polls every task until all are completed, printing new log lines when `show_log`.
///
/// Table output prints log lines and one summary line per task on standard output. JSON
/// output prints log lines on standard error and, at the end, the completed tasks as a
/// JSON array on standard output.
async fn wait_for_tasks(
    session: &Session,
    ids: &[String],
    timeout: Option<u64>,
    show_log: bool,
) -> Result<(), Failure> {
    let client = &session.client;
    let space = &session.space_id;
    let started = Instant::now();
    let mut watched: Vec<Watched> = ids
        .iter()
        .map(|id| Watched {
            id: id.clone(),
            log: LogCursor::default(),
            finished: None,
        })
        .collect();
    let prefix_lines = watched.len() > 1;
    loop {
        for item in watched.iter_mut().filter(|item| item.finished.is_none()) {
            let task = if show_log {
                // The details carry the task and its activity tree; the server reads the
                // task before the log, so a completed task comes with its whole log.
                let mut details = client.task_details(space, &item.id).await?;
                for event in item.log.advance(&details) {
                    for line in render_log_event(&event) {
                        let line = if prefix_lines {
                            format!("{}| {line}", item.id)
                        } else {
                            line
                        };
                        if session.json() {
                            let _ = writeln!(io::stderr(), "{line}");
                        } else {
                            print_line(line)?;
                        }
                    }
                }
                Resource::<ServerTask>::from_json(
                    details.get_mut("Task").map(Value::take).unwrap_or_default(),
                )?
            } else {
                client.task(space, &item.id).await?
            };
            if task.is_completed {
                if !session.json() {
                    print_line(task_summary(&task))?;
                }
                item.finished = Some(task);
            }
        }
        if watched.iter().all(|item| item.finished.is_some()) {
            break;
        }
        if let Some(limit) = timeout
            && started.elapsed() >= Duration::from_secs(limit)
        {
            let pending: Vec<&str> = watched
                .iter()
                .filter(|item| item.finished.is_none())
                .map(|item| item.id.as_str())
                .collect();
            return Err(Failure::TimedOut(format!(
                "timed out after {limit}s waiting for {}",
                pending.join(", ")
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let finished: Vec<Resource<ServerTask>> = watched
        .into_iter()
        .filter_map(|item| item.finished)
        .collect();
    if session.json() {
        print_json(&Value::Array(
            finished.iter().map(|task| task.json.clone()).collect(),
        ))?;
    }
    let unsuccessful: Vec<String> = finished
        .iter()
        .filter(|task| !task.finished_successfully)
        .map(|task| format!("{} ({})", task.id, task.state))
        .collect();
    if unsuccessful.is_empty() {
        Ok(())
    } else {
        Err(Failure::TasksUnsuccessful(format!(
            "{} of {} tasks did not succeed: {}",
            unsuccessful.len(),
            finished.len(),
            unsuccessful.join(", ")
        )))
    }
}

/// A log event as printed lines: activities as `== name ==` headers, log elements as
/// `HH:MM:SS Category message`, both indented by the activity's depth.
fn render_log_event(event: &LogEvent) -> Vec<String> {
    match event {
        LogEvent::Activity { depth, name } => {
            vec![format!("{}== {name} ==", "  ".repeat(*depth))]
        }
        LogEvent::Line {
            depth,
            category,
            occurred_at,
            message,
        } => {
            // RFC 3339: the time of day is characters 11..19.
            let time = occurred_at.get(11..19).unwrap_or("        ");
            let indent = "  ".repeat(*depth);
            let mut lines = message.split('\n');
            let first = lines.next().unwrap_or_default();
            let mut out = vec![format!("{indent}{time} {category:<8} {first}")];
            let continuation = " ".repeat(time.chars().count() + 10);
            out.extend(lines.map(|line| format!("{indent}{continuation}{line}")));
            out.into_iter()
                .map(|line| line.trim_end().to_owned())
                .collect()
        }
    }
}

fn task_summary(task: &ServerTask) -> String {
    let mut summary = format!("{} {}", task.id, task.state);
    if !task.description.is_empty() {
        summary.push_str(&format!(": {}", task.description));
    }
    if let Some(error) = task
        .error_message
        .as_deref()
        .filter(|error| !error.is_empty())
    {
        summary.push_str(&format!(" ({error})"));
    }
    summary
}

// ---- packages ----

async fn package(session: &Session, command: PackageCommand) -> Result<(), Failure> {
    match command {
        PackageCommand::Push {
            files,
            overwrite_mode,
        } => push_packages(session, &files, overwrite_mode).await,
        PackageCommand::List { filter, latest } => {
            let items = session
                .client
                .packages(&session.space_id, filter.as_deref(), latest)
                .await?;
            if session.json() {
                return print_json(&Value::Array(items));
            }
            if items.is_empty() {
                return print_line("No packages");
            }
            let text = |item: &Value, key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let rows = items
                .iter()
                .map(|item| {
                    vec![
                        text(item, "PackageId"),
                        text(item, "Version"),
                        human_size(
                            item.get("PackageSizeBytes")
                                .and_then(Value::as_u64)
                                .unwrap_or_default(),
                        ),
                        text(item, "Published"),
                    ]
                })
                .collect();
            print_table(&["PACKAGE", "VERSION", "SIZE", "PUBLISHED"], rows)
        }
        PackageCommand::Pack { .. } => Err(Failure::Usage(
            "ferry package pack runs without a server".to_owned(),
        )),
    }
}

/// Pushes each file in turn; a failed file does not stop the others, and the first failure
/// decides the exit code.
async fn push_packages(
    session: &Session,
    files: &[PathBuf],
    mode: OverwriteArg,
) -> Result<(), Failure> {
    use ferry_client::packages::{OverwriteMode, Pushed};
    let mode = match mode {
        OverwriteArg::Fail => OverwriteMode::FailIfExists,
        OverwriteArg::Overwrite => OverwriteMode::OverwriteExisting,
        OverwriteArg::Ignore => OverwriteMode::IgnoreIfExists,
    };
    // Unreadable files and names that are not PackageId.Version.ext are usage errors, found
    // before anything is uploaded.
    for file in files {
        let meta = std::fs::metadata(file)
            .map_err(|error| Failure::Usage(format!("cannot read {}: {error}", file.display())))?;
        if !meta.is_file() {
            return Err(Failure::Usage(format!("{} is not a file", file.display())));
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        ferry_packages::filename::parse(&name)
            .map_err(|error| Failure::Usage(error.to_string()))?;
    }
    let (mut failed, mut first_code) = (0, None);
    let mut pushed = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let result = session
            .client
            .push_package(
                &session.space_id,
                file,
                mode,
                Some(progress_printer(name.clone())),
            )
            .await;
        match result {
            Ok(outcome) => {
                let p = outcome.package();
                let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
                if !session.json() {
                    let verb = match &outcome {
                        Pushed::Stored(_) => "Uploaded package",
                        Pushed::Ignored(_) => "Ignored existing package",
                    };
                    print_line(format!(
                        "{verb} {} {} ({})",
                        field("PackageId"),
                        field("Version"),
                        field("Id")
                    ))?;
                }
                pushed.push(p.clone());
            }
            Err(error) if files.len() == 1 => return Err(Failure::Client(error)),
            Err(error) => {
                let failure = Failure::Client(error);
                let mut stderr = io::stderr().lock();
                let _ = writeln!(stderr, "{name}: not pushed");
                for line in failure.message_lines(session.client.has_api_key()) {
                    let _ = writeln!(stderr, "{line}");
                }
                failed += 1;
                first_code.get_or_insert(failure.exit_code());
            }
        }
    }
    if session.json() {
        print_json(&Value::Array(pushed))?;
    }
    match first_code {
        Some(code) => Err(Failure::Several(
            code,
            format!("{failed} of {} packages were not pushed", files.len()),
        )),
        None => Ok(()),
    }
}

/// Prints `NAME: 40% (4.0 MiB of 10.0 MiB)` to standard error at each further tenth.
fn progress_printer(name: String) -> ferry_client::packages::Progress {
    let last = std::sync::atomic::AtomicU64::new(u64::MAX);
    std::sync::Arc::new(move |sent: u64, total: u64| {
        let tenth = sent.saturating_mul(10).checked_div(total).unwrap_or(10);
        if last.swap(tenth, std::sync::atomic::Ordering::Relaxed) != tenth {
            let _ = writeln!(
                io::stderr().lock(),
                "{name}: {}% ({} of {})",
                tenth * 10,
                human_size(sent),
                human_size(total)
            );
        }
    })
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`, `1.2 GiB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `ferry package pack`: writes `OUT/Id.Version.ext` from the contents of `dir`.
fn pack(
    json: bool,
    id: &str,
    version: &str,
    format: PackFormatArg,
    dir: &std::path::Path,
    out: Option<PathBuf>,
    overwrite: bool,
) -> Result<(), Failure> {
    use ferry_packages::filename::PackageFormat;
    let format = match format {
        PackFormatArg::Zip => PackageFormat::Zip,
        PackFormatArg::TarGz => PackageFormat::TarGz,
    };
    let parsed = ferry_domain::version::Version::parse(version).ok_or_else(|| {
        Failure::Usage(format!(
            "'{version}' is not a valid version: expected 1 to 4 numbers separated by dots, optionally followed by -prerelease and +metadata (e.g. 1.2.3 or 2.0.0-beta.1)"
        ))
    })?;
    let name = ferry_packages::filename::file_name(id, &parsed, format)
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let out_dir = out.unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&out_dir)
        .map_err(|error| Failure::Usage(format!("cannot create {}: {error}", out_dir.display())))?;
    let target = out_dir.join(&name);
    if target.exists() && !overwrite {
        return Err(Failure::Usage(format!(
            "{} exists; pass --overwrite to replace it",
            target.display()
        )));
    }
    let summary = ferry_packages::archive::pack(dir, &target, format)
        .map_err(|error| Failure::Local(error.to_string()))?;
    let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    if json {
        return print_json(&serde_json::json!({
            "File": target.display().to_string(),
            "PackageId": id,
            "Version": version,
            "Files": summary.files,
            "SizeBytes": size,
        }));
    }
    print_line(format!(
        "Packed {} file{} into {} ({})",
        summary.files,
        if summary.files == 1 { "" } else { "s" },
        target.display(),
        human_size(size)
    ))
}

// ---- output ----

fn print_line(text: impl Display) -> Result<(), Failure> {
    writeln!(io::stdout().lock(), "{text}").map_err(Failure::Output)
}

fn print_raw(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes()).map_err(Failure::Output)?;
    if !text.is_empty() && !text.ends_with('\n') {
        stdout.write_all(b"\n").map_err(Failure::Output)?;
    }
    stdout.flush().map_err(Failure::Output)
}

fn print_json(value: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| Failure::Output(io::Error::other(error)))?;
    print_line(text)
}

fn print_json_list<T>(items: &[Resource<T>]) -> Result<(), Failure> {
    print_json(&Value::Array(
        items.iter().map(|item| item.json.clone()).collect(),
    ))
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) -> Result<(), Failure> {
    print_raw(&render_table(headers, &rows))
}

/// A plain table: left-aligned columns two spaces apart, no trailing spaces.
fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |cell: &str| cell.replace(['\n', '\r', '\t'], " ");
    let mut lines: Vec<Vec<String>> = vec![headers.iter().map(|header| clean(header)).collect()];
    lines.extend(
        rows.iter()
            .map(|row| row.iter().map(|cell| clean(cell)).collect()),
    );
    let columns = lines.iter().map(Vec::len).max().unwrap_or_default();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            lines
                .iter()
                .filter_map(|line| line.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or_default()
        })
        .collect();
    let mut text = String::new();
    for line in &lines {
        let mut rendered = String::new();
        for (column, cell) in line.iter().enumerate() {
            if column > 0 {
                rendered.push_str("  ");
            }
            rendered.push_str(cell);
            let width = widths.get(column).copied().unwrap_or_default();
            rendered.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        text.push_str(rendered.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The shape `main.rs` gives the command line.
    #[derive(Parser, Debug)]
    #[command(name = "ferry")]
    struct TestCli {
        #[command(flatten)]
        conn: ConnArgs,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&[
            "environment",
            "list",
            "--output",
            "json",
            "--space",
            "Ops",
            "--server",
            "http://h:1",
        ]);
        match cli {
            Ok(cli) => {
                assert_eq!(cli.conn.output, OutputFormat::Json);
                assert_eq!(cli.conn.space, "Ops");
                assert_eq!(cli.conn.server, "http://h:1");
            }
            Err(error) => assert_eq!(error.to_string(), ""),
        }
    }

    #[test]
    fn variables_set_and_explain_take_scopes() {
        let cli = parse(&[
            "variables",
            "set",
            "--project",
            "P",
            "Pw",
            "-",
            "--environment",
            "Dev",
            "--environment",
            "Prod",
            "--role",
            "web",
            "--sensitive",
        ]);
        match cli.map(|cli| cli.command) {
            Ok(ClientCommand::Variables(VariablesCommand::Set(args))) => {
                assert_eq!((args.name.as_str(), args.value.as_str()), ("Pw", "-"));
                assert_eq!(args.environments, vec!["Dev", "Prod"]);
                assert_eq!(args.roles, vec!["web"]);
                assert!(args.sensitive);
            }
            other => assert_eq!(format!("{other:?}"), "a variables set command"),
        }
        let cli = parse(&[
            "variables",
            "explain",
            "--project",
            "P",
            "--environment",
            "Prod",
            "--role",
            "web",
            "--step",
            "Deploy",
            "--channel",
            "Hotfix",
        ]);
        match cli.map(|cli| cli.command) {
            Ok(ClientCommand::Variables(VariablesCommand::Explain(args))) => {
                assert_eq!(args.environment.as_deref(), Some("Prod"));
                assert_eq!(args.step.as_deref(), Some("Deploy"));
                assert_eq!(args.channel.as_deref(), Some("Hotfix"));
                assert_eq!(args.roles, vec!["web"]);
            }
            other => assert_eq!(format!("{other:?}"), "a variables explain command"),
        }
        assert!(parse(&["variables", "set", "--project", "P", "OnlyName"]).is_err());
    }

    #[test]
    fn deploy_takes_repeated_environments_and_variables() {
        let cli = parse(&[
            "release",
            "deploy",
            "--project",
            "Hello World",
            "--version",
            "1.0.0",
            "--environment",
            "Dev",
            "--environment",
            "Test",
            "--variable",
            "Url:http://x:80",
            "--wait",
            "--timeout",
            "30",
        ]);
        match cli.map(|cli| cli.command) {
            Ok(ClientCommand::Release(ReleaseCommand::Deploy(args))) => {
                assert_eq!(args.environments, vec!["Dev", "Test"]);
                assert_eq!(
                    args.variables,
                    vec![("Url".to_owned(), "http://x:80".to_owned())]
                );
                assert!(args.wait);
                assert_eq!(args.timeout, Some(30));
            }
            other => assert_eq!(format!("{other:?}"), "a deploy command"),
        }
    }

    #[test]
    fn usage_errors_are_caught_by_the_parser() {
        let bad: &[&[&str]] = &[
            &["release", "deploy", "--project", "P", "--version", "1"],
            &[
                "release",
                "deploy",
                "--project",
                "P",
                "--version",
                "1",
                "--environment",
                "D",
                "--timeout",
                "5",
            ],
            &[
                "release",
                "deploy",
                "--project",
                "P",
                "--version",
                "1",
                "--environment",
                "D",
                "--variable",
                "novalue",
            ],
            &["process", "add-script", "--project", "P", "--name", "S"],
            &[
                "process",
                "add-script",
                "--project",
                "P",
                "--name",
                "S",
                "--script",
                "x",
                "--file",
                "f",
            ],
            &[
                "process",
                "add-script",
                "--project",
                "P",
                "--name",
                "S",
                "--script",
                "x",
                "--syntax",
                "perl",
            ],
            &["task", "wait"],
            &["environment", "list", "--output", "yaml"],
        ];
        for args in bad {
            let result = parse(args);
            assert!(
                result
                    .as_ref()
                    .is_err_and(|error| error.exit_code() == exit::USAGE),
                "{args:?} parsed as {result:?}"
            );
        }
    }

    #[test]
    fn variables_split_at_the_first_colon() {
        assert_eq!(parse_variable("A:b:c"), Ok(("A".into(), "b:c".into())));
        assert_eq!(parse_variable("A:"), Ok(("A".into(), String::new())));
        assert!(parse_variable(":x").is_err());
        assert!(parse_variable("x").is_err());
    }

    #[test]
    fn exit_codes_follow_the_documented_contract() {
        let api = Failure::Client(ClientError::Api {
            status: 400,
            message: "m".into(),
            errors: vec![],
        });
        let cases = [
            (api, exit::API_ERROR),
            (
                Failure::Client(ClientError::NotFound("x".into())),
                exit::API_ERROR,
            ),
            (
                Failure::Client(ClientError::Decode("x".into())),
                exit::API_ERROR,
            ),
            (
                Failure::Client(ClientError::Transport("x".into())),
                exit::UNREACHABLE,
            ),
            (
                Failure::Client(ClientError::InvalidUrl {
                    url: "x".into(),
                    reason: "y".into(),
                }),
                exit::USAGE,
            ),
            (Failure::Edit(EditError::NoSteps), exit::API_ERROR),
            (Failure::Usage("x".into()), exit::USAGE),
            (
                Failure::TasksUnsuccessful("x".into()),
                exit::TASK_UNSUCCESSFUL,
            ),
            (Failure::TimedOut("x".into()), exit::TIMED_OUT),
            (
                Failure::Output(io::Error::from(io::ErrorKind::BrokenPipe)),
                exit::SUCCESS,
            ),
        ];
        for (failure, code) in cases {
            assert_eq!(failure.exit_code(), code, "{failure:?}");
        }
        assert_eq!(
            [
                exit::SUCCESS,
                exit::API_ERROR,
                exit::USAGE,
                exit::TASK_UNSUCCESSFUL,
                exit::UNREACHABLE,
                exit::TIMED_OUT
            ],
            [0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn api_errors_print_as_they_came() {
        let failure = Failure::Client(ClientError::Api {
            status: 400,
            message: "There was a problem with your request.".into(),
            errors: vec!["Project 'Foo' could not be found.".into()],
        });
        assert_eq!(
            failure.message_lines(true),
            vec![
                "error: There was a problem with your request.",
                "Project 'Foo' could not be found."
            ]
        );
    }

    #[test]
    fn unauthorized_without_a_key_hints_at_the_key() {
        let failure = Failure::Client(ClientError::Api {
            status: 401,
            message: "You must be logged in".into(),
            errors: vec![],
        });
        assert_eq!(
            failure.message_lines(false),
            vec![
                "error: You must be logged in",
                "hint: pass --api-key or set FERRY_API_KEY"
            ]
        );
        assert_eq!(failure.message_lines(true).len(), 1);
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let table = render_table(
            &["ID", "NAME", "DESCRIPTION"],
            &[
                vec!["Environments-1".into(), "Dev".into(), String::new()],
                vec![
                    "Environments-12".into(),
                    "Production".into(),
                    "live\nsite".into(),
                ],
            ],
        );
        assert_eq!(
            table,
            "ID               NAME        DESCRIPTION\n\
             Environments-1   Dev\n\
             Environments-12  Production  live site\n"
        );
    }

    #[test]
    fn first_line_marks_longer_scripts() {
        assert_eq!(first_line("echo hi"), "echo hi");
        assert_eq!(first_line("\n  echo hi\necho there"), "echo hi …");
        assert_eq!(first_line(&"x".repeat(50)), format!("{} …", "x".repeat(40)));
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn log_events_render_as_indented_lines() {
        let header = LogEvent::Activity {
            depth: 1,
            name: "Step 1: Say hello".into(),
        };
        assert_eq!(render_log_event(&header), vec!["  == Step 1: Say hello =="]);
        let line = LogEvent::Line {
            depth: 1,
            category: "Info".into(),
            occurred_at: "2025-05-01T10:00:01.000+00:00".into(),
            message: "hello\n  world".into(),
        };
        assert_eq!(
            render_log_event(&line),
            vec!["  10:00:01 Info     hello", "                      world"]
        );
    }

    #[test]
    fn task_summary_names_state_and_error() {
        let task = ServerTask {
            id: "ServerTasks-3".into(),
            description: "Deploy P release 1.0.0 to Dev".into(),
            state: "Failed".into(),
            is_completed: true,
            error_message: Some("exit code 1".into()),
            ..ServerTask::default()
        };
        assert_eq!(
            task_summary(&task),
            "ServerTasks-3 Failed: Deploy P release 1.0.0 to Dev (exit code 1)"
        );
    }
}
