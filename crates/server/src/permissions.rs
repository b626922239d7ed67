//! Octopus's permission names as data: every permission, whether it is granted at system level or
//! in a space, and which scope dimensions (projects, environments, tenants) a role grant can
//! restrict it by. Permissions a dimension does not apply to are granted in full by a scoped grant
//! (as Octopus does). See `docs/permissions.md`.

use crate::routes::Permission;

/// The dimensions a grant can restrict a permission by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dims {
    pub project: bool,
    pub environment: bool,
    pub tenant: bool,
}

const NONE: Dims = Dims {
    project: false,
    environment: false,
    tenant: false,
};
const PROJECT: Dims = Dims {
    project: true,
    environment: false,
    tenant: false,
};
const PROJECT_ENV_TENANT: Dims = Dims {
    project: true,
    environment: true,
    tenant: true,
};
const ENV_TENANT: Dims = Dims {
    project: false,
    environment: true,
    tenant: true,
};
const TENANT: Dims = Dims {
    project: false,
    environment: false,
    tenant: true,
};

impl Permission {
    /// Every permission a role can hold (not `Anonymous`/`Authenticated`).
    pub const ALL: &[Permission] = {
        use Permission as P;
        &[
            P::AdministerSystem,
            P::SpaceView,
            P::SpaceCreate,
            P::SpaceEdit,
            P::EnvironmentView,
            P::EnvironmentCreate,
            P::EnvironmentEdit,
            P::EnvironmentDelete,
            P::MachineView,
            P::MachineCreate,
            P::MachineEdit,
            P::MachineDelete,
            P::MachinePolicyView,
            P::MachinePolicyEdit,
            P::WorkerView,
            P::WorkerEdit,
            P::AccountView,
            P::AccountCreate,
            P::AccountEdit,
            P::AccountDelete,
            P::ProjectGroupView,
            P::ProjectGroupCreate,
            P::ProjectGroupEdit,
            P::ProjectGroupDelete,
            P::LifecycleView,
            P::LifecycleCreate,
            P::LifecycleEdit,
            P::LifecycleDelete,
            P::ProjectView,
            P::ProjectCreate,
            P::ProjectEdit,
            P::ProjectDelete,
            P::ProcessView,
            P::ProcessEdit,
            P::VariableView,
            P::VariableEdit,
            P::LibraryVariableSetView,
            P::LibraryVariableSetCreate,
            P::LibraryVariableSetEdit,
            P::LibraryVariableSetDelete,
            P::ActionTemplateView,
            P::ActionTemplateCreate,
            P::ActionTemplateEdit,
            P::ActionTemplateDelete,
            P::ArtifactView,
            P::ArtifactDelete,
            P::ReleaseView,
            P::ReleaseCreate,
            P::ReleaseEdit,
            P::ReleaseDelete,
            P::DeploymentView,
            P::DeploymentCreate,
            P::DeploymentFreezeView,
            P::DeploymentFreezeAdminister,
            P::TenantView,
            P::TenantCreate,
            P::TenantEdit,
            P::TenantDelete,
            P::TagSetView,
            P::TagSetCreate,
            P::TagSetEdit,
            P::TagSetDelete,
            P::TaskView,
            P::TaskCancel,
            P::InterruptionView,
            P::InterruptionSubmit,
            P::EventView,
            P::FeedView,
            P::BuiltInFeedPush,
            P::BuiltInFeedAdminister,
            P::BuiltInFeedDownload,
            P::BuildInformationPush,
            P::BuildInformationAdminister,
            P::UserView,
            P::UserEdit,
            P::UserRoleView,
            P::UserRoleEdit,
            P::TeamView,
            P::TeamCreate,
            P::TeamEdit,
            P::TeamDelete,
            P::ConfigureServer,
            P::SpaceDelete,
            P::SubscriptionView,
            P::SubscriptionCreate,
            P::SubscriptionEdit,
            P::SubscriptionDelete,
            P::EventRetentionView,
            P::EventRetentionDelete,
            P::ArtifactCreate,
            P::DeploymentDelete,
            P::TaskCreate,
            P::FeedEdit,
            P::TriggerView,
            P::TriggerCreate,
            P::TriggerEdit,
            P::TriggerDelete,
            P::CertificateView,
            P::CertificateCreate,
            P::CertificateEdit,
            P::CertificateDelete,
            P::CertificateExportPrivateKey,
        ]
    };

    /// The permission called `name` (Octopus's spelling, case-insensitive).
    pub fn parse(name: &str) -> Option<Permission> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Granted at system level (by a grant without a space), not per space.
    pub fn is_system(self) -> bool {
        use Permission as P;
        matches!(
            self,
            P::AdministerSystem
                | P::ConfigureServer
                | P::SpaceCreate
                | P::SpaceDelete
                | P::UserView
                | P::UserEdit
                | P::UserRoleView
                | P::UserRoleEdit
                | P::EventRetentionView
                | P::EventRetentionDelete
        )
    }

    /// The dimensions a scoped grant restricts this permission by.
    pub fn dims(self) -> Dims {
        use Permission as P;
        match self {
            P::ProjectView
            | P::ProjectEdit
            | P::ProjectDelete
            | P::ProcessView
            | P::ProcessEdit
            | P::ReleaseView
            | P::ReleaseCreate
            | P::ReleaseEdit
            | P::ReleaseDelete
            | P::TriggerView
            | P::TriggerCreate
            | P::TriggerEdit
            | P::TriggerDelete => PROJECT,
            P::DeploymentView
            | P::DeploymentCreate
            | P::DeploymentDelete
            | P::TaskView
            | P::TaskCancel
            | P::TaskCreate
            | P::InterruptionView
            | P::InterruptionSubmit
            | P::ArtifactView
            | P::ArtifactCreate
            | P::ArtifactDelete
            | P::EventView
            | P::VariableView
            | P::VariableEdit => PROJECT_ENV_TENANT,
            P::EnvironmentView
            | P::EnvironmentEdit
            | P::EnvironmentDelete
            | P::MachineView
            | P::MachineCreate
            | P::MachineEdit
            | P::MachineDelete => ENV_TENANT,
            P::TenantView | P::TenantEdit | P::TenantDelete => TENANT,
            _ => NONE,
        }
    }
}
