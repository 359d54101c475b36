//! The agent's trace requests: a YAML (or JSON) file, mounted from a ConfigMap, listing what to
//! record on every node:
//!
//! ```yaml
//! requests:
//!   - name: checkout-slow
//!     namespace: shop            # default: every namespace
//!     pod: "checkout-*"          # a glob on the pod's name
//!     container: app             # default: every container of the pod
//!     functions: [handler, "db::*"]
//!     filters: "--min-latency 5ms --where 'status >= 500'"   # the live trace's flags
//!     duration: 30m              # default: until the request is removed
//!     maxSize: 64MiB             # a recording rotates at this size
//! ```
//!
//! Each request is checked on its own: one that is invalid (an unknown field, a bad glob, a
//! flag the live trace does not know) is rejected with its reason and the others still run.
//! The filters are parsed by the live trace's own command line, so they mean exactly what they
//! mean there.

use std::{collections::HashSet, time::Duration};

use clap::Parser as _;
use serde::Deserialize;

use crate::cli::{
    args::{Cli, Command, TraceArgs},
    parse::{parse_nonzero_duration, parse_size},
};

/// The size a recording rotates at when the request does not say.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;

/// A request as written in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Written {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    pod: String,
    #[serde(default)]
    container: Option<String>,
    functions: Vec<String>,
    #[serde(default)]
    filters: Option<Filters>,
    #[serde(default)]
    duration: Option<Scalar>,
    #[serde(default, alias = "max_size")]
    max_size: Option<Scalar>,
}

/// A duration or size: `30m`, `64MiB`, or a bare number (seconds, bytes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(u64),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(n) => n.to_string(),
        }
    }
}

/// The live trace's flags: one string, split as a shell would, or a list of words.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum Filters {
    Line(String),
    Words(Vec<String>),
}

/// A valid request.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub namespace: Option<String>,
    pub pod: String,
    pub container: Option<String>,
    /// The live trace's options for it, the target and the output left to the agent.
    pub trace: TraceArgs,
    /// How long it records from when the agent first saw it; `None`: until removed.
    pub duration: Option<Duration>,
    /// A recording rotates at this size.
    pub max_size: u64,
    /// What it says, to tell a changed request from the same one read again.
    pub fingerprint: String,
}

impl Request {
    /// `handler, db::* in pods `checkout-*` of namespace shop`: what it traces where.
    pub fn what(&self) -> String {
        let functions: Vec<String> = self.trace.functions.iter().map(|f| f.to_string()).collect();
        format!(
            "{} in pods `{}`{}",
            functions.join(", "),
            self.pod,
            self.namespace
                .as_ref()
                .map_or(String::new(), |ns| format!(" of namespace {ns}"))
        )
    }
}

/// A request the agent cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its name, or `#N` (its place in the list) when it has none.
    pub name: String,
    pub reason: String,
}

/// What a requests file holds: the valid requests and the rejected ones.
#[derive(Debug, Default)]
pub struct Requests {
    pub valid: Vec<Request>,
    pub rejected: Vec<Rejected>,
}

/// Reads the text of a requests file. An empty file holds no request; a file that is not YAML
/// is an error (the caller keeps what it had).
pub fn parse(text: &str) -> Result<Requests, String> {
    if text.trim().is_empty() {
        return Ok(Requests::default());
    }
    let file: serde_norway::Value =
        serde_norway::from_str(text).map_err(|err| format!("not YAML: {err}"))?;
    let items = requests_in(file)?;
    let mut requests = Requests::default();
    let mut names = HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let name = item
            .get("name")
            .and_then(|name| name.as_str())
            .map_or_else(|| format!("#{}", index + 1), str::to_string);
        let checked = serde_norway::from_value::<Written>(item)
            .map_err(|err| err.to_string())
            .and_then(check);
        match checked {
            Ok(request) if !names.insert(request.name.clone()) => {
                requests.rejected.push(Rejected {
                    name,
                    reason: "another request has this name".into(),
                })
            }
            Ok(request) => requests.valid.push(request),
            Err(reason) => requests.rejected.push(Rejected { name, reason }),
        }
    }
    Ok(requests)
}

/// The list of a file: `requests:` holding it, or the list alone.
fn requests_in(file: serde_norway::Value) -> Result<Vec<serde_norway::Value>, String> {
    use serde_norway::Value;
    let list = match file {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(list) => return Ok(list),
        Value::Mapping(mut map) => {
            if let Some(other) = map.keys().find(|key| key.as_str() != Some("requests")) {
                return Err(format!(
                    "unknown key `{}` (the file holds `requests:`, a list)",
                    serde_norway::to_string(other).unwrap_or_default().trim()
                ));
            }
            map.remove("requests").unwrap_or(Value::Null)
        }
        _ => return Err("not a list of requests (`requests:` and a YAML list)".into()),
    };
    match list {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(list) => Ok(list),
        _ => Err("`requests` is not a list".into()),
    }
}

