//! The typed client of the journal, for the node's routes and anything else that asks it.
//!
//! Owns: sending appends to the commit thread and reads to the reader worker, answering
//! checkpoints and the key from what the journal published, and turning every failure
//! into a [`Refusal`], so a caller matches on one error type. Ids, barcodes and action ids
//! arrive parsed. Must never: send a read to the commit thread, or write anything itself.

use super::{
    Appended, ConsistencyProof, Filter, InclusionProof, Journal, JournalReader, JournalRequest,
    JournalResponse, JournalShared, NewEntry, Refusal, StoredEntry,
};
use axon_protocols::journal::{ActionId, Barcode, EntryId};
use axon_supervisors::{CallOptions, WorkerRef};
use std::sync::Arc;

/// The journal, as the rest of the node sees it.
#[derive(Clone)]
pub struct JournalClient {
    writer: WorkerRef<Journal>,
    reader: WorkerRef<JournalReader>,
    shared: Arc<JournalShared>,
}

/// A page of entries and the index to continue after (`None` at the end).
pub type Page = (Vec<StoredEntry>, Option<u64>);

fn unexpected(what: JournalResponse) -> Refusal {
    Refusal::Internal(format!("the journal answered with {what:?}"))
}

impl JournalClient {
    pub fn new(
        writer: WorkerRef<Journal>,
        reader: WorkerRef<JournalReader>,
        shared: Arc<JournalShared>,
    ) -> Self {
        Self {
            writer,
            reader,
            shared,
        }
    }

    /// What the journal publishes: whether it is halted, among others.
    pub fn shared(&self) -> &Arc<JournalShared> {
        &self.shared
    }

    async fn read(
        &self,
        r: JournalRequest,
        opts: &CallOptions,
    ) -> Result<JournalResponse, Refusal> {
        match self.reader.call(r, opts).await? {
            JournalResponse::Refused(refusal) => Err(refusal),
            answer => Ok(answer),
        }
    }

    async fn entries(
        &self,
        r: JournalRequest,
        opts: &CallOptions,
    ) -> Result<Vec<StoredEntry>, Refusal> {
        match self.read(r, opts).await? {
            JournalResponse::Entries(es) => Ok(es),
            other => Err(unexpected(other)),
        }
    }

    async fn one(&self, r: JournalRequest, opts: &CallOptions) -> Result<StoredEntry, Refusal> {
        match self.read(r, opts).await? {
            JournalResponse::Entry(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// Appends an entry; answers once it is durable.
    pub async fn append(&self, new: NewEntry, opts: &CallOptions) -> Result<Appended, Refusal> {
        match self.writer.call(JournalRequest::Append(new), opts).await? {
            JournalResponse::Appended(a) => Ok(a),
            JournalResponse::Refused(refusal) => Err(refusal),
            other => Err(unexpected(other)),
        }
    }

    pub async fn entry(&self, index: u64, opts: &CallOptions) -> Result<StoredEntry, Refusal> {
        self.one(JournalRequest::Entry(index), opts).await
    }

    pub async fn by_id(&self, id: EntryId, opts: &CallOptions) -> Result<StoredEntry, Refusal> {
        self.one(JournalRequest::ById(id), opts).await
    }

    pub async fn by_barcode(
        &self,
        code: Barcode,
        opts: &CallOptions,
    ) -> Result<Vec<StoredEntry>, Refusal> {
        self.entries(JournalRequest::ByBarcode(code), opts).await
    }

    pub async fn by_action(
        &self,
        action: ActionId,
        opts: &CallOptions,
    ) -> Result<Vec<StoredEntry>, Refusal> {
        self.entries(JournalRequest::ByAction(action), opts).await
    }

    pub async fn query(
        &self,
        filter: Filter,
        after: Option<u64>,
        limit: usize,
        opts: &CallOptions,
    ) -> Result<Page, Refusal> {
        let r = JournalRequest::Query {
            filter,
            after,
            limit,
        };
        match self.read(r, opts).await? {
            JournalResponse::Page {
                entries,
                next_after,
            } => Ok((entries, next_after)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn inclusion(
        &self,
        index: u64,
        size: u64,
        opts: &CallOptions,
    ) -> Result<InclusionProof, Refusal> {
        match self
            .read(JournalRequest::Inclusion { index, size }, opts)
            .await?
        {
            JournalResponse::Inclusion(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    pub async fn consistency(
        &self,
        from: u64,
        to: u64,
        opts: &CallOptions,
    ) -> Result<ConsistencyProof, Refusal> {
        match self
            .read(JournalRequest::Consistency { from, to }, opts)
            .await?
        {
            JournalResponse::Consistency(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// The newest checkpoint in the checkpoint log: no message, no write.
    pub fn checkpoint(&self) -> Result<String, Refusal> {
        self.shared.checkpoint()
    }

    /// The verifier key.
    pub fn key(&self) -> Result<String, Refusal> {
        self.shared
            .key()
            .ok_or_else(|| Refusal::Busy("the journal has not opened yet".into()))
    }
}
