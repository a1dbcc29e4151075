//! The job kinds an engine can run: each is a name, a description, typed params and an
//! ordinary async function that receives the params and a [`ProgressReporter`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{JobError, ProgressReporter};
use crate::model::{KindDescription, KindInfo};

/// A job's code, ready to run.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send>>;

/// A job whose params were accepted, waiting for its reporter.
pub(crate) type PreparedJob = Box<dyn FnOnce(ProgressReporter) -> JobFuture + Send>;

/// The params of a job kind: read from JSON (missing fields take their defaults, unknown
/// fields are refused with `#[serde(deny_unknown_fields)]`), then checked. `Default` gives
/// the defaults clients are shown, `JsonSchema` (derive it; `#[schemars(range(min = 1, max =
/// 100))]` states a field's range) the JSON Schema they are shown: plain JSON Schema data,
/// which the web layer puts into its OpenAPI document.
pub trait JobParams: DeserializeOwned + Serialize + Default + JsonSchema + Send + 'static {
    /// Checks values that parse but are not allowed; the error names the field and its range.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

type Prepare = dyn Fn(Value) -> Result<PreparedJob, String> + Send + Sync;

struct Kind {
    description: &'static str,
    /// Whether a run cut short by a restart continues from its checkpoint.
    resumable: bool,
    params_schema: Value,
    defaults: Value,
    prepare: Box<Prepare>,
}

/// The JSON Schema of `P`, without the `$schema` marker (it is embedded in other documents).
fn params_schema<P: JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(P).to_value();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    schema
}

/// Reads params from JSON, naming the field at fault when it does not fit.
fn parse_params<P: JobParams>(raw: Value) -> Result<P, String> {
    let raw = match raw {
        Value::Null => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            let kind = match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a boolean",
            };
            return Err(format!("params must be a JSON object, got {kind}"));
        }
    };
    let params: P = serde_path_to_error::deserialize(whole_numbers(raw)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("field `{path}`: {}", e.into_inner())
        }
    })?;
    params.validate()?;
    Ok(params)
}

/// `value` with every number that is whole written as an integer: JSON (and JSON Schema's
/// `integer`) does not tell `3.0` from `3`, but serde's integer fields take only the latter.
/// Numbers past 2^53, which a float cannot hold exactly, are left as they are.
fn whole_numbers(value: Value) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            #[allow(clippy::cast_possible_truncation)] // whole and within ±2^53: exact
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect()),
        other => other,
    }
}

/// The kinds an engine knows, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct KindRegistry {
    kinds: Arc<BTreeMap<&'static str, Kind>>,
}

impl KindRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind: `run` is called with the parsed params and the job's reporter, and its
    /// `Ok` value becomes the job's result (as JSON). A later kind of the same name replaces
    /// an earlier one.
    ///
    /// # Panics
    /// When called after the registry was cloned (kinds are registered at start-up).
    pub fn register<P, R, F, Fut>(&mut self, name: &'static str, description: &'static str, run: F) -> &mut Self
    where
        P: JobParams,
        R: Serialize + 'static,
        F: Fn(P, ProgressReporter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    {
        self.add(name, description, run, false)
    }

    /// Adds a kind whose runs survive a restart: its code saves checkpoints with
    /// [`ProgressReporter::checkpoint`] and, when the server stopped or died while it ran, is
    /// called again after the restart with [`ProgressReporter::resume_point`] giving the last
    /// one; its events go on from the last stored sequence number. Other kinds' runs end
    /// `interrupted` instead.
    ///
    /// # Panics
    /// As [`register`](Self::register).
    pub fn register_resumable<P, R, F, Fut>(
        &mut self,
        name: &'static str,
        description: &'static str,
        run: F,
    ) -> &mut Self
    where
        P: JobParams,
        R: Serialize + 'static,
        F: Fn(P, ProgressReporter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    {
        self.add(name, description, run, true)
    }

    fn add<P, R, F, Fut>(&mut self, name: &'static str, description: &'static str, run: F, resumable: bool) -> &mut Self
    where
        P: JobParams,
        R: Serialize + 'static,
        F: Fn(P, ProgressReporter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    {
        let run = Arc::new(run);
        let prepare = move |raw: Value| -> Result<PreparedJob, String> {
            let params: P = parse_params(raw)?;
            let run = run.clone();
            Ok(Box::new(move |reporter: ProgressReporter| -> JobFuture {
                let fut = run(params, reporter);
                Box::pin(async move {
                    let value = fut.await?;
                    serde_json::to_value(value)
                        .map_err(|e| JobError::msg(format!("the job's result could not be encoded as JSON: {e}")))
                })
            }))
        };
        #[allow(clippy::expect_used)] // start-up only, documented above
        Arc::get_mut(&mut self.kinds).expect("kinds are registered before the registry is shared").insert(
            name,
            Kind {
                description,
                resumable,
                params_schema: params_schema::<P>(),
                defaults: serde_json::to_value(P::default()).unwrap_or(Value::Null),
                prepare: Box::new(prepare),
            },
        );
        self
    }

    /// The kinds, sorted by name.
    pub fn infos(&self) -> Vec<KindInfo> {
        self.kinds
            .iter()
            .map(|(name, kind)| KindInfo { name: (*name).to_string(), description: kind.description.to_string() })
            .collect()
    }

    /// The kinds with their params' schema and defaults, sorted by name.
    pub fn descriptions(&self) -> Vec<KindDescription> {
        self.kinds
            .iter()
            .map(|(name, kind)| KindDescription {
                name: (*name).to_string(),
                description: kind.description.to_string(),
                params_schema: kind.params_schema.clone(),
                defaults: kind.defaults.clone(),
            })
            .collect()
    }

    /// The kind names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.kinds.keys().map(|n| (*n).to_string()).collect()
    }

    /// Parses and checks `params` for `kind`. `None` when no such kind exists.
    pub(crate) fn prepare(&self, kind: &str, params: Value) -> Option<Result<PreparedJob, String>> {
        self.kinds.get(kind).map(|k| (k.prepare)(params))
    }

    /// Whether `params` would be accepted for `kind`, without starting anything: `None` when
    /// no such kind exists, else what starting it would say of the params.
    pub fn check_params(&self, kind: &str, params: Value) -> Option<Result<(), String>> {
        self.prepare(kind, params).map(|prepared| prepared.map(drop))
    }

    /// Whether `kind` continues from its checkpoint after a restart.
    pub fn is_resumable(&self, kind: &str) -> bool {
        self.kinds.get(kind).is_some_and(|k| k.resumable)
    }

    /// The registered name for `kind`, as a `'static` string.
    pub(crate) fn canonical_name(&self, kind: &str) -> Option<&'static str> {
        self.kinds.get_key_value(kind).map(|(name, _)| *name)
    }
}
