//! `vllm serve`'s command line on `servesim serve` (issue 17): the binary answers as `vllm` when
//! installed under that name, vLLM's spellings (`--max_num_seqs`, `-tp 2`, `-O3`,
//! `--compilation-config.level 3`) are normalised, the vLLM flags that do not change the simulation
//! are taken out (and reported) before clap sees the rest, a Hugging Face model id is resolved to a
//! catalogue model, and vLLM's value parsers are copied with their error wording.

use std::collections::HashSet;
use std::ffi::OsString;

use anyhow::{Result, bail};
use clap::CommandFactory;
use servesim_models::Profile;

use super::vllm_flags::VLLM_SERVE_FLAGS;

/// How many values a vLLM flag takes (argparse's `nargs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A switch.
    None,
    /// Exactly one value (`--flag V` or `--flag=V`).
    One,
    /// One or more values, up to the next argument that starts with `-`.
    Many,
}

/// vLLM flags refused rather than ignored: ignoring them would silently change what is served.
const REFUSED: &[(&str, &str)] = &[(
    "--config",
    "servesim does not read vLLM's YAML config file; give its options as flags",
)];

/// Flags of older vLLM releases that manifests and vLLM's older docs still carry; vLLM 0.32 refuses
/// them ("unrecognized arguments"), servesim accepts and ignores them so that such a manifest starts
/// unchanged.
pub const LEGACY: &[(&str, Arity)] = &[
    ("--disable-log-requests", Arity::None),
    ("--disable-frontend-multiprocessing", Arity::None),
    ("--max-seq-len-to-capture", Arity::One),
    ("--num-scheduler-steps", Arity::One),
    ("--swap-space", Arity::One),
    ("--use-v2-block-manager", Arity::None),
];

/// The command line after [`rewrite_args`]: what clap parses, and the vLLM flags taken out.
#[derive(Debug, Default, PartialEq)]
pub struct Rewritten {
    pub args: Vec<OsString>,
    /// The ignored vLLM flags as given (each once, in order), for the start-up log.
    pub ignored: Vec<String>,
}

/// Whether argv[0] names the binary `vllm` (installed or linked under that name).
pub fn invoked_as_vllm(argv0: &OsString) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "vllm")
}

/// Whether argv[0] names a shell: the image links `/bin/sh` to the binary so that manifests written
/// for vLLM's image (`command: ["/bin/sh", "-c"]`, `args: ["vllm serve ..."]`) run unchanged.
fn invoked_as_shell(argv0: &OsString) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == "sh" || n == "bash")
}

/// `sh -c 'COMMAND'`: COMMAND's words as a POSIX shell splits a simple command (blanks, quotes,
/// backslashes, line continuations; a leading `exec` dropped). Anything else a shell would do
/// (variables, pipes, lists, redirections, substitutions) is refused: there is no shell here.
pub fn shell_words(argv: &[OsString]) -> Result<Vec<OsString>> {
    let script = match argv.get(1..3) {
        Some([c, script]) if c == "-c" => script.to_string_lossy().into_owned(),
        _ => bail!(
            "this image has no shell: /bin/sh is servesim, which runs only `sh -c 'vllm serve ...'`"
        ),
    };
    let refuse = |c: char| -> Result<Vec<OsString>> {
        bail!("sh -c: {c:?} needs a real shell; the servesim image runs one simple command")
    };
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => bail!("sh -c: unterminated single quote"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(e @ ('"' | '\\' | '$' | '`')) => w.push(e),
                            Some(e) => {
                                w.push('\\');
                                w.push(e);
                            }
                            None => bail!("sh -c: unterminated double quote"),
                        },
                        Some(c @ ('$' | '`')) => return refuse(c),
                        Some(c) => w.push(c),
                        None => bail!("sh -c: unterminated double quote"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(e) => word.get_or_insert_with(String::new).push(e),
            },
            '$' | '`' | '|' | '&' | ';' | '<' | '>' | '(' | ')' => return refuse(c),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word.take() {
        words.push(w);
    }
    if words.first().is_some_and(|w| w == "exec") {
        words.remove(0);
    }
    let program = words.first().map(|w| OsString::from(w.as_str()));
    match program {
        Some(p) if invoked_as_vllm(&p) || p.to_string_lossy().ends_with("servesim") => {}
        _ => bail!(
            "sh -c: the servesim image runs `vllm serve ...` or `servesim ...`, not {script:?}"
        ),
    }
    Ok(words.into_iter().map(OsString::from).collect())
}

