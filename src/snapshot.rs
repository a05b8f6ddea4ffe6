//! Snapshot images for the platform: any JPEG or PNG in, a JPEG small enough for the
//! `snapshot` field out.
//!
//! The platform takes images "less than 500K" as base64. **Decision:** the limit applies
//! to the base64 text, which must be shorter than 500 000 characters, so the JPEG itself
//! is at most 374 997 bytes ([`MAX_JPEG_BYTES`]: 124 999 groups of 3 bytes, 499 996
//! characters). Quality is lowered first; only when the lowest acceptable
//! quality still does not fit is the image downscaled, and not below
//! [`MIN_WIDTH`] pixels wide (plates must stay legible) unless even that is too big.
//!
//! Encoding a 12-megapixel image at every step would be slow, so each step first
//! predicts the size from a sample of tiles and only encodes the whole image when the
//! prediction says it may fit. CPU-heavy: call from `spawn_blocking`.

use image::codecs::jpeg::JpegEncoder;
use image::{GenericImageView, ImageFormat, RgbImage};
use std::io::Cursor;

/// Largest JPEG whose base64 form stays under 500 000 characters (374 998 or 374 999
/// bytes would need exactly 500 000).
pub const MAX_JPEG_BYTES: usize = 374_997;
/// Narrowest image the re-encoder makes unless even that does not fit.
pub const MIN_WIDTH: u32 = 1280;
/// Qualities tried at full size, best first.
const QUALITIES: [u8; 4] = [85, 75, 65, 55];
/// Quality used while downscaling, then the ladder tried at [`MIN_WIDTH`].
const SCALED_QUALITY: u8 = 75;
const LAST_RESORT_QUALITIES: [u8; 3] = [60, 45, 35];

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("image cannot be decoded: {0}")]
    Undecodable(String),
    #[error("image cannot be encoded: {0}")]
    Encode(String),
    #[error("image is empty")]
    Empty,
}

/// A platform-ready JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// `None` when the input was already a small enough JPEG and is passed through.
    pub quality: Option<u8>,
}

/// Re-encodes `input` (JPEG or PNG) to a JPEG of at most `limit` bytes.
pub fn reencode(input: &[u8], limit: usize) -> Result<Encoded, SnapshotError> {
    if input.is_empty() {
        return Err(SnapshotError::Empty);
    }
    let format =
        image::guess_format(input).map_err(|e| SnapshotError::Undecodable(e.to_string()))?;
    let decoded = image::load_from_memory_with_format(input, format)
        .map_err(|e| SnapshotError::Undecodable(e.to_string()))?;
    let (width, height) = decoded.dimensions();
    if width == 0 || height == 0 {
        return Err(SnapshotError::Empty);
    }
    if format == ImageFormat::Jpeg && input.len() <= limit {
        return Ok(Encoded {
            jpeg: input.to_vec(),
            width,
            height,
            quality: None,
        });
    }
    let full = decoded.to_rgb8();
    drop(decoded);

    // 1. Lower the quality at full size.
    let sample = tile_sample(&full);
    let mut last_full_size = None;
    for q in QUALITIES {
        let predicted = predict(&sample, &full, q)?;
        last_full_size = Some(predicted);
        if predicted <= limit + limit / 10 {
            let jpeg = encode(&full, q)?;
            if jpeg.len() <= limit {
                return Ok(Encoded {
                    jpeg,
                    width,
                    height,
                    quality: Some(q),
                });
            }
            last_full_size = Some(jpeg.len());
        }
    }

    // 2. Downscale (at a good quality) to the width the size estimate asks for, not
    //    below MIN_WIDTH.
    let floor = MIN_WIDTH.min(width);
    let mut target = width;
    if let Some(size) = last_full_size {
        // Size grows roughly with pixel count, i.e. with width squared; aim a bit low
        // because downscaled pixels carry more detail each.
        let full_q_scaled = predict(&sample, &full, SCALED_QUALITY)?.max(size);
        let ratio = ((limit as f64 * 0.8) / full_q_scaled as f64).sqrt();
        target = ((width as f64) * ratio.min(0.95)) as u32;
    }
    let mut scaled_width = target.max(floor);
    let mut refined = false;
    'widths: loop {
        let img = scale_to_width(&full, scaled_width);
        let qualities: &[u8] = if scaled_width == floor {
            &[SCALED_QUALITY, 60, 45, 35]
        } else {
            &[SCALED_QUALITY]
        };
        for &q in qualities {
            let s = tile_sample(&img);
            let predicted = predict(&s, &img, q)?;
            if !refined && predicted < limit * 6 / 10 && scaled_width < width {
                // The estimate from the full-size image was too pessimistic; the
                // downscaled image's own sample is closer: widen once before encoding.
                refined = true;
                let wider = widen(scaled_width, predicted.max(1) as f64 / limit as f64);
                if worth_widening(scaled_width, wider) {
                    scaled_width = wider.min(width);
                    continue 'widths;
                }
            }
            if predicted <= limit + limit / 5 {
                let jpeg = encode(&img, q)?;
                if jpeg.len() <= limit {
                    let fitted = Encoded {
                        jpeg,
                        width: img.width(),
                        height: img.height(),
                        quality: Some(q),
                    };
                    return enlarge_if_room(&full, fitted, limit);
                }
            }
        }
        if scaled_width == floor {
            break;
        }
        scaled_width = ((scaled_width as f64 * 0.85) as u32).max(floor);
    }

    // 3. Below MIN_WIDTH: only when nothing else fits.
    let mut w = floor;
    while w > 16 {
        w = (w as f64 * 0.8) as u32;
        let img = scale_to_width(&full, w);
        for q in LAST_RESORT_QUALITIES {
            let jpeg = encode(&img, q)?;
            if jpeg.len() <= limit {
                return Ok(Encoded {
                    jpeg,
                    width: img.width(),
                    height: img.height(),
                    quality: Some(q),
                });
            }
        }
    }
    Err(SnapshotError::Encode(format!(
        "cannot fit the image in {limit} bytes"
    )))
}