/// Checks a written request and turns its filters into the live trace's options.
fn check(written: Written) -> Result<Request, String> {
    check_name(&written.name)?;
    check_pod_glob(&written.pod)?;
    if let Some(namespace) = &written.namespace {
        check_label("namespace", namespace)?;
    }
    if let Some(container) = &written.container {
        check_label("container", container)?;
    }
    if written.functions.is_empty() {
        return Err("`functions` is empty: name at least one function to trace".into());
    }
    let filters = match &written.filters {
        None => Vec::new(),
        Some(Filters::Words(words)) => words.clone(),
        Some(Filters::Line(line)) => {
            shlex::split(line).ok_or_else(|| format!("filters `{line}`: unbalanced quotes"))?
        }
    };
    let trace = trace_args(&written.functions, &filters)?;
    let duration = written
        .duration
        .as_ref()
        .map(|d| parse_nonzero_duration(&d.text()))
        .transpose()
        .map_err(|err| format!("duration: {err}"))?;
    let max_size = written
        .max_size
        .as_ref()
        .map(|size| parse_size(&size.text()))
        .transpose()
        .map_err(|err| format!("maxSize: {err}"))?
        .unwrap_or(DEFAULT_MAX_SIZE);
    let fingerprint = format!("{written:?}");
    Ok(Request {
        name: written.name,
        namespace: written.namespace,
        pod: written.pod,
        container: written.container,
        trace,
        duration,
        max_size,
        fingerprint,
    })
}

/// The live trace's options from `--fn` for each function and the request's filters; the
/// flags the agent sets itself (target, output, duration) are refused, with what to write
/// instead.
fn trace_args(functions: &[String], filters: &[String]) -> Result<TraceArgs, String> {
    let argv = ["koolkit-trace", "trace"]
        .into_iter()
        .map(str::to_string)
        .chain(
            functions
                .iter()
                .flat_map(|f| ["--fn".to_string(), f.clone()]),
        )
        .chain(filters.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|err| {
        let text = err.to_string();
        let first = text.lines().next().unwrap_or_default();
        format!("filters: {}", first.trim_start_matches("error: "))
    })?;
    let Some(Command::Trace(args)) = cli.command else {
        return Err("filters: not the live trace's flags".into());
    };
    let target = &args.target;
    let refused = [
        (
            target.pid.is_some(),
            "--pid",
            "the agent traces pods: use `pod`",
        ),
        (target.pod.is_some(), "--pod", "use the request's `pod`"),
        (
            target.namespace.is_some(),
            "--namespace",
            "use the request's `namespace`",
        ),
        (
            target.container.is_some(),
            "--container",
            "use the request's `container`",
        ),
        (
            target.cri_socket.is_some() || target.host_root != std::path::Path::new("/"),
            "--cri-socket/--host-root",
            "the agent's own flags say where the node's runtime is",
        ),
        (
            args.output.is_some(),
            "--output",
            "the agent names the files (OUT/<namespace>/<pod>/<request>-<start>.kt)",
        ),
        (
            args.duration.is_some(),
            "--duration",
            "use the request's `duration`",
        ),
        (args.json, "--json", "the agent records to files"),
    ];
    if let Some((_, flag, instead)) = refused.iter().find(|(given, ..)| *given) {
        return Err(format!("filters: {flag} is not for a request: {instead}"));
    }
    args.check_filters()
        .map_err(|err| format!("filters: {err}"))?;
    Ok(args)
}

/// A request's name goes into file names: a DNS label's characters.
fn check_name(name: &str) -> Result<(), String> {
    check_label("name", name)
}

