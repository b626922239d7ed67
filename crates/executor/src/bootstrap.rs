//! How a script step is turned into files and a command line, the way Octopus's Calamari does it:
//! a bootstrap defines the Octopus helper functions (`get_octopusvariable`,
//! `set_octopusvariable`, `new_octopusartifact`/`createartifact`, `fail_step`/`failstep`,
//! `write_*`/`print*`, …) and then runs the user's script in the same shell (Bash: `source`) or
//! with the helpers in its globals (Python: `runpy.run_path`).
//!
//! The deployment's variables reach the script only as data: a private file of NUL-terminated
//! name/value pairs whose path is in `FERRY_VARIABLES_FILE`. The bootstraps are fixed assets
//! (nothing is spliced into them), read the file with `read -d ''` / `bytes.split`, and delete it
//! once loaded. No variable can change the structure of any code that runs.
//!
//! [`prepare`] is pure: the target writes [`Prepared::files`] into a fresh working directory
//! (e.g. with [`write_files`]) and runs [`Prepared::program`] with [`Prepared::args`] and
//! [`Prepared::env`] there.

use std::io::Write;
use std::path::Path;

use crate::target::Syntax;

/// The Bash bootstrap (helpers, variable loading, then `source` of the script).
pub const BASH_BOOTSTRAP: &str = include_str!("bootstrap/bootstrap.sh");
/// The Python bootstrap (helpers, variable loading, then `run_path` of the script).
pub const PYTHON_BOOTSTRAP: &str = include_str!("bootstrap/bootstrap.py");

/// The environment variable that names the variables file (relative to the working directory).
pub const VARIABLES_ENV: &str = "FERRY_VARIABLES_FILE";
/// The variables file: `name NUL value NUL` per variable, UTF-8.
pub const VARIABLES_FILE: &str = ".ferry-variables";
/// The Bash entry point.
pub const BASH_BOOTSTRAP_FILE: &str = ".ferry-bootstrap.sh";
/// The Python entry point.
pub const PYTHON_BOOTSTRAP_FILE: &str = ".ferry-bootstrap.py";
/// The user's Bash script.
pub const BASH_SCRIPT_FILE: &str = "script.sh";
/// The user's Python script.
pub const PYTHON_SCRIPT_FILE: &str = "script.py";

/// One file to write into the working directory.
#[derive(Clone, PartialEq, Eq)]
pub struct PreparedFile {
    /// A plain file name (no directories), relative to the working directory.
    pub path: String,
    pub contents: Vec<u8>,
    /// Unix permission bits to create the file with. Every file is `0o600`: the script body may
    /// hold substituted secrets and the variables file holds all of them.
    pub mode: u32,
}

impl std::fmt::Debug for PreparedFile {
    // Never prints the contents: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedFile")
            .field("path", &self.path)
            .field("len", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// Everything needed to run one script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Files to create in the (fresh, private) working directory before starting.
    pub files: Vec<PreparedFile>,
    /// The program to start (`bash` or `python3`), looked up on `PATH`.
    pub program: String,
    /// Its arguments: paths relative to the working directory, which must be the current
    /// directory of the process.
    pub args: Vec<String>,
    /// Environment variables to add for the process. Never holds a variable's value.
    pub env: Vec<(String, String)>,
}

/// Builds the files and command line for a script. `vars` are the deployment's variables in
/// order (a later duplicate name wins), sensitive ones included: they go only into the private
/// variables file.
///
/// As Calamari does, Windows line endings in the script become Unix ones. NUL characters cannot
/// be passed to Bash (nor be stored in the NUL-separated file), so they are removed from names
/// and values.
pub fn prepare(syntax: Syntax, body: &str, vars: &[(String, String)]) -> Prepared {
    let script = body.replace("\r\n", "\n").into_bytes();
    let (bootstrap_file, bootstrap, script_file, program, mut args) = match syntax {
        Syntax::Bash => (
            BASH_BOOTSTRAP_FILE,
            BASH_BOOTSTRAP,
            BASH_SCRIPT_FILE,
            "bash",
            Vec::new(),
        ),
        Syntax::Python => (
            PYTHON_BOOTSTRAP_FILE,
            PYTHON_BOOTSTRAP,
            PYTHON_SCRIPT_FILE,
            "python3",
            vec!["-u".to_string()],
        ),
    };
    args.push(bootstrap_file.to_string());
    args.push(script_file.to_string());
    let modules = crate::script_modules::module_files(syntax, vars);
    Prepared {
        files: modules
            .into_iter()
            .chain(vec![
                PreparedFile {
                    path: VARIABLES_FILE.to_string(),
                    contents: variables_file(vars),
                    mode: 0o600,
                },
                PreparedFile {
                    path: bootstrap_file.to_string(),
                    contents: bootstrap.as_bytes().to_vec(),
                    mode: 0o600,
                },
                PreparedFile {
                    path: script_file.to_string(),
                    contents: script,
                    mode: 0o600,
                },
            ])
            .collect(),
        program: program.to_string(),
        args,
        env: vec![(VARIABLES_ENV.to_string(), VARIABLES_FILE.to_string())],
    }
}

/// The variables file: `name NUL value NUL` for each variable with a non-empty name.
pub fn variables_file(vars: &[(String, String)]) -> Vec<u8> {
    let size = vars.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in vars {
        let start = out.len();
        push_without_nul(&mut out, name);
        if out.len() == start {
            continue;
        }
        out.push(0);
        push_without_nul(&mut out, value);
        out.push(0);
    }
    out
}

fn push_without_nul(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|b| *b != 0));
}

