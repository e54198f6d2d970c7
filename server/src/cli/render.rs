//! Drawing predictions the way Label Studio would show them, for `try
//! --render`: an SVG per task (the image embedded as a `data:` URI, one
//! shape per region, label and score beside it, whole-object results such
//! as choices and text as captions underneath), or one HTML page holding
//! every task's SVG, its verdict and its JSON. On the HTML page a text
//! task's text is shown whole with its predicted spans highlighted (the
//! span's `start`/`end` are characters, as in Label Studio).
//!
//! Each region's shape carries `class="region <type>"` and each caption
//! `class="caption"`, so a test (or a script) can count them. Output is
//! well-formed XML, HTML included.
//!
//! Coordinates are Label Studio's: percent of the image's width and height
//! (after EXIF orientation, which is applied to the embedded image too).

use std::fmt::Write as _;
use std::io::Cursor;

use image::ImageDecoder as _;
use serde_json::Value;

use super::tasks::{data_uri, image_type};
use cls::pipeline::TaskResult;

/// An image ready to embed.
#[derive(Debug, Clone)]
pub struct Picture {
    pub mime: String,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl Picture {
    /// Reads an image's size; an image with an EXIF rotation is re-encoded
    /// upright as PNG, so every viewer shows what Label Studio shows.
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        let mime = image_type(&bytes)
            .ok_or_else(|| anyhow::anyhow!("not an image (PNG, JPEG, GIF, WebP, BMP, TIFF)"))?;
        let (orientation, (width, height)) = {
            let mut decoder = image::ImageReader::new(Cursor::new(&bytes))
                .with_guessed_format()?
                .into_decoder()?;
            let orientation = decoder
                .orientation()
                .unwrap_or(image::metadata::Orientation::NoTransforms);
            (orientation, decoder.dimensions())
        };
        if orientation == image::metadata::Orientation::NoTransforms {
            return Ok(Self {
                mime: mime.to_owned(),
                bytes,
                width,
                height,
            });
        }
        let mut upright = image::load_from_memory(&bytes)?;
        upright.apply_orientation(orientation);
        let mut png = Vec::new();
        upright.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
        Ok(Self {
            mime: "image/png".to_owned(),
            bytes: png,
            width: upright.width(),
            height: upright.height(),
        })
    }
}

/// What the predictions are drawn over.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The task's image; regions on the object named `object` are drawn.
    Image { picture: Picture, object: String },
    /// The task's text, shown above the captions.
    Text(String),
    /// Nothing to show: every result becomes a caption.
    None,
}

/// One task to draw.
pub struct Task<'a> {
    /// e.g. `task 1 (astronaut.png)`.
    pub title: String,
    pub subject: Subject,
    pub outcome: &'a TaskResult,
}

/// The shape a result type is drawn as, when it has one.
fn is_shape(kind: &str) -> bool {
    matches!(
        kind,
        "rectanglelabels"
            | "rectangle"
            | "polygonlabels"
            | "polygon"
            | "keypointlabels"
            | "keypoint"
            | "ellipselabels"
            | "ellipse"
            | "brushlabels"
            | "brush"
    )
}

fn drawn_on(result: &Value, object: &str) -> bool {
    let kind = result["type"].as_str().unwrap_or_default();
    is_shape(kind) && result["to_name"].as_str().is_none_or(|to| to == object)
}

