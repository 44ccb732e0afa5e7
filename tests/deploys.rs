//! A rolling deploy: two builds of a service share one redis-server while
//! the stored type of one function differs between them. Each build here is
//! a process (this test binary, and itself again as a peer, see
//! `support::peer`) whose function of the same id stores another shape.

mod support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use cached_api::cached_api;
use serde::{Deserialize, Serialize};
use support::RedisServer;
use support::peer::{Peer, serve};

/// The build that is running.
mod before {
    use super::*;

    pub static RUNS: AtomicU64 = AtomicU64::new(0);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Account {
        pub email: String,
        pub display_name: String,
        pub balance_cents: u64,
    }

    #[cached_api(key = "{id}", user = user, ttl = "1h", name = "deploys::account", invalidate = forget_account)]
    pub async fn account(user: u64, id: u64) -> Account {
        RUNS.fetch_add(1, SeqCst);
        Account {
            email: format!("u{id}@example.com"),
            display_name: format!("User {id}"),
            balance_cents: id,
        }
    }
}

/// The next build, with the two strings swapped.
mod swapped {
    use super::*;

    pub static RUNS: AtomicU64 = AtomicU64::new(0);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Account {
        pub display_name: String,
        pub email: String,
        pub balance_cents: u64,
    }

    #[cached_api(key = "{id}", user = user, ttl = "1h", name = "deploys::account", invalidate = forget_account)]
    pub async fn account(user: u64, id: u64) -> Account {
        RUNS.fetch_add(1, SeqCst);
        Account {
            display_name: format!("User {id}"),
            email: format!("u{id}@example.com"),
            balance_cents: id,
        }
    }
}

/// The next build, with a field added.
mod added {
    use super::*;

    pub static RUNS: AtomicU64 = AtomicU64::new(0);

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Account {
        pub email: String,
        pub display_name: String,
        pub balance_cents: u64,
        pub plan: String,
    }

    #[cached_api(key = "{id}", user = user, ttl = "1h", name = "deploys::account", invalidate = forget_account)]
    pub async fn account(user: u64, id: u64) -> Account {
        RUNS.fetch_add(1, SeqCst);
        Account {
            email: format!("u{id}@example.com"),
            display_name: format!("User {id}"),
            balance_cents: id,
            plan: "pro".to_owned(),
        }
    }
}