/// Prepare `servesim`'s arguments for clap. Invoked as `vllm`, only `vllm serve ...` (and help and
/// version) is answered. For `serve`, vLLM's spellings are normalised and every vLLM flag that
/// `servesim serve` does not itself define is removed with its values and recorded as ignored.
pub fn rewrite_args(argv: Vec<OsString>) -> Result<Rewritten> {
    if argv.first().is_some_and(invoked_as_shell) {
        return rewrite_args(shell_words(&argv)?);
    }
    let mut argv = argv.into_iter();
    let argv0 = argv.next().unwrap_or_else(|| "servesim".into());
    let rest: Vec<OsString> = argv.collect();
    let as_vllm = invoked_as_vllm(&argv0);
    if as_vllm {
        match rest.first().and_then(|a| a.to_str()) {
            Some("serve" | "-h" | "--help" | "-V" | "--version") | None => {}
            Some(other) => bail!(
                "installed as `vllm`, servesim answers `vllm serve ...` only, not `vllm {other}`"
            ),
        }
    }
    let mut out = vec![argv0];
    let Some(serve_at) = rest.iter().position(|a| a == "serve") else {
        out.extend(rest);
        return Ok(Rewritten {
            args: out,
            ignored: Vec::new(),
        });
    };
    // Only a `serve` before any other word is the subcommand (not, say, a value "serve").
    if rest[..serve_at]
        .iter()
        .any(|a| !a.to_string_lossy().starts_with('-'))
    {
        out.extend(rest);
        return Ok(Rewritten {
            args: out,
            ignored: Vec::new(),
        });
    }
    out.extend(rest[..=serve_at].iter().cloned());
    let own = serve_flags();
    let mut ignored = Vec::new();
    let mut args = rest[serve_at + 1..].iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        let (flag, inline) = normalise(text);
        let Some(flag) = flag else {
            out.push(arg.clone());
            continue;
        };
        if let Some((_, why)) = REFUSED.iter().find(|(f, _)| *f == flag) {
            bail!("{flag}: {why}");
        }
        // A dotted JSON argument (`--compilation-config.level 3`) belongs to its base flag.
        let base = flag.split_once('.').map_or(flag.as_str(), |(b, _)| b);
        let known = VLLM_SERVE_FLAGS.iter().find(|(f, _, _)| *f == base);
        let canonical = known.map_or(base, |(_, c, _)| *c);
        if own.contains(canonical) && base == flag {
            // servesim's own flag: pass it on in its canonical spelling.
            match inline {
                Some(v) => out.push(format!("{canonical}={v}").into()),
                None => out.push(canonical.into()),
            }
            continue;
        }
        let arity = match known {
            Some((_, _, arity)) if base == flag => *arity,
            Some(_) => Arity::One,
            None => match LEGACY.iter().find(|(f, _)| *f == flag) {
                Some((_, arity)) => *arity,
                None => {
                    // Not vLLM's: clap reports it as unexpected.
                    out.push(arg.clone());
                    continue;
                }
            },
        };
        if !ignored.contains(&flag) {
            ignored.push(flag.clone());
        }
        if inline.is_some() {
            continue;
        }
        match arity {
            Arity::None => {}
            Arity::One => {
                args.next();
            }
            Arity::Many => {
                let mut peek = args.clone();
                while peek
                    .next()
                    .is_some_and(|a| !a.to_string_lossy().starts_with('-'))
                {
                    args.next();
                }
            }
        }
    }
    Ok(Rewritten { args: out, ignored })
}

