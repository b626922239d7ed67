//! Where templates read variables from: the [`VariableSource`] trait and a simple map.

use std::borrow::Cow;
use std::collections::HashMap;

/// A read-only set of variables, looked up by name.
///
/// Names are case-insensitive: `get("octopus.action[Web].name")` must find a variable
/// stored as `Octopus.Action[Web].Name`. The engine asks for names spelled as the template
/// spells them, so an implementation keyed by lower-cased names answers in one hash lookup.
pub trait VariableSource {
    /// The raw (unevaluated) value of the variable called `name`, compared case-insensitively.
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;

    /// Calls `visit` with the name of every variable whose name starts with `prefix`,
    /// compared case-insensitively, in the source's own order.
    ///
    /// `#{each x in Endpoint}` uses this with the prefix `Endpoint[` to find the keys of an
    /// indexed group; the order of first appearance becomes the iteration order.
    fn visit_names_with_prefix(&self, prefix: &str, visit: &mut dyn FnMut(&str));
}

impl<T: VariableSource + ?Sized> VariableSource for &T {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        (**self).get(name)
    }

    fn visit_names_with_prefix(&self, prefix: &str, visit: &mut dyn FnMut(&str)) {
        (**self).visit_names_with_prefix(prefix, visit);
    }
}

/// A simple in-memory [`VariableSource`] that keeps insertion order.
///
/// Setting a name that already exists (in any letter case) replaces its value and keeps its
/// original position and spelling.
#[derive(Debug, Clone, Default)]
pub struct MapVariables {
    entries: Vec<Entry>,
    by_lower_name: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    lower_name: String,
    value: String,
}

impl MapVariables {
    /// An empty set of variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing any value it had.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        let lower_name = name.to_lowercase();
        match self.by_lower_name.get(&lower_name) {
            Some(&index) => {
                if let Some(entry) = self.entries.get_mut(index) {
                    entry.value = value;
                }
            }
            None => {
                self.by_lower_name
                    .insert(lower_name.clone(), self.entries.len());
                self.entries.push(Entry {
                    name,
                    lower_name,
                    value,
                });
            }
        }
        self
    }

    /// Builder-style [`MapVariables::set`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The variables as `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapVariables {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut vars = MapVariables::new();
        for (name, value) in iter {
            vars.set(name, value);
        }
        vars
    }
}

impl VariableSource for MapVariables {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        let index = *self.by_lower_name.get(&name.to_lowercase())?;
        self.entries
            .get(index)
            .map(|e| Cow::Borrowed(e.value.as_str()))
    }

    fn visit_names_with_prefix(&self, prefix: &str, visit: &mut dyn FnMut(&str)) {
        let prefix = prefix.to_lowercase();
        for entry in &self.entries {
            if entry.lower_name.starts_with(&prefix) {
                visit(&entry.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn lookups_ignore_case_and_replacing_keeps_position() {
        let mut vars = MapVariables::new();
        vars.set("Foo", "1").set("Bar", "2").set("FOO", "3");
        assert_eq!(vars.get("foo").as_deref(), Some("3"));
        assert_eq!(
            vars.iter().collect::<Vec<_>>(),
            [("Foo", "3"), ("Bar", "2")]
        );
        let mut seen = Vec::new();
        vars.visit_names_with_prefix("B", &mut |n| seen.push(n.to_string()));
        assert_eq!(seen, ["Bar"]);
    }
}
