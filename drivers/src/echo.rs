//! The echo driver: answers each intent with its arguments and touches nothing.

use crate::descriptor::DriverDescriptor;
use crate::driver::{Call, Outcome, Prediction};

/// Answers every intent with its arguments.
#[derive(Debug)]
pub struct Echo {
    descriptor: DriverDescriptor,
    handled: u64,
}

impl Echo {
    /// An echo driver that describes itself with `descriptor` (from its manifest).
    pub fn new(descriptor: DriverDescriptor) -> Self {
        Self {
            descriptor,
            handled: 0,
        }
    }

    /// Pushes this instance has answered.
    pub fn handled(&self) -> u64 {
        self.handled
    }
}

/// The built-in `echo`, described by its compiled-in manifest.
impl Default for Echo {
    fn default() -> Self {
        Self::new(descriptor().clone())
    }
}

/// The descriptor of the built-in `echo`, from its compiled-in manifest.
pub fn descriptor() -> &'static DriverDescriptor {
    static DESCRIPTOR: std::sync::LazyLock<DriverDescriptor> = std::sync::LazyLock::new(|| {
        crate::builtin_manifest("echo")
            .expect("echo is built in")
            .descriptor()
    });
    &DESCRIPTOR
}

impl crate::driver::Driver for Echo {
    fn describe(&self) -> DriverDescriptor {
        self.descriptor.clone()
    }

    fn effect(&self) -> crate::descriptor::Effect {
        self.descriptor.effect
    }

    /// Exact: a push answers the arguments, whatever they are.
    fn predict(&mut self, call: &Call) -> Prediction {
        Prediction::Expected {
            output: call.intent.args.clone(),
            utility: 1.0,
        }
    }

    fn push(&mut self, call: &Call) -> Outcome {
        self.handled += 1;
        Outcome::ok(call.intent.args.clone())
    }

    fn pull(&mut self, call: &Call) -> Outcome {
        self.handled += 1;
        Outcome::ok(call.intent.args.clone())
    }
}