/// A flag's name as vLLM reads it, and its `=value` if attached: underscores become dashes in
/// `--long_names` (vLLM's FlexibleArgumentParser), `-O3` / `-O=3` is `--optimization-level 3`, and
/// a short alias (`-tp`) stays as written for the table to resolve. `None` for a non-flag word.
fn normalise(arg: &str) -> (Option<String>, Option<String>) {
    if let Some(long) = arg.strip_prefix("--") {
        if long.is_empty() {
            return (None, None);
        }
        let (key, value) = match long.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (long, None),
        };
        // Only the part before the first '.' is a flag name; a JSON key after it keeps its '_'.
        let key = match key.split_once('.') {
            Some((head, tail)) => format!("{}.{tail}", head.replace('_', "-")),
            None => key.replace('_', "-"),
        };
        return (Some(format!("--{key}")), value);
    }
    if let Some(level) = arg.strip_prefix("-O").filter(|l| !l.is_empty()) {
        let level = level.strip_prefix('=').unwrap_or(level);
        return (Some("--optimization-level".into()), Some(level.to_string()));
    }
    if arg.len() > 1 && arg.starts_with('-') && !arg[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (arg, None),
        };
        // Only vLLM's own short aliases are rewritten; `-h` and the like stay clap's.
        if VLLM_SERVE_FLAGS.iter().any(|(f, _, _)| *f == key) {
            return (Some(key.to_string()), value);
        }
    }
    (None, None)
}

/// Every long flag (and alias) `servesim serve` itself defines, so that those are never taken out.
fn serve_flags() -> HashSet<String> {
    let cli = super::Cli::command();
    let mut own = HashSet::new();
    if let Some(serve) = cli.find_subcommand("serve") {
        for arg in serve.get_arguments() {
            if let Some(long) = arg.get_long() {
                own.insert(format!("--{long}"));
            }
            for alias in arg.get_all_aliases().into_iter().flatten() {
                own.insert(format!("--{alias}"));
            }
        }
    }
    own
}

/// The catalogue model a vLLM model argument names: a Hugging Face id (`Qwen/Qwen2.5-7B-Instruct`,
/// compared without regard to case, as the Hub resolves ids), a catalogue name
/// (`qwen2.5-7b-instruct`), or a local path whose last component is the id's repository name
/// (`/models/Qwen2.5-7B-Instruct`, as Kubernetes manifests mount models).
pub fn catalogue_model(model: &str) -> Result<String> {
    let ids = Profile::catalogue_hf_ids()?;
    let wanted = model.trim_end_matches('/');
    let last = wanted.rsplit('/').next().unwrap_or(wanted);
    for (name, id) in &ids {
        let repo = id.rsplit('/').next().unwrap_or(id);
        if id.eq_ignore_ascii_case(wanted)
            || name.eq_ignore_ascii_case(wanted)
            || (wanted.contains('/') && repo.eq_ignore_ascii_case(last))
        {
            return Ok(name.clone());
        }
    }
    let known: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
    bail!(
        "model {model:?} is not in servesim's catalogue (known: {}); describe it with --hf-config \
         config.json (the model's Hugging Face config), or serve a profile with --profile",
        known.join(", ")
    )
}

