//! Thumbnails (spec: Client-Server API, "Thumbnails"): which stored size answers a request, and
//! making one with the `image` crate. Only PNG, JPEG, GIF and WebP are thumbnailed; the image's
//! dimensions are read from its header before anything is decoded, and images above
//! [`MAX_PIXELS`] are refused, so a small file that decodes to gigabytes (a decompression bomb)
//! costs nothing. Decoding also runs under `image::Limits`. Animated GIF and WebP get animated
//! thumbnails when asked (`animated=true`): each frame decoded, resized and dropped in turn, under
//! [`MAX_FRAMES`] and [`MAX_ANIMATION_PIXELS`], encoded as an animated GIF.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::webp::WebPDecoder;
use image::{
    imageops::FilterType, AnimationDecoder, DynamicImage, Frame, Frames, ImageFormat, ImageReader,
    Limits,
};

/// The most pixels an image may have to be thumbnailed (32 megapixels).
pub const MAX_PIXELS: u64 = 32 * 1024 * 1024;

/// The most memory one decode may allocate.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;

/// The most frames an animated thumbnail is made of.
pub const MAX_FRAMES: usize = 500;

/// The most pixels decoded for an animated thumbnail, over all frames (each frame is decoded,
/// resized and dropped in turn, so this bounds time, not memory).
pub const MAX_ANIMATION_PIXELS: u64 = 256 * 1024 * 1024;

/// The largest width or height a client may ask for.
pub const MAX_DIMENSION: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Crop,
    Scale,
}

impl Method {
    pub fn parse(method: &str) -> Option<Method> {
        match method {
            "crop" => Some(Method::Crop),
            "scale" => Some(Method::Scale),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }
}

/// A thumbnail size: the box it fits (`scale`) or fills (`crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThumbnailSpec {
    pub width: u32,
    pub height: u32,
    pub method: Method,
}

const fn spec(width: u32, height: u32, method: Method) -> ThumbnailSpec {
    ThumbnailSpec {
        width,
        height,
        method,
    }
}

/// The sizes made for every image on upload (the spec's suggested sizes, as Synapse's
/// defaults); any other request is answered with one of them.
pub const STANDARD_SIZES: [ThumbnailSpec; 5] = [
    spec(32, 32, Method::Crop),
    spec(96, 96, Method::Crop),
    spec(320, 240, Method::Scale),
    spec(640, 480, Method::Scale),
    spec(800, 600, Method::Scale),
];

/// The standard size answering a request: of the sizes with its method, the smallest at least
/// as large as asked in both dimensions, else the largest.
pub fn choose(width: u32, height: u32, method: Method) -> ThumbnailSpec {
    let same_method = STANDARD_SIZES.iter().filter(|s| s.method == method);
    same_method
        .clone()
        .filter(|s| s.width >= width && s.height >= height)
        .min_by_key(|s| u64::from(s.width) * u64::from(s.height))
        .or_else(|| same_method.max_by_key(|s| u64::from(s.width) * u64::from(s.height)))
        .copied()
        .unwrap_or(STANDARD_SIZES[0])
}

/// Why an image got no thumbnail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbnailError {
    #[error("This kind of media cannot be thumbnailed")]
    Unsupported,
    #[error("The image is too large to thumbnail ({0} pixels)")]
    TooManyPixels(u64),
    #[error("The image could not be decoded: {0}")]
    Decode(String),
}

/// A thumbnail made: its bytes and their type.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub spec: ThumbnailSpec,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Whether the media type is one we thumbnail.
pub fn is_thumbnailable(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    matches!(
        essence.as_deref(),
        Some("image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp")
    )
}

/// Whether the media type may be animated (GIF, WebP).
pub fn is_animatable(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    matches!(essence.as_deref(), Some("image/gif" | "image/webp"))
}

