//! The MongoDB backend under the contract suite: each test gets its own database on the
//! MongoDB-wire server whose URI is in `ROLLCALL_TEST_MONGODB_URI` (`scripts/test` starts one).

use std::sync::Arc;

use sync_server::store::Store;
use sync_server::store::mongo::MongoStore;

use crate::suite::Backend;

/// Where the test server is; `scripts/test` sets it.
pub const URI_VAR: &str = "ROLLCALL_TEST_MONGODB_URI";

struct MongoBackend {
    uri: String,
    database: String,
}

#[async_trait::async_trait]
impl Backend for MongoBackend {
    async fn open(&self) -> Arc<dyn Store> {
        match MongoStore::connect(&self.uri, &self.database).await {
            Ok(store) => Arc::new(store),
            Err(e) => panic!(
                "cannot open MongoDB database {} at {}: {e}",
                self.database, self.uri
            ),
        }
    }
}

/// The server's URI. Unset is a failure, not a skip: the suite must run on both backends.
pub fn test_uri() -> String {
    std::env::var(URI_VAR).unwrap_or_else(|_| {
        panic!(
            "{URI_VAR} is not set: run scripts/test, which starts a MongoDB-wire server, or start \
             one with `.venv/bin/secantusd-py --host 127.0.0.1 --port 27017 --storage-path \
             :memory:` and set {URI_VAR}=mongodb://127.0.0.1:27017/?directConnection=true"
        )
    })
}

/// A new database name per test, so tests run in parallel on one server.
pub async fn new_backend() -> impl Backend {
    MongoBackend {
        uri: test_uri(),
        database: format!("rollcall_test_{}", uuid::Uuid::now_v7().simple()),
    }
}

contract_tests!(new_backend);
