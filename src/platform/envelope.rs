//! The SM4 envelope that wraps every request (and may wrap answers):
//! `{"app_id","message_id","encrypted_data","timestamp"}` where `encrypted_data` is
//! standard base64 of SM4-ECB/PKCS#7 over the compact business JSON, keyed with the
//! 16 ASCII bytes of the app secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit};
use serde::{Deserialize, Serialize};

type Sm4EcbEnc = ecb::Encryptor<sm4::Sm4>;
type Sm4EcbDec = ecb::Decryptor<sm4::Sm4>;

/// SM4 block size.
pub const BLOCK: usize = 16;

/// The envelope as it travels, fields in the spec's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub app_id: String,
    pub message_id: String,
    pub encrypted_data: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("encrypted_data is not standard base64")]
    Base64,
    #[error("encrypted_data is {0} bytes, not a whole number of 16-byte SM4 blocks")]
    BlockLength(usize),
    #[error("decryption failed (bad PKCS#7 padding): wrong key or corrupted data")]
    Padding,
    #[error("decrypted data is not UTF-8")]
    Utf8,
    #[error("not an envelope: {0}")]
    Json(String),
}

/// SM4-ECB with PKCS#7 padding, in place: `buf` holds the plaintext and becomes the
/// ciphertext (grown by 1–16 bytes of padding).
pub fn encrypt_in_place(key: &[u8; 16], buf: &mut Vec<u8>) {
    let msg_len = buf.len();
    buf.resize(padded_len(msg_len), 0);
    let enc = Sm4EcbEnc::new(&(*key).into());
    // `buf` was just sized to the padded length, so padding always fits.
    let _ = enc.encrypt_padded::<Pkcs7>(buf, msg_len);
}

/// Length after PKCS#7 padding (always at least one byte of padding).
pub fn padded_len(len: usize) -> usize {
    (len / BLOCK + 1) * BLOCK
}

/// `encrypted_data` for a plaintext: base64(SM4-ECB-PKCS7(plaintext)).
pub fn encrypt_b64(key: &[u8; 16], plaintext: &[u8]) -> String {
    let mut buf = Vec::with_capacity(padded_len(plaintext.len()));
    buf.extend_from_slice(plaintext);
    encrypt_in_place(key, &mut buf);
    STANDARD.encode(&buf)
}

/// Inverse of [`encrypt_b64`]. Never panics, whatever the input.
pub fn decrypt_b64(key: &[u8; 16], encrypted_data: &str) -> Result<Vec<u8>, EnvelopeError> {
    let mut buf = STANDARD
        .decode(encrypted_data.trim())
        .map_err(|_| EnvelopeError::Base64)?;
    if buf.is_empty() || buf.len() % BLOCK != 0 {
        return Err(EnvelopeError::BlockLength(buf.len()));
    }
    let dec = Sm4EcbDec::new(&(*key).into());
    let len = dec
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| EnvelopeError::Padding)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Builds the request body: the envelope JSON around `business_json`, which is
/// consumed and encrypted in place (the one big copy left is base64 into the body).
pub fn seal(
    app_id: &str,
    key: &[u8; 16],
    message_id: &str,
    timestamp: &str,
    mut business_json: Vec<u8>,
) -> Vec<u8> {
    encrypt_in_place(key, &mut business_json);
    let b64_len = business_json.len().div_ceil(3) * 4;
    let mut body =
        String::with_capacity(b64_len + app_id.len() + message_id.len() + timestamp.len() + 96);
    body.push_str("{\"app_id\":");
    push_json_str(&mut body, app_id);
    body.push_str(",\"message_id\":");
    push_json_str(&mut body, message_id);
    body.push_str(",\"encrypted_data\":\"");
    // Standard base64 never needs JSON escaping.
    STANDARD.encode_string(&business_json, &mut body);
    body.push_str("\",\"timestamp\":");
    push_json_str(&mut body, timestamp);
    body.push('}');
    body.into_bytes()
}

fn push_json_str(out: &mut String, s: &str) {
    // A `&str` always serialises.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()));
}

/// Parses an envelope (request body or an enveloped answer).
pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
    serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 16] = b"bb0873ce314c42f7";
    const PLAIN: &str = r#"{"out_order_no":"2c1e61a6-b4a9-498c-8755-7bf8fab2dd8c","plate_no":"闽A12345","car_type":"normal","price":2000,"should_pay":1000}"#;
    const GOLDEN: &str = "/bqVYY8X2BjhK58lyQG111SIBZa4J+PWX9Al+OoKS8GNZOZKyujjWwUJTKzFRvNwp1+nZAIHDk7WKlyyvfrDWQeBMpn85E5gdBRbq9QjP1X/yY33TECkAZCKPZNS6NcHhHgsRRl6M03FNzVPMdBLuPp8j+Ux9Hsp0i8Xjk603HDY5FcpkZBKOEwW0hH/vgeM";

    #[test]
    fn golden_vector_encrypts_exactly() {
        assert_eq!(encrypt_b64(KEY, PLAIN.as_bytes()), GOLDEN);
    }

    #[test]
    fn golden_vector_decrypts_exactly() {
        assert_eq!(decrypt_b64(KEY, GOLDEN).unwrap(), PLAIN.as_bytes());
    }

    #[test]
    fn golden_plaintext_is_what_serde_json_writes() {
        #[derive(Serialize)]
        struct Golden<'a> {
            out_order_no: &'a str,
            plate_no: &'a str,
            car_type: &'a str,
            price: i64,
            should_pay: i64,
        }
        let g = Golden {
            out_order_no: "2c1e61a6-b4a9-498c-8755-7bf8fab2dd8c",
            plate_no: "闽A12345",
            car_type: "normal",
            price: 2000,
            should_pay: 1000,
        };
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            PLAIN,
            "compact, unescaped UTF-8"
        );
    }

    #[test]
    fn sealed_body_is_the_spec_envelope() {
        let body = seal(
            "ae145d83e56cb332",
            KEY,
            "4c322421-e6f2-444e-a65e-03b49b330f66",
            "2019-10-04 13:36:04",
            PLAIN.as_bytes().to_vec(),
        );
        let text = String::from_utf8(body.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"app_id":"ae145d83e56cb332","message_id":"4c322421-e6f2-444e-a65e-03b49b330f66","encrypted_data":"{GOLDEN}","timestamp":"2019-10-04 13:36:04"}}"#
            )
        );
        let env = parse(&body).unwrap();
        assert_eq!(env.encrypted_data, GOLDEN);
    }

    #[test]
    fn wrong_key_or_garbage_is_an_error_not_a_panic() {
        assert!(decrypt_b64(b"0000000000000000", GOLDEN).is_err());
        assert_eq!(decrypt_b64(KEY, "!!!"), Err(EnvelopeError::Base64));
        assert_eq!(decrypt_b64(KEY, "AAAA"), Err(EnvelopeError::BlockLength(3)));
        assert_eq!(decrypt_b64(KEY, ""), Err(EnvelopeError::BlockLength(0)));
    }

    #[test]
    fn round_trips_every_length_around_block_boundaries() {
        for len in 0..=48 {
            let data: Vec<u8> = (0..len as u8).collect();
            let ct = encrypt_b64(KEY, &data);
            assert_eq!(decrypt_b64(KEY, &ct).unwrap(), data, "len {len}");
        }
    }
}
