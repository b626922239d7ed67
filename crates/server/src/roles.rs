//! The built-in user roles: named bundles of Octopus's permission names, with Octopus's ids
//! (`userroles-projectdeployer`) and names ("Project deployer"). Custom roles are documents
//! (collection `UserRoles`). See `docs/permissions.md`.

use crate::routes::Permission;
use crate::routes::Permission as P;

/// A role: its space-level and system-level permissions.
#[derive(Clone, Debug)]
pub struct RoleDef {
    pub id: String,
    pub name: String,
    pub description: String,
    pub space: Vec<Permission>,
    pub system: Vec<Permission>,
    pub built_in: bool,
}

/// What every viewing role sees of a space.
const VIEW: &[Permission] = &[
    P::SpaceView,
    P::ProjectView,
    P::ProcessView,
    P::VariableView,
    P::ReleaseView,
    P::DeploymentView,
    P::TaskView,
    P::EnvironmentView,
    P::MachineView,
    P::MachinePolicyView,
    P::WorkerView,
    P::LifecycleView,
    P::ProjectGroupView,
    P::TenantView,
    P::TagSetView,
    P::LibraryVariableSetView,
    P::ActionTemplateView,
    P::FeedView,
    P::ArtifactView,
    P::InterruptionView,
    P::EventView,
    P::TriggerView,
    P::DeploymentFreezeView,
    P::CertificateView,
    P::TeamView,
];

const CONTRIBUTE: &[Permission] = &[
    P::ProjectEdit,
    P::ProcessEdit,
    P::VariableEdit,
    P::TriggerCreate,
    P::TriggerEdit,
    P::TriggerDelete,
    P::ArtifactCreate,
    P::LibraryVariableSetView,
];

const DEPLOY: &[Permission] = &[
    P::DeploymentCreate,
    P::InterruptionSubmit,
    P::TaskCancel,
    P::TaskCreate,
    P::ArtifactCreate,
    P::BuiltInFeedDownload,
];

const RELEASE: &[Permission] = &[
    P::ReleaseCreate,
    P::ReleaseEdit,
    P::ReleaseDelete,
    P::ArtifactDelete,
    P::BuiltInFeedDownload,
];

const ENVIRONMENTS: &[Permission] = &[
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
    P::CertificateView,
    P::TenantView,
    P::TagSetView,
    P::SpaceView,
];

fn join(parts: &[&[Permission]]) -> Vec<Permission> {
    let mut out: Vec<Permission> = Vec::new();
    for part in parts {
        for p in *part {
            if !out.contains(p) {
                out.push(*p);
            }
        }
    }
    out
}

fn role(
    id: &str,
    name: &str,
    description: &str,
    space: Vec<Permission>,
    system: Vec<Permission>,
) -> RoleDef {
    RoleDef {
        id: id.to_string(),
        name: name.to_string(),
        description: description.to_string(),
        space,
        system,
        built_in: true,
    }
}

pub const SYSTEM_ADMINISTRATOR: &str = "userroles-systemadministrator";
pub const SPACE_MANAGER: &str = "userroles-spacemanager";