/// An animated thumbnail of an animated GIF or WebP: the original itself when it already fits
/// the spec's box, else every frame resized into an animated GIF. `None` when the image is not
/// animated (one frame), so the static thumbnail answers. CPU-bound: call on a blocking thread.
pub fn make_animated(
    bytes: &[u8],
    spec: ThumbnailSpec,
) -> Result<Option<Thumbnail>, ThumbnailError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    let format = reader.format().ok_or(ThumbnailError::Unsupported)?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(ThumbnailError::TooManyPixels(pixels));
    }
    let decode = |e: image::ImageError| ThumbnailError::Decode(e.to_string());
    let (frames, content_type): (Frames<'_>, &'static str) = match format {
        ImageFormat::Gif => (
            GifDecoder::new(Cursor::new(bytes))
                .map_err(decode)?
                .into_frames(),
            "image/gif",
        ),
        ImageFormat::WebP => {
            let decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(decode)?;
            if !decoder.has_animation() {
                return Ok(None);
            }
            (decoder.into_frames(), "image/webp")
        }
        _ => return Ok(None),
    };
    if width <= spec.width && height <= spec.height {
        // Small already: the original is its own animated thumbnail.
        return Ok(Some(Thumbnail {
            spec,
            bytes: bytes.to_vec(),
            content_type,
        }));
    }
    let resized = resize_frames(frames, spec, pixels)?;
    if resized.len() < 2 {
        return Ok(None);
    }
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        encoder.set_repeat(Repeat::Infinite).map_err(decode)?;
        encoder.encode_frames(resized).map_err(decode)?;
    }
    Ok(Some(Thumbnail {
        spec,
        bytes: out,
        content_type: "image/gif",
    }))
}

/// Each frame resized as [`resize`] does, within [`MAX_FRAMES`] and [`MAX_ANIMATION_PIXELS`].
fn resize_frames(
    frames: Frames<'_>,
    spec: ThumbnailSpec,
    frame_pixels: u64,
) -> Result<Vec<Frame>, ThumbnailError> {
    let mut resized = Vec::new();
    for (index, frame) in frames.enumerate() {
        let decoded = (index as u64 + 1).saturating_mul(frame_pixels);
        if index >= MAX_FRAMES || decoded > MAX_ANIMATION_PIXELS {
            return Err(ThumbnailError::TooManyPixels(decoded));
        }
        let frame = frame.map_err(|e| ThumbnailError::Decode(e.to_string()))?;
        let delay = frame.delay();
        let image = resize(&DynamicImage::ImageRgba8(frame.into_buffer()), spec);
        resized.push(Frame::from_parts(image.to_rgba8(), 0, 0, delay));
    }
    Ok(resized)
}

/// Decodes `bytes` (refusing bombs) and makes each thumbnail of `specs`. CPU-bound: call on a
/// blocking thread.
pub fn make(bytes: &[u8], specs: &[ThumbnailSpec]) -> Result<Vec<Thumbnail>, ThumbnailError> {
    let (image, format) = decode(bytes)?;
    Ok(specs
        .iter()
        .filter_map(|spec| encode(&resize(&image, *spec), format, *spec))
        .collect())
}

/// The image, decoded only if its header says it is small enough.
fn decode(bytes: &[u8]) -> Result<(DynamicImage, ImageFormat), ThumbnailError> {
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ThumbnailError::Decode(e.to_string()))
    };
    let format = reader()?.format().ok_or(ThumbnailError::Unsupported)?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP
    ) {
        return Err(ThumbnailError::Unsupported);
    }
    let (width, height) = reader()?
        .into_dimensions()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(ThumbnailError::TooManyPixels(pixels));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = reader()?;
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    Ok((image, format))
}

/// The image fitted into (`scale`) or cropped to fill (`crop`) the spec's box, never enlarged.
fn resize(image: &DynamicImage, spec: ThumbnailSpec) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    match spec.method {
        Method::Scale if width <= spec.width && height <= spec.height => image.clone(),
        Method::Scale => image.resize(spec.width, spec.height, FilterType::Triangle),
        Method::Crop => {
            let (w, h) = (spec.width.min(width), spec.height.min(height));
            image.resize_to_fill(w.max(1), h.max(1), FilterType::Triangle)
        }
    }
}

/// JPEG stays JPEG (photos), everything else becomes PNG (keeps transparency).
fn encode(image: &DynamicImage, source: ImageFormat, spec: ThumbnailSpec) -> Option<Thumbnail> {
    let mut out = Cursor::new(Vec::new());
    let (result, content_type) = if source == ImageFormat::Jpeg {
        let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
        (rgb.write_to(&mut out, ImageFormat::Jpeg), "image/jpeg")
    } else {
        (image.write_to(&mut out, ImageFormat::Png), "image/png")
    };
    match result {
        Ok(()) => Some(Thumbnail {
            spec,
            bytes: out.into_inner(),
            content_type,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a thumbnail");
            None
        }
    }
}