/// The size estimate errs on the small side; when the result uses well under the
/// limit, one wider attempt (at the same quality) keeps more detail of the plate.
fn enlarge_if_room(
    full: &RgbImage,
    fitted: Encoded,
    limit: usize,
) -> Result<Encoded, SnapshotError> {
    let used = fitted.jpeg.len() as f64 / limit as f64;
    if used > 0.7 || fitted.width >= full.width() {
        return Ok(fitted);
    }
    let wider = widen(fitted.width, used).min(full.width());
    if !worth_widening(fitted.width, wider) {
        return Ok(fitted);
    }
    let img = scale_to_width(full, wider);
    let q = fitted.quality.unwrap_or(SCALED_QUALITY);
    let jpeg = encode(&img, q)?;
    if jpeg.len() <= limit {
        Ok(Encoded {
            jpeg,
            width: img.width(),
            height: img.height(),
            quality: Some(q),
        })
    } else {
        Ok(fitted)
    }
}

/// The width at which a JPEG now `used` × the limit in size should come to about 85 %
/// of it. Size grows faster than the pixel count when widening (less of the sensor
/// noise is averaged away), hence a smaller exponent (0.4) than pixel count alone
/// would call for (0.5).
fn widen(width: u32, used: f64) -> u32 {
    ((width as f64) * (0.85 / used).powf(0.4)) as u32
}

/// A wider attempt costs an encode: only worth it for at least 5 % more width.
fn worth_widening(from: u32, to: u32) -> bool {
    to > from + from / 20
}

fn encode(img: &RgbImage, quality: u8) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Cursor::new(Vec::with_capacity(256 * 1024));
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

fn scale_to_width(img: &RgbImage, width: u32) -> RgbImage {
    if width >= img.width() {
        return img.clone();
    }
    let height = ((u64::from(img.height()) * u64::from(width)) / u64::from(img.width().max(1)))
        .max(1) as u32;
    image::imageops::thumbnail(img, width, height)
}

/// Side of one sample tile and tiles per side of the sample grid.
const TILE: u32 = 128;
const GRID: u32 = 4;

/// A mosaic of tiles taken evenly across the image: a cheap stand-in for the whole
/// when predicting the encoded size.
fn tile_sample(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let tile_w = TILE.min(w / GRID).max(1);
    let tile_h = TILE.min(h / GRID).max(1);
    let mut out = RgbImage::new(tile_w * GRID, tile_h * GRID);
    for gy in 0..GRID {
        for gx in 0..GRID {
            let x0 = ((w - tile_w) as u64 * u64::from(gx) / u64::from(GRID - 1)) as u32;
            let y0 = ((h - tile_h) as u64 * u64::from(gy) / u64::from(GRID - 1)) as u32;
            let tile = image::imageops::crop_imm(img, x0, y0, tile_w, tile_h).to_image();
            image::imageops::replace(
                &mut out,
                &tile,
                i64::from(gx * tile_w),
                i64::from(gy * tile_h),
            );
        }
    }
    out
}

