//! The route table: every endpoint with its method, path, required permission and summary.
//! Routes can only be added through `Routes::add`, so an endpoint without a declared permission
//! cannot exist; the auth layer and `/api/openapi.json` are generated from this table.

use std::collections::HashMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::dashboard;
use crate::api::{
    accounts, actiontemplates, artifacts, buildinfo, channels, deployments, deploytemplate,
    environments, event_archives, events, executions, freezes, interruptions, libraryvariablesets,
    lifecycles, machinepolicies, machines, misc, packages, process, progression, projectgroups,
    projects, release_retention, releasediff, releases, retention, smtp, spaces, subscriptions,
    tagsets, tasks, teams, tenants, users, variables, workerpools, workers,
};

/// Octopus's permission names, as far as Ferry's endpoints need them. `Anonymous` endpoints
/// need no authentication at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    Anonymous,
    Authenticated,
    AdministerSystem,
    SpaceView,
    SpaceCreate,
    SpaceEdit,
    EnvironmentView,
    EnvironmentCreate,
    EnvironmentEdit,
    EnvironmentDelete,
    MachineView,
    MachineCreate,
    MachineEdit,
    MachineDelete,
    MachinePolicyView,
    MachinePolicyEdit,
    WorkerView,
    WorkerEdit,
    AccountView,
    AccountCreate,
    AccountEdit,
    AccountDelete,
    ProjectGroupView,
    ProjectGroupCreate,
    ProjectGroupEdit,
    ProjectGroupDelete,
    LifecycleView,
    LifecycleCreate,
    LifecycleEdit,
    LifecycleDelete,
    ProjectView,
    ProjectCreate,
    ProjectEdit,
    ProjectDelete,
    ProcessView,
    ProcessEdit,
    VariableView,
    VariableEdit,
    LibraryVariableSetView,
    LibraryVariableSetCreate,
    LibraryVariableSetEdit,
    LibraryVariableSetDelete,
    ActionTemplateView,
    ActionTemplateCreate,
    ActionTemplateEdit,
    ActionTemplateDelete,
    ArtifactView,
    ArtifactDelete,
    ReleaseView,
    ReleaseCreate,
    ReleaseEdit,
    ReleaseDelete,
    DeploymentView,
    DeploymentCreate,
    DeploymentFreezeView,
    DeploymentFreezeAdminister,
    TenantView,
    TenantCreate,
    TenantEdit,
    TenantDelete,
    TagSetView,
    TagSetCreate,
    TagSetEdit,
    TagSetDelete,
    TaskView,
    TaskCancel,
    InterruptionView,
    InterruptionSubmit,
    EventView,
    FeedView,
    BuiltInFeedPush,
    BuiltInFeedAdminister,
    BuiltInFeedDownload,
    BuildInformationPush,
    BuildInformationAdminister,
    UserView,
    UserEdit,
    UserRoleView,
    UserRoleEdit,
    TeamView,
    TeamCreate,
    TeamEdit,
    TeamDelete,
    ConfigureServer,
    SpaceDelete,
    SubscriptionView,
    SubscriptionCreate,
    SubscriptionEdit,
    SubscriptionDelete,
    EventRetentionView,
    EventRetentionDelete,
    ArtifactCreate,
    DeploymentDelete,
    TaskCreate,
    FeedEdit,
    TriggerView,
    TriggerCreate,
    TriggerEdit,
    TriggerDelete,
    CertificateView,
    CertificateCreate,
    CertificateEdit,
    CertificateDelete,
    CertificateExportPrivateKey,
}

impl Permission {
    pub fn name(self) -> String {
        format!("{self:?}")
    }
}

/// One row of the route table.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub permission: Permission,
    pub summary: &'static str,
}

/// The table, indexed for the auth layer.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    pub specs: Vec<RouteSpec>,
    index: HashMap<(Method, String), Permission>,
}

impl RouteTable {
    /// The permission of a matched route, or `None` if it is not in the table.
    pub fn permission(&self, method: &Method, path: &str) -> Option<Permission> {
        let method = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        self.index.get(&(method, path.to_string())).copied()
    }

