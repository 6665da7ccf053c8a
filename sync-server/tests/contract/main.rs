//! The contract suite of `Store`, run against every backend: each backend module makes fresh
//! empty locations and expands `contract_tests!` over them.

#[macro_use]
mod suite;

mod mongo;
mod sqlite;
