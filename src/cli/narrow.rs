//! The command line parsed with the global flags and one verb: clap builds its whole command
//! tree (17 verbs, their ~150 flags) before it parses a word, and for a call that does little
//! else (`state`, `kill`, `start`) that tree was a quarter of Berth's CPU (issue 17 §2; figures
//! in bench/README.md). Here the verb is looked up first, a tree of the global flags and that
//! verb's arguments alone parses the line, and the result is the one the whole tree gives. Any
//! line that does not parse this way (a bad flag, `--help`, an unknown verb) is parsed again by
//! the whole tree, so errors and help read as before.

use std::ffi::OsString;

use clap::{Args, Command, FromArgMatches, Parser};

use super::{Cli, Global};

/// Adds a verb's arguments to its command (clap's derive writes these).
type Augment = fn(Command) -> Command;

/// Every verb of `Cmd`, by name, with its arguments (a test checks the list against `Cmd`).
const VERBS: &[(&str, Augment)] = &[
    ("create", super::create::Args::augment_args),
    ("start", super::start::Args::augment_args),
    ("run", super::run::Args::augment_args),
    ("state", super::state::Args::augment_args),
    ("kill", super::kill::Args::augment_args),
    ("delete", super::delete::Args::augment_args),
    ("list", super::list::Args::augment_args),
    ("spec", super::spec::Args::augment_args),
    ("pause", super::pause::Args::augment_args),
    ("resume", super::resume::Args::augment_args),
    ("update", super::update::Args::augment_args),
    ("events", super::events::Args::augment_args),
    ("ps", super::ps::Args::augment_args),
    ("exec", super::exec::Args::augment_args),
    ("features", super::features::Args::augment_args),
    ("checkpoint", super::checkpoint::Args::augment_args),
    ("restore", super::restore::Args::augment_args),
    ("version", |c| c),
];

/// Parses `args` (the program name first) as `Cli::try_parse_from` would.
pub(super) fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    match narrow(&args) {
        Some(cli) => Ok(cli),
        None => Cli::try_parse_from(args),
    }
}

/// The verb `word` names, if any.
fn verb(word: &OsString) -> Option<&'static (&'static str, Augment)> {
    let word = word.to_str()?;
    VERBS.iter().find(|(name, _)| *name == word)
}

/// The verb: the first argument that names one (global flags and their values come first).
pub(super) fn verb_at(args: &[OsString]) -> Option<usize> {
    args.iter()
        .skip(1)
        .position(|a| verb(a).is_some())
        .map(|i| i + 1)
}

/// The tree of the global flags and `verb` (none: the global flags alone).
fn tree(verb: Option<&'static str>, augment: Augment) -> Command {
    // The root's settings are those of `Cli`'s #[command] that change parsing.
    let root = Global::augment_args(Command::new("berth").disable_version_flag(true));
    match verb {
        Some(name) => root.subcommand(augment(Command::new(name))),
        None => root,
    }
}

