//! Script modules: library variable sets with `ContentType: "ScriptModule"` hold the code in
//! `Octopus.Script.Module[Name]` and its language in `Octopus.Script.Module.Language[Name]`
//! (PowerShell when absent, as in Calamari). For a Bash or Python script, every module of the
//! same language is written next to the script, as Calamari does: the file name is the module
//! name's letters and digits (`Name.sh`, `Name.py`); a Bash script loads it with
//! `source Name.sh` (or `. ./Name.sh`), a Python script with `import Name`. Modules are never
//! loaded automatically. See `docs/scripts.md`.

use crate::bootstrap::PreparedFile;
use crate::target::Syntax;

const MODULE_PREFIX: &str = "Octopus.Script.Module[";
const LANGUAGE_PREFIX: &str = "Octopus.Script.Module.Language[";

/// The module's file name (letters and digits of its name, as Calamari), or `None` when nothing
/// is left or it would replace the script itself.
pub fn module_file_name(name: &str, syntax: Syntax) -> Option<String> {
    let base: String = name.chars().filter(|c| c.is_alphanumeric()).collect();
    if base.is_empty() || base == "script" {
        return None;
    }
    let ext = match syntax {
        Syntax::Bash => "sh",
        Syntax::Python => "py",
    };
    Some(format!("{base}.{ext}"))
}

/// The module files for a script of `syntax`, from the step's variables.
pub fn module_files(syntax: Syntax, vars: &[(String, String)]) -> Vec<PreparedFile> {
    let wanted = match syntax {
        Syntax::Bash => "bash",
        Syntax::Python => "python",
    };
    let mut out: Vec<PreparedFile> = Vec::new();
    for (name, body) in vars {
        let Some(module) = name
            .strip_prefix(MODULE_PREFIX)
            .and_then(|r| r.strip_suffix(']'))
        else {
            continue;
        };
        let language = vars
            .iter()
            .find(|(n, _)| {
                n.strip_prefix(LANGUAGE_PREFIX)
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|m| m.eq_ignore_ascii_case(module))
            })
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "powershell".to_string());
        if language != wanted {
            continue;
        }
        let Some(path) = module_file_name(module, syntax) else {
            continue;
        };
        if out.iter().any(|f| f.path == path) {
            continue;
        }
        out.push(PreparedFile {
            path,
            contents: body.replace("\r\n", "\n").into_bytes(),
            mode: 0o600,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn v(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn modules_of_the_script_language_are_written() {
        let vars = v(&[
            (
                "Octopus.Script.Module[My Helpers-1]",
                "say() { echo hi; }\r\n",
            ),
            ("Octopus.Script.Module.Language[My Helpers-1]", "Bash"),
            ("Octopus.Script.Module[PyTools]", "def f(): pass"),
            ("Octopus.Script.Module.Language[PyTools]", "Python"),
            ("Octopus.Script.Module[Ps]", "function X {}"),
            ("Octopus.Script.Module[script]", "echo clash"),
            ("Octopus.Script.Module.Language[script]", "Bash"),
        ]);
        let bash = module_files(Syntax::Bash, &vars);
        assert_eq!(bash.len(), 1);
        assert_eq!(bash[0].path, "MyHelpers1.sh");
        assert_eq!(bash[0].contents, b"say() { echo hi; }\n");
        let py = module_files(Syntax::Python, &vars);
        assert_eq!(py.len(), 1);
        assert_eq!(py[0].path, "PyTools.py");
        assert_eq!(
            module_file_name("../x", Syntax::Bash).as_deref(),
            Some("x.sh")
        );
    }
}
