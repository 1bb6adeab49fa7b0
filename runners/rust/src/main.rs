//! trbench's reference external runner (docs/runner-contract.md).
//!
//! stdin: JSON Lines, one job per line (a single job is one line); stdout: one JSON line per
//! request, then {"job_end": <id>} per job. Exits when stdin ends.

mod clock;
mod exchange;

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

use exchange::{Limits, Outcome};

/// Where trbench puts the server's API key for the runner (trbench/backends/auth.py RUNNER_KEY_ENV).
const API_KEY_ENV: &str = "TRBENCH_RUNNER_API_KEY";

fn main() {
    // tokio's default runtime (multi-thread, a worker per core): seed 003's "tokio-default"
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    // one pooled client for the whole process, as trbench's Python client keeps one per server;
    // trust no proxy: a benchmark of a local server must never go through one
    let headers = auth_headers();
    let client = runtime.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .default_headers(headers)
            .build()
            .expect("an HTTP client")
    });
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(err) => fatal(&format!("cannot read stdin: {}", err)),
        };
        if line.trim().is_empty() {
            continue;
        }
        let job: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(err) => fatal(&format!("the job is not JSON: {}", err)),
        };
        if let Err(message) = runtime.block_on(run_job(&client, &job)) {
            fatal(&message);
        }
    }
}

/// The server's API key, from the environment trbench starts the runner in (never argv or a job,
/// which `ps` and error lines show): every request carries `Authorization: Bearer <key>` when
/// TRBENCH_RUNNER_API_KEY is set and not empty.
fn auth_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(key) = std::env::var_os(API_KEY_ENV).filter(|k| !k.is_empty()) {
        let key = key.into_string().unwrap_or_else(|_| fatal(&format!("{} is not UTF-8", API_KEY_ENV)));
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key))
            .unwrap_or_else(|_| fatal(&format!("{} holds characters a header cannot carry", API_KEY_ENV)));
        value.set_sensitive(true); // kept out of reqwest's Debug output
        headers.insert(AUTHORIZATION, value);
    }
    headers
}

/// A malformed job is the caller's bug: one line on stderr and exit status 2.
fn fatal(message: &str) -> ! {
    eprintln!("trbench-runner: {}", message);
    std::process::exit(2);
}

fn emit(record: &Value) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", record).and_then(|_| out.flush()).is_err() {
        std::process::exit(1); // the reader is gone
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("job field '{}' is missing", name))
}

fn text_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    field(v, name)?.as_str().ok_or_else(|| format!("job field '{}' must be a string", name))
}

/// One request of a job: where it goes and the exact body trbench built for it.
struct Call {
    id: Value,
    path: String,
    body: Value,
}

fn calls(list: Option<&Value>) -> Result<Vec<Call>, String> {
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("job field 'requests'/'calls' must be a list".into()),
    };
    items
        .iter()
        .map(|r| Ok(Call { id: r.get("id").cloned().unwrap_or(Value::Null), path: text_field(r, "path")?.to_string(), body: field(r, "body")?.clone() }))
        .collect()
}

async fn run_job(client: &reqwest::Client, job: &Value) -> Result<(), String> {
    let backend = text_field(job, "backend")?.to_string();
    if backend != "openai" && backend != "ollama" {
        return Err(format!("job field 'backend' must be openai or ollama, got {}", backend));
    }
    let options = job.get("options").cloned().unwrap_or(Value::Null);
    let limits = Arc::new(Limits {
        timeout_s: options.get("timeout_s").and_then(Value::as_f64).unwrap_or(300.0),
        stall_timeout_s: options.get("stall_timeout_s").and_then(Value::as_f64),
    });
    let requests = calls(job.get("requests"))?;
    if !requests.is_empty() {
        let base = text_field(job, "url")?.trim_end_matches('/').to_string();
        for call in requests {
            let url = format!("{}{}", base, call.path);
            let out = exchange::run(client, &backend, &url, &call.body, &limits).await;
            emit(&with_keys(out.record, &call.id, None));
        }
    }
    if let Some(agents) = job.get("agents").and_then(Value::as_array) {
        let concurrent = job.get("agents_mode").and_then(Value::as_str).unwrap_or("concurrent") == "concurrent";
        let placeholder = job.get("previous_placeholder").and_then(Value::as_str).unwrap_or("").to_string();
        let mut plans = Vec::new();
        for agent in agents {
            let role = text_field(agent, "role")?.to_string();
            let base = text_field(agent, "url")?.trim_end_matches('/').to_string();
            plans.push(AgentPlan { role, base, calls: calls(agent.get("calls"))?, placeholder: placeholder.clone() });
        }
        let records = if concurrent {
            run_concurrently(client, &backend, &limits, plans).await
        } else {
            let mut all = Vec::new();
            for plan in plans {
                all.extend(run_agent(client.clone(), backend.clone(), limits.clone(), plan, None).await);
            }
            all
        };
        // written after the agents are done: no write to a slow pipe inside a measured window
        for record in &records {
            emit(record);
        }
    }
    emit(&json!({"job_end": job.get("id").cloned().unwrap_or(Value::Null)}));
    Ok(())
}

fn with_keys(mut record: Value, id: &Value, agent: Option<&str>) -> Value {
    record["id"] = id.clone();
    record["agent"] = agent.map(Value::from).unwrap_or(Value::Null);
    record
}

struct AgentPlan {
    role: String,
    base: String,
    calls: Vec<Call>,
    placeholder: String,
}

/// Every agent a tokio task on its own instance, all released at once by a barrier.
async fn run_concurrently(client: &reqwest::Client, backend: &str, limits: &Arc<Limits>, plans: Vec<AgentPlan>) -> Vec<Value> {
    let barrier = Arc::new(tokio::sync::Barrier::new(plans.len()));
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|plan| tokio::spawn(run_agent(client.clone(), backend.to_string(), limits.clone(), plan, Some(barrier.clone()))))
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.extend(task.await.unwrap_or_default());
    }
    records
}

/// The agent's calls in order, each fed the previous answer; a failed call ends the workflow (the
/// next one needs its answer).
async fn run_agent(client: reqwest::Client, backend: String, limits: Arc<Limits>, plan: AgentPlan,
                   barrier: Option<Arc<tokio::sync::Barrier>>) -> Vec<Value> {
    if let Some(b) = barrier {
        b.wait().await;
    }
    let mut previous = String::new();
    let mut records = Vec::new();
    for call in plan.calls {
        let body = if plan.placeholder.is_empty() {
            call.body
        } else {
            let fed = if previous.is_empty() { "(no answer)" } else { previous.as_str() };
            substitute(call.body, &plan.placeholder, fed)
        };
        let url = format!("{}{}", plan.base, call.path);
        let Outcome { record, answer, ok } = exchange::run(&client, &backend, &url, &body, &limits).await;
        records.push(with_keys(record, &call.id, Some(&plan.role)));
        if !ok {
            break;
        }
        previous = answer;
    }
    records
}

/// The body with the placeholder replaced in every string (JSON-escaped by serde when sent).
fn substitute(value: Value, placeholder: &str, text: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(placeholder, text)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| substitute(v, placeholder, text)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, substitute(v, placeholder, text))).collect()),
        other => other,
    }
}
