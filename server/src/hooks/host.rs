//! What a hook's store holds ([`HostState`]) and the host side of the WIT
//! `host` interface: bounded logging and native image helpers.
//!
//! The store data is all a hook can reach. WASI is linked because every
//! `std` guest imports it, but the context is built from nothing: no
//! preopened directories, no environment, no arguments, no stdin, no network
//! (`WasiCtxBuilder::new()` denies sockets and name lookups). Stdout and
//! stderr go to a small in-memory buffer so a panic message can be reported.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::host::{self, Channels, Filter, ImageError, Layout, Level, TensorOptions};
use super::bindings::types::{self, ElementType, ImageTransform};
use super::{CallTag, HookLimits};
use crate::imageops;

/// Longest log line kept; the rest is cut (with a marker).
pub const MAX_LOG_LINE: usize = 1024;
/// Log lines a single hook call may write before the rest are dropped.
pub const MAX_LOG_LINES_PER_CALL: u32 = 64;
/// How much of stdout/stderr is kept for error reports.
const STDIO_CAPTURE: usize = 8 * 1024;

/// A decoded image owned by the host, handed to the guest as a resource.
pub struct ImageHandle(imageops::Image);

/// The data of one hook call's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
    tag: CallTag,
    log_lines: u32,
    logs_dropped: u32,
    image_bytes: usize,
    image_budget: usize,
    stdio: CapturedOutput,
    pub(super) deadline: Instant,
}

impl HostState {
    pub(super) fn new(tag: CallTag, limits: &HookLimits) -> Self {
        let stdio = CapturedOutput::default();
        let wasi = WasiCtxBuilder::new()
            .stdout(stdio.clone())
            .stderr(stdio.clone())
            .build();
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: store_limits,
            tag,
            log_lines: 0,
            logs_dropped: 0,
            image_bytes: 0,
            // Host-side pixels count against a budget of their own, as large
            // as the guest's memory limit: a hook must not escape its memory
            // limit by keeping images in the host.
            image_budget: limits.memory_bytes,
            stdio,
            deadline: Instant::now() + limits.timeout,
        }
    }

    /// What the guest wrote to stdout/stderr (bounded), for error reports.
    pub(super) fn captured_output(&self) -> String {
        self.stdio.text()
    }

    /// Logs a summary of dropped log lines, if any.
    pub(super) fn finish_logging(&self) {
        if self.logs_dropped > 0 {
            tracing::warn!(
                backend = %self.tag.backend, hook = %self.tag.kind, task = ?self.tag.task,
                "hook log rate limit: {} lines dropped", self.logs_dropped
            );
        }
    }

    fn keep_image(&mut self, image: imageops::Image) -> Result<Resource<ImageHandle>, ImageError> {
        let bytes = image.byte_len();
        if self.image_bytes + bytes > self.image_budget {
            return Err(ImageError::InvalidArgument(format!(
                "images held by this hook call would take {} MiB, over the {} MiB limit",
                (self.image_bytes + bytes) >> 20,
                self.image_budget >> 20
            )));
        }
        self.image_bytes += bytes;
        self.table
            .push(ImageHandle(image))
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))
    }

    fn image(&self, handle: &Resource<ImageHandle>) -> Result<&imageops::Image, ImageError> {
        self.table
            .get(handle)
            .map(|h| &h.0)
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_lines >= MAX_LOG_LINES_PER_CALL {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let message = truncate_line(&message);
        let tag = &self.tag;
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(backend = %tag.backend, hook = %tag.kind, task = ?tag.task, "hook: {message}")
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error => emit!(error),
        }
    }

    fn decode_image(
        &mut self,
        bytes: Vec<u8>,
        apply_orientation: bool,
    ) -> Result<Resource<ImageHandle>, ImageError> {
        let image = imageops::Image::decode(&bytes, apply_orientation).map_err(to_wit_error)?;
        self.keep_image(image)
    }
}

impl host::HostImage for HostState {
    fn width(&mut self, this: Resource<ImageHandle>) -> u32 {
        self.image(&this).map(|i| i.width()).unwrap_or(0)
    }

    fn height(&mut self, this: Resource<ImageHandle>) -> u32 {
        self.image(&this).map(|i| i.height()).unwrap_or(0)
    }