/// `args` parsed by a narrow tree, or None when none takes them. A word that names a verb may
/// be a global flag's value (`--root state run …`): then the next such word is tried. Whichever
/// tree takes the line parsed the words before its verb as the global flags, as the whole tree
/// does, and the verb as its own.
fn narrow(args: &[OsString]) -> Option<Cli> {
    let trees = args
        .iter()
        .skip(1)
        .filter_map(verb)
        .map(|&(name, augment)| tree(Some(name), augment))
        .chain(std::iter::once_with(|| tree(None, |c| c)));
    trees
        .filter_map(|t| t.try_get_matches_from(args).ok())
        .find_map(|m| Cli::from_arg_matches(&m).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    /// Both parsers on one line: the narrow one must accept what the whole tree accepts, and
    /// give the same value (compared through Debug: every Args type derives it).
    fn same(line: &[String]) -> bool {
        let args: Vec<OsString> = line.iter().map(OsString::from).collect();
        let full = Cli::try_parse_from(&args);
        let fast = narrow(&args);
        match (&full, &fast) {
            (Ok(f), Some(n)) => assert_eq!(format!("{f:?}"), format!("{n:?}"), "{line:?}"),
            (Ok(_), None) => panic!("the narrow tree refused a valid line: {line:?}"),
            (Err(e), Some(n)) => panic!("{line:?}: the whole tree says {e}, narrow gave {n:?}"),
            (Err(_), None) => {}
        }
        full.is_ok()
    }

    #[test]
    fn the_verb_list_is_cmds() {
        let full = Cli::command();
        let mut names: Vec<&str> = full
            .get_subcommands()
            .map(|c| c.get_name())
            .filter(|n| *n != "help")
            .collect();
        names.sort();
        let mut ours: Vec<&str> = VERBS.iter().map(|(n, _)| *n).collect();
        ours.sort();
        assert_eq!(names, ours);
    }

    #[test]
    fn each_verbs_arguments_are_the_whole_trees() {
        let full = Cli::command();
        let root = |c: &Command| format!("{:?}", c.get_arguments().collect::<Vec<_>>());
        assert_eq!(root(&full), root(&tree(None, |c| c)));
        for (name, augment) in VERBS {
            let whole = full.find_subcommand(name).expect("a verb of Cmd");
            let ours = augment(Command::new(*name));
            assert_eq!(root(whole), root(&ours), "{name}");
            assert_eq!(
                format!("{:?}", whole.get_groups().collect::<Vec<_>>()),
                format!("{:?}", ours.get_groups().collect::<Vec<_>>()),
                "{name}"
            );
        }
    }

    #[test]
    fn engines_command_lines_parse_the_same() {
        let lines = [
            // containerd's runc shim (go-runc)
            "--root /run/containerd/runc/k8s.io --log /b/log.json --log-format json create \
             --bundle /b --pid-file /b/init.pid --console-socket /tmp/s id",
            "--root /r --log /l --log-format json start id",
            "--root /r --log /l --log-format json state id",
            "--root /r kill --all id 9",
            "--root /r kill id 15",
            "--root /r delete --force id",
            "--root /r exec --process /tmp/p.json --detach --pid-file /p id",
            "--root /r update --resources - id",
            "--root /r pause id",
            "--root /r ps --format json id",
            "--root /r checkpoint --image-path /i --work-path /w --leave-running id",
            "--root /r restore --detach --no-subreaper --image-path /i --bundle /b id",
            "--root /r events --stats id",
            // podman through conmon, docker
            "--systemd-cgroup --root /run/runc create --bundle /b --pid-file /p \
             --no-new-keyring id",
            "--log-format=json --log=/l run -d -b /b id",
            "exec -t id sh -c true",
            "exec id ls --all -l",
            "list -q",
            "list --format json",
            "spec --rootless",
            "features",
            "version",
            "--version",
            "-v",
            "--debug --trace --rootless auto --criu /c state x",
            // lines the narrow trees hand on to the whole one, or take after a retry
            "",
            "--help",
            "state --help",
            "help",
            "bogus id",
            "state",
            "state a b",
            "kill --bogus id",
            "--root state run -b /b id",
            "--log-format yaml state id",
            "--rootless maybe state id",
        ];
        for l in lines {
            let mut line = vec!["berth".to_string()];
            line.extend(l.split_whitespace().map(str::to_string));
            same(&line);
        }
    }

    /// A linear congruential generator (Knuth's MMIX constants): a fixed sequence, so that a
    /// failure names a line that can be replayed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn one_in(&mut self, n: u64) -> bool {
            self.next().is_multiple_of(n)
        }
        fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
            &v[(self.next() % v.len() as u64) as usize]
        }
    }

    /// One argument's words: its flag (long or short, `=` or a separate value) and a value.
    fn words(a: &clap::Arg, rng: &mut Rng) -> Vec<String> {
        let possible: Vec<String> = a
            .get_possible_values()
            .iter()
            .map(|p| p.get_name().to_string())
            .collect();
        let value = if possible.is_empty() {
            rng.pick(&["x", "/p", "1", "-", "a=b", "9"]).to_string()
        } else {
            rng.pick(&possible).clone()
        };
        let takes = matches!(
            a.get_action(),
            clap::ArgAction::Set | clap::ArgAction::Append
        );
        let long = a.get_long().map(|l| format!("--{l}"));
        let short = a.get_short().map(|s| format!("-{s}"));
        let flag = match (long, short) {
            (Some(l), Some(s)) => Some(if rng.one_in(2) { l } else { s }),
            (l, s) => l.or(s),
        };
        match flag {
            None => vec![value],
            Some(f) if !takes => vec![f],
            Some(f) if f.starts_with("--") && rng.one_in(2) => vec![format!("{f}={value}")],
            Some(f) => vec![f, value],
        }
    }

    #[test]
    fn generated_command_lines_parse_the_same() {
        let full = Cli::command();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut valid = 0;
        let globals: Vec<&clap::Arg> = full
            .get_arguments()
            .filter(|a| {
                !matches!(
                    a.get_action(),
                    clap::ArgAction::Help | clap::ArgAction::Version
                )
            })
            .collect();
        for round in 0..3000 {
            let mut line = vec!["berth".to_string()];
            for g in &globals {
                if rng.one_in(3) {
                    line.extend(words(g, &mut rng));
                }
            }
            let (name, _) = *rng.pick(VERBS);
            line.push(name.to_string());
            let sub = full.find_subcommand(name).unwrap();
            let (positional, flags): (Vec<&clap::Arg>, Vec<&clap::Arg>) = sub
                .get_arguments()
                .filter(|a| !matches!(a.get_action(), clap::ArgAction::Help))
                .partition(|a| a.is_positional());
            for f in flags {
                if rng.one_in(3) {
                    line.extend(words(f, &mut rng));
                }
            }
            for p in positional {
                if p.is_required_set() || rng.one_in(2) {
                    line.extend(words(p, &mut rng));
                }
            }
            // Now and then a word that belongs nowhere, which both must refuse alike.
            if round % 7 == 0 {
                let at = 1 + (rng.next() as usize) % (line.len() - 1);
                line.insert(at, rng.pick(&["--bogus", "-Z", "extra"]).to_string());
            }
            valid += same(&line) as u32;
        }
        // Most lines are valid ones, so most took the narrow path and were compared.
        assert!(valid > 2000, "only {valid} of 3000 generated lines parse");
    }

    #[test]
    fn lines_without_a_verb_take_the_global_flags() {
        let c = parse(os(&["berth", "--root", "/r", "-v"])).unwrap();
        assert!(c.global.version && c.cmd.is_none());
        assert!(narrow(&os(&["berth", "--help"])).is_none());
        assert_eq!(
            verb_at(&os(&["berth", "--log", "/l", "kill", "x"])),
            Some(3)
        );
    }
}
