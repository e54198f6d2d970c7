//! What a hook's store holds ([`HostState`]) and the host side of the WIT
//! `host` interface: bounded logging, params and native image helpers (the
//! tokenizer is in [`super::host_text`]).
//!
//! The store data is all a hook can reach. WASI is linked because every
//! `std` guest imports it, but the context is built from nothing: no
//! preopened directories, no environment, no arguments, no stdin, no network
//! (`WasiCtxBuilder::new()` denies sockets and name lookups). Stdout and
//! stderr go to a small in-memory buffer so a panic message can be reported.
//!
//! The image helpers govern their own cost. Every allocation they make for
//! one call (decoded pixels, resize and letterbox results, tensors) is
//! charged, before it is made, against a budget as large as the hook's
//! memory limit; decoding is sized from the image header. The pixel work
//! runs on [`crate::compute::pool`] while the guest awaits it, is refused up
//! front when it cannot finish before the hook's deadline, and traps at the
//! deadline even if the pool is still working.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::host::{self, Channels, Filter, ImageError, Layout, Level, TensorOptions};
use super::bindings::types::{self, ElementType, ImageTransform};
use super::call::DeadlineExceeded;
use super::host_text::TokenizerHandle;
use super::text::sanitize;
use super::{CallTag, HookKind, HookLimits};
use crate::compute::{self, PoolError};
use crate::imageops;
use crate::model::ModelTokenizer;
use crate::size::human;

/// Longest log line kept (after escaping); the rest is cut (with a marker).
pub const MAX_LOG_LINE: usize = 1024;
/// Log lines a single hook call may write before the rest are dropped.
pub const MAX_LOG_LINES_PER_CALL: u32 = 64;
/// How much of stdout/stderr is kept for error reports.
const STDIO_CAPTURE: usize = 8 * 1024;

/// An image owned by the host, handed to the guest as a resource, and
/// shared with the compute pool while an operation on it runs.
pub struct ImageHandle(Pixels);

/// An image from `decode-image` is only its header until an operation needs
/// its pixels, so that a resize can decode a large JPEG at reduced size
/// ([`imageops::EncodedImage`]); anything else decodes it in full, once.
/// A resize is done when its pixels are needed, and then only for the
/// window a crop of it kept: the usual resize, centre crop and tensor
/// resample only the centre and pack it straight into the tensor.
#[derive(Clone)]
enum Pixels {
    Encoded(Arc<imageops::EncodedImage>),
    Decoded(Arc<imageops::Image>),
    Resized(Arc<PendingResize>),
}

impl Pixels {
    /// Memory charged to the hook call for this image (for a pending
    /// resize, what its pixels will take).
    fn held_bytes(&self) -> u64 {
        match self {
            Pixels::Encoded(encoded) => encoded.byte_len() as u64,
            Pixels::Decoded(image) => image.byte_len() as u64,
            Pixels::Resized(pending) => pending.window.rgb_bytes(),
        }
    }

    fn size(&self) -> (u32, u32) {
        match self {
            Pixels::Encoded(encoded) => (encoded.width(), encoded.height()),
            Pixels::Decoded(image) => (image.width(), image.height()),
            Pixels::Resized(pending) => (pending.window.width, pending.window.height),
        }
    }
}

/// What a pending resize reads: decoded pixels, or a large JPEG's header
/// when the resize decodes it at reduced size.
#[derive(Clone)]
enum ResizeSource {
    Decoded(Arc<imageops::Image>),
    Reduced(Arc<imageops::EncodedImage>),
}

/// A resize of `source` to `width`×`height`, of which only `window` is
/// wanted.
#[derive(Clone)]
struct PendingResize {
    source: ResizeSource,
    width: u32,
    height: u32,
    filter: imageops::Filter,
    window: imageops::Window,
}

impl PendingResize {
    /// What the work is, for a refusal.
    fn describe(&self) -> String {
        let (width, height) = (self.width, self.height);
        match &self.source {
            ResizeSource::Decoded(image) => format!(
                "resizing {}×{} to {width}×{height}",
                image.width(),
                image.height()
            ),
            ResizeSource::Reduced(encoded) => format!(
                "decoding {} and resizing it to {width}×{height}",
                encoded.size().describe()
            ),
        }
    }

    /// What the work allocates at most.
    fn work_bytes(&self) -> Result<u64, imageops::ImageError> {
        match &self.source {
            ResizeSource::Decoded(image) => {
                image.resize_window_bytes(self.width, self.height, self.window)
            }
            ResizeSource::Reduced(encoded) => {
                imageops::check_resize_window(self.width, self.height, self.window)?;
                Ok(encoded.size().bytes + self.window.rgb_bytes())
            }
        }
    }