    /// The OpenAPI 3 document describing every route.
    pub fn openapi(&self) -> Value {
        let mut paths = serde_json::Map::new();
        for s in &self.specs {
            let entry = paths.entry(s.path.to_string()).or_insert_with(|| json!({}));
            let params: Vec<Value> = s
                .path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            let security = if s.permission == Permission::Anonymous {
                json!([])
            } else {
                json!([{"ApiKey": []}, {"Bearer": []}])
            };
            if let Some(obj) = entry.as_object_mut() {
                obj.insert(
                    s.method.as_str().to_lowercase(),
                    json!({
                        "summary": s.summary,
                        "parameters": params,
                        "security": security,
                        "x-ferry-permission": s.permission.name(),
                        "responses": {
                            "200": {"description": "Success", "content": {"application/json": {}}},
                            "400": {"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                            "401": {"description": "Not authenticated"},
                            "404": {"description": "Not found"}
                        }
                    }),
                );
            }
        }
        json!({
            "openapi": "3.0.3",
            "info": {"title": "Ferry REST API (Octopus Deploy compatible)", "version": env!("CARGO_PKG_VERSION")},
            "paths": Value::Object(paths),
            "components": {
                "securitySchemes": {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-Octopus-ApiKey"},
                    "Bearer": {"type": "http", "scheme": "bearer"}
                },
                "schemas": {
                    "Error": {"type": "object", "properties": {
                        "ErrorMessage": {"type": "string"},
                        "Errors": {"type": "array", "items": {"type": "string"}}
                    }}
                }
            }
        })
    }
}

/// A router under construction together with its table.
pub struct Routes {
    router: Router<AppState>,
    table: RouteTable,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            table: RouteTable::default(),
        }
    }

    /// Adds the routes a module declares (`pub fn routes(r: Routes) -> Routes`).
    pub fn with(self, module: fn(Routes) -> Routes) -> Self {
        module(self)
    }

    /// Registers a handler. The permission is required: there is no other way to add a route.
    pub fn add<H, T>(
        self,
        method: Method,
        path: &'static str,
        permission: Permission,
        summary: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add_route(method, path, permission, summary, handler, false)
    }

    /// Like [`Routes::add`], for a handler that streams a request body of any size itself (a
    /// package upload): no body limit applies to it. `crate::streams_request_body` must name
    /// the same route, so the declared-length check lets it through too.
    pub fn add_streaming<H, T>(
        self,
        method: Method,
        path: &'static str,
        permission: Permission,
        summary: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add_route(method, path, permission, summary, handler, true)
    }

    fn add_route<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        permission: Permission,
        summary: &'static str,
        handler: H,
        unlimited_body: bool,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // Every route with an id must have a scope rule (or be declared unscoped): the
        // server does not start otherwise.
        assert!(
            crate::scope::is_declared(path),
            "route {path} names an object whose scope the auth layer cannot resolve; add its collection to crate::scope"
        );
        let mut mr = match method.as_str() {
            "GET" => get(handler),
            "POST" => post(handler),
            "PUT" => put(handler),
            _ => delete(handler),
        };
        if unlimited_body {
            mr = mr.layer(DefaultBodyLimit::disable());
        }
        self.router = self.router.route(path, mr);
        self.table
            .index
            .insert((method.clone(), path.to_string()), permission);
        self.table.specs.push(RouteSpec {
            method,
            path,
            permission,
            summary,
        });
        self
    }
}

