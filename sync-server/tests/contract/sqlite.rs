//! The embedded SQLite backend under the contract suite: each test gets its own temp dir.

use std::sync::Arc;

use sync_server::store::Store;
use sync_server::store::sqlite::SqliteStore;

use crate::suite::Backend;

struct SqliteBackend {
    dir: tempfile::TempDir,
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn open(&self) -> Arc<dyn Store> {
        let path = self.dir.path().join("server.sqlite");
        Arc::new(SqliteStore::open(&path).expect("open the SQLite store"))
    }
}

pub async fn new_backend() -> impl Backend {
    SqliteBackend {
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

contract_tests!(new_backend);