/// vLLM's `human_readable_int`: `1k` = 1000, `1K` = 1024, `25.6k` = 25600, else a plain integer.
pub fn human_readable_int(value: &str) -> Result<i64, String> {
    let v = value.trim();
    let bad = || format!("invalid human_readable_int value: '{value}'");
    let Some(suffix) = v.chars().last() else {
        return Err(bad());
    };
    let number = &v[..v.len() - suffix.len_utf8()];
    let number_ok = !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        && number.starts_with(|c: char| c.is_ascii_digit())
        && number.matches('.').count() <= 1
        && !number.ends_with('.');
    if number_ok {
        let decimal = match suffix {
            'k' => Some(1e3),
            'm' => Some(1e6),
            'g' => Some(1e9),
            't' => Some(1e12),
            _ => None,
        };
        if let Some(mult) = decimal {
            let n: f64 = number.parse().map_err(|_| bad())?;
            return Ok((n * mult) as i64);
        }
        let binary = match suffix {
            'K' => Some(1i64 << 10),
            'M' => Some(1 << 20),
            'G' => Some(1 << 30),
            'T' => Some(1 << 40),
            _ => None,
        };
        if let Some(mult) = binary {
            let n: i64 = number.parse().map_err(|_| {
                format!(
                    "Decimals are not allowed with binary suffixes like {suffix}. Did you mean to use {number}{} instead?",
                    suffix.to_ascii_lowercase()
                )
            })?;
            return n.checked_mul(mult).ok_or_else(bad);
        }
    }
    v.parse().map_err(|_| bad())
}

/// `--max-model-len`: a human-readable integer, or `-1` / `auto` (the longest that fits the KV
/// cache), as vLLM's `human_readable_int_or_auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxModelLen {
    Auto,
    Tokens(u32),
}

/// Parse `--max-model-len` with vLLM's rules and wording.
pub fn parse_max_model_len(value: &str) -> Result<MaxModelLen, String> {
    let v = value.trim();
    if v == "-1" || v.eq_ignore_ascii_case("auto") {
        return Ok(MaxModelLen::Auto);
    }
    let n = human_readable_int(v)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .map(MaxModelLen::Tokens)
        .ok_or_else(|| format!("max_model_len must be positive or -1 (auto), got {n}"))
}

/// An integer of a pydantic field `ge=1` (`max_num_seqs`, `max_num_batched_tokens`, `block_size`),
/// refused as vLLM's config validation refuses it.
pub fn positive_int(
    config: &'static str,
    field: &'static str,
    human: bool,
    value: &str,
) -> Result<u32, String> {
    let n = if human {
        human_readable_int(value)?
    } else {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid int value: '{value}'"))?
    };
    if n < 1 {
        return Err(format!(
            "1 validation error for {config}\n{field}\n  Input should be greater than or equal to 1 [type=greater_than_equal, input_value={n}, input_type=int]"
        ));
    }
    u32::try_from(n).map_err(|_| format!("{field} {n} is too large"))
}

/// `--gpu-memory-utilization`: a float in (0, 1], as vLLM's CacheConfig validates it.
pub fn gpu_memory_utilization(value: &str) -> Result<f64, String> {
    let x: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("invalid float value: '{value}'"))?;
    let rule = if x.is_nan() || x <= 0.0 {
        Some(("greater than 0", "greater_than"))
    } else if x > 1.0 {
        Some(("less than or equal to 1", "less_than_equal"))
    } else {
        None
    };
    match rule {
        None => Ok(x),
        Some((should, kind)) => Err(format!(
            "1 validation error for CacheConfig\ngpu_memory_utilization\n  Input should be {should} [type={kind}, input_value={x}, input_type=float]"
        )),
    }
}