fn cache(url: &str) -> cached_api::Cache {
    cached_api::Cache::builder()
        .redis_url(url)
        .prefix("deploys")
        // A loaded machine must not turn a read into a timeout: a read
        // that fails open runs the body, which these tests count.
        .op_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The next build: `<shape> <user>` calls that build's function for
/// `user` and answers `display_name|email|runs so far`; `forget-<shape>
/// <user>` calls its companion.
#[test]
#[ignore = "a peer process, started by the other tests"]
fn next_build() {
    let url = std::env::var("CACHED_API_REDIS_URL").expect("the test names the store");
    cached_api::set_global(cache(&url)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    serve(|shape, user| {
        if let Some(shape) = shape.strip_prefix("forget-") {
            let user: u64 = user.parse().unwrap();
            let forgotten = match shape {
                "swapped" => rt.block_on(swapped::forget_account(user, user)),
                _ => rt.block_on(added::forget_account(user, user)),
            };
            return format!("{forgotten:?}");
        }
        let user: u64 = user.parse().unwrap();
        match shape {
            "swapped" => {
                let account = rt.block_on(swapped::account(user, user));
                let runs = swapped::RUNS.load(SeqCst);
                format!("{}|{}|{runs}", account.display_name, account.email)
            }
            "added" => {
                let account = rt.block_on(added::account(user, user));
                assert_eq!(account.plan, "pro");
                let runs = added::RUNS.load(SeqCst);
                format!("{}|{}|{runs}", account.display_name, account.email)
            }
            other => panic!("no build stores the shape {other}"),
        }
    });
}

const USERS: u64 = 20;

/// One round of the running build over every user: how many of its
/// answers were wrong, and how many times its body ran.
async fn round_before() -> (usize, u64) {
    let runs = before::RUNS.load(SeqCst);
    let mut misread = 0;
    for user in 1..=USERS {
        let account = before::account(user, user).await;
        if account.display_name != format!("User {user}")
            || account.email != format!("u{user}@example.com")
        {
            misread += 1;
        }
    }
    (misread, before::RUNS.load(SeqCst) - runs)
}

/// The next build's process, and how many times its body had run at its
/// last answer.
struct NextBuild {
    peer: Peer,
    shape: &'static str,
    runs: u64,
}

impl NextBuild {
    fn start(url: &str, shape: &'static str) -> NextBuild {
        let peer = Peer::start("next_build", &[("CACHED_API_REDIS_URL", url)]);
        NextBuild {
            peer,
            shape,
            runs: 0,
        }
    }

    /// Calls the next build's function for `user`: whether the answer was
    /// right, and how many times its body ran for it.
    fn call(&mut self, user: u64) -> (bool, u64) {
        let answer = self.peer.ask(&format!("{} {user}", self.shape));
        let mut parts = answer.split('|');
        let (name, email) = (parts.next().unwrap(), parts.next().unwrap());
        let right = name == format!("User {user}") && email == format!("u{user}@example.com");
        let runs: u64 = parts.next().unwrap().parse().unwrap();
        let ran = runs - self.runs;
        self.runs = runs;
        (right, ran)
    }

    /// The next build's companion, for `user`.
    fn forget(&mut self, user: u64) {
        let answer = self.peer.ask(&format!("forget-{} {user}", self.shape));
        assert_eq!(answer, "Ok(())", "{}: the companion", self.shape);
    }

    /// [`round_before`] in the next build.
    fn round(&mut self) -> (usize, u64) {
        let (mut misread, mut runs) = (0, 0);
        for user in 1..=USERS {
            let (right, ran) = self.call(user);
            misread += usize::from(!right);
            runs += ran;
        }
        (misread, runs)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shapes_of_one_function_keep_their_own_entries_and_are_invalidated_together() {
    let server = RedisServer::start();
    let url = server.url();
    cached_api::set_global(cache(&url)).unwrap();

    for shape in ["swapped", "added"] {
        // Each pair of builds starts cold.
        cached_api::invalidate_function("deploys::account")
            .await
            .unwrap();
        let mut next = NextBuild::start(&url, shape);

        assert_eq!(
            round_before().await,
            (0, USERS),
            "{shape}: first build, cold"
        );
        assert_eq!(
            next.round(),
            (0, USERS),
            "{shape}: the next build reads none of the first build's entries, and misreads none"
        );
        assert_eq!(
            round_before().await,
            (0, 0),
            "{shape}: the first build's entries are still there: all hits"
        );
        assert_eq!(
            next.round(),
            (0, 0),
            "{shape}: and the next build's: all hits"
        );

        // One user's invalidation, from the first build, reaches the next
        // build's entry of that user and no other.
        cached_api::invalidate_user(&3).await.unwrap();
        assert_eq!(
            (next.call(3), next.call(4)),
            ((true, 1), (true, 0)),
            "{shape}: user 3's entry of the next build was dropped, user 4's kept"
        );
        assert_eq!(
            round_before().await,
            (0, 1),
            "{shape}: and the first build's"
        );

        // A companion drops its entry in every shape, whichever build calls it.
        before::forget_account(5, 5).await.unwrap();
        assert_eq!(
            (next.call(5), next.call(6)),
            ((true, 1), (true, 0)),
            "{shape}: the first build's companion dropped the next build's entry of that call only"
        );
        next.forget(7);
        assert_eq!(round_before().await, (0, 2), "{shape}: users 5 and 7");

        // A record of shapes that lost this build's (evicted, flushed) may
        // have lost others: the companion drops the whole function instead.
        let _: () = redis::cmd("DEL")
            .arg("deploys:shapes:deploys%3A%3Aaccount")
            .query(&mut server.connection())
            .unwrap();
        before::forget_account(8, 8).await.unwrap();
        assert_eq!(next.call(9), (true, 1), "{shape}: user 9's entry went too");
        assert_eq!(round_before().await, (0, USERS), "{shape}: and every other");
        assert_eq!(next.round(), (0, USERS - 1), "{shape}: in both builds");

        // A function's invalidation drops every entry of every shape.
        cached_api::invalidate_function("deploys::account")
            .await
            .unwrap();
        assert_eq!(round_before().await, (0, USERS), "{shape}: first build");
        assert_eq!(next.round(), (0, USERS), "{shape}: next build");
    }
}
