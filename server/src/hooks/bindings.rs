//! The one `bindgen!` site for `wit/hooks.wit`. Both worlds share the
//! `types` and `host` interfaces: the post-hook bindings reuse the pre-hook
//! ones so a `Tensor` or `Context` is the same Rust type in both. The image
//! helpers are async host functions (the guest blocks, the host does not).

pub mod pre {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "pre-hook",
        // Pixel work runs on the compute pool while the guest awaits it, and
        // a host call past the hook's deadline traps.
        imports: {
            "cls:hooks/host.decode-image": async | trappable,
            "cls:hooks/host.[method]image.resize": async | trappable,
            "cls:hooks/host.[method]image.crop": async | trappable,
            "cls:hooks/host.[method]image.letterbox": async | trappable,
            "cls:hooks/host.[method]image.to-tensor": async | trappable,
            "cls:hooks/host.[method]image.set-input": async | trappable,
            // Tokenizing runs on the compute pool too.
            "cls:hooks/host.[method]tokenizer.encode": async | trappable,
            "cls:hooks/host.[method]tokenizer.encode-pair": async | trappable,
            "cls:hooks/host.[method]tokenizer.encode-batch": async | trappable,
            // The native ops too, each admitted against the hook's limits.
            "cls:hooks/ops.softmax": async | trappable,
            "cls:hooks/ops.sigmoid": async | trappable,
            "cls:hooks/ops.top-k": async | trappable,
            "cls:hooks/ops.nms": async | trappable,
            "cls:hooks/ops.ctc-greedy-decode": async | trappable,
            "cls:hooks/ops.regions": async | trappable,
            "cls:hooks/ops.brush-rle": async | trappable,
        },
        exports: { default: async },
        with: {
            "cls:hooks/host.image": crate::hooks::host::ImageHandle,
            "cls:hooks/host.tokenizer": crate::hooks::host_text::TokenizerHandle,
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
            "cls:hooks/ops": super::pre::cls::hooks::ops,
        },
    });
}

pub use pre::cls::hooks::host;
pub use pre::cls::hooks::ops;
pub use pre::cls::hooks::types;
