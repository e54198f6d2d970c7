//! The Label Studio labeling config (`<View>…</View>`), parsed once and shared
//! by the server and the hook SDK, so both agree on what a project expects.
//!
//! # Layout
//! - [`config`]: [`LabelConfig::parse`] and the lookups hooks need
//!   ("the Choices control for the image", "the object a control points at").
//! - [`object`]: object tags ([`Object`], [`ObjectKind`]): the data being labeled.
//! - [`control`]: control tags ([`Control`], [`ControlKind`]): what a result may say.
//! - [`tags`]: one module per family of control tags with the same shape; each
//!   knows its children (`<Label>`, `<Choice>`) and how to check a result value.
//! - [`validate`]: [`validate_predictions`], which the server runs on every
//!   post-hook output before it reaches Label Studio.
//! - [`error`]: [`ParseError`], [`LookupError`], [`ValidationError`].
//!
//! This crate is pure Rust (no I/O) and compiles for the host and for
//! `wasm32-wasip2` hooks alike.
//!
//! ```
//! use labelconfig::{LabelConfig, ObjectKind};
//!
//! let config = LabelConfig::parse(r#"
//!   <View>
//!     <Image name="image" value="$image"/>
//!     <Choices name="orientation" toName="image" choice="single">
//!       <Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/>
//!     </Choices>
//!   </View>"#)?;
//! let binding = config.choices_for_image()?;
//! assert_eq!(binding.from_name(), "orientation");
//! assert_eq!(binding.to_name(), "image");
//! assert_eq!(binding.object.field.as_deref(), Some("image"));
//! assert_eq!(binding.resolve_label("90"), Some("90"));
//! assert_eq!(binding.object.kind, ObjectKind::Image);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod control;
pub mod error;
pub mod object;
pub mod tags;
pub mod validate;

pub use config::{Binding, LabelConfig};
pub use control::{ChoiceMode, Control, ControlKind, LabelDef};
pub use error::{LookupError, ParseError, ValidationError};
pub use object::{Object, ObjectKind};
pub use tags::json_type;
pub use validate::validate_predictions;