    /// What the work allocates beyond the window's pixels, which the
    /// handle of a pending resize is charged for already.
    fn bytes_beyond_window(&self) -> Result<u64, imageops::ImageError> {
        Ok(self.work_bytes()?.saturating_sub(self.window.rgb_bytes()))
    }

    /// Pixels the work reads and writes.
    fn work_pixels(&self) -> u64 {
        let read = match &self.source {
            ResizeSource::Decoded(image) => image.pixel_count(),
            ResizeSource::Reduced(encoded) => encoded.size().pixels(),
        };
        read + area(self.window.width, self.window.height)
    }

    /// The window's pixels; a reduced decode may use up to `max_bytes`.
    fn run(&self, max_bytes: u64) -> Result<imageops::Image, imageops::ImageError> {
        let (width, height, window, filter) = (self.width, self.height, self.window, self.filter);
        match &self.source {
            ResizeSource::Decoded(image) => image.resize_window(width, height, window, filter),
            ResizeSource::Reduced(encoded) => {
                encoded.resize_window(width, height, window, filter, max_bytes)
            }
        }
    }
}

/// The data of one hook call's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limits: StoreLimits,
    tag: CallTag,
    log_lines: u32,
    logs_dropped: u32,
    /// Pixel memory of the images this call holds.
    image_bytes: u64,
    /// What host-side image work for this call may hold at once.
    image_budget: u64,
    stdio: CapturedOutput,
    pub(super) deadline: Instant,
    timeout: Duration,
    /// The backend's `params` object as JSON.
    params: Arc<str>,
    /// The backend's tokenizer, or why it has none.
    pub(super) tokenizer: ModelTokenizer,
    /// Model inputs a pre-hook handed over with `image.set-input`.
    inputs: Vec<crate::tensor::Tensor>,
}

/// What a fallible image helper returns: a trap (the deadline) or the
/// hook's `result<_, image-error>`.
type HostResult<T> = wasmtime::Result<Result<T, ImageError>>;

/// Which WIT error an over-budget or too-slow refusal becomes.
type Refusal<E = ImageError> = fn(String) -> E;

