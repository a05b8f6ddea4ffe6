//! Synthetic camera snapshots: camera-sized JPEGs (road, a car-shaped block, a
//! plate-coloured patch and sensor noise) big enough that the bridge's re-encoding
//! path runs, as it does with real 2–12 MP camera frames.

use crate::plate::PlateColor;
use image::{ImageEncoder, Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, thiserror::Error)]
#[error("cannot encode the synthetic snapshot: {0}")]
pub struct PictureError(#[from] image::ImageError);

fn plate_rgb(color: PlateColor) -> [u8; 3] {
    match color {
        PlateColor::Blue => [20, 60, 200],
        PlateColor::Yellow => [230, 190, 20],
        PlateColor::Green => [90, 200, 120],
        PlateColor::White => [240, 240, 240],
        PlateColor::Black => [15, 15, 15],
        PlateColor::YellowGreen => [170, 210, 60],
        PlateColor::Special | PlateColor::Unknown => [128, 128, 128],
    }
}

/// A `width`×`height` JPEG at quality 92. `seed` varies the car and the noise.
pub fn snapshot_jpeg(
    width: u32,
    height: u32,
    color: PlateColor,
    seed: u64,
) -> Result<Vec<u8>, PictureError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let car: [u8; 3] = [rng.random(), rng.random(), rng.random()];
    let plate = plate_rgb(color);
    let (cx0, cx1) = (width / 4, width * 3 / 4);
    let (cy0, cy1) = (height / 3, height * 5 / 6);
    let (px0, px1) = (width * 9 / 20, width * 11 / 20);
    let (py0, py1) = (height * 7 / 10, height * 3 / 4);
    let mut img = RgbImage::new(width, height);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let base: [u8; 3] = if (px0..px1).contains(&x) && (py0..py1).contains(&y) {
            plate
        } else if (cx0..cx1).contains(&x) && (cy0..cy1).contains(&y) {
            car
        } else {
            // Asphalt getting lighter towards the camera.
            let v = (60 + (y * 80 / height.max(1))) as u8;
            [v, v, v.saturating_add(5)]
        };
        let noise: i16 = rng.random_range(-24..=24);
        *px = Rgb(base.map(|c| (c as i16 + noise).clamp(0, 255) as u8));
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92).write_image(
        img.as_raw(),
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_sized_snapshot_is_a_decodable_jpeg_over_the_platform_limit() {
        let jpeg = snapshot_jpeg(1920, 1080, PlateColor::Blue, 1).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "JPEG magic");
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (1920, 1080));
        // Over 500 KB, so the bridge must re-encode it before upload.
        assert!(jpeg.len() > 500 * 1024, "only {} bytes", jpeg.len());
    }
}
