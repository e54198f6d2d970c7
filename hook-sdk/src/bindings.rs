//! Generated bindings for both worlds of the crate's own `wit/hooks.wit` (a
//! copy of the repository's `wit/`, so the crate builds outside a checkout).
//! Hook authors use the curated names the crate root re-exports, never this
//! module.
//!
//! The pre-hook world generates the shared `types` and `host` interfaces; the
//! post-hook world reuses them through `with`, so a `Context` or `Tensor` is
//! one Rust type whichever world a hook exports.
#![allow(missing_docs, clippy::all, unsafe_code)]

/// The `pre-hook` world, and with it the `types`, `host` and `ops` interfaces.
pub mod pre {
    wit_bindgen::generate!({
        world: "pre-hook",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_pre_hook_world",
        default_bindings_module: "::hook_sdk::bindings::pre",
        runtime_path: "::hook_sdk::__rt",
        generate_all,
        additional_derives: [PartialEq],
    });
}

/// The `post-hook` world.
pub mod post {
    wit_bindgen::generate!({
        world: "post-hook",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_post_hook_world",
        default_bindings_module: "::hook_sdk::bindings::post",
        runtime_path: "::hook_sdk::__rt",
        with: {
            "cls:hooks/types@0.1.4": ::hook_sdk::bindings::pre::cls::hooks::types,
            "cls:hooks/host@0.1.4": ::hook_sdk::bindings::pre::cls::hooks::host,
            "cls:hooks/ops@0.1.4": ::hook_sdk::bindings::pre::cls::hooks::ops,
        },
    });
}