impl HostState {
    pub(super) fn new(
        tag: CallTag,
        limits: &HookLimits,
        params: Arc<str>,
        tokenizer: ModelTokenizer,
    ) -> Self {
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
            // Host memory used for the guest must not exceed what the guest
            // itself may use: a hook must not escape its memory limit by
            // keeping (or making) images in the host.
            image_budget: limits.memory_bytes as u64,
            stdio,
            deadline: Instant::now() + limits.timeout,
            timeout: limits.timeout,
            params,
            tokenizer,
            inputs: Vec::new(),
        }
    }

    /// The model inputs the pre-hook handed over with `image.set-input`.
    pub(super) fn take_inputs(&mut self) -> Vec<crate::tensor::Tensor> {
        std::mem::take(&mut self.inputs)
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

    pub(super) fn budget_left(&self) -> u64 {
        self.image_budget.saturating_sub(self.image_bytes)
    }

    /// Refuses `work` before it starts if it would allocate more than the
    /// budget has left or cannot finish (taking at least `estimate`) before
    /// the deadline; traps if the deadline has already passed.
    pub(super) fn admit<E>(
        &self,
        work: &str,
        needed: u64,
        estimate: Duration,
        refuse: Refusal<E>,
    ) -> wasmtime::Result<Result<(), E>> {
        if needed > self.budget_left() {
            let held = if self.image_bytes > 0 {
                format!(
                    ", and images this call holds already use {}",
                    human(self.image_bytes)
                )
            } else {
                String::new()
            };
            return Ok(Err(refuse(format!(
                "{work} would need {}; this hook's budget is {}{held} (limits.hook_memory_mb)",
                human(needed),
                human(self.image_budget)
            ))));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(wasmtime::Error::new(DeadlineExceeded));
        }
        if estimate > left {
            return Ok(Err(refuse(format!(
                "{work} would take at least {:.2} s; {:.2} s of this hook's {:?} limit is left \
                 (limits.hook_timeout_ms)",
                estimate.as_secs_f64(),
                left.as_secs_f64(),
                self.timeout
            ))));
        }
        Ok(Ok(()))
    }

    /// Admits `work` (see [`HostState::admit`]) and runs `job` on the pixel
    /// pool until the deadline.
    async fn pixel_work<T, F>(
        &mut self,
        work: String,
        needed: Result<u64, imageops::ImageError>,
        pixels: u64,
        refuse: Refusal,
        job: F,
    ) -> HostResult<T>
    where
        F: FnOnce() -> Result<T, imageops::ImageError> + Send + 'static,
        T: Send + 'static,
    {
        if let Err(refused) = self.admit_pixel_work(&work, needed, pixels, refuse)? {
            return Ok(Err(refused));
        }
        let result = on_pool(self.deadline, job).await?;
        Ok(result.map_err(to_wit_error))
    }

    /// [`HostState::admit`] for pixel work allocating `needed` (or the
    /// error computing it gave) and touching `pixels`.
    fn admit_pixel_work(
        &self,
        work: &str,
        needed: Result<u64, imageops::ImageError>,
        pixels: u64,
        refuse: Refusal,
    ) -> HostResult<()> {
        match needed {
            Ok(needed) => self.admit(work, needed, imageops::estimated_time(pixels), refuse),
            Err(e) => Ok(Err(to_wit_error(e))),
        }
    }

    fn keep_image(&mut self, image: imageops::Image) -> Result<Resource<ImageHandle>, ImageError> {
        self.keep(Pixels::Decoded(Arc::new(image)))
    }

    fn keep(&mut self, pixels: Pixels) -> Result<Resource<ImageHandle>, ImageError> {
        self.charge(pixels.held_bytes(), 0)?;
        self.table
            .push(ImageHandle(pixels))
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))
    }

    /// Charges `bytes` to this call's images while releasing `released`,
    /// or refuses if that would go over the budget.
    fn charge(&mut self, bytes: u64, released: u64) -> Result<(), ImageError> {
        let held = self.image_bytes.saturating_sub(released);
        if bytes > self.image_budget.saturating_sub(held) {
            return Err(ImageError::InvalidArgument(format!(
                "images held by this hook call would take {}, over its {} budget \
                 (limits.hook_memory_mb)",
                human(held + bytes),
                human(self.image_budget)
            )));
        }
        self.image_bytes = held + bytes;
        Ok(())
    }

    fn pixels(&self, handle: &Resource<ImageHandle>) -> Result<Pixels, ImageError> {
        self.table
            .get(handle)
            .map(|h| h.0.clone())
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))
    }

    /// The header `handle` still is, if a resize to `width`×`height` would
    /// decode it at reduced size.
    fn reduced(
        &self,
        handle: &Resource<ImageHandle>,
        width: u32,
        height: u32,
    ) -> Option<Arc<imageops::EncodedImage>> {
        match self.pixels(handle) {
            Ok(Pixels::Encoded(encoded)) if encoded.reduction_for(width, height) > 1 => {
                Some(encoded)
            }
            _ => None,
        }
    }

    /// The decoded pixels of `handle`, decoding them in full (once) if it
    /// is still only a header.
    async fn image(&mut self, handle: &Resource<ImageHandle>) -> HostResult<Arc<imageops::Image>> {
        let encoded = match self.pixels(handle) {
            Ok(Pixels::Decoded(image)) => return Ok(Ok(image)),
            Ok(Pixels::Encoded(encoded)) => encoded,
            Ok(Pixels::Resized(pending)) => {
                let resized = self.resize_now(pending).await?;
                return Ok(resized.and_then(|image| self.settle(handle, image)));
            }
            Err(e) => return Ok(Err(e)),
        };
        let size = *encoded.size();
        let budget = self.budget_left();
        let decoded = self
            .pixel_work(
                format!("decoding {}", size.describe()),
                Ok(size.bytes),
                size.pixels(),
                ImageError::DecodeFailed,
                move || encoded.decode(budget),
            )
            .await?;
        Ok(decoded.and_then(|image| self.settle(handle, image)))
    }

    /// Does a pending resize, on the pixel pool.
    async fn resize_now(&mut self, pending: Arc<PendingResize>) -> HostResult<imageops::Image> {
        let budget = self.budget_left();
        self.pixel_work(
            pending.describe(),
            pending.bytes_beyond_window(),
            pending.work_pixels(),
            ImageError::InvalidArgument,
            move || pending.run(budget),
        )
        .await
    }

    /// The tensor of `this` packed as `options` say, on the pixel pool.
    async fn tensor_of(
        &mut self,
        this: &Resource<ImageHandle>,
        options: TensorOptions,
    ) -> HostResult<crate::tensor::Tensor> {
        let element_type = match options.element_type {
            ElementType::F32 => crate::tensor::ElementType::F32,
            ElementType::U8 => crate::tensor::ElementType::U8,
            other => {
                return Ok(Err(ImageError::InvalidArgument(format!(
                    "image tensors are f32 or u8, not {other:?}"
                ))));
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
        if let Ok(Pixels::Resized(pending)) = self.pixels(this) {
            // Resampled and packed in one job; the resized pixels are not kept.
            let (width, height) = (pending.window.width, pending.window.height);
            let budget = self.budget_left();
            let needed = pending
                .bytes_beyond_window()
                .map(|bytes| bytes + options.tensor_bytes(width, height));
            return self
                .pixel_work(
                    format!("the {element_type} tensor of the {width}×{height} image"),
                    needed,
                    pending.work_pixels(),
                    ImageError::InvalidArgument,
                    move || pending.run(budget)?.to_tensor(&options),
                )
                .await;
        }
        let source = match self.image(this).await? {
            Ok(image) => image,
            Err(e) => return Ok(Err(e)),
        };
        self.pixel_work(
            format!(
                "the {element_type} tensor of the {}×{} image",
                source.width(),
                source.height()
            ),
            Ok(source.tensor_bytes(&options)),
            source.pixel_count(),
            ImageError::InvalidArgument,
            move || source.to_tensor(&options),
        )
        .await
    }

    /// Replaces the header (or pending resize) `handle` held by its pixels.
    fn settle(
        &mut self,
        handle: &Resource<ImageHandle>,
        image: imageops::Image,
    ) -> Result<Arc<imageops::Image>, ImageError> {
        let entry = self
            .table
            .get(handle)
            .map_err(|e| ImageError::InvalidArgument(e.to_string()))?;
        let released = entry.0.held_bytes();
        self.charge(image.byte_len() as u64, released)?;
        let image = Arc::new(image);
        if let Ok(entry) = self.table.get_mut(handle) {
            entry.0 = Pixels::Decoded(image.clone());
        }
        Ok(image)
    }
}

/// Runs `job` on the compute pool; past `deadline` the hook traps at once
/// (the job's result, when it comes, is dropped).
pub(super) async fn on_pool<T, F>(deadline: Instant, job: F) -> wasmtime::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match compute::pool().run_until(deadline, job).await {
        Ok(value) => Ok(value),
        Err(PoolError::DeadlinePassed) => Err(wasmtime::Error::new(DeadlineExceeded)),
        Err(PoolError::Failed(message)) => {
            Err(wasmtime::Error::msg(format!("host work failed: {message}")))
        }
    }
}

