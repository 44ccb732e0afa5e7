//! Which cache a call uses: the cache of the scope it runs in, if any, else
//! the one its attribute names (`cache = …`), else the process-wide one.
//!
//! A scope is a task-local value while its future is polled (so two scoped
//! futures joined on one task each see their own), or a thread-local one
//! while its closure runs. Both are looked up on every call, which costs a
//! thread-local read or two when no scope is set.

use std::cell::RefCell;
use std::future::Future;
use std::ops::Deref;

use crate::Cache;

tokio::task_local! {
    static SCOPED: Cache;
}

thread_local! {
    static SCOPED_ON_THREAD: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// The cache a call uses: borrowed for the unscoped case, which every call
/// without a scope takes; owned (one reference count) inside a scope.
pub enum CallCache {
    Static(&'static Cache),
    Scoped(Cache),
}

impl Deref for CallCache {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        match self {
            CallCache::Static(cache) => cache,
            CallCache::Scoped(cache) => cache,
        }
    }
}

/// The scope's cache if the call runs in one, else `otherwise`'s.
pub(crate) fn current(otherwise: impl FnOnce() -> &'static Cache) -> CallCache {
    if let Ok(cache) = SCOPED.try_with(Cache::clone) {
        return CallCache::Scoped(cache);
    }
    match SCOPED_ON_THREAD.with_borrow(Option::clone) {
        Some(cache) => CallCache::Scoped(cache),
        None => CallCache::Static(otherwise()),
    }
}

impl Cache {
    /// Runs `future` with this cache as the one every cached call inside it
    /// uses, instead of the process-wide cache or the function's
    /// `cache = …`: for tests that must not share entries, or a request
    /// served for one tenant.
    ///
    /// The scope is the future's own: two scoped futures polled together
    /// (`tokio::join!`) each see their own cache. A task spawned inside it
    /// does not inherit it (tokio's task-locals do not pass to
    /// `tokio::spawn`): scope the spawned future too (the scoped future owns
    /// its cache, so it can be spawned). What the library does
    /// in the background for a call (a `stale` or `refresh` recomputation, a
    /// retried invalidation) stays with the cache the call used.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cached_api::Error> {
    /// use cached_api::{Cache, cached_api};
    ///
    /// #[cached_api(key = "{id}", ttl = "1m")]
    /// async fn plan(id: u64) -> String {
    ///     format!("plan {id}")
    /// }
    ///
    /// let isolated = Cache::builder().build()?;
    /// isolated.scope(async {
    ///     plan(1).await;
    ///     plan(1).await;
    /// }).await;
    /// assert_eq!(isolated.stats().total.hits, 1);
    /// assert_eq!(cached_api::stats().total.hits, 0);
    /// # Ok(()) }
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        SCOPED.scope(self.clone(), future)
    }

    /// Runs `run` with this cache as the one every cached call it makes on
    /// this thread uses: [`scope`](Self::scope) for sync code. Calls on other
    /// threads are not in the scope.
    pub fn scope_blocking<R>(&self, run: impl FnOnce() -> R) -> R {
        /// Puts back the scope that was there before, even if `run` panics.
        struct Restore(Option<Cache>);

        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                SCOPED_ON_THREAD.with_borrow_mut(|scoped| *scoped = before);
            }
        }

        let before = SCOPED_ON_THREAD.with_borrow_mut(|scoped| scoped.replace(self.clone()));
        let _restore = Restore(before);
        run()
    }
}