    fn resize(
        &mut self,
        this: Resource<ImageHandle>,
        width: u32,
        height: u32,
        filter: Filter,
    ) -> Result<Resource<ImageHandle>, ImageError> {
        let filter = match filter {
            Filter::Nearest => imageops::Filter::Nearest,
            Filter::Bilinear => imageops::Filter::Bilinear,
            Filter::Cubic => imageops::Filter::Cubic,
            Filter::Lanczos3 => imageops::Filter::Lanczos3,
        };
        let resized = self
            .image(&this)?
            .resize(width, height, filter)
            .map_err(to_wit_error)?;
        self.keep_image(resized)
    }

    fn crop(
        &mut self,
        this: Resource<ImageHandle>,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<Resource<ImageHandle>, ImageError> {
        let cropped = self
            .image(&this)?
            .crop(x, y, width, height)
            .map_err(to_wit_error)?;
        self.keep_image(cropped)
    }

    fn letterbox(
        &mut self,
        this: Resource<ImageHandle>,
        width: u32,
        height: u32,
        fill: u8,
    ) -> Result<(Resource<ImageHandle>, ImageTransform), ImageError> {
        let (boxed, transform) = self
            .image(&this)?
            .letterbox(width, height, fill)
            .map_err(to_wit_error)?;
        Ok((self.keep_image(boxed)?, transform_to_wit(transform)))
    }

    fn to_tensor(
        &mut self,
        this: Resource<ImageHandle>,
        options: TensorOptions,
    ) -> Result<types::Tensor, ImageError> {
        let element_type = match options.element_type {
            ElementType::F32 => crate::tensor::ElementType::F32,
            ElementType::U8 => crate::tensor::ElementType::U8,
            other => {
                return Err(ImageError::InvalidArgument(format!(
                    "image tensors are f32 or u8, not {other:?}"
                )));
            }
        };
        let options = imageops::TensorOptions {
            name: options.name,
            layout: match options.layout {
                Layout::Nchw => imageops::Layout::Nchw,
                Layout::Nhwc => imageops::Layout::Nhwc,
            },
            channels: match options.channels {
                Channels::Rgb => imageops::Channels::Rgb,
                Channels::Bgr => imageops::Channels::Bgr,
                Channels::Gray => imageops::Channels::Gray,
            },
            element_type,
            scale: options.scale,
            mean: options.mean,
            std: options.std,
        };
        let tensor = self
            .image(&this)?
            .to_tensor(&options)
            .map_err(to_wit_error)?;
        Ok(super::convert::tensor_to_wit(tensor))
    }

    fn drop(&mut self, this: Resource<ImageHandle>) -> wasmtime::Result<()> {
        let image = self.table.delete(this)?;
        self.image_bytes = self.image_bytes.saturating_sub(image.0.byte_len());
        Ok(())
    }
}

impl types::Host for HostState {}

pub(super) fn transform_to_wit(t: imageops::Transform) -> ImageTransform {
    ImageTransform {
        original_width: t.original_width,
        original_height: t.original_height,
        target_width: t.target_width,
        target_height: t.target_height,
        scale_x: t.scale_x,
        scale_y: t.scale_y,
        pad_x: t.pad_x,
        pad_y: t.pad_y,
    }
}

fn to_wit_error(err: imageops::ImageError) -> ImageError {
    match err {
        imageops::ImageError::UnsupportedFormat(m) => ImageError::UnsupportedFormat(m),
        imageops::ImageError::DecodeFailed(m) => ImageError::DecodeFailed(m),
        imageops::ImageError::InvalidArgument(m) => ImageError::InvalidArgument(m),
    }
}

/// Cuts a log line at [`MAX_LOG_LINE`] bytes (on a char boundary).
fn truncate_line(message: &str) -> String {
    if message.len() <= MAX_LOG_LINE {
        return message.to_owned();
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &message[..end], message.len() - end)
}

/// A stdout/stderr sink that keeps the first [`STDIO_CAPTURE`] bytes and
/// silently drops the rest, so a chatty hook neither grows host memory nor
/// fails on a full pipe.
#[derive(Clone, Default)]
struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Ok(mut kept) = self.0.lock() {
            let room = STDIO_CAPTURE.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_log_lines_are_cut_on_a_char_boundary() {
        let line = "é".repeat(MAX_LOG_LINE);
        let cut = truncate_line(&line);
        assert!(cut.len() < line.len());
        assert!(cut.contains("bytes cut"));
    }
}