fn area(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height)
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
    fn params(&mut self) -> String {
        self.params.to_string()
    }

    fn open_tokenizer(&mut self) -> Result<Resource<TokenizerHandle>, host::TokenizerError> {
        self.open_model_tokenizer()
    }

    fn log(&mut self, level: Level, message: String) {
        if self.log_lines >= MAX_LOG_LINES_PER_CALL {
            self.logs_dropped += 1;
            return;
        }
        self.log_lines += 1;
        let message = sanitize(&message, MAX_LOG_LINE);
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

    async fn decode_image(
        &mut self,
        bytes: Vec<u8>,
        apply_orientation: bool,
    ) -> HostResult<Resource<ImageHandle>> {
        // Even the header is read off the async worker: a hostile file may
        // make it slow.
        let opened = on_pool(self.deadline, move || {
            imageops::EncodedImage::open(bytes.into(), apply_orientation)
        })
        .await?;
        let encoded = match opened {
            Ok(encoded) => encoded,
            Err(e) => return Ok(Err(to_wit_error(e))),
        };
        // Refused now if it could never be decoded in full, so that a hook
        // learns it where it asked for the image.
        let size = *encoded.size();
        let work = format!("decoding {}", size.describe());
        let estimate = imageops::estimated_time(size.pixels());
        if let Err(refused) = self.admit(&work, size.bytes, estimate, ImageError::DecodeFailed)? {
            return Ok(Err(refused));
        }
        Ok(self.keep(Pixels::Encoded(Arc::new(encoded))))
    }
}

impl host::HostImage for HostState {
    fn width(&mut self, this: Resource<ImageHandle>) -> u32 {
        self.pixels(&this).map(|p| p.size().0).unwrap_or(0)
    }

    fn height(&mut self, this: Resource<ImageHandle>) -> u32 {
        self.pixels(&this).map(|p| p.size().1).unwrap_or(0)
    }

