//! The one `bindgen!` site for `wit/hooks.wit`. Both worlds share the
//! `types` and `host` interfaces: the post-hook bindings reuse the pre-hook
//! ones so a `Tensor` or `Context` is the same Rust type in both.

pub mod pre {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "pre-hook",
        exports: { default: async },
        with: {
            "cls:hooks/host.image": crate::hooks::host::ImageHandle,
        },
    });
}

pub mod post {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "post-hook",
        exports: { default: async },
        with: {
            "cls:hooks/types": super::pre::cls::hooks::types,
            "cls:hooks/host": super::pre::cls::hooks::host,
        },
    });
}

pub use pre::cls::hooks::host;
pub use pre::cls::hooks::types;