/// Builds every route. Space-scoped routes are written with `{space_id}`; default-space paths
/// reach them through `rewrite_default_space`.
pub fn build() -> (Router<AppState>, RouteTable) {
    use Method as M;
    use Permission as P;
    let r = Routes::new()
        // Discovery, health, metrics
        .add(M::GET, "/api", P::Anonymous, "Root document", misc::root)
        .add(M::GET, "/healthz", P::Anonymous, "Liveness", misc::healthz)
        .add(
            M::GET,
            "/api/serverstatus/health",
            P::Anonymous,
            "Server health",
            misc::healthz,
        )
        .add(
            M::GET,
            "/metrics",
            P::Anonymous,
            "Prometheus metrics",
            misc::metrics,
        )
        .add(
            M::GET,
            "/api/openapi.json",
            P::Anonymous,
            "This API's OpenAPI document",
            misc::openapi,
        )
        .add(
            M::GET,
            "/api/certificates/certificate-global",
            P::Authenticated,
            "The server certificate agents pin (its SHA-256 thumbprint)",
            misc::certificate_global,
        )
        .add(
            M::GET,
            "/api/smtpconfiguration",
            P::AdministerSystem,
            "The server's SMTP settings (for the email step)",
            smtp::get,
        )
        .add(
            M::PUT,
            "/api/smtpconfiguration",
            P::AdministerSystem,
            "Change the server's SMTP settings",
            smtp::put,
        )
        .add(
            M::GET,
            "/api/smtpconfiguration/isconfigured",
            P::Authenticated,
            "Whether SMTP is configured",
            smtp::is_configured,
        )
        .add(
            M::GET,
            "/api/capabilities",
            P::Authenticated,
            "Server capabilities",
            misc::capabilities,
        )
        // Spaces
        .add(
            M::GET,
            "/api/spaces",
            P::SpaceView,
            "List spaces",
            spaces::list,
        )
        .add(
            M::POST,
            "/api/spaces",
            P::SpaceCreate,
            "Create a space",
            spaces::create,
        )
        .add(
            M::GET,
            "/api/spaces/all",
            P::SpaceView,
            "All spaces",
            spaces::all,
        )
        .add(
            M::GET,
            "/api/spaces/{id}",
            P::SpaceView,
            "Get a space",
            spaces::get,
        )
        .add(
            M::PUT,
            "/api/spaces/{id}",
            P::SpaceEdit,
            "Update a space",
            spaces::update,
        )
        .add(
            M::GET,
            "/api/{space_id}",
            P::SpaceView,
            "Space root document",
            spaces::home,
        )
        // Environments
        .add(
            M::GET,
            "/api/{space_id}/environments",
            P::EnvironmentView,
            "List environments",
            environments::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/environments",
            P::EnvironmentCreate,
            "Create an environment",
            environments::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/environments/all",
            P::EnvironmentView,
            "All environments",
            environments::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/environments/{id}",
            P::EnvironmentView,
            "Get an environment",
            environments::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/environments/{id}",
            P::EnvironmentEdit,
            "Update an environment",
            environments::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/environments/{id}",
            P::EnvironmentDelete,
            "Delete an environment",
            environments::remove,
        )
        .add(
            M::GET,
            "/api/{space_id}/environments/{id}/machines",
            P::MachineView,
            "List the machines of an environment",
            machines::in_environment,
        )
        // Machines (deployment targets)
        .add(
            M::GET,
            "/api/{space_id}/machines",
            P::MachineView,
            "List machines",
            machines::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/machines",
            P::MachineCreate,
            "Create a machine",
            machines::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/machines/all",
            P::MachineView,
            "All machines",
            machines::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/machines/{id}",
            P::MachineView,
            "Get a machine",
            machines::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/machines/{id}",
            P::MachineEdit,
            "Update a machine",
            machines::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/machines/{id}",
            P::MachineDelete,
            "Delete a machine",
            machines::remove,
        )
        // Machine policies
        .add(
            M::GET,
            "/api/{space_id}/machinepolicies",
            P::MachinePolicyView,
            "List machine policies",
            machinepolicies::list,
        )
        .add(
            M::GET,
            "/api/{space_id}/machinepolicies/all",
            P::MachinePolicyView,
            "All machine policies",
            machinepolicies::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/machinepolicies/{id}",
            P::MachinePolicyView,
            "Get a machine policy",
            machinepolicies::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/machinepolicies/{id}",
            P::MachinePolicyEdit,
            "Update a machine policy",
            machinepolicies::update,
        )
        // Worker pools
        .add(
            M::GET,
            "/api/{space_id}/workerpools",
            P::WorkerView,
            "List worker pools",
            workerpools::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/workerpools",
            P::WorkerEdit,
            "Create a worker pool",
            workerpools::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/workerpools/all",
            P::WorkerView,
            "All worker pools",
            workerpools::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/workerpools/{id}",
            P::WorkerView,
            "Get a worker pool",
            workerpools::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/workerpools/{id}/workers",
            P::WorkerView,
            "List the workers of a worker pool",
            workerpools::workers,
        )
        .add(
            M::PUT,
            "/api/{space_id}/workerpools/{id}",
            P::WorkerEdit,
            "Update a worker pool",
            workerpools::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/workerpools/{id}",
            P::WorkerEdit,
            "Delete a worker pool",
            workerpools::remove,
        )
        // Workers
        .add(
            M::GET,
            "/api/{space_id}/workers",
            P::WorkerView,
            "List workers",
            workers::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/workers",
            P::WorkerEdit,
            "Create a worker",
            workers::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/workers/all",
            P::WorkerView,
            "All workers",
            workers::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/workers/{id}",
            P::WorkerView,
            "Get a worker",
            workers::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/workers/{id}",
            P::WorkerEdit,
            "Update a worker",
            workers::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/workers/{id}",
            P::WorkerEdit,
            "Delete a worker",
            workers::remove,
        )
        // Accounts (credentials of SSH targets)
        .add(
            M::GET,
            "/api/{space_id}/accounts",
            P::AccountView,
            "List accounts",
            accounts::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/accounts",
            P::AccountCreate,
            "Create an account",
            accounts::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/accounts/all",
            P::AccountView,
            "All accounts",
            accounts::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/accounts/{id}",
            P::AccountView,
            "Get an account",
            accounts::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/accounts/{id}/usages",
            P::AccountView,
            "Where an account is used",
            accounts::usages,
        )
        .add(
            M::PUT,
            "/api/{space_id}/accounts/{id}",
            P::AccountEdit,
            "Update an account",
            accounts::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/accounts/{id}",
            P::AccountDelete,
            "Delete an account",
            accounts::remove,
        )
        // Project groups
        .add(
            M::GET,
            "/api/{space_id}/projectgroups",
            P::ProjectGroupView,
            "List project groups",
            projectgroups::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/projectgroups",
            P::ProjectGroupCreate,
            "Create a project group",
            projectgroups::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/projectgroups/all",
            P::ProjectGroupView,
            "All project groups",
            projectgroups::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/projectgroups/{id}",
            P::ProjectGroupView,
            "Get a project group",
            projectgroups::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/projectgroups/{id}",
            P::ProjectGroupEdit,
            "Update a project group",
            projectgroups::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/projectgroups/{id}",
            P::ProjectGroupDelete,
            "Delete a project group",
            projectgroups::remove,
        )
        .add(
            M::GET,
            "/api/{space_id}/projectgroups/{id}/projects",
            P::ProjectView,
            "Projects of a group",
            projectgroups::projects,
        )
        // Lifecycles
        .add(
            M::GET,
            "/api/{space_id}/lifecycles",
            P::LifecycleView,
            "List lifecycles",
            lifecycles::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/lifecycles",
            P::LifecycleCreate,
            "Create a lifecycle",
            lifecycles::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/lifecycles/all",
            P::LifecycleView,
            "All lifecycles",
            lifecycles::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/lifecycles/{id}",
            P::LifecycleView,
            "Get a lifecycle",
            lifecycles::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/lifecycles/{id}",
            P::LifecycleEdit,
            "Update a lifecycle",
            lifecycles::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/lifecycles/{id}",
            P::LifecycleDelete,
            "Delete a lifecycle",
            lifecycles::remove,
        )
        // Projects
        .add(
            M::GET,
            "/api/{space_id}/projects",
            P::ProjectView,
            "List projects",
            projects::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/projects",
            P::ProjectCreate,
            "Create a project",
            projects::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/all",
            P::ProjectView,
            "All projects",
            projects::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}",
            P::ProjectView,
            "Get a project by id, slug or name",
            projects::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/projects/{id}",
            P::ProjectEdit,
            "Update a project",
            projects::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/projects/{id}",
            P::ProjectDelete,
            "Delete a project",
            projects::remove,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/channels",
            P::ProjectView,
            "Channels of a project",
            channels::for_project,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/releases",
            P::ReleaseView,
            "Releases of a project",
            releases::for_project,
        )
        .add(
            M::GET,
            "/api/{space_id}/interruptions",
            P::InterruptionView,
            "Interruptions (manual interventions) of the space",
            interruptions::list,
        )
        .add(
            M::GET,
            "/api/{space_id}/interruptions/{id}",
            P::InterruptionView,
            "An interruption",
            interruptions::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/interruptions/{id}/responsible",
            P::InterruptionView,
            "Who has taken responsibility for an interruption",
            interruptions::responsible,
        )
        .add(
            M::PUT,
            "/api/{space_id}/interruptions/{id}/responsible",
            P::InterruptionSubmit,
            "Take responsibility for an interruption",
            interruptions::take_responsibility,
        )
        .add(
            M::POST,
            "/api/{space_id}/interruptions/{id}/submit",
            P::InterruptionSubmit,
            "Answer an interruption (Proceed or Abort, with notes)",
            interruptions::submit,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/progression",
            P::ReleaseView,
            "The project overview: its newest releases, their latest deployment per environment and where each can go next",
            progression::progression,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/releases/{version}",
            P::ReleaseView,
            "A project's release by version",
            releases::by_version,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/deploymentprocesses",
            P::ProcessView,
            "A project's deployment process",
            process::get_for_project,
        )
        .add(
            M::PUT,
            "/api/{space_id}/projects/{id}/deploymentprocesses",
            P::ProcessEdit,
            "Update a project's deployment process",
            process::put_for_project,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/variables",
            P::VariableView,
            "A project's variable set",
            variables::get_for_project,
        )
        .add(
            M::GET,
            "/api/{space_id}/projects/{id}/variables/explain",
            P::VariableView,
            "Which value of each variable wins in a context, and why",
            variables::explain,
        )
        // Channels
        .add(
            M::GET,
            "/api/{space_id}/channels",
            P::ProjectView,
            "List channels",
            channels::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/channels",
            P::ProjectEdit,
            "Create a channel",
            channels::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/channels/rule-test",
            P::ProjectView,
            "Test a version against a channel rule's range and tag",
            channels::rule_test,
        )
        .add(
            M::POST,
            "/api/{space_id}/channels/rule-test",
            P::ProjectView,
            "Test a version against a channel rule's range and tag",
            channels::rule_test,
        )
        .add(
            M::GET,
            "/api/{space_id}/channels/{id}",
            P::ProjectView,
            "Get a channel",
            channels::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/channels/{id}",
            P::ProjectEdit,
            "Update a channel",
            channels::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/channels/{id}",
            P::ProjectEdit,
            "Delete a channel",
            channels::remove,
        )
        // Deployment processes and variables
        .add(
            M::GET,
            "/api/{space_id}/deploymentprocesses",
            P::ProcessView,
            "List deployment processes",
            process::list,
        )
        .add(
            M::GET,
            "/api/{space_id}/deploymentprocesses/{id}",
            P::ProcessView,
            "Get a deployment process or snapshot",
            process::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/deploymentprocesses/{id}",
            P::ProcessEdit,
            "Update a deployment process",
            process::put,
        )
        .add(
            M::GET,
            "/api/{space_id}/variables/{id}",
            P::VariableView,
            "Get a variable set or snapshot",
            variables::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/variables/{id}",
            P::VariableEdit,
            "Update a variable set",
            variables::put,
        )
        // Library variable sets
        .add(
            M::GET,
            "/api/{space_id}/libraryvariablesets",
            P::LibraryVariableSetView,
            "List library variable sets",
            libraryvariablesets::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/libraryvariablesets",
            P::LibraryVariableSetCreate,
            "Create a library variable set",
            libraryvariablesets::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/libraryvariablesets/all",
            P::LibraryVariableSetView,
            "All library variable sets",
            libraryvariablesets::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/libraryvariablesets/{id}",
            P::LibraryVariableSetView,
            "Get a library variable set",
            libraryvariablesets::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/libraryvariablesets/{id}",
            P::LibraryVariableSetEdit,
            "Update a library variable set",
            libraryvariablesets::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/libraryvariablesets/{id}",
            P::LibraryVariableSetDelete,
            "Delete a library variable set",
            libraryvariablesets::remove,
        )
        // Artifacts
        .add(
            M::GET,
            "/api/{space_id}/artifacts",
            P::ArtifactView,
            "List artifacts (regarding a task, deployment, release, project or environment)",
            artifacts::list,
        )
        .add(
            M::GET,
            "/api/{space_id}/artifacts/{id}",
            P::ArtifactView,
            "Get an artifact",
            artifacts::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/artifacts/{id}/content",
            P::ArtifactView,
            "Download an artifact's file",
            artifacts::content,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/artifacts/{id}",
            P::ArtifactDelete,
            "Delete an artifact",
            artifacts::remove,
        )
        // Step templates (action templates)
        .add(
            M::GET,
            "/api/{space_id}/actiontemplates",
            P::ActionTemplateView,
            "List step templates",
            actiontemplates::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/actiontemplates",
            P::ActionTemplateCreate,
            "Create or import a step template",
            actiontemplates::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/actiontemplates/all",
            P::ActionTemplateView,
            "All step templates",
            actiontemplates::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/actiontemplates/{id}",
            P::ActionTemplateView,
            "Get a step template",
            actiontemplates::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/actiontemplates/{id}",
            P::ActionTemplateEdit,
            "Update a step template (a new version)",
            actiontemplates::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/actiontemplates/{id}",
            P::ActionTemplateDelete,
            "Delete a step template",
            actiontemplates::remove,
        )
        .add(
            M::GET,
            "/api/{space_id}/actiontemplates/{id}/versions/{version}",
            P::ActionTemplateView,
            "Get a version of a step template",
            actiontemplates::get_version,
        )
        .add(
            M::GET,
            "/api/{space_id}/actiontemplates/{id}/usage",
            P::ActionTemplateView,
            "The process steps using a step template",
            actiontemplates::usage,
        )
        .add(
            M::POST,
            "/api/{space_id}/actiontemplates/{id}/actionsUpdate",
            P::ProcessEdit,
            "Update steps using a step template to its latest version",
            actiontemplates::actions_update,
        )
        // Releases
        .add(
            M::GET,
            "/api/{space_id}/releases",
            P::ReleaseView,
            "List releases",
            releases::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/releases",
            P::ReleaseCreate,
            "Create a release",
            releases::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/releases/{id}",
            P::ReleaseView,
            "Get a release",
            releases::get,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/releases/{id}",
            P::ReleaseDelete,
            "Delete a release",
            releases::remove,
        )
        .add(
            M::POST,
            "/api/{space_id}/retention/releases",
            P::ReleaseDelete,
            "Apply the lifecycles' release retention now (dryRun=true only reports)",
            release_retention::run_now,
        )
        .add(
            M::GET,
            "/api/{space_id}/releases/{id}/deployments",
            P::DeploymentView,
            "Deployments of a release",
            deployments::for_release,
        )
        .add(
            M::GET,
            "/api/{space_id}/releases/{id}/deployments/template",
            P::ReleaseView,
            "Where a release can be deployed now (per tenant too), and whether the project changed since",
            deploytemplate::template,
        )
        .add(
            M::GET,
            "/api/{space_id}/releases/{id}/progression",
            P::ReleaseView,
            "Where a release may be deployed next",
            releases::progression,
        )
        .add(
            M::GET,
            "/api/{space_id}/releases/{id}/compare/{other_id}",
            P::ReleaseView,
            "Compare two releases of a project",
            releasediff::compare,
        )
        .add(
            M::GET,
            "/api/{space_id}/releases/{id}/defects",
            P::ReleaseView,
            "Reasons a release was prevented from progressing",
            releases::defects,
        )
        .add(
            M::POST,
            "/api/{space_id}/releases/{id}/defects",
            P::ReleaseEdit,
            "Prevent a release from progressing (with a reason)",
            releases::prevent_progression,
        )
        .add(
            M::POST,
            "/api/{space_id}/releases/{id}/defects/resolve",
            P::ReleaseEdit,
            "Allow a release to progress again",
            releases::allow_progression,
        )
        .add(
            M::POST,
            "/api/{space_id}/releases/{id}/snapshot-variables",
            P::ReleaseEdit,
            "Take new snapshots of a release's variables",
            releases::snapshot_variables,
        )
        .add(
            M::POST,
            "/api/{space_id}/releases/create/v1",
            P::ReleaseCreate,
            "Create a release (executions API)",
            executions::create_release,
        )
        // Dashboard
        .add(
            M::GET,
            "/api/{space_id}/dashboard",
            P::DeploymentView,
            "Current deployment of every project and environment, paged by project group",
            dashboard::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/dashboard/dynamic",
            P::DeploymentView,
            "Current deployments of the given projects and environments",
            dashboard::dynamic,
        )
        // Deployments
        .add(
            M::GET,
            "/api/{space_id}/deployments",
            P::DeploymentView,
            "List deployments",
            deployments::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/deployments",
            P::DeploymentCreate,
            "Create a deployment",
            deployments::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/deployments/{id}",
            P::DeploymentView,
            "Get a deployment",
            deployments::get,
        )
        .add(
            M::POST,
            "/api/{space_id}/deployments/create/untenanted/v1",
            P::DeploymentCreate,
            "Deploy a release (executions API)",
            executions::deploy_untenanted,
        )
        .add(
            M::POST,
            "/api/{space_id}/deployments/create/tenanted/v1",
            P::DeploymentCreate,
            "Deploy a release to tenants (executions API)",
            executions::deploy_tenanted,
        )
        // Tag sets
        .add(
            M::GET,
            "/api/{space_id}/tagsets",
            P::TagSetView,
            "List tag sets",
            tagsets::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/tagsets",
            P::TagSetCreate,
            "Create a tag set",
            tagsets::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/tagsets/all",
            P::TagSetView,
            "All tag sets",
            tagsets::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/tagsets/{id}",
            P::TagSetView,
            "Get a tag set",
            tagsets::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/tagsets/{id}",
            P::TagSetEdit,
            "Update a tag set",
            tagsets::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/tagsets/{id}",
            P::TagSetDelete,
            "Delete a tag set",
            tagsets::remove,
        )
        // Tenants
        .add(
            M::GET,
            "/api/{space_id}/tenants",
            P::TenantView,
            "List tenants",
            tenants::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/tenants",
            P::TenantCreate,
            "Create a tenant",
            tenants::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/tenants/all",
            P::TenantView,
            "All tenants",
            tenants::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/tenants/variables-missing",
            P::TenantView,
            "Tenant variables that have no value",
            tenants::variables_missing,
        )
        .add(
            M::GET,
            "/api/{space_id}/tenants/{id}",
            P::TenantView,
            "Get a tenant",
            tenants::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/tenants/{id}",
            P::TenantEdit,
            "Update a tenant",
            tenants::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/tenants/{id}",
            P::TenantDelete,
            "Delete a tenant",
            tenants::remove,
        )
        .add(
            M::GET,
            "/api/{space_id}/tenants/{id}/variables",
            P::VariableView,
            "A tenant's variable values",
            tenants::get_variables,
        )
        .add(
            M::PUT,
            "/api/{space_id}/tenants/{id}/variables",
            P::VariableEdit,
            "Update a tenant's variable values",
            tenants::put_variables,
        )
        // Deployment freezes
        .add(
            M::GET,
            "/api/{space_id}/deploymentfreezes",
            P::DeploymentFreezeView,
            "List deployment freezes",
            freezes::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/deploymentfreezes",
            P::DeploymentFreezeAdminister,
            "Create a deployment freeze",
            freezes::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/deploymentfreezes/{id}",
            P::DeploymentFreezeView,
            "Get a deployment freeze",
            freezes::get,
        )
        .add(
            M::PUT,
            "/api/{space_id}/deploymentfreezes/{id}",
            P::DeploymentFreezeAdminister,
            "Update a deployment freeze",
            freezes::update,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/deploymentfreezes/{id}",
            P::DeploymentFreezeAdminister,
            "Delete a deployment freeze",
            freezes::remove,
        )
        // Tasks
        .add(
            M::GET,
            "/api/tasks",
            P::TaskView,
            "List tasks in every space",
            tasks::list_all,
        )
        .add(
            M::GET,
            "/api/tasks/{id}",
            P::TaskView,
            "Get a task",
            tasks::get_any,
        )
        .add(
            M::GET,
            "/api/tasks/{id}/details",
            P::TaskView,
            "A task with its log tree",
            tasks::details_any,
        )
        .add(
            M::GET,
            "/api/tasks/{id}/raw",
            P::TaskView,
            "A task's log as text",
            tasks::raw_any,
        )
        .add(
            M::POST,
            "/api/tasks/{id}/cancel",
            P::TaskCancel,
            "Cancel a task",
            tasks::cancel_any,
        )
        .add(
            M::POST,
            "/api/spaces/{space_id}/tasks/{id}/cancel",
            P::TaskCancel,
            "Cancel a task (Go CLI route)",
            tasks::cancel,
        )
        .add(
            M::POST,
            "/api/tasks",
            P::MachineEdit,
            "Queue a health check task (default space)",
            tasks::create_default,
        )
        .add(
            M::POST,
            "/api/{space_id}/tasks",
            P::MachineEdit,
            "Queue a health check task",
            tasks::create,
        )
        .add(
            M::GET,
            "/api/{space_id}/tasks",
            P::TaskView,
            "List tasks",
            tasks::list,
        )
        .add(
            M::GET,
            "/api/{space_id}/tasks/{id}",
            P::TaskView,
            "Get a task",
            tasks::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/tasks/{id}/details",
            P::TaskView,
            "A task with its log tree",
            tasks::details,
        )
        .add(
            M::GET,
            "/api/{space_id}/tasks/{id}/raw",
            P::TaskView,
            "A task's log as text",
            tasks::raw,
        )
        .add(
            M::POST,
            "/api/{space_id}/tasks/{id}/cancel",
            P::TaskCancel,
            "Cancel a task",
            tasks::cancel,
        )
        // Events
        .add(
            M::GET,
            "/api/events",
            P::EventView,
            "List audit events",
            events::list_all,
        )
        .add(
            M::GET,
            "/api/events/{id}",
            P::EventView,
            "Get an audit event",
            events::get,
        )
        .add(
            M::GET,
            "/api/{space_id}/events",
            P::EventView,
            "List a space's audit events",
            events::list,
        )
        // Feeds
        .add(
            M::GET,
            "/api/{space_id}/feeds",
            P::FeedView,
            "List feeds",
            misc::feeds,
        )
        .add(
            M::GET,
            "/api/{space_id}/feeds/{id}",
            P::FeedView,
            "Get a feed",
            misc::feed,
        )
        .add(
            M::GET,
            "/api/{space_id}/feeds/{id}/packages",
            P::FeedView,
            "Search a feed's packages (latest version of each unless includeMultipleVersions)",
            packages::feed_packages,
        )
        .add(
            M::GET,
            "/api/{space_id}/feeds/{id}/packages/versions",
            P::FeedView,
            "Versions of a package in a feed, highest first",
            packages::feed_versions,
        )
        .add(
            M::GET,
            "/api/{space_id}/feeds/{id}/packages/search",
            P::FeedView,
            "Package ids in a feed containing a term",
            packages::feed_search,
        )
        .add(
            M::POST,
            "/api/{space_id}/feeds/{id}/retention",
            P::BuiltInFeedAdminister,
            "Apply a retention policy to the built-in feed now",
            retention::apply,
        )
        // The built-in feed's packages
        .add_streaming(
            M::POST,
            "/api/{space_id}/packages/raw",
            P::BuiltInFeedPush,
            "Push a package (multipart, streamed; overwriting needs BuiltInFeedAdminister)",
            packages::push,
        )
        .add(
            M::GET,
            "/api/{space_id}/packages",
            P::FeedView,
            "List the built-in feed's packages",
            packages::list,
        )
        .add(
            M::GET,
            "/api/{space_id}/packages/all",
            P::FeedView,
            "All of the built-in feed's packages",
            packages::all,
        )
        .add(
            M::GET,
            "/api/{space_id}/packages/{id}",
            P::FeedView,
            "Get a package",
            packages::get,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/packages/{id}",
            P::BuiltInFeedAdminister,
            "Delete a package",
            packages::remove,
        )
        .add(
            M::GET,
            "/api/{space_id}/packages/{id}/raw",
            P::BuiltInFeedDownload,
            "Download a package's file",
            packages::raw,
        )
        .add(
            M::GET,
            "/api/{space_id}/packages/{id}/{version}/delta-signature",
            P::FeedView,
            "Delta signature of a package (404: whole uploads only)",
            packages::delta_signature,
        )
        // Build information
        .add(
            M::GET,
            "/api/{space_id}/build-information",
            P::FeedView,
            "List build information",
            buildinfo::list,
        )
        .add(
            M::POST,
            "/api/{space_id}/build-information",
            P::BuildInformationPush,
            "Push build information (overwriting needs BuildInformationAdminister)",
            buildinfo::push,
        )
        .add(
            M::GET,
            "/api/{space_id}/build-information/{id}",
            P::FeedView,
            "Get build information",
            buildinfo::get,
        )
        .add(
            M::DELETE,
            "/api/{space_id}/build-information/{id}",
            P::BuildInformationAdminister,
            "Delete build information",
            buildinfo::remove,
        )
        .with(users::routes)
        .with(teams::routes)
        .with(subscriptions::routes)
        .with(event_archives::routes);
    (r.router, r.table)
}

/// The table alone.
pub fn table() -> RouteTable {
    build().1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tidy: every route has a summary and a non-duplicated (method, path).
    #[test]
    fn table_is_consistent() {
        let t = table();
        let mut seen = std::collections::HashSet::new();
        for s in &t.specs {
            assert!(!s.summary.is_empty());
            assert!(
                seen.insert((s.method.clone(), s.path)),
                "duplicate {} {}",
                s.method,
                s.path
            );
        }
        assert!(t.specs.len() > 60);
        assert_eq!(
            t.permission(&Method::GET, "/api"),
            Some(Permission::Anonymous)
        );
        assert_eq!(t.permission(&Method::GET, "/api/nope"), None);
    }
}
