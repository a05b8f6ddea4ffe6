//! A generated camera photo, shared by the snapshot tests and the snapshot bench so
//! that both measure the same image.

/// A photo-like 4000×3000 JPEG (12 MP, quality 92): gradients, hard edges and sensor
/// noise, so it compresses like a camera photo, not like a flat test card. The same
/// pixels every call (a fixed noise seed).
pub fn photo_like_jpeg() -> Vec<u8> {
    let (w, h) = (4000u32, 3000u32);
    let mut seed = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 16) as i32 - 8;
        let edge = if (x / 250 + y / 190) % 3 == 0 { 50 } else { 0 };
        let c = |v: i32| (v + noise + edge).clamp(0, 255) as u8;
        image::Rgb([
            c((x * 200 / w) as i32),
            c((y * 180 / h) as i32 + 30),
            c(((x / 7 + y / 5) % 200) as i32),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(&img)
        .unwrap();
    out
}
