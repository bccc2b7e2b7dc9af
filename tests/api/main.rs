//! Integration tests: the real application on port 0 against a real database, spoken to over
//! HTTP. The backend is SQLite unless `TEST_DATABASE_URL` names a PostgreSQL or MySQL server,
//! on which each test creates its own database.

mod curation;
mod federation;
mod helpers;
mod http;
mod ingest;
mod mutations;
mod operations;
mod protection;
mod read_api;
