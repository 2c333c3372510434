//! The bridge between HTTP requests and the method table: each call runs as a connection of its
//! own, in a task of its own, and is cancelled when the HTTP client goes away mid-call.

use std::net::SocketAddr;
use std::sync::Arc;

use jsonrpsee::Methods;
use jsonrpsee_types::{ErrorObject, ErrorObjectOwned};
use mcli_protocol::{Method, code};

use crate::transport::Transports;
use crate::transport::context::ConnectionCtx;
use crate::transport::dispatch;

/// What a streamed call hands over: a notification as sent, then the result.
pub enum Streamed<T> {
    Note(bytes::Bytes),
    Done(Result<T, ErrorObjectOwned>),
}

/// What every HTTP handler gets: the way to the methods, and what the checks need.
#[derive(Clone)]
pub struct Bridge {
    transports: Transports,
    /// `None` when auth is off (allowed for a loopback bind only).
    pub token: Option<Arc<str>>,
    /// The bound address: a `Host` naming it is accepted besides the loopback names.
    pub bound: SocketAddr,
}

impl Bridge {
    pub fn new(transports: Transports, token: Option<Arc<str>>, bound: SocketAddr) -> Self {
        Bridge { transports, token, bound }
    }

    /// Calls method `M` with typed params, as over any transport: the same handler, checks and
    /// history. Output is not streamed over HTTP.
    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result, ErrorObjectOwned> {
        let call = self.detached(move |methods, ctx| async move { dispatch::call::<M>(&methods, &ctx, params).await });
        call.await.unwrap_or_else(|| {
            let message = format!("internal error: the `{}` call did not finish; see the server log", M::NAME);
            Err(ErrorObject::owned(code::INTERNAL_ERROR, message, None::<()>))
        })
    }

    /// Calls method `M` and hands over its notifications as they come, then its result: for an
    /// endpoint that streams (`GET /jobs/ID/output?follow=true`). Dropping the receiver ends the
    /// call as a hang-up would.
    pub fn streamed<M: Method>(&self, params: M::Params) -> tokio::sync::mpsc::Receiver<Streamed<M::Result>> {
        let lifecycle = &self.transports.lifecycle;
        let (ctx, mut outgoing) = ConnectionCtx::new(lifecycle, self.transports.next_id(), "http", true);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (methods, hang_up) = (self.transports.methods.clone(), ctx.hang_up_token());
        lifecycle.tasks.spawn(async move {
            let call = async move {
                let result = dispatch::call::<M>(&methods, &ctx, params).await;
                drop(ctx);
                result
            };
            let notes = tx.clone();
            let forward = async move {
                while let Some(message) = outgoing.recv().await {
                    if notes.send(Streamed::Note(message)).await.is_err() {
                        hang_up.cancel();
                    }
                }
            };
            let (result, ()) = tokio::join!(call, forward);
            let _ = tx.send(Streamed::Done(result)).await;
        });
        rx
    }

    /// Dispatches one raw JSON-RPC message (or batch); output is not streamed over HTTP unless
    /// asked for, and then dropped. `None` when there is nothing to answer.
    pub async fn raw(&self, message: &[u8]) -> Option<Vec<u8>> {
        let message = message.to_vec();
        let reply =
            self.detached(move |methods, ctx| async move { dispatch::handle_message(&methods, &ctx, &message).await });
        reply.await.flatten()
    }

    /// Runs `work` on a connection context of its own, in a task of its own: when the HTTP client
    /// goes away, hyper drops the returned future, and its guard cancels the work, which then
    /// ends (its process tree with it) and is recorded like any cancelled call instead of
    /// vanishing mid-run. `None` when the task did not finish.
    async fn detached<T, F, Fut>(&self, work: F) -> Option<T>
    where
        F: FnOnce(Methods, Arc<ConnectionCtx>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let lifecycle = &self.transports.lifecycle;
        let (ctx, mut outgoing) = ConnectionCtx::new(lifecycle, self.transports.next_id(), "http", false);
        let _hang_up = ctx.hang_up_token().drop_guard();
        let work = work(self.transports.methods.clone(), ctx);
        let task = lifecycle.tasks.spawn(async move {
            let drain = tokio::spawn(async move { while outgoing.recv().await.is_some() {} });
            // The work holds the connection context until it ends; the drain ends with it.
            let result = work.await;
            let _ = drain.await;
            result
        });
        task.await.ok()
    }
}
