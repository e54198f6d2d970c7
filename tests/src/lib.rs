//! Shared harness for the integration tests lives in `common/`.
