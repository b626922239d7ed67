//! Octopus-style identifiers: `Projects-12`, `Environments-3`, and derived ids such as
//! `deploymentprocess-Projects-1`.

/// The collections that get numbered ids, with the prefix their ids carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    Spaces,
    Environments,
    ProjectGroups,
    Projects,
    Lifecycles,
    Channels,
    Releases,
    Deployments,
    ServerTasks,
    Events,
    Users,
    ApiKeys,
    Feeds,
}

impl Collection {
    /// The id prefix, which is also the collection's name in the store.
    pub fn prefix(self) -> &'static str {
        match self {
            Collection::Spaces => "Spaces",
            Collection::Environments => "Environments",
            Collection::ProjectGroups => "ProjectGroups",
            Collection::Projects => "Projects",
            Collection::Lifecycles => "Lifecycles",
            Collection::Channels => "Channels",
            Collection::Releases => "Releases",
            Collection::Deployments => "Deployments",
            Collection::ServerTasks => "ServerTasks",
            Collection::Events => "Events",
            Collection::Users => "Users",
            Collection::ApiKeys => "APIKeys",
            Collection::Feeds => "Feeds",
        }
    }

    /// Makes the id for sequence number `n`.
    pub fn id(self, n: i64) -> String {
        format!("{}-{}", self.prefix(), n)
    }
}

/// The id of a project's deployment process.
pub fn deployment_process_id(project_id: &str) -> String {
    format!("deploymentprocess-{project_id}")
}

/// The id of a project's variable set.
pub fn variable_set_id(project_id: &str) -> String {
    format!("variableset-{project_id}")
}

/// Whether `s` has the shape of a space id (`Spaces-<digits>`, any case).
pub fn is_space_id(s: &str) -> bool {
    let Some((prefix, num)) = s.split_once('-') else {
        return false;
    };
    prefix.eq_ignore_ascii_case("spaces")
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
}

/// Turns a name into a URL slug the way Octopus does: lower case, runs of anything that is not
/// a letter or digit become one `-`, no leading or trailing `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("Hello World"), "hello-world");
        assert_eq!(slugify("  Fire--Project! 2 "), "fire-project-2");
        assert_eq!(slugify("Ünïcode Ok"), "ünïcode-ok");
    }

    #[test]
    fn space_ids() {
        assert!(is_space_id("Spaces-1"));
        assert!(is_space_id("spaces-22"));
        assert!(!is_space_id("Spaces-"));
        assert!(!is_space_id("Projects-1"));
        assert!(!is_space_id("spaces"));
    }
}