/// argparse's refusal of a value outside `choices`, word for word.
pub fn choice<'a>(value: &str, choices: &[&'a str]) -> Result<&'a str, String> {
    choices
        .iter()
        .find(|c| **c == value)
        .copied()
        .ok_or_else(|| {
            let list: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
            format!(
                "invalid choice: '{value}' (choose from {})",
                list.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Rewritten {
        rewrite_args(args.iter().map(OsString::from).collect()).expect("rewrite")
    }

    fn strs(r: &Rewritten) -> Vec<String> {
        r.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ignored_flags_go_with_their_values_and_own_flags_stay() {
        let r = rewrite(&[
            "servesim",
            "serve",
            "Qwen/Qwen2.5-7B-Instruct",
            "--trust-remote-code",
            "--download-dir",
            "/data",
            "--max_num_seqs",
            "64",
            "--lora-modules",
            "a=x",
            "b=y",
            "--port=9",
            "-O3",
            "--compilation-config.level",
            "3",
            "--swap-space=4",
            "--device-memory-utilization",
            "0.5",
        ]);
        assert_eq!(
            strs(&r),
            [
                "servesim",
                "serve",
                "Qwen/Qwen2.5-7B-Instruct",
                "--max-num-seqs",
                "64",
                "--port=9",
                "--gpu-memory-utilization",
                "0.5"
            ]
        );
        assert_eq!(
            r.ignored,
            [
                "--trust-remote-code",
                "--download-dir",
                "--lora-modules",
                "--optimization-level",
                "--compilation-config.level",
                "--swap-space"
            ]
        );
    }

    #[test]
    fn many_valued_flags_stop_at_the_next_flag_and_unknown_flags_reach_clap() {
        let r = rewrite(&[
            "servesim",
            "serve",
            "--allowed-origins",
            "[\"*\"]",
            "--lora-modules",
            "a=x",
            "b=y",
            "--bogus",
            "--enforce-eager",
            "-tp",
            "1",
        ]);
        // -tp is vLLM's short spelling of a flag servesim models: spelled out, it reaches clap.
        assert_eq!(
            strs(&r),
            [
                "servesim",
                "serve",
                "--bogus",
                "--tensor-parallel-size",
                "1"
            ]
        );
        assert_eq!(
            r.ignored,
            ["--allowed-origins", "--lora-modules", "--enforce-eager"]
        );
    }

    #[test]
    fn other_subcommands_are_untouched_and_vllm_answers_serve_only() {
        let r = rewrite(&["servesim", "simulate", "--trust-remote-code"]);
        assert_eq!(strs(&r), ["servesim", "simulate", "--trust-remote-code"]);
        assert!(rewrite_args(vec!["/usr/bin/vllm".into(), "bench".into()]).is_err());
        let r = rewrite(&["/usr/local/bin/vllm", "serve", "m", "--enforce-eager"]);
        assert_eq!(strs(&r), ["/usr/local/bin/vllm", "serve", "m"]);
        assert!(
            rewrite_args(vec![
                "servesim".into(),
                "serve".into(),
                "--config".into(),
                "x.yaml".into()
            ])
            .is_err()
        );
    }

    #[test]
    fn sh_dash_c_runs_the_command_of_vllms_manifests() {
        let sh = |script: &str| {
            shell_words(&["/bin/sh".into(), "-c".into(), script.into()]).map(|w| {
                w.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            sh("vllm serve mistralai/Mistral-7B-Instruct-v0.3 --trust-remote-code \\\n  --max_num_batched_tokens 1024").ok(),
            Some(vec![
                "vllm".to_string(), "serve".into(), "mistralai/Mistral-7B-Instruct-v0.3".into(),
                "--trust-remote-code".into(), "--max_num_batched_tokens".into(), "1024".into()
            ])
        );
        assert_eq!(
            sh(r#"exec vllm serve m --chat-template '{{ a b }}' --x "q \"u\" o""#).ok(),
            Some(vec![
                "vllm".to_string(),
                "serve".into(),
                "m".into(),
                "--chat-template".into(),
                "{{ a b }}".into(),
                "--x".into(),
                "q \"u\" o".into()
            ])
        );
        for bad in [
            "vllm serve $MODEL",
            "vllm serve m | tee log",
            "vllm serve m; sleep 1",
            "python3 -m x",
            "vllm 'open",
        ] {
            assert!(sh(bad).is_err(), "{bad}");
        }
        let r = rewrite(&["/bin/sh", "-c", "vllm serve m --enforce-eager --port 9"]);
        assert_eq!(strs(&r), ["vllm", "serve", "m", "--port", "9"]);
    }

    proptest::proptest! {
        /// Any words, single-quoted as a shell script would quote them, come back as they were.
        #[test]
        fn sh_dash_c_splits_quoted_words_back(words in proptest::collection::vec("[^\\x00]*", 0..6)) {
            let quoted: Vec<String> =
                words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect();
            let script = format!("vllm serve {}", quoted.join(" "));
            let split = shell_words(&["sh".into(), "-c".into(), script.into()]).expect("split");
            let split: Vec<String> = split.iter().map(|a| a.to_string_lossy().into_owned()).collect();
            proptest::prop_assert_eq!(&split[..2], ["vllm", "serve"]);
            proptest::prop_assert_eq!(&split[2..], &words[..]);
        }

        /// Taking vLLM's ignored flags out keeps every other argument, in order: servesim's own
        /// flags and values around any number of ignored flags with their values.
        #[test]
        fn ignored_flags_leave_the_rest_in_order(
            picks in proptest::collection::vec((0usize..6, 0usize..4), 0..12)
        ) {
            let ignored: [&[&str]; 6] = [
                &["--trust-remote-code"], &["--download-dir", "/d"], &["--enforce-eager"],
                &["--lora-modules", "a=b", "c=d"], &["--swap-space=4"], &["-O3"],
            ];
            let own: [&[&str]; 4] =
                [&["--port", "9"], &["--seed", "1"], &["--max-num-seqs", "8"], &["--time-scale", "0.5"]];
            let mut args = vec!["servesim", "serve", "m"];
            let mut kept = vec!["servesim", "serve", "m"];
            for (i, o) in &picks {
                args.extend_from_slice(ignored[*i]);
                args.extend_from_slice(own[*o]);
                kept.extend_from_slice(own[*o]);
            }
            let r = rewrite(&args);
            proptest::prop_assert_eq!(strs(&r), kept);
            proptest::prop_assert!(r.ignored.len() <= 6);
        }
    }

    #[test]
    fn human_readable_ints_as_vllm_parses_them() {
        assert_eq!(human_readable_int("1k"), Ok(1000));
        assert_eq!(human_readable_int("1K"), Ok(1024));
        assert_eq!(human_readable_int("25.6k"), Ok(25600));
        assert_eq!(human_readable_int("32768"), Ok(32768));
        assert!(
            human_readable_int("1.5K")
                .expect_err("decimal binary")
                .starts_with("Decimals are not allowed")
        );
        assert!(human_readable_int("abc").is_err());
        assert_eq!(parse_max_model_len("auto"), Ok(MaxModelLen::Auto));
        assert_eq!(parse_max_model_len("-1"), Ok(MaxModelLen::Auto));
        assert_eq!(parse_max_model_len("8k"), Ok(MaxModelLen::Tokens(8000)));
        assert!(parse_max_model_len("0").is_err());
    }

    #[test]
    fn hugging_face_ids_map_to_the_catalogue() {
        assert_eq!(
            catalogue_model("Qwen/Qwen2.5-7B-Instruct").ok().as_deref(),
            Some("qwen2.5-7b-instruct")
        );
        assert_eq!(
            catalogue_model("qwen/qwen2.5-7b-instruct").ok().as_deref(),
            Some("qwen2.5-7b-instruct")
        );
        assert_eq!(
            catalogue_model("/models/Qwen2.5-7B-Instruct/")
                .ok()
                .as_deref(),
            Some("qwen2.5-7b-instruct")
        );
        assert_eq!(
            catalogue_model("qwen2.5-0.5b-instruct").ok().as_deref(),
            Some("qwen2.5-0.5b-instruct")
        );
        let e = catalogue_model("acme/unknown-7b")
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("--hf-config") && e.contains("Qwen/Qwen2.5-7B-Instruct"),
            "{e}"
        );
    }
}