/// Predicted JPEG size of `img` at `quality`, from its sample.
fn predict(sample: &RgbImage, img: &RgbImage, quality: u8) -> Result<usize, SnapshotError> {
    let sample_pixels = u64::from(sample.width()) * u64::from(sample.height());
    let bytes = encode(sample, quality)?.len() as u64;
    let pixels = u64::from(img.width()) * u64::from(img.height());
    Ok(((bytes as f64 / sample_pixels.max(1) as f64) * pixels as f64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb};

    /// A photo-like test image: smooth gradients, some edges, mild noise.
    pub(crate) fn synthetic(width: u32, height: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        RgbImage::from_fn(width, height, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 24) as i32 - 12;
            let stripe = if (x / 97 + y / 61) % 2 == 0 { 40 } else { 0 };
            let v = |base: i32| (base + noise + stripe).clamp(0, 255) as u8;
            Rgb([
                v((x * 255 / width) as i32),
                v((y * 255 / height) as i32),
                v(((x + y) % 256) as i32),
            ])
        })
    }

    fn jpeg(img: &RgbImage, q: u8) -> Vec<u8> {
        encode(img, q).unwrap()
    }

    #[test]
    fn small_jpeg_passes_through_unchanged() {
        let bytes = jpeg(&synthetic(320, 240, 1), 80);
        let out = reencode(&bytes, MAX_JPEG_BYTES).unwrap();
        assert_eq!(out.jpeg, bytes);
        assert_eq!(out.quality, None);
    }

    #[test]
    fn png_becomes_a_jpeg_under_the_limit() {
        let img = synthetic(800, 600, 2);
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(img.as_raw(), 800, 600, image::ExtendedColorType::Rgb8)
            .unwrap();
        let out = reencode(&png, MAX_JPEG_BYTES).unwrap();
        assert_eq!(image::guess_format(&out.jpeg).unwrap(), ImageFormat::Jpeg);
        assert!(out.jpeg.len() <= MAX_JPEG_BYTES);
        assert_eq!((out.width, out.height), (800, 600));
    }

    #[test]
    fn quality_is_lowered_before_the_image_is_shrunk() {
        let img = synthetic(1600, 1200, 3);
        let big = jpeg(&img, 100);
        let limit = encode(&img, 70).unwrap().len();
        assert!(big.len() > limit);
        let out = reencode(&big, limit).unwrap();
        assert_eq!(out.width, 1600, "full size kept while a lower quality fits");
        assert!(out.jpeg.len() <= limit);
    }

    #[test]
    fn downscales_but_not_below_1280_when_that_fits() {
        let img = synthetic(3000, 2000, 4);
        let input = jpeg(&img, 95);
        let at_min = encode(&scale_to_width(&img, 1280), 75).unwrap().len();
        let out = reencode(&input, at_min + at_min / 4).unwrap();
        assert!(out.width >= 1280 && out.width < 3000, "width {}", out.width);
        assert!(out.jpeg.len() <= at_min + at_min / 4);
        image::load_from_memory(&out.jpeg).unwrap();
    }

    #[test]
    fn goes_below_1280_only_when_nothing_else_fits() {
        let img = synthetic(2000, 1500, 5);
        let input = jpeg(&img, 90);
        let out = reencode(&input, 20_000).unwrap();
        assert!(out.width < 1280);
        assert!(out.jpeg.len() <= 20_000);
    }

    #[test]
    fn garbage_is_undecodable_not_a_panic() {
        assert!(matches!(
            reencode(b"not an image at all", MAX_JPEG_BYTES),
            Err(SnapshotError::Undecodable(_))
        ));
        assert!(matches!(
            reencode(&[], MAX_JPEG_BYTES),
            Err(SnapshotError::Empty)
        ));
        let mut truncated = jpeg(&synthetic(64, 64, 6), 80);
        truncated.truncate(40);
        assert!(reencode(&truncated, MAX_JPEG_BYTES).is_err());
    }
}
