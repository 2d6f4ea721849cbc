//! Obligations: the JSON Schemas a driver's calls are held to. `args` is checked before
//! the driver sees an intent, `precondition` over the whole intent, `postcondition` over
//! the outcome; each is compiled once, when the manifest is read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The obligations as written in a manifest (`[obligations.args]` and so on, each a JSON
/// Schema written as a TOML table).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObligationsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precondition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcondition: Option<Value>,
}

/// Which obligation a value broke, where in the value, and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{which}: at {path:?}: {reason}")]
pub struct Violation {
    /// `args`, `precondition` or `postcondition`.
    pub which: &'static str,
    /// A JSON Pointer into the checked value (`""` for the value itself).
    pub path: String,
    pub reason: String,
}

/// The compiled obligations of one driver.
#[derive(Clone)]
pub struct Obligations {
    spec: ObligationsSpec,
    /// The arguments every driver of its kind needs (a file driver's file name).
    kind_args: Option<std::sync::Arc<jsonschema::Validator>>,
    args: Option<std::sync::Arc<jsonschema::Validator>>,
    precondition: Option<std::sync::Arc<jsonschema::Validator>>,
    postcondition: Option<std::sync::Arc<jsonschema::Validator>>,
}

impl std::fmt::Debug for Obligations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Obligations")
            .field("spec", &self.spec)
            .finish()
    }
}

fn compile(
    which: &'static str,
    schema: &Option<Value>,
) -> Result<Option<std::sync::Arc<jsonschema::Validator>>, (&'static str, String)> {
    match schema {
        None => Ok(None),
        Some(s) => jsonschema::validator_for(s)
            .map(|v| Some(std::sync::Arc::new(v)))
            .map_err(|e| (which, format!("not a valid JSON Schema: {e}"))),
    }
}

fn check(
    which: &'static str,
    validator: &Option<std::sync::Arc<jsonschema::Validator>>,
    value: &Value,
) -> Result<(), Violation> {
    let Some(v) = validator else {
        return Ok(());
    };
    match v.iter_errors(value).next() {
        None => Ok(()),
        Some(e) => Err(Violation {
            which,
            path: e.instance_path().to_string(),
            reason: e.to_string(),
        }),
    }
}

impl Obligations {
    /// Compiles each schema, with `kind_args` (the arguments the driver's kind needs)
    /// checked before the manifest's own `args`; the error names the obligation and why
    /// its schema is bad.
    pub fn compile(
        spec: &ObligationsSpec,
        kind_args: Option<Value>,
    ) -> Result<Self, (&'static str, String)> {
        Ok(Self {
            kind_args: compile("args", &kind_args)?,
            args: compile("args", &spec.args)?,
            precondition: compile("precondition", &spec.precondition)?,
            postcondition: compile("postcondition", &spec.postcondition)?,
            spec: spec.clone(),
        })
    }

    /// The schemas as written, for the driver's descriptor.
    pub fn spec_json(&self) -> Value {
        serde_json::to_value(&self.spec).expect("schemas are JSON values")
    }

    /// Checks an intent's arguments before the driver sees them.
    pub fn check_args(&self, args: &Value) -> Result<(), Violation> {
        check("args", &self.kind_args, args)?;
        check("args", &self.args, args)
    }

    /// Checks the whole intent (its JSON form) before the driver is called.
    /// Checks the whole intent against the precondition (the intent is turned into JSON
    /// only when there is one).
    pub fn check_precondition(
        &self,
        intent: &axon_protocols::intent::AxonIntent,
    ) -> Result<(), Violation> {
        if self.precondition.is_none() {
            return Ok(());
        }
        let whole = serde_json::to_value(intent).expect("an intent is plain data");
        check("precondition", &self.precondition, &whole)
    }

    /// Checks the outcome the driver answered; a violation makes the outcome `failed`.
    pub fn check_postcondition(&self, outcome: &Value) -> Result<(), Violation> {
        check("postcondition", &self.postcondition, outcome)
    }
}