/// Writes the prepared files into `dir` (which should be fresh and private, mode 0700). Each file
/// is created new (an existing file is an error) with its mode.
pub fn write_files(dir: &Path, prepared: &Prepared) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    for f in &prepared.files {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode)
            .open(dir.join(&f.path))?;
        file.write_all(&f.contents)?;
        file.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::service_message::{OutputEvent, OutputInterpreter, ServiceMessage};
    use crate::target::Stream;
    use ferry_domain::task::LogCategory;
    use std::path::PathBuf;
    use std::process::Command;

    struct Run {
        code: i32,
        stdout: Vec<String>,
        stderr: Vec<String>,
        dir_after: Vec<String>,
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-boot-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn run(syntax: Syntax, body: &str, vars: &[(&str, &str)]) -> Run {
        run_with(syntax, body, vars, &[])
    }

    fn run_with(
        syntax: Syntax,
        body: &str,
        vars: &[(&str, &str)],
        extra_env: &[(&str, &str)],
    ) -> Run {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let p = prepare(syntax, body, &vars);
        let dir = temp_dir();
        write_files(&dir, &p).unwrap();
        let mut cmd = Command::new(&p.program);
        cmd.args(&p.args).current_dir(&dir);
        for (k, v) in p.env.iter() {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let mut dir_after: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dir_after.sort();
        let _ = std::fs::remove_dir_all(&dir);
        let lines = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: lines(&out.stdout),
            stderr: lines(&out.stderr),
            dir_after,
        }
    }

    /// Interprets a run's stdout: (log lines at Info, service messages).
    fn interpret(r: &Run) -> (Vec<(LogCategory, String)>, Vec<ServiceMessage>) {
        let mut it = OutputInterpreter::new();
        let mut logs = Vec::new();
        let mut msgs = Vec::new();
        for l in &r.stdout {
            for e in it.line(Stream::Stdout, l) {
                match e {
                    OutputEvent::Log { category, text } => logs.push((category, text)),
                    OutputEvent::Message(m) => msgs.push(m),
                    OutputEvent::Malformed(b) => panic!("malformed service message: {b:?}"),
                }
            }
        }
        (logs, msgs)
    }

    fn info(r: &Run) -> Vec<String> {
        interpret(r)
            .0
            .into_iter()
            .filter(|(c, _)| *c == LogCategory::Info)
            .map(|(_, t)| t)
            .collect()
    }

    const NASTY: &[&str] = &[
        "it's",
        "say \"hi\"",
        "$(touch pwned1)",
        "`touch pwned2`",
        "a; touch pwned3",
        "line1\nline2\n",
        "100% %s %d %n",
        "back\\slash\\n",
        "'; touch pwned4; echo '",
        "\"; touch pwned5; echo \"",
        "${HOME}",
        "\u{e9}t\u{e9} \u{1f680}",
        "  lead and trail  ",
        "-n",
        "*",
        "]",
        "''' \"\"\" \\x00",
        "\r\n\t",
    ];

    #[test]
    fn prepare_shape() {
        let p = prepare(
            Syntax::Bash,
            "echo a\r\necho b",
            &[("A".into(), "1".into())],
        );
        assert_eq!(p.program, "bash");
        assert_eq!(p.args, vec![BASH_BOOTSTRAP_FILE, BASH_SCRIPT_FILE]);
        assert_eq!(
            p.env,
            vec![(VARIABLES_ENV.to_string(), VARIABLES_FILE.to_string())]
        );
        assert!(p.files.iter().all(|f| f.mode == 0o600));
        let script = p.files.iter().find(|f| f.path == BASH_SCRIPT_FILE).unwrap();
        assert_eq!(script.contents, b"echo a\necho b");
        let vars = p.files.iter().find(|f| f.path == VARIABLES_FILE).unwrap();
        assert_eq!(vars.contents, b"A\x001\x00");
        let p = prepare(Syntax::Python, "print(1)", &[]);
        assert_eq!(p.program, "python3");
        assert_eq!(
            p.args,
            vec!["-u", PYTHON_BOOTSTRAP_FILE, PYTHON_SCRIPT_FILE]
        );
        // Debug never shows contents.
        let dbg = format!(
            "{:?}",
            prepare(Syntax::Bash, "", &[("P".into(), "hunter22".into())])
        );
        assert!(!dbg.contains("hunter22"));
    }

    #[test]
    fn variables_file_strips_nul_and_skips_empty_names() {
        let f = variables_file(&[
            ("a\0b".into(), "x\0y".into()),
            ("".into(), "ignored".into()),
            ("\0".into(), "ignored".into()),
            ("e".into(), "".into()),
        ]);
        assert_eq!(f, b"ab\0xy\0e\0\0");
    }

    #[test]
    fn bash_reads_hostile_values_as_data() {
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut body = String::new();
        for (i, v) in NASTY.iter().enumerate() {
            vars.push((format!("V{i}"), v.to_string()));
            // Each value goes out through a setVariable message, which round-trips it exactly.
            body.push_str(&format!(
                "set_octopusvariable \"Out{i}\" \"$(get_octopusvariable \"V{i}\"; printf x)\"\n"
            ));
            body.push_str(&format!(
                "[ \"${{octopus_parameters[V{i}]}}x\" = \"$(get_octopusvariable V{i}; printf x)\" ] || exit 8\n"
            ));
        }
        body.push_str("ls pwned* 2>/dev/null && exit 9\nexit 0\n");
        let vars_ref: Vec<(&str, &str)> =
            vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let r = run(Syntax::Bash, &body, &vars_ref);
        assert_eq!(r.code, 0, "stderr: {:?}", r.stderr);
        let (_, msgs) = interpret(&r);
        for (i, v) in NASTY.iter().enumerate() {
            let want = format!("Out{i}");
            let got = msgs.iter().find_map(|m| match m {
                ServiceMessage::SetVariable { name, value, .. } if *name == want => {
                    Some(value.clone())
                }
                _ => None,
            });
            // `$(…)` strips trailing newlines; the printf x keeps them.
            assert_eq!(got.as_deref(), Some(format!("{v}x").as_str()), "value {i}");
        }
        // The variables file is gone once loaded.
        assert!(!r.dir_after.contains(&VARIABLES_FILE.to_string()));
    }

    #[test]
    fn bash_octopus_parameters_array_and_missing_names() {
        let r = run(
            Syntax::Bash,
            "set -euo pipefail\n\
             echo \"[${octopus_parameters[Octopus.Action[Step 1].Output.X]}]\"\n\
             echo \"[$(get_octopusvariable 'Octopus.Action[Step 1].Output.X')]\"\n\
             echo \"[$(get_octopusvariable Missing)]\"\n\
             echo \"[$(get_octopusvariable dup)]\"\n\
             echo \"[$(get_octopusvariable DUP)]\"\n\
             echo \"[${FERRY_VARIABLES_FILE-unset}]\"\n",
            &[
                ("Octopus.Action[Step 1].Output.X", "x y"),
                ("dup", "first"),
                ("dup", "second"),
            ],
        );
        assert_eq!(r.code, 0, "stderr: {:?}", r.stderr);
        assert_eq!(
            info(&r),
            vec!["[x y]", "[x y]", "[]", "[second]", "[]", "[unset]"]
        );
    }

    #[test]
    fn bash_helpers_emit_calamari_service_messages() {
        let r = run(
            Syntax::Bash,
            "printf 'hello' > out.txt\n\
             set_octopusvariable \"Name\" \"Va lue\"\n\
             set_octopusvariable \"Secret\" \"s3cr3t!\" -sensitive\n\
             set_octopusvariable \"Empty\" \"\"\n\
             new_octopusartifact out.txt\n\
             new_octopusartifact \"$PWD/out.txt\" \"custom name.txt\"\n\
             update_progress 50 \"half way\"\n\
             write_verbose \"v  *  1\"\n\
             write_highlight \"h\" \"2\"\n\
             write_warning \"-n\"\n\
             write_wait \"w\"\n\
             echo plain\n\
             echo \"$(encode_servicemessagevalue 'é$x')\"\n\
             echo \"$(decode_servicemessagevalue \"$(encode_servicemessagevalue 'é$x')\")\"\n",
            &[],
        );
        assert_eq!(r.code, 0, "stderr: {:?}", r.stderr);
        let (logs, msgs) = interpret(&r);
        let sets: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                ServiceMessage::SetVariable {
                    name,
                    value,
                    sensitive,
                } => Some((name.as_str(), value.as_str(), *sensitive)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sets,
            vec![
                ("Name", "Va lue", false),
                ("Secret", "s3cr3t!", true),
                ("Empty", "", false)
            ]
        );
        let arts: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                ServiceMessage::CreateArtifact { path, name, length } => {
                    Some((path.clone(), name.clone(), *length))
                }
                _ => None,
            })
            .collect();
        assert_eq!(arts.len(), 2);
        assert!(arts[0].0.starts_with('/') && arts[0].0.ends_with("/out.txt"));
        assert_eq!(arts[0].1, "out.txt");
        assert_eq!(arts[0].2, Some(5));
        assert_eq!(arts[1].1, "custom name.txt");
        assert!(msgs.contains(&ServiceMessage::Progress {
            percentage: Some(50),
            message: "half way".into()
        }));
        let has = |c: LogCategory, t: &str| logs.iter().any(|(lc, lt)| *lc == c && lt == t);
        assert!(has(LogCategory::Verbose, "v  *  1"));
        assert!(has(LogCategory::Highlight, "h 2"));
        assert!(has(LogCategory::Warning, "-n"));
        assert!(has(LogCategory::Wait, "w"));
        assert!(has(LogCategory::Info, "plain"));
        assert!(has(LogCategory::Info, "w6kkeA=="));
        assert!(has(LogCategory::Info, "é$x"));
        assert!(has(LogCategory::Verbose, "Bash Environment Information:"));
        assert!(has(
            LogCategory::Info,
            "Collecting out.txt as an artifact..."
        ));
    }

    #[test]
    fn bash_fail_step_and_exit_codes() {
        let r = run(
            Syntax::Bash,
            "echo before\nfail_step \"It broke: 'x'\"\necho after\n",
            &[],
        );
        assert_eq!(r.code, 1);
        let (logs, msgs) = interpret(&r);
        assert_eq!(
            msgs.last(),
            Some(&ServiceMessage::StepFailed {
                message: "It broke: 'x'".into()
            })
        );
        assert!(!logs.iter().any(|(_, t)| t == "after"));
        let r = run(Syntax::Bash, "exit 7", &[]);
        assert_eq!(r.code, 7);
        // A top-level `return` works because the script is sourced (as in Calamari).
        let r = run(Syntax::Bash, "echo a\nreturn 0\necho b", &[]);
        assert_eq!(r.code, 0);
        assert_eq!(info(&r), vec!["a"]);
        let r = run(Syntax::Bash, "false", &[]);
        assert_eq!(r.code, 1);
        let r = run(
            Syntax::Bash,
            "new_octopusartifact nope.txt\necho after",
            &[],
        );
        assert_eq!(r.code, 1);
        assert!(r.stderr.iter().any(|l| l.contains("does not exist")));
    }

    #[test]
    fn bash_environment_logging_can_be_suppressed() {
        let r = run(
            Syntax::Bash,
            "echo hi",
            &[("Octopus.Action.Script.SuppressEnvironmentLogging", "True")],
        );
        let (logs, _) = interpret(&r);
        assert_eq!(logs, vec![(LogCategory::Info, "hi".to_string())]);
    }

    #[test]
    fn bash_pure_base64_fallback_matches() {
        // No base64/openssl on PATH (only bash and rm): the pure-Bash encoder is used.
        let bin = temp_dir();
        for tool in ["bash", "rm"] {
            let found = std::env::split_paths(&std::env::var_os("PATH").unwrap())
                .map(|d| d.join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        let r = run_with(
            Syntax::Bash,
            "set_octopusvariable \"N\" \"$(get_octopusvariable V)\"\n\
             set_octopusvariable \"N2\" \"ab\"\n\
             set_octopusvariable \"N3\" \"abcd\"\n",
            &[
                ("V", "é'$(x)\"\n\u{1f680} %s \\"),
                ("Octopus.Action.Script.SuppressEnvironmentLogging", "True"),
            ],
            &[("PATH", bin.to_str().unwrap())],
        );
        let _ = std::fs::remove_dir_all(&bin);
        assert_eq!(r.code, 0, "stderr: {:?}", r.stderr);
        let (_, msgs) = interpret(&r);
        let values: Vec<_> = msgs
            .iter()
            .filter_map(|m| match m {
                ServiceMessage::SetVariable { value, .. } => Some(value.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(values, vec!["é'$(x)\"\n\u{1f680} %s \\", "ab", "abcd"]);
    }

    #[test]
    fn python_reads_hostile_values_as_data() {
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut body = String::from("import glob\n");
        for (i, v) in NASTY.iter().enumerate() {
            vars.push((format!("V{i}"), v.to_string()));
            body.push_str(&format!(
                "set_octopusvariable('Out{i}', get_octopusvariable('V{i}') + 'x')\n"
            ));
        }
        body.push_str("assert octopusvariables['V0'] == \"it's\"\n");
        body.push_str("if glob.glob('pwned*'): exit(9)\n");
        let vars_ref: Vec<(&str, &str)> =
            vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let r = run(Syntax::Python, &body, &vars_ref);
        assert_eq!(r.code, 0, "stderr: {:?}", r.stderr);
        let (_, msgs) = interpret(&r);
        for (i, v) in NASTY.iter().enumerate() {
            let want = format!("Out{i}");
            let got = msgs.iter().find_map(|m| match m {
                ServiceMessage::SetVariable { name, value, .. } if *name == want => {
                    Some(value.clone())
                }
                _ => None,
            });
            assert_eq!(got.as_deref(), Some(format!("{v}x").as_str()), "value {i}");
        }
        assert!(!r.dir_after.contains(&VARIABLES_FILE.to_string()));
    }

    #[test]
    fn python_helpers_match_calamari() {
        let r = run(
            Syntax::Python,
            "open('out.txt', 'w').write('hello')\n\
             print(__name__)\n\
             print(os.path.basename(sys.argv[0]))\n\
             print(decode(encode('é')))\n\
             set_octopusvariable('S', 'v', True)\n\
             print(octopusvariables['S'])\n\
             createartifact('out.txt')\n\
             updateprogress(10)\n\
             printverbose('v')\n\
             printhighlight('h')\n\
             printwarning('w')\n\
             printwait('t')\n\
             try:\n    get_octopusvariable('Missing')\nexcept KeyError:\n    print('missing')\n\
             failstep('bad')\n\
             print('after')\n",
            &[],
        );
        assert_eq!(r.code, 255, "stderr: {:?}", r.stderr);
        let (logs, msgs) = interpret(&r);
        let infos: Vec<_> = logs
            .iter()
            .filter(|(c, _)| *c == LogCategory::Info)
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(infos, vec!["<run_path>", "script.py", "é", "v", "missing"]);
        let has = |c: LogCategory, t: &str| logs.iter().any(|(lc, lt)| *lc == c && lt == t);
        assert!(has(LogCategory::Verbose, "v"));
        assert!(has(LogCategory::Highlight, "h"));
        assert!(has(LogCategory::Warning, "w"));
        assert!(has(LogCategory::Wait, "t"));
        assert!(msgs.contains(&ServiceMessage::SetVariable {
            name: "S".into(),
            value: "v".into(),
            sensitive: true
        }));
        assert!(msgs.iter().any(|m| matches!(m,
            ServiceMessage::CreateArtifact { path, name, length: Some(5) }
                if path.ends_with("/out.txt") && path.starts_with('/') && name == "out.txt")));
        assert!(msgs.contains(&ServiceMessage::Progress {
            percentage: Some(10),
            message: String::new()
        }));
        assert_eq!(
            msgs.last(),
            Some(&ServiceMessage::StepFailed {
                message: "bad".into()
            })
        );
    }

    #[test]
    fn python_exceptions_and_exit_codes() {
        let r = run(Syntax::Python, "raise ValueError('boom')", &[]);
        assert_eq!(r.code, 1);
        assert!(r.stderr.iter().any(|l| l.contains("ValueError: boom")));
        let r = run(Syntax::Python, "import sys\nsys.exit(4)", &[]);
        assert_eq!(r.code, 4);
    }
}
