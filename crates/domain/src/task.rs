//! Server tasks: their states, and the vocabulary of the hierarchical task log.

use serde::{Deserialize, Serialize};

/// The state of a server task, spelled exactly as Octopus spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Queued,
    Executing,
    Cancelling,
    Success,
    Failed,
    Canceled,
    TimedOut,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Executing,
        TaskState::Cancelling,
        TaskState::Success,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "Queued",
            TaskState::Executing => "Executing",
            TaskState::Cancelling => "Cancelling",
            TaskState::Success => "Success",
            TaskState::Failed => "Failed",
            TaskState::Canceled => "Canceled",
            TaskState::TimedOut => "TimedOut",
        }
    }

    /// Parses a state case-insensitively.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// `IsCompleted`: true exactly for the terminal states. `Cancelling` is not completed.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::Canceled | TaskState::TimedOut
        )
    }

    /// `FinishedSuccessfully`: true only for `Success`.
    pub fn finished_successfully(self) -> bool {
        self == TaskState::Success
    }

    /// Whether the task is running or about to (not terminal).
    pub fn is_active(self) -> bool {
        !self.is_completed()
    }
}

/// The status of one activity (a node of the task log tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActivityStatus {
    Pending,
    Running,
    Success,
    Failed,
    Skipped,
    SuccessWithWarning,
    Canceled,
}

impl ActivityStatus {
    pub const ALL: [ActivityStatus; 7] = [
        ActivityStatus::Pending,
        ActivityStatus::Running,
        ActivityStatus::Success,
        ActivityStatus::Failed,
        ActivityStatus::Skipped,
        ActivityStatus::SuccessWithWarning,
        ActivityStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Pending => "Pending",
            ActivityStatus::Running => "Running",
            ActivityStatus::Success => "Success",
            ActivityStatus::Failed => "Failed",
            ActivityStatus::Skipped => "Skipped",
            ActivityStatus::SuccessWithWarning => "SuccessWithWarning",
            ActivityStatus::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> ActivityStatus {
        ActivityStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or(ActivityStatus::Pending)
    }
}

/// The category (level) of one task log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogCategory {
    Verbose,
    Info,
    Highlight,
    Wait,
    Warning,
    Error,
    Fatal,
}

impl LogCategory {
    pub const ALL: [LogCategory; 7] = [
        LogCategory::Verbose,
        LogCategory::Info,
        LogCategory::Highlight,
        LogCategory::Wait,
        LogCategory::Warning,
        LogCategory::Error,
        LogCategory::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogCategory::Verbose => "Verbose",
            LogCategory::Info => "Info",
            LogCategory::Highlight => "Highlight",
            LogCategory::Wait => "Wait",
            LogCategory::Warning => "Warning",
            LogCategory::Error => "Error",
            LogCategory::Fatal => "Fatal",
        }
    }

    pub fn parse(s: &str) -> LogCategory {
        LogCategory::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or(LogCategory::Info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_rules() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(
                s.is_completed(),
                matches!(
                    s,
                    TaskState::Success
                        | TaskState::Failed
                        | TaskState::Canceled
                        | TaskState::TimedOut
                )
            );
            assert_eq!(s.finished_successfully(), s == TaskState::Success);
        }
        assert!(!TaskState::Cancelling.is_completed());
        assert_eq!(TaskState::parse("executing"), Some(TaskState::Executing));
        assert_eq!(TaskState::parse("Running"), None);
    }
}