/// The built-in roles, in Octopus's order.
pub fn built_in() -> Vec<RoleDef> {
    let all_space: Vec<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|p| !p.is_system())
        .collect();
    let all_system: Vec<Permission> = Permission::ALL
        .iter()
        .copied()
        .filter(|p| p.is_system())
        .collect();
    vec![
        role(
            SYSTEM_ADMINISTRATOR,
            "System administrator",
            "Everything, in every space, including server configuration.",
            all_space.clone(),
            all_system.clone(),
        ),
        role(
            "userroles-systemmanager",
            "System manager",
            "Everything at system level except administering the server itself.",
            Vec::new(),
            all_system
                .into_iter()
                .filter(|p| *p != P::AdministerSystem)
                .collect(),
        ),
        role(
            SPACE_MANAGER,
            "Space manager",
            "Everything in a space.",
            all_space,
            Vec::new(),
        ),
        role(
            "userroles-projectviewer",
            "Project viewer",
            "Read-only access to projects, their releases and deployments.",
            join(&[VIEW]),
            Vec::new(),
        ),
        role(
            "userroles-projectcontributor",
            "Project contributor",
            "Project viewer, plus editing projects, their process and variables.",
            join(&[VIEW, CONTRIBUTE]),
            Vec::new(),
        ),
        role(
            "userroles-projectlead",
            "Project lead",
            "Project contributor, plus creating and editing releases (not deploying them).",
            join(&[VIEW, CONTRIBUTE, RELEASE]),
            Vec::new(),
        ),
        role(
            "userroles-projectdeployer",
            "Project deployer",
            "Project contributor, plus deploying releases (not creating them).",
            join(&[VIEW, CONTRIBUTE, DEPLOY]),
            Vec::new(),
        ),
        role(
            "userroles-projectinitiator",
            "Project initiator",
            "Creating projects.",
            join(&[
                &[P::ProjectCreate],
                &[
                    P::SpaceView,
                    P::ProjectView,
                    P::ProjectGroupView,
                    P::LifecycleView,
                    P::EnvironmentView,
                ],
            ]),
            Vec::new(),
        ),
        role(
            "userroles-releasecreator",
            "Release creator",
            "Creating releases.",
            join(&[
                &[P::ReleaseCreate, P::BuiltInFeedDownload],
                &[
                    P::SpaceView,
                    P::ProjectView,
                    P::ProcessView,
                    P::ReleaseView,
                    P::FeedView,
                    P::LifecycleView,
                    P::EnvironmentView,
                    P::ProjectGroupView,
                    P::TaskView,
                ],
            ]),
            Vec::new(),
        ),
        role(
            "userroles-deploymentcreator",
            "Deployment creator",
            "Deploying releases.",
            join(&[
                &[P::DeploymentCreate, P::InterruptionSubmit],
                &[
                    P::SpaceView,
                    P::ProjectView,
                    P::ReleaseView,
                    P::DeploymentView,
                    P::EnvironmentView,
                    P::LifecycleView,
                    P::TaskView,
                    P::InterruptionView,
                    P::ProjectGroupView,
                    P::TenantView,
                ],
            ]),
            Vec::new(),
        ),
        role(
            "userroles-buildserver",
            "Build server",
            "What a build server needs: pushing packages and build information, creating releases and deploying them.",
            join(&[
                &[
                    P::BuiltInFeedPush,
                    P::BuiltInFeedDownload,
                    P::BuildInformationPush,
                    P::ReleaseCreate,
                    P::DeploymentCreate,
                ],
                &[
                    P::SpaceView,
                    P::FeedView,
                    P::ProjectView,
                    P::ProcessView,
                    P::ReleaseView,
                    P::DeploymentView,
                    P::EnvironmentView,
                    P::LifecycleView,
                    P::TaskView,
                    P::ProjectGroupView,
                    P::TenantView,
                    P::InterruptionView,
                ],
            ]),
            Vec::new(),
        ),
        role(
            "userroles-environmentmanager",
            "Environment manager",
            "Environments, deployment targets, workers, accounts and machine policies.",
            join(&[ENVIRONMENTS]),
            Vec::new(),
        ),
        role(
            "userroles-environmentviewer",
            "Environment viewer",
            "Read-only access to environments and deployment targets.",
            vec![
                P::SpaceView,
                P::EnvironmentView,
                P::MachineView,
                P::MachinePolicyView,
                P::WorkerView,
            ],
            Vec::new(),
        ),
        role(
            "userroles-tenantmanager",
            "Tenant manager",
            "Tenants, their tags and variables.",
            vec![
                P::SpaceView,
                P::TenantView,
                P::TenantCreate,
                P::TenantEdit,
                P::TenantDelete,
                P::TagSetView,
                P::TagSetCreate,
                P::TagSetEdit,
                P::TagSetDelete,
                P::ProjectView,
                P::EnvironmentView,
                P::LibraryVariableSetView,
            ],
            Vec::new(),
        ),
        role(
            "userroles-packagepublisher",
            "Package publisher",
            "Pushing packages and build information to the built-in feed.",
            vec![
                P::SpaceView,
                P::FeedView,
                P::BuiltInFeedPush,
                P::BuiltInFeedDownload,
                P::BuildInformationPush,
            ],
            Vec::new(),
        ),
        role(
            "userroles-certificatemanager",
            "Certificate manager",
            "Certificates, including exporting private keys.",
            vec![
                P::SpaceView,
                P::CertificateView,
                P::CertificateCreate,
                P::CertificateEdit,
                P::CertificateDelete,
                P::CertificateExportPrivateKey,
                P::EnvironmentView,
                P::TenantView,
            ],
            Vec::new(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn built_in_roles_keep_space_and_system_permissions_apart() {
        for r in built_in() {
            assert!(r.space.iter().all(|p| !p.is_system()), "{}", r.name);
            assert!(r.system.iter().all(|p| p.is_system()), "{}", r.name);
        }
    }

    #[test]
    fn deployer_deploys_but_does_not_create_releases_and_lead_the_reverse() {
        let roles = built_in();
        let find = |id: &str| {
            roles
                .iter()
                .find(|r| r.id == id)
                .cloned()
                .expect("a built-in role")
        };
        let deployer = find("userroles-projectdeployer");
        let lead = find("userroles-projectlead");
        assert!(deployer.space.contains(&P::DeploymentCreate));
        assert!(!deployer.space.contains(&P::ReleaseCreate));
        assert!(lead.space.contains(&P::ReleaseCreate));
        assert!(!lead.space.contains(&P::DeploymentCreate));
    }

    #[test]
    fn every_permission_parses_back_from_its_name() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(&p.name()), Some(*p));
        }
        assert_eq!(
            Permission::parse("deploymentcreate"),
            Some(P::DeploymentCreate)
        );
        assert_eq!(Permission::parse("Nope"), None);
    }
}
