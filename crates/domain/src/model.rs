//! The resources, shaped exactly as the Octopus REST API shows them (PascalCase), minus `Links`,
//! which the server adds. The store keeps these documents as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Built-in feed id, identical in every space.
pub const BUILTIN_FEED_ID: &str = "feeds-builtin";
/// The default space's id.
pub const DEFAULT_SPACE_ID: &str = "Spaces-1";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Space {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub is_default: bool,
    pub task_queue_stopped: bool,
    pub space_managers_teams: Vec<String>,
    pub space_managers_team_members: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Environment {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub sort_order: i64,
    pub use_guided_failure: bool,
    pub allow_dynamic_infrastructure: bool,
    pub extension_settings: Vec<Value>,
    pub environment_tags: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProjectGroup {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub environment_ids: Vec<String>,
    pub retention_policy_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RetentionPeriod {
    pub unit: String,
    pub quantity_to_keep: i64,
    pub should_keep_forever: bool,
}

impl Default for RetentionPeriod {
    fn default() -> Self {
        RetentionPeriod {
            unit: "Days".to_string(),
            quantity_to_keep: 0,
            should_keep_forever: true,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Phase {
    pub id: String,
    pub name: String,
    pub automatic_deployment_targets: Vec<String>,
    pub optional_deployment_targets: Vec<String>,
    pub minimum_environments_before_promotion: i64,
    pub is_optional_phase: bool,
    pub is_priority_phase: bool,
    pub release_retention_policy: Option<RetentionPeriod>,
    pub tentacle_retention_policy: Option<RetentionPeriod>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Lifecycle {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub release_retention_policy: RetentionPeriod,
    pub tentacle_retention_policy: RetentionPeriod,
    pub phases: Vec<Phase>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProjectConnectivityPolicy {
    pub allow_deployments_to_no_targets: bool,
    pub skip_machine_behavior: String,
    pub target_roles: Vec<String>,
    pub exclude_unhealthy_targets: bool,
}

impl Default for ProjectConnectivityPolicy {
    fn default() -> Self {
        ProjectConnectivityPolicy {
            allow_deployments_to_no_targets: false,
            skip_machine_behavior: "None".to_string(),
            target_roles: Vec::new(),
            exclude_unhealthy_targets: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VersioningStrategy {
    pub template: Option<String>,
    pub donor_package: Option<Value>,
    pub donor_package_step_id: Option<String>,
}

impl Default for VersioningStrategy {
    fn default() -> Self {
        VersioningStrategy {
            template: Some(
                "#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}"
                    .to_string(),
            ),
            donor_package: None,
            donor_package_step_id: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleaseCreationStrategy {
    pub release_creation_package: Option<Value>,
    pub channel_id: Option<String>,
    pub release_creation_package_step_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PersistenceSettings {
    #[serde(rename = "Type")]
    pub kind: String,
}

impl Default for PersistenceSettings {
    fn default() -> Self {
        PersistenceSettings {
            kind: "Database".to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Project {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub project_group_id: String,
    pub lifecycle_id: String,
    pub deployment_process_id: String,
    pub variable_set_id: String,
    pub is_disabled: bool,
    pub discrete_channel_release: bool,
    pub included_library_variable_set_ids: Vec<String>,
    pub tenanted_deployment_mode: String,
    pub default_guided_failure_mode: String,
    pub default_to_skip_if_already_installed: bool,
    pub auto_create_release: bool,
    pub auto_deploy_release_overrides: Vec<Value>,
    pub project_connectivity_policy: ProjectConnectivityPolicy,
    pub versioning_strategy: VersioningStrategy,
    pub release_creation_strategy: ReleaseCreationStrategy,
    pub is_version_controlled: bool,
    pub persistence_settings: PersistenceSettings,
    pub templates: Vec<Value>,
    pub extension_settings: Vec<Value>,
    pub project_tags: Vec<String>,
    pub cloned_from_project_id: Option<String>,
    /// Rendered as the notes of a release created without any (`docs/channels.md`).
    pub release_notes_template: Option<String>,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            id: String::new(),
            space_id: String::new(),
            name: String::new(),
            slug: String::new(),
            description: String::new(),
            project_group_id: String::new(),
            lifecycle_id: String::new(),
            deployment_process_id: String::new(),
            variable_set_id: String::new(),
            is_disabled: false,
            discrete_channel_release: false,
            included_library_variable_set_ids: Vec::new(),
            tenanted_deployment_mode: "Untenanted".to_string(),
            default_guided_failure_mode: "EnvironmentDefault".to_string(),
            default_to_skip_if_already_installed: false,
            auto_create_release: false,
            auto_deploy_release_overrides: Vec::new(),
            project_connectivity_policy: ProjectConnectivityPolicy::default(),
            versioning_strategy: VersioningStrategy::default(),
            release_creation_strategy: ReleaseCreationStrategy::default(),
            is_version_controlled: false,
            persistence_settings: PersistenceSettings::default(),
            templates: Vec::new(),
            extension_settings: Vec::new(),
            project_tags: Vec::new(),
            cloned_from_project_id: None,
            release_notes_template: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChannelRule {
    pub id: String,
    pub version_range: String,
    pub tag: String,
    pub action_packages: Vec<Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Channel {
    pub id: String,
    pub space_id: String,
    pub project_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub is_default: bool,
    pub lifecycle_id: Option<String>,
    pub tenant_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    pub rules: Vec<ChannelRule>,
    pub git_reference_rules: Vec<Value>,
    pub git_resource_rules: Vec<Value>,
    pub custom_field_definitions: Vec<Value>,
}

impl Default for Channel {
    fn default() -> Self {
        Channel {
            id: String::new(),
            space_id: String::new(),
            project_id: String::new(),
            name: String::new(),
            slug: String::new(),
            description: String::new(),
            is_default: false,
            lifecycle_id: None,
            tenant_tags: Vec::new(),
            kind: "Lifecycle".to_string(),
            rules: Vec::new(),
            git_reference_rules: Vec::new(),
            git_resource_rules: Vec::new(),
            custom_field_definitions: Vec::new(),
        }
    }
}

/// A package reference of an action.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PackageReference {
    pub id: String,
    pub name: String,
    pub package_id: String,
    pub feed_id: String,
    pub acquisition_location: String,
    pub properties: BTreeMap<String, String>,
}

/// An action: one configured instance of a step type. `Properties` values are always strings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentAction {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub action_type: String,
    pub is_disabled: bool,
    pub is_required: bool,
    pub can_be_used_for_project_versioning: bool,
    pub environments: Vec<String>,
    pub excluded_environments: Vec<String>,
    pub channels: Vec<String>,
    pub tenant_tags: Vec<String>,
    pub condition: String,
    pub notes: Option<String>,
    pub worker_pool_id: Option<String>,
    pub worker_pool_variable: Option<String>,
    pub step_package_version: Option<String>,
    pub container: Value,
    pub git_dependencies: Vec<Value>,
    pub packages: Vec<PackageReference>,
    pub properties: BTreeMap<String, String>,
}

impl Default for DeploymentAction {
    fn default() -> Self {
        DeploymentAction {
            id: String::new(),
            name: String::new(),
            slug: String::new(),
            action_type: String::new(),
            is_disabled: false,
            is_required: false,
            can_be_used_for_project_versioning: false,
            environments: Vec::new(),
            excluded_environments: Vec::new(),
            channels: Vec::new(),
            tenant_tags: Vec::new(),
            condition: "Success".to_string(),
            notes: None,
            worker_pool_id: None,
            worker_pool_variable: None,
            step_package_version: None,
            container: serde_json::json!({"Image": null, "FeedId": null}),
            git_dependencies: Vec::new(),
            packages: Vec::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// A step of a process: one or more actions, with conditions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentStep {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub condition: String,
    pub start_trigger: String,
    pub package_requirement: String,
    pub properties: BTreeMap<String, String>,
    pub actions: Vec<DeploymentAction>,
}

impl Default for DeploymentStep {
    fn default() -> Self {
        DeploymentStep {
            id: String::new(),
            name: String::new(),
            slug: String::new(),
            condition: "Success".to_string(),
            start_trigger: "StartAfterPrevious".to_string(),
            package_requirement: "LetOctopusDecide".to_string(),
            properties: BTreeMap::new(),
            actions: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentProcess {
    pub id: String,
    pub space_id: String,
    pub project_id: String,
    pub version: i64,
    pub last_snapshot_id: Option<String>,
    pub steps: Vec<DeploymentStep>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariableScope {
    pub environment: Vec<String>,
    pub role: Vec<String>,
    pub machine: Vec<String>,
    pub action: Vec<String>,
    pub channel: Vec<String>,
    pub tenant: Vec<String>,
    pub tenant_tag: Vec<String>,
    pub process_owner: Vec<String>,
}

impl VariableScope {
    pub fn is_empty(&self) -> bool {
        self.environment.is_empty()
            && self.role.is_empty()
            && self.machine.is_empty()
            && self.action.is_empty()
            && self.channel.is_empty()
            && self.tenant.is_empty()
            && self.tenant_tag.is_empty()
            && self.process_owner.is_empty()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Variable {
    pub id: String,
    pub name: String,
    pub value: Option<String>,
    pub description: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub is_sensitive: bool,
    pub is_editable: bool,
    pub prompt: Option<Value>,
    pub scope: VariableScope,
    /// A sensitive value sealed with the master key (stored only; never shown by the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_value: Option<String>,
}

impl Default for Variable {
    fn default() -> Self {
        Variable {
            id: String::new(),
            name: String::new(),
            value: None,
            description: String::new(),
            kind: "String".to_string(),
            is_sensitive: false,
            is_editable: true,
            prompt: None,
            scope: VariableScope::default(),
            sealed_value: None,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariableSet {
    pub id: String,
    pub space_id: String,
    pub owner_id: String,
    pub version: i64,
    pub variables: Vec<Variable>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SelectedPackage {
    pub action_name: String,
    pub step_name: String,
    pub package_reference_name: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Release {
    pub id: String,
    pub space_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub version: String,
    pub release_notes: Option<String>,
    pub assembled: String,
    pub ignore_channel_rules: bool,
    pub project_deployment_process_snapshot_id: String,
    pub project_variable_set_snapshot_id: String,
    pub library_variable_set_snapshot_ids: Vec<String>,
    pub selected_packages: Vec<SelectedPackage>,
    pub selected_git_resources: Vec<Value>,
    pub build_information: Vec<Value>,
    pub custom_fields: BTreeMap<String, String>,
    pub version_control_reference: Option<Value>,
    /// Reasons the release was prevented from progressing (Octopus's "defects"); stored with
    /// the release, shown through `/releases/{id}/defects` (`docs/channels.md`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defects: Vec<ReleaseDefect>,
}

/// A reason a release may not progress further (`Status` `Unresolved`), or one that was lifted
/// (`Resolved`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleaseDefect {
    pub id: String,
    pub description: String,
    pub status: String,
    pub created: String,
    pub created_by: String,
    pub resolved: Option<String>,
    pub resolved_by: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub project_id: String,
    pub release_id: String,
    pub channel_id: String,
    pub environment_id: String,
    pub tenant_id: Option<String>,
    pub task_id: String,
    pub deployment_process_id: String,
    pub manifest_variable_set_id: String,
    pub created: String,
    pub queue_time: Option<String>,
    pub queue_time_expiry: Option<String>,
    pub comments: String,
    pub form_values: BTreeMap<String, String>,
    /// Prompted values of sensitive variables, sealed (name → sealed value); never rendered.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed_form_values: BTreeMap<String, String>,
    pub skip_actions: Vec<String>,
    pub specific_machine_ids: Vec<String>,
    pub excluded_machine_ids: Vec<String>,
    pub deployed_to_machine_ids: Vec<String>,
    pub force_package_download: bool,
    pub force_package_redeployment: bool,
    pub use_guided_failure: bool,
    pub failure_encountered: bool,
    pub deployed_by: String,
    pub deployed_by_id: String,
    pub changes: Vec<Value>,
    pub changes_markdown: String,
    pub tentacle_retention_period: Option<RetentionPeriod>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Feed {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub feed_type: String,
    pub is_built_in_repo_sync_enabled: bool,
    pub delete_unreleased_packages_after_days: i64,
    pub package_acquisition_location_options: Vec<String>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            id: BUILTIN_FEED_ID.to_string(),
            space_id: DEFAULT_SPACE_ID.to_string(),
            name: "Octopus Server (built-in)".to_string(),
            slug: "octopus-server-built-in".to_string(),
            feed_type: "BuiltIn".to_string(),
            is_built_in_repo_sync_enabled: false,
            delete_unreleased_packages_after_days: 30,
            package_acquisition_location_options: vec![
                "Server".to_string(),
                "ExecutionTarget".to_string(),
            ],
        }
    }
}

/// Helpers on actions' string properties.
impl DeploymentAction {
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

/// Octopus writes booleans in properties as "True"/"False".
pub fn prop_is_true(v: Option<&str>) -> bool {
    v.is_some_and(|s| s.trim().eq_ignore_ascii_case("true"))
}

/// How the server reaches a deployment target:
/// - `TentaclePassive` (a listening agent: `Uri` is `https://host:port/`) and `TentacleActive`
///   (a polling agent: `Uri` is `poll://subscription/`); both pin the agent's certificate
///   `Thumbprint`.
/// - `Ssh`: `Host`, `Port` (22), the host key `Fingerprint` pinned at creation
///   (`SHA256:<base64>`, as `ssh-keygen -l` prints it) and the `AccountId` of an `SshKeyPair`
///   or `UsernamePassword` account; `Uri` is `ssh://host:port/`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    pub communication_style: String,
    pub uri: String,
    pub thumbprint: String,
    pub proxy_id: Option<String>,
    pub certificate_signature_algorithm: Option<String>,
    pub tentacle_version_details: Option<Value>,
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dot_net_core_platform: Option<String>,
}

/// An account in the space library (`/api/{space}/accounts`): credentials used by SSH targets.
/// `AccountType` is `SshKeyPair` (`Username`, a private key in PEM or OpenSSH format and an
/// optional passphrase) or `UsernamePassword` (`Username`, `Password`). Secrets are stored only
/// sealed with the master key (`ferry_crypto::account_aad(id, field)`, fields `PrivateKeyFile`,
/// `PrivateKeyPassphrase`, `Password`) and never returned: the API shows
/// `{"HasValue": bool, "NewValue": null}` in their place.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Account {
    pub id: String,
    pub space_id: String,
    pub account_type: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub environment_ids: Vec<String>,
    pub tenanted_deployment_participation: String,
    pub tenant_ids: Vec<String>,
    pub tenant_tags: Vec<String>,
    pub username: String,
    /// The private key (PEM/OpenSSH text), sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_private_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_private_key_passphrase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_password: Option<String>,
}

/// A deployment target (Octopus's machine resource).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Machine {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub is_disabled: bool,
    pub environment_ids: Vec<String>,
    pub roles: Vec<String>,
    pub tenant_ids: Vec<String>,
    pub tenant_tags: Vec<String>,
    /// `Untenanted | TenantedOrUntenanted | Tenanted`.
    pub tenanted_deployment_participation: String,
    pub machine_policy_id: String,
    /// `Healthy | HasWarnings | Unhealthy | Unavailable | Unknown`.
    pub health_status: String,
    /// Legacy: `Online | Offline | Unknown | NeedsUpgrade | CalamariNeedsUpgrade | Disabled`.
    pub status: String,
    pub status_summary: String,
    pub has_latest_calamari: bool,
    pub is_in_process: bool,
    pub thumbprint: String,
    pub uri: String,
    pub operating_system: String,
    pub shell_name: String,
    pub shell_version: String,
    pub endpoint: Endpoint,
    /// Workers only (collection `Workers`): the pools the worker serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub worker_pool_ids: Vec<String>,
}

/// A health-check script setting of a machine policy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineScriptPolicy {
    /// `InheritFromDefault | Inline | OnlyConnectivity`.
    pub run_type: String,
    pub script_body: Option<String>,
}

impl Default for MachineScriptPolicy {
    fn default() -> Self {
        MachineScriptPolicy {
            run_type: "InheritFromDefault".to_string(),
            script_body: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineHealthCheckPolicy {
    /// A .NET TimeSpan: `hh:mm:ss` or `d.hh:mm:ss`.
    pub health_check_interval: String,
    /// `RunScript | OnlyConnectivity`.
    pub health_check_type: String,
    pub bash_health_check_policy: MachineScriptPolicy,
}

impl Default for MachineHealthCheckPolicy {
    fn default() -> Self {
        MachineHealthCheckPolicy {
            health_check_interval: "00:10:00".to_string(),
            health_check_type: "RunScript".to_string(),
            bash_health_check_policy: MachineScriptPolicy::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineConnectivityPolicy {
    /// `ExpectedToBeOnline | MayBeOfflineAndCanBeSkipped`.
    pub machine_connectivity_behavior: String,
}

impl Default for MachineConnectivityPolicy {
    fn default() -> Self {
        MachineConnectivityPolicy {
            machine_connectivity_behavior: "ExpectedToBeOnline".to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachineCleanupPolicy {
    /// `DoNotDelete | DeleteUnavailableMachines`.
    pub delete_machines_behavior: String,
    /// A .NET TimeSpan: how long a machine stays unavailable before it is deleted.
    pub delete_machines_elapsed_time_span: String,
}

impl Default for MachineCleanupPolicy {
    fn default() -> Self {
        MachineCleanupPolicy {
            delete_machines_behavior: "DoNotDelete".to_string(),
            delete_machines_elapsed_time_span: "1.00:00:00".to_string(),
        }
    }
}

/// How targets of a space are health-checked and what unavailability means.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MachinePolicy {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub is_default: bool,
    pub machine_health_check_policy: MachineHealthCheckPolicy,
    pub machine_connectivity_policy: MachineConnectivityPolicy,
    pub machine_cleanup_policy: MachineCleanupPolicy,
}

/// The name of the policy every space starts with.
pub const DEFAULT_MACHINE_POLICY_NAME: &str = "Default Machine Policy";

/// A worker pool (`/api/{space}/workerpools`): workers that run steps not tied to a deployment
/// target ("run on a worker"). Every space has a default pool; while it has no workers, the
/// built-in worker serves it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerPool {
    pub id: String,
    pub space_id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub is_default: bool,
    pub sort_order: i64,
    /// `StaticWorkerPool` (the only kind Ferry has).
    pub worker_pool_type: String,
    pub can_add_workers: bool,
}

/// The name of the pool every space starts with.
pub const DEFAULT_WORKER_POOL_NAME: &str = "Default Worker Pool";