fn check_label(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !value.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{value}`: lower-case letters, digits, `-` and `.` only, as Kubernetes \
             names are"
        ))
    }
}

/// A glob on pod names: a name's characters and `*`, `?`, `[...]` classes that close.
fn check_pod_glob(pattern: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("pod `{pattern}`: {why}"));
    if pattern.is_empty() {
        return bad("empty: give a pod name or a glob (`checkout-*`)");
    }
    let mut in_class = false;
    for c in pattern.chars() {
        match c {
            '[' if in_class => return bad("a `[` inside a `[...]` class"),
            '[' => in_class = true,
            ']' if !in_class => return bad("a `]` without its `[`"),
            ']' => in_class = false,
            '*' | '?' => {}
            '!' | '^' if in_class => {}
            c if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' => {}
            other => {
                return bad(&format!(
                    "`{other}` is in no pod name (lower-case letters, digits, `-`, `.`; globs \
                     with `*`, `?`, `[...]`)"
                ));
            }
        }
    }
    if in_class {
        return bad("a `[` class that does not close");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
requests:
  - name: checkout-slow
    namespace: shop
    pod: "checkout-*"
    container: app
    functions: [handler, "db::*"]
    filters: "--min-latency 5ms --where 'status >= 500'"
    duration: 30m
    maxSize: 16MiB
  - name: cart
    pod: cart-5f6
    functions: [lookup]
"#;

    #[test]
    fn a_requests_file_gives_each_request_its_trace_options() {
        let requests = parse(EXAMPLE).unwrap();
        assert!(requests.rejected.is_empty(), "{:?}", requests.rejected);
        let [slow, cart] = &requests.valid[..] else {
            panic!("{:?}", requests.valid)
        };
        assert_eq!(slow.name, "checkout-slow");
        assert_eq!(slow.namespace.as_deref(), Some("shop"));
        assert_eq!(slow.container.as_deref(), Some("app"));
        assert_eq!(slow.duration, Some(Duration::from_secs(1800)));
        assert_eq!(slow.max_size, 16 << 20);
        assert_eq!(slow.trace.functions.len(), 2);
        assert_eq!(slow.trace.min_latency, Some(Duration::from_millis(5)));
        assert_eq!(
            slow.trace.predicate.as_ref().map(|e| e.text.as_str()),
            Some("status >= 500")
        );
        assert_eq!(cart.namespace, None);
        assert_eq!(cart.duration, None);
        assert_eq!(cart.max_size, DEFAULT_MAX_SIZE);
        assert_ne!(slow.fingerprint, cart.fingerprint);
    }

    #[test]
    fn a_bare_list_and_a_list_of_words_are_requests_too() {
        let text = r#"[{"name": "a", "pod": "x", "functions": ["f"], "filters": ["--stack"]}]"#;
        let requests = parse(text).unwrap();
        assert!(requests.valid[0].trace.stack);
        assert!(parse("").unwrap().valid.is_empty());
        assert!(parse("requests:\n").unwrap().valid.is_empty());
        assert!(parse("requests: [").unwrap_err().starts_with("not YAML"));
        let typo = parse("request:\n  - {name: a, pod: x, functions: [f]}\n").unwrap_err();
        assert!(typo.contains("unknown key `request`"), "{typo}");
        assert!(parse("requests: 3").is_err());
    }

    /// The reason a one-request file is rejected with.
    fn rejected(request: &str) -> String {
        let requests = parse(&format!("requests:\n  - {request}\n")).unwrap();
        assert!(requests.valid.is_empty(), "{request} was accepted");
        requests.rejected[0].reason.clone()
    }

    #[test]
    fn an_invalid_request_is_rejected_with_its_reason_and_the_others_stay() {
        let text = "requests:\n  - {name: ok, pod: x, functions: [f]}\n  - {name: typo, pod: x, \
                    fucntions: [f]}\n  - {pod: y, functions: [f], extra: 1}\n";
        let requests = parse(text).unwrap();
        assert_eq!(requests.valid.len(), 1);
        assert_eq!(requests.rejected[0].name, "typo");
        assert!(
            requests.rejected[0]
                .reason
                .contains("unknown field `fucntions`"),
            "{:?}",
            requests.rejected
        );
        assert_eq!(requests.rejected[1].name, "#3", "unnamed: its place");
        for (request, reason) in [
            ("{name: a, pod: 'x[', functions: [f]}", "does not close"),
            ("{name: a, pod: 'X_*', functions: [f]}", "is in no pod name"),
            ("{name: a, pod: x, functions: []}", "is empty"),
            (
                "{name: a, pod: x, functions: [f], filters: '--bogus'}",
                "--bogus",
            ),
            (
                "{name: a, pod: x, functions: [f], filters: '--min-latency soon'}",
                "soon",
            ),
            (
                "{name: a, pod: x, functions: [f], filters: '-o x.kt'}",
                "--output",
            ),
            (
                "{name: a, pod: x, functions: [f], filters: '--pid 1'}",
                "--pid",
            ),
            (
                "{name: a, pod: x, functions: [f], filters: \"'open\"}",
                "quotes",
            ),
            ("{name: a, pod: x, functions: ['f:'], filters: ''}", "f:"),
            ("{name: A/b, pod: x, functions: [f]}", "name `A/b`"),
            (
                "{name: a, pod: x, functions: [f], duration: 0s}",
                "duration",
            ),
            ("{name: a, pod: x, functions: [f], maxSize: 1}", "maxSize"),
        ] {
            let why = rejected(request);
            assert!(why.contains(reason), "{request}: {why}");
        }
        let twice = parse(
            "requests:\n  - {name: a, pod: x, functions: [f]}\n  - {name: a, pod: y, functions: \
             [g]}\n",
        )
        .unwrap();
        assert_eq!(twice.valid.len(), 1);
        assert_eq!(twice.rejected[0].reason, "another request has this name");
    }
}