/// Every result item with the index of its prediction.
fn results(predictions: &[Value]) -> impl Iterator<Item = (usize, &Value)> {
    predictions.iter().enumerate().flat_map(|(i, p)| {
        p["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |r| (i, r))
    })
}

/// Sizes derived from the picture, so labels stay legible on any image.
struct Scale {
    font: f64,
    stroke: f64,
}

impl Scale {
    fn for_width(width: f64) -> Self {
        Self {
            font: (width / 45.0).clamp(11.0, 48.0),
            stroke: (width / 300.0).clamp(1.5, 8.0),
        }
    }
}

/// Width of the picture drawn for text tasks.
const TEXT_WIDTH: f64 = 800.0;
/// Characters per line of the task text shown for text tasks.
const TEXT_COLUMNS: usize = 90;
/// Lines of task text shown at most.
const TEXT_MAX_LINES: usize = 30;

/// The geometry of one task's SVG, derived from what it shows.
struct Layout {
    width: f64,
    /// Height of the embedded image (0 without one).
    image_height: f64,
    scale: Scale,
    /// Height of one line of text.
    line: f64,
    /// Characters per caption line.
    columns: usize,
}

impl Layout {
    fn for_subject(subject: &Subject) -> Self {
        let (width, image_height) = match subject {
            Subject::Image { picture, .. } => (f64::from(picture.width), f64::from(picture.height)),
            _ => (TEXT_WIDTH, 0.0),
        };
        let scale = Scale::for_width(width);
        Self {
            width,
            image_height,
            line: scale.font * 1.4,
            columns: ((width / (scale.font * 0.55)) as usize).max(20),
            scale,
        }
    }
}

/// A line of text under the picture and its CSS class (`caption`, `note`,
/// `error`, or `caption-more` for a wrapped caption's further lines).
type CaptionLine = (String, &'static str);

/// One task as a standalone SVG document.
pub fn svg(task: &Task) -> String {
    let layout = Layout::for_subject(&task.subject);
    let mut body = String::new();
    let mut y = layout.image_height;
    match &task.subject {
        Subject::Image { picture, .. } => embed_picture(&mut body, picture),
        Subject::Text(text) => y = write_task_text(&mut body, text, &layout, y),
        Subject::None => {}
    }
    let captions = draw_outcome(&mut body, task, &layout.scale);
    let lines = wrap_captions(&captions, layout.columns);
    let height = y + captions_height(lines.len(), &layout);
    write_captions(&mut body, &lines, &layout, y, height);
    document(&task.title, &layout, height, &body)
}

/// The task's image, at its own size, under everything else.
fn embed_picture(body: &mut String, picture: &Picture) {
    let _ = writeln!(
        body,
        r#"<image x="0" y="0" width="{}" height="{}" preserveAspectRatio="none" href="{}"/>"#,
        picture.width,
        picture.height,
        data_uri(&picture.mime, &picture.bytes)
    );
}

/// The start of a text task (at most [`TEXT_MAX_LINES`] lines) from `y`
/// down; returns where it ends.
fn write_task_text(body: &mut String, text: &str, layout: &Layout, y: f64) -> f64 {
    let font = layout.scale.font;
    let mut y = y + font * 0.5;
    let lines = wrap(text, TEXT_COLUMNS);
    let shown = lines.len().min(TEXT_MAX_LINES);
    for (i, l) in lines.iter().take(shown).enumerate() {
        y += layout.line;
        let more = if i + 1 == shown && lines.len() > shown {
            " …"
        } else {
            ""
        };
        let _ = writeln!(
            body,
            r#"<text class="task-text" x="{:.1}" y="{y:.1}">{}{more}</text>"#,
            font * 0.5,
            escape(l)
        );
    }
    y + font * 0.5
}

/// Draws the predictions' regions; returns the captions for everything
/// not drawn as a shape, or the task's failure.
fn draw_outcome(body: &mut String, task: &Task, scale: &Scale) -> Vec<CaptionLine> {
    match task.outcome {
        Ok(predictions) => draw_predictions(body, &task.subject, predictions, scale),
        Err(e) => vec![(
            format!("✗ failed at {}: {}", e.stage.as_str(), e.message),
            "error",
        )],
    }
}

/// Shapes on the image for region results; captions for the rest (and a
/// note when nothing was predicted). With several predictions, each
/// result is prefixed by its prediction's number.
fn draw_predictions(
    body: &mut String,
    subject: &Subject,
    predictions: &[Value],
    scale: &Scale,
) -> Vec<CaptionLine> {
    let mut captions = Vec::new();
    let several = predictions.len() > 1;
    let _ = writeln!(body, r#"<g class="regions">"#);
    for (index, result) in results(predictions) {
        let prefix = if several {
            format!("#{} ", index + 1)
        } else {
            String::new()
        };
        match subject {
            Subject::Image { picture, object } if drawn_on(result, object) => {
                shape(body, result, picture, scale, &prefix);
            }
            _ => captions.push((format!("{prefix}{}", caption(result)), "caption")),
        }
    }
    let _ = writeln!(body, "</g>");
    if predictions
        .iter()
        .all(|p| p["result"].as_array().is_none_or(Vec::is_empty))
    {
        captions.push(("no regions predicted".to_owned(), "note"));
    }
    captions
}

/// Captions wrapped to `columns`; only a caption's first line keeps its
/// class, so each caption is counted once.
fn wrap_captions(captions: &[CaptionLine], columns: usize) -> Vec<CaptionLine> {
    captions
        .iter()
        .flat_map(|(text, class)| {
            wrap(text, columns)
                .into_iter()
                .enumerate()
                .map(move |(i, l)| (l, if i == 0 { *class } else { "caption-more" }))
        })
        .collect()
}

/// Height of the caption box for `lines` lines (none without captions).
fn captions_height(lines: usize, layout: &Layout) -> f64 {
    if lines == 0 {
        0.0
    } else {
        lines as f64 * layout.line + layout.scale.font
    }
}

/// The caption box from `y` to `height`, and its lines.
fn write_captions(body: &mut String, lines: &[CaptionLine], layout: &Layout, y: f64, height: f64) {
    if lines.is_empty() {
        return;
    }
    let width = layout.width;
    let _ = writeln!(
        body,
        r#"<rect class="caption-box" x="0" y="{y:.1}" width="{width}" height="{:.1}"/>"#,
        height - y
    );
    let _ = writeln!(body, r#"<g class="captions">"#);
    let mut y = y;
    for (l, class) in lines {
        y += layout.line;
        let _ = writeln!(
            body,
            r#"<text class="{class}" x="{:.1}" y="{y:.1}">{}</text>"#,
            layout.scale.font * 0.5,
            escape(l)
        );
    }
    let _ = writeln!(body, "</g>");
}

/// The SVG document around `body`, with the styles the classes use.
fn document(title: &str, layout: &Layout, height: f64, body: &str) -> String {
    let width = layout.width;
    let scale = &layout.scale;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.1}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{font:.1}">
<title>{title}</title>
<style>
.region {{ fill-opacity: 0.12; stroke-width: {stroke:.1}; }}
.label {{ font-weight: bold; paint-order: stroke; stroke: #000; stroke-opacity: 0.8; stroke-width: {halo:.1}; }}
.caption-box {{ fill: #1e1e1e; }}
.caption, .caption-more {{ fill: #f0f0f0; }}
.note {{ fill: #aaaaaa; font-style: italic; }}
.error {{ fill: #ff6b6b; }}
.task-text {{ fill: #222; }}
</style>
{body}</svg>
"#,
        title = escape(title),
        font = scale.font,
        stroke = scale.stroke,
        halo = scale.font / 5.0,
    )
}

/// Draws one region and its label.
fn shape(out: &mut String, r: &Value, picture: &Picture, scale: &Scale, prefix: &str) {
    let kind = r["type"].as_str().unwrap_or_default();
    let v = &r["value"];
    let labels = labels_of(r);
    let color = color(labels.first().map_or(kind, String::as_str));
    let (w, h) = (f64::from(picture.width), f64::from(picture.height));
    let px = |key: &str| v[key].as_f64().unwrap_or(0.0) * w / 100.0;
    let py = |key: &str| v[key].as_f64().unwrap_or(0.0) * h / 100.0;
    let class = format!("region {kind}");
    let data = format!(r#"data-labels="{}""#, escape(&labels.join(", ")));
    let anchor = match kind {
        "rectanglelabels" | "rectangle" => {
            let (x, y) = (px("x"), py("y"));
            let rotation = v["rotation"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                out,
                r#"<rect class="{class}" {data} x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" transform="rotate({rotation} {x:.1} {y:.1})" fill="{color}" stroke="{color}"/>"#,
                px("width"),
                py("height"),
            );
            (x, y)
        }
        "polygonlabels" | "polygon" => {
            let points: Vec<(f64, f64)> = v["points"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap_or(0.0) * w / 100.0,
                        p[1].as_f64().unwrap_or(0.0) * h / 100.0,
                    )
                })
                .collect();
            let list: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                out,
                r#"<polygon class="{class}" {data} points="{}" fill="{color}" stroke="{color}"/>"#,
                list.join(" ")
            );
            // The label goes by the topmost vertex.
            points
                .iter()
                .copied()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0.0, 0.0))
        }
        "keypointlabels" | "keypoint" => {
            let (x, y) = (px("x"), py("y"));
            let radius = (px("width")).max(scale.stroke * 2.5);
            let _ = writeln!(
                out,
                r#"<circle class="{class}" {data} cx="{x:.1}" cy="{y:.1}" r="{radius:.1}" fill="{color}" fill-opacity="0.8" stroke="{color}"/>"#
            );
            (x + radius, y)
        }
        "ellipselabels" | "ellipse" => {
            let (x, y) = (px("x"), py("y"));
            let rotation = v["rotation"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                out,
                r#"<ellipse class="{class}" {data} cx="{x:.1}" cy="{y:.1}" rx="{:.1}" ry="{:.1}" transform="rotate({rotation} {x:.1} {y:.1})" fill="{color}" stroke="{color}"/>"#,
                px("radiusX"),
                py("radiusY"),
            );
            (x - px("radiusX"), y - py("radiusY"))
        }
        _ => {
            // Brush: the RLE mask as a translucent picture over the image.
            let mask = brush_png(r, color);
            let href = mask.map_or_else(String::new, |png| data_uri("image/png", &png));
            let _ = writeln!(
                out,
                r#"<image class="{class}" {data} x="0" y="0" width="{}" height="{}" preserveAspectRatio="none" opacity="0.5" href="{href}"/>"#,
                picture.width, picture.height
            );
            (0.0, 0.0)
        }
    };
    let mut text = format!("{prefix}{}", labels.join(", "));
    if let Some(score) = r["score"].as_f64() {
        let _ = write!(text, " {score:.2}");
    }
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let (x, y) = anchor;
    // Above the shape, or inside it at the top edge of the picture.
    let y = if y - scale.font * 0.3 < scale.font {
        y + scale.font * 1.1
    } else {
        y - scale.font * 0.3
    };
    let _ = writeln!(
        out,
        r#"<text class="label" x="{:.1}" y="{y:.1}" fill="{color}">{}</text>"#,
        x.clamp(0.0, (f64::from(picture.width) - scale.font * 4.0).max(0.0)),
        escape(text)
    );
}

/// The labels a result carries (`value.<type>`, e.g. `value.rectanglelabels`).
fn labels_of(r: &Value) -> Vec<String> {
    let kind = r["type"].as_str().unwrap_or_default();
    r["value"][kind]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| match l {
            Value::String(s) => s.clone(),
            // Taxonomy paths are lists.
            Value::Array(path) => path
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" / "),
            other => other.to_string(),
        })
        .collect()
}

/// One line for a result drawn as text: `from_name: value (score)`.
pub fn caption(r: &Value) -> String {
    let kind = r["type"].as_str().unwrap_or_default();
    let v = &r["value"];
    let what = match kind {
        "textarea" => v["text"]
            .as_array()
            .map(|t| {
                t.iter()
                    .map(|s| format!("“{}”", s.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        "labels" | "hypertextlabels" | "paragraphlabels" => {
            let span = v["text"]
                .as_str()
                .map(|t| format!(" “{t}”"))
                .unwrap_or_default();
            let range = match (v.get("start"), v.get("end")) {
                (Some(s), Some(e)) => format!(" [{}..{}]", plain(s), plain(e)),
                _ => String::new(),
            };
            format!("{}{span}{range}", labels_of(r).join(", "))
        }
        "rating" => format!("{} ★", plain(&v["rating"])),
        "number" => plain(&v["number"]),
        "datetime" => plain(&v["datetime"]),
        "relation" => format!("{} → {}", plain(&r["from_id"]), plain(&r["to_id"])),
        _ => {
            let labels = labels_of(r);
            if labels.is_empty() {
                v.to_string()
            } else {
                labels.join(", ")
            }
        }
    };
    let name = r["from_name"].as_str().unwrap_or(kind);
    let score = r["score"]
        .as_f64()
        .map(|s| format!(" ({s:.2})"))
        .unwrap_or_default();
    format!("{name}: {what}{score}")
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A brush result's RLE mask as a PNG in `color`, where set.
fn brush_png(r: &Value, color: &str) -> Option<Vec<u8>> {
    let rle: Vec<u8> = r["value"]["rle"]
        .as_array()?
        .iter()
        .map(|b| b.as_u64().map(|b| b as u8))
        .collect::<Option<_>>()?;
    let width = u32::try_from(r["original_width"].as_u64()?).ok()?;
    let height = u32::try_from(r["original_height"].as_u64()?).ok()?;
    let rgba = decode_rle(&rle)?;
    let (cr, cg, cb) = rgb(color);
    let pixels = (width as usize).checked_mul(height as usize)?;
    let mut out = image::RgbaImage::new(width, height);
    for (i, px) in out.pixels_mut().enumerate().take(pixels) {
        let alpha = rgba.get(i * 4 + 3).copied().unwrap_or(0);
        *px = image::Rgba([cr, cg, cb, alpha]);
    }
    let mut png = Vec::new();
    out.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .ok()?;
    Some(png)
}

/// Label Studio's brush RLE (see `hook_sdk::rle`): a 32-bit value count,
/// 5 bits word size − 1, four 4-bit run field sizes − 1, then runs.
fn decode_rle(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0usize;
    let mut read = |n: u32| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = bytes.get(pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - pos % 8)) & 1);
            pos += 1;
        }
        Some(v)
    };
    let count = read(32)? as usize;
    let word = read(5)? + 1;
    let mut sizes = [0u32; 4];
    for s in &mut sizes {
        *s = read(4)? + 1;
    }
    let mut out = Vec::with_capacity(count.min(64 << 20));
    while out.len() < count {
        let repeat = read(1)? == 1;
        let index = read(2)? as usize;
        let n = (read(sizes[index])? as usize + 1).min(count - out.len());
        if repeat {
            let v = read(word)? as u8;
            out.resize(out.len() + n, v);
        } else {
            for _ in 0..n {
                out.push(read(word)? as u8);
            }
        }
    }
    Some(out)
}

/// A text span result (`labels` and the like with `start`/`end` on the text).
struct Span<'a> {
    start: usize,
    end: usize,
    result: &'a Value,
}

/// The spans of every prediction, in text order; a span overlapping one
/// before it is left out (it stays in the captions).
fn text_spans(predictions: &[Value], chars: usize) -> Vec<Span<'_>> {
    let mut spans: Vec<Span<'_>> = results(predictions)
        .filter_map(|(_, r)| {
            let start = usize::try_from(r["value"]["start"].as_u64()?).ok()?;
            let end = usize::try_from(r["value"]["end"].as_u64()?).ok()?;
            (start < end && end <= chars).then_some(Span {
                start,
                end,
                result: r,
            })
        })
        .collect();
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut kept: Vec<Span<'_>> = Vec::with_capacity(spans.len());
    for span in spans {
        if kept.last().is_none_or(|last| span.start >= last.end) {
            kept.push(span);
        }
    }
    kept
}

/// The whole text as an HTML paragraph, each predicted span a `<mark>` in
/// its label's colour with the label (and score) after it; empty when the
/// predictions have no span.
fn highlighted_text(text: &str, predictions: &[Value]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let spans = text_spans(predictions, chars.len());
    if spans.is_empty() {
        return String::new();
    }
    let piece = |from: usize, to: usize| escape(&chars[from..to].iter().collect::<String>());
    let mut out = String::from(r#"<p class="highlighted-text">"#);
    let mut at = 0;
    for span in &spans {
        out.push_str(&piece(at, span.start));
        let label = labels_of(span.result).join(", ");
        let (r, g, b) = rgb(color(&label));
        let score = span.result["score"]
            .as_f64()
            .map(|s| format!(" {s:.2}"))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<mark class="span" style="background: rgba({r}, {g}, {b}, 0.35)" title="{title}">{text}<sup>{label}{score}</sup></mark>"#,
            title = escape(&caption(span.result)),
            text = piece(span.start, span.end),
            label = escape(&label),
        );
        at = span.end;
    }
    out.push_str(&piece(at, chars.len()));
    out.push_str("</p>\n");
    out
}

/// Distinct colours; a label always gets the same one.
const PALETTE: [&str; 10] = [
    "#ff4d4f", "#52c41a", "#1890ff", "#fadb14", "#eb2f96", "#13c2c2", "#fa8c16", "#722ed1",
    "#a0d911", "#2f54eb",
];

fn color(label: &str) -> &'static str {
    // FNV-1a: stable across runs and platforms.
    let hash = label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    PALETTE[(hash % PALETTE.len() as u64) as usize]
}

fn rgb(color: &str) -> (u8, u8, u8) {
    let hex = |i: usize| u8::from_str_radix(color.get(i..i + 2).unwrap_or("ff"), 16).unwrap_or(255);
    (hex(1), hex(3), hex(5))
}

/// Words into lines of at most `columns` characters (longer words are cut).
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut current = String::new();
        for word in paragraph.split_whitespace() {
            let mut word = word.to_owned();
            while word.chars().count() > columns {
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
                let head: String = word.chars().take(columns).collect();
                word = word.chars().skip(columns).collect();
                lines.push(head);
            }
            if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > columns {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&word);
        }
        lines.push(current);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// Text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Every task on one page: its drawing, verdict and prediction JSON.
pub fn html(heading: &str, details: &str, tasks: &[Task]) -> String {
    let mut sections = String::new();
    for task in tasks {
        let (verdict, class, json) = match task.outcome {
            Ok(predictions) => (
                "valid for this labeling config".to_owned(),
                "ok",
                serde_json::to_string_pretty(predictions).unwrap_or_default(),
            ),
            Err(e) => (
                format!("failed at {}", e.stage.as_str()),
                "failed",
                e.message.clone(),
            ),
        };
        let drawing = svg(task);
        let highlighted = match (&task.subject, task.outcome) {
            (Subject::Text(text), Ok(predictions)) => highlighted_text(text, predictions),
            _ => String::new(),
        };
        let _ = write!(
            sections,
            r#"<section class="task">
<h2>{title} <span class="{class}">{verdict}</span></h2>
{highlighted}<div class="drawing">{drawing}</div>
<details><summary>{summary}</summary><pre>{json}</pre></details>
</section>
"#,
            title = escape(&task.title),
            verdict = escape(&verdict),
            summary = if class == "ok" {
                "prediction JSON"
            } else {
                "error"
            },
            json = escape(&json),
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>{heading}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }}
.task {{ margin-bottom: 2.5rem; }}
.drawing svg {{ max-width: 100%; height: auto; border: 1px solid #ccc; }}
.ok {{ color: #2e7d32; font-size: 0.8em; }}
.failed {{ color: #c62828; font-size: 0.8em; }}
pre {{ background: #fff; border: 1px solid #ddd; padding: 0.5rem; overflow: auto; }}
.highlighted-text {{ background: #fff; border: 1px solid #ccc; padding: 0.75rem; line-height: 1.9; white-space: pre-wrap; }}
mark.span {{ border-radius: 3px; padding: 0.1em 0.2em; }}
mark.span sup {{ font-size: 0.65em; font-weight: 600; margin-left: 0.2em; }}
</style>
</head>
<body>
<h1>{heading}</h1>
<p>{details}</p>
{sections}</body>
</html>
"#,
        heading = escape(heading),
        details = escape(details),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn picture() -> Picture {
        Picture {
            mime: "image/png".into(),
            bytes: vec![1, 2, 3],
            width: 200,
            height: 100,
        }
    }

    #[test]
    fn one_shape_per_region_and_captions_for_the_rest() {
        let outcome: TaskResult = Ok(vec![json!({"result": [
            {"type": "rectanglelabels", "from_name": "l", "to_name": "img",
             "value": {"x": 10, "y": 10, "width": 20, "height": 30, "rectanglelabels": ["A & B"]}, "score": 0.5},
            {"type": "polygonlabels", "from_name": "p", "to_name": "img",
             "value": {"points": [[1, 1], [50, 1], [50, 50]], "polygonlabels": ["text"]}},
            {"type": "keypointlabels", "from_name": "k", "to_name": "img",
             "value": {"x": 5, "y": 5, "width": 1, "keypointlabels": ["eye"]}},
            {"type": "choices", "from_name": "c", "to_name": "img", "value": {"choices": ["cat"]}, "score": 0.9},
        ]})]);
        let task = Task {
            title: "task <1>".into(),
            subject: Subject::Image {
                picture: picture(),
                object: "img".into(),
            },
            outcome: &outcome,
        };
        let svg = svg(&task);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"region ").count(), 3, "{svg}");
        assert_eq!(svg.matches("class=\"caption\"").count(), 1, "{svg}");
        assert!(svg.contains("A &amp; B 0.50"), "{svg}");
        assert!(svg.contains("c: cat (0.90)"), "{svg}");
        assert!(
            svg.contains("<rect class=\"region rectanglelabels\""),
            "{svg}"
        );
        assert!(
            svg.contains("x=\"20.0\" y=\"10.0\" width=\"40.0\" height=\"30.0\""),
            "{svg}"
        );
    }

    #[test]
    fn text_spans_are_highlighted_by_characters_in_the_html_view() {
        let text = "Zoë met Ada Lovelace in New York & more";
        let outcome: TaskResult = Ok(vec![json!({"result": [
            {"type": "labels", "from_name": "label", "to_name": "text", "score": 0.91,
             "value": {"start": 8, "end": 20, "text": "Ada Lovelace", "labels": ["PER"]}},
            {"type": "labels", "from_name": "label", "to_name": "text",
             "value": {"start": 24, "end": 32, "text": "New York", "labels": ["LOC"]}},
            {"type": "labels", "from_name": "label", "to_name": "text",
             "value": {"start": 10, "end": 14, "text": "a Lo", "labels": ["ORG"]}},
            {"type": "choices", "from_name": "topic", "to_name": "text", "value": {"choices": ["Food"]}},
        ]})]);
        let task = Task {
            title: "t".into(),
            subject: Subject::Text(text.into()),
            outcome: &outcome,
        };
        let page = html("try", "", std::slice::from_ref(&task));
        assert_eq!(
            page.matches("<mark class=\"span\"").count(),
            2,
            "overlaps are left out: {page}"
        );
        assert!(
            page.contains(">Ada Lovelace<sup>PER 0.91</sup></mark>"),
            "{page}"
        );
        assert!(
            page.contains(">New York<sup>LOC</sup></mark> &amp; more</p>"),
            "{page}"
        );
        assert!(
            page.contains(r#"<p class="highlighted-text">Zoë met <mark"#),
            "{page}"
        );
    }

    #[test]
    fn a_failed_task_is_captioned_with_its_stage() {
        let outcome: TaskResult = Err(cls::pipeline::TaskError {
            stage: cls::pipeline::Stage::Validation,
            message: "label 'x' is not in the config".into(),
        });
        let task = Task {
            title: "t".into(),
            subject: Subject::Text("hello".into()),
            outcome: &outcome,
        };
        let svg = svg(&task);
        assert!(
            svg.contains("failed at validation: label &apos;x&apos;"),
            "{svg}"
        );
        assert!(svg.contains(">hello</text>"), "{svg}");
    }

    #[test]
    fn brush_rle_decodes_like_the_sdk_encodes() {
        // encode_rle([0]*8 + [255]*4) as the converter writes it.
        let bits = concat!(
            "00000000000000000000000000001100",
            "00111",
            "0010",
            "0011",
            "0111",
            "1111",
            "100111",
            "00000000",
            "100011",
            "11111111"
        );
        let mut bytes = vec![0u8; bits.len().div_ceil(8) + 1];
        for (i, b) in bits.bytes().enumerate() {
            if b == b'1' {
                bytes[i / 8] |= 1 << (7 - i % 8);
            }
        }
        let values = decode_rle(&bytes).expect("decodes");
        assert_eq!(values, [vec![0u8; 8], vec![255u8; 4]].concat());
    }

    #[test]
    fn wrap_breaks_at_words() {
        assert_eq!(wrap("aaa bbb ccc", 7), vec!["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }
}
