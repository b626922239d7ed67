//! Following a task's log while it runs.
//!
//! `/raw` is re-rendered on every request (its header and activity statuses change), so it
//! cannot be followed by counting lines. `/details` carries the activity tree, whose log
//! elements only grow; [`LogCursor`] remembers how much of each activity was already seen
//! and returns only what is new.

use std::collections::HashMap;

use serde_json::Value;

/// Something new in a task's log, in the order the log reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// An activity (the task, a step, an action, a target) appeared. `depth` 0 is the root.
    Activity { depth: usize, name: String },
    /// A log element of an activity.
    Line {
        depth: usize,
        category: String,
        occurred_at: String,
        message: String,
    },
}

/// How much of a task's activity tree has been seen.
#[derive(Debug, Default)]
pub struct LogCursor {
    /// Activity key → number of its log elements already returned.
    seen: HashMap<String, usize>,
}

impl LogCursor {
    /// Returns what `details` (a ServerTaskDetails document) holds that earlier calls did not.
    pub fn advance(&mut self, details: &Value) -> Vec<LogEvent> {
        let mut events = Vec::new();
        let roots = details
            .get("ActivityLogs")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (index, activity) in roots.iter().enumerate() {
            self.walk(activity, 0, &index.to_string(), &mut events);
        }
        events
    }

    fn walk(&mut self, activity: &Value, depth: usize, path: &str, events: &mut Vec<LogEvent>) {
        let text = |value: &Value, key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let key = activity
            .get("Id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("#{path}"), str::to_owned);
        let seen = match self.seen.get(&key) {
            Some(seen) => *seen,
            None => {
                events.push(LogEvent::Activity {
                    depth,
                    name: text(activity, "Name"),
                });
                0
            }
        };
        let elements = activity
            .get("LogElements")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for element in elements.iter().skip(seen) {
            events.push(LogEvent::Line {
                depth,
                category: text(element, "Category"),
                occurred_at: text(element, "OccurredAt"),
                message: text(element, "MessageText"),
            });
        }
        self.seen.insert(key, seen.max(elements.len()));
        let children = activity
            .get("Children")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (index, child) in children.iter().enumerate() {
            self.walk(child, depth + 1, &format!("{path}/{index}"), events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn element(message: &str) -> Value {
        json!({"Category": "Info", "OccurredAt": "2025-05-01T10:00:01.000+00:00", "MessageText": message})
    }

    fn line(depth: usize, message: &str) -> LogEvent {
        LogEvent::Line {
            depth,
            category: "Info".into(),
            occurred_at: "2025-05-01T10:00:01.000+00:00".into(),
            message: message.into(),
        }
    }

    fn activity(depth: usize, name: &str) -> LogEvent {
        LogEvent::Activity {
            depth,
            name: name.into(),
        }
    }

    #[test]
    fn only_new_activities_and_lines_are_returned() {
        let mut cursor = LogCursor::default();
        let first = json!({"ActivityLogs": [{"Id": "A", "Name": "Deploy", "LogElements": [element("queued")],
            "Children": [{"Id": "B", "Name": "Step 1", "LogElements": [element("one")], "Children": []}]}]});
        assert_eq!(
            cursor.advance(&first),
            vec![
                activity(0, "Deploy"),
                line(0, "queued"),
                activity(1, "Step 1"),
                line(1, "one")
            ]
        );
        assert_eq!(cursor.advance(&first), vec![]);

        let second = json!({"ActivityLogs": [{"Id": "A", "Name": "Deploy", "Status": "Success",
            "LogElements": [element("queued")],
            "Children": [
                {"Id": "B", "Name": "Step 1", "LogElements": [element("one"), element("two")], "Children": []},
                {"Id": "C", "Name": "Step 2", "LogElements": [element("three")], "Children": []}]}]});
        assert_eq!(
            cursor.advance(&second),
            vec![line(1, "two"), activity(1, "Step 2"), line(1, "three")]
        );
    }

    #[test]
    fn activities_without_ids_are_tracked_by_position() {
        let mut cursor = LogCursor::default();
        let details = json!({"ActivityLogs": [{"Name": "Deploy", "LogElements": [element("x")]}]});
        assert_eq!(cursor.advance(&details).len(), 2);
        assert_eq!(cursor.advance(&details), vec![]);
    }

    #[test]
    fn a_document_without_activities_yields_nothing() {
        let mut cursor = LogCursor::default();
        assert_eq!(cursor.advance(&json!({"Task": {}})), vec![]);
        assert_eq!(cursor.advance(&Value::Null), vec![]);
    }
}