    async fn resize(
        &mut self,
        this: Resource<ImageHandle>,
        width: u32,
        height: u32,
        filter: Filter,
    ) -> HostResult<Resource<ImageHandle>> {
        let filter = match filter {
            Filter::Nearest => imageops::Filter::Nearest,
            Filter::Bilinear => imageops::Filter::Bilinear,
            Filter::Cubic => imageops::Filter::Cubic,
            Filter::Lanczos3 => imageops::Filter::Lanczos3,
        };
        let source = match self.reduced(&this, width, height) {
            Some(encoded) => ResizeSource::Reduced(encoded),
            None => match self.image(&this).await? {
                Ok(image) => ResizeSource::Decoded(image),
                Err(e) => return Ok(Err(e)),
            },
        };
        let pending = PendingResize {
            source,
            width,
            height,
            filter,
            window: imageops::Window::whole(width, height),
        };
        // Refused now, as the resize itself would be, though it runs later.
        let admitted = self.admit_pixel_work(
            &pending.describe(),
            pending.work_bytes(),
            pending.work_pixels(),
            ImageError::InvalidArgument,
        )?;
        Ok(admitted.and_then(|()| self.keep(Pixels::Resized(Arc::new(pending)))))
    }

    async fn crop(
        &mut self,
        this: Resource<ImageHandle>,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> HostResult<Resource<ImageHandle>> {
        if let Ok(Pixels::Resized(pending)) = self.pixels(&this) {
            let window = pending
                .window
                .inner(imageops::Window::new(x, y, width, height));
            return Ok(window.map_err(to_wit_error).and_then(|window| {
                self.keep(Pixels::Resized(Arc::new(PendingResize {
                    window,
                    ..(*pending).clone()
                })))
            }));
        }
        let source = match self.image(&this).await? {
            Ok(image) => image,
            Err(e) => return Ok(Err(e)),
        };
        let cropped = self
            .pixel_work(
                format!("cropping {width}×{height}"),
                source.crop_bytes(width, height),
                area(width, height),
                ImageError::InvalidArgument,
                move || source.crop(x, y, width, height),
            )
            .await?;
        Ok(cropped.and_then(|image| self.keep_image(image)))
    }

    async fn letterbox(
        &mut self,
        this: Resource<ImageHandle>,
        width: u32,
        height: u32,
        fill: u8,
    ) -> HostResult<(Resource<ImageHandle>, ImageTransform)> {
        let (original_w, original_h) = match self.pixels(&this) {
            Ok(pixels) => pixels.size(),
            Err(e) => return Ok(Err(e)),
        };
        let work = format!("letterboxing {original_w}×{original_h} into {width}×{height}");
        let (inner_w, inner_h) = imageops::letterbox_inner((original_w, original_h), width, height);
        let boxed = if let Some(encoded) = self.reduced(&this, inner_w, inner_h) {
            let size = *encoded.size();
            let budget = self.budget_left();
            self.pixel_work(
                work,
                Ok(size.bytes + imageops::rgb_bytes(width, height)),
                size.pixels() + area(width, height),
                ImageError::InvalidArgument,
                move || encoded.letterbox(width, height, fill, budget),
            )
            .await?
        } else {
            let source = match self.image(&this).await? {
                Ok(image) => image,
                Err(e) => return Ok(Err(e)),
            };
            self.pixel_work(
                work,
                source.letterbox_bytes(width, height),
                source.pixel_count() + area(width, height),
                ImageError::InvalidArgument,
                move || source.letterbox(width, height, fill),
            )
            .await?
        };
        Ok(boxed.and_then(|(image, transform)| {
            Ok((self.keep_image(image)?, transform_to_wit(transform)))
        }))
    }

    async fn to_tensor(
        &mut self,
        this: Resource<ImageHandle>,
        options: TensorOptions,
    ) -> HostResult<types::Tensor> {
        let tensor = self.tensor_of(&this, options).await?;
        Ok(tensor.map(super::convert::tensor_to_wit))
    }

    async fn set_input(
        &mut self,
        this: Resource<ImageHandle>,
        options: TensorOptions,
    ) -> HostResult<()> {
        if self.tag.kind != HookKind::Pre {
            return Ok(Err(ImageError::InvalidArgument(
                "set-input gives a model input, which only a pre-hook does".into(),
            )));
        }
        let tensor = match self.tensor_of(&this, options).await? {
            Ok(tensor) => tensor,
            Err(e) => return Ok(Err(e)),
        };
        // Held until the call ends, as the tensor would be in the hook.
        if let Err(e) = self.charge(tensor.byte_len() as u64, 0) {
            return Ok(Err(e));
        }
        self.inputs.push(tensor);
        Ok(Ok(()))
    }

    fn drop(&mut self, this: Resource<ImageHandle>) -> wasmtime::Result<()> {
        let image = self.table.delete(this)?;
        self.image_bytes = self.image_bytes.saturating_sub(image.0.held_bytes());
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
        over @ imageops::ImageError::OverBudget { .. } => {
            ImageError::InvalidArgument(format!("{over} (limits.hook_memory_mb)"))
        }
    }
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
