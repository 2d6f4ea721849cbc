//! Group commit: a worker whose `batch_limit()` is `Some` gets the requests that queue up
//! while one batch is handled together, and each is answered in order.

use super::caller::Envelope;
use super::host::{Host, Outcome};
use super::{panic_message, Worker, WorkerContext};
use crate::supervisor::Exit;
use actix::prelude::*;
use futures::future;
use std::panic::{catch_unwind, AssertUnwindSafe};

impl<W: Worker> Host<W> {
    /// Queues `env` for the next group commit of at most `max` requests: a full batch
    /// commits at once, otherwise one commit is scheduled for when the mailbox is drained
    /// and the batch wait is over, so what queues meanwhile commits together.
    pub(super) fn add_to_batch(&mut self, env: Envelope<W>, max: usize, ctx: &mut Context<Self>) {
        self.batch.push(env);
        if self.batch.len() >= max.max(1) {
            self.flush_batch(ctx);
        } else if !self.flush_scheduled {
            // Runs once the mailbox is drained (and the batch wait is over):
            // what queued meanwhile commits together.
            let Ok(wait) = self.hook("batch_wait()", |w| w.batch_wait(), ctx) else {
                return;
            };
            self.flush_scheduled = true;
            let ready = if wait.is_zero() {
                Box::pin(future::ready(())) as futures::future::BoxFuture<'static, ()>
            } else {
                self.clock.sleep(wait)
            };
            ctx.spawn(ready.into_actor(self).map(|_, act: &mut Self, ctx| {
                act.flush_scheduled = false;
                act.flush_batch(ctx);
            }));
        }
    }

    /// Hands the queued batch to the worker and answers every request of it.
    #[inline]
    pub(super) fn flush_batch(&mut self, ctx: &mut Context<Self>) {
        if !self.batch.is_empty() {
            self.flush_waiting_batch(ctx);
        }
    }

    fn flush_waiting_batch(&mut self, ctx: &mut Context<Self>) {
        let envs = std::mem::take(&mut self.batch);
        let mut replies = Vec::with_capacity(envs.len());
        let mut requests = Vec::with_capacity(envs.len());
        let mut spans = Vec::with_capacity(envs.len());
        for mut env in envs {
            if env.reply.as_ref().is_some_and(|r| r.is_closed()) {
                // The caller has gone: nobody waits for this request's effect.
                self.shared.mailbox.abandoned.inc();
                continue;
            }
            if let (Some(req), Some(reply)) = (env.request.take(), env.reply.take()) {
                spans.push(tracing::info_span!(
                    parent: env.parent.as_ref().and_then(|p| p.id()),
                    "actor",
                    actor = %self.shared.id,
                    correlation_id = env.correlation_id.as_deref().unwrap_or(""),
                    batch = tracing::field::Empty
                ));
                requests.push(req);
                replies.push(reply);
            }
        }
        let n = requests.len();
        if n == 0 {
            return;
        }
        for span in &spans {
            span.record("batch", n);
        }
        let mut cx = WorkerContext {
            actor: &self.shared.id,
            correlation_id: None,
            stop: false,
        };
        let started = self.handler_times.now();
        let worker = &mut self.worker;
        let outcome = catch_unwind(AssertUnwindSafe(|| worker.handle_batch(requests, &mut cx)));
        self.handler_times
            .observe(started, self.handler_times.now());
        let stop = cx.stop;
        let failure = match outcome {
            Ok(Ok(answers)) if answers.len() == n => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let outcome = match answer {
                        Ok(v) => Outcome::Answered(v),
                        Err(reason) => Outcome::Rejected(reason),
                    };
                    self.reply(reply, outcome);
                }
                if stop {
                    self.exit = Exit::Normal;
                    ctx.stop();
                }
                return;
            }
            Ok(Ok(answers)) => Exit::Failed(format!(
                "handle_batch answered {} of {n} requests",
                answers.len()
            )),
            Ok(Err(e)) => Exit::Failed(e.to_string()),
            Err(p) => Exit::Panicked(panic_message(&*p)),
        };
        tracing::warn!(actor = %self.shared.id, exit = %failure, "actor failed");
        for reply in replies {
            self.reply(reply, Outcome::Failed(failure.to_string()));
        }
        self.fail(failure, ctx);
    }
}
