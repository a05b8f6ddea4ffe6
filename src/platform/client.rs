//! HTTPS client: envelope, POST, answer.
//! TODO(issue 2): `PlatformClient::new(&PlatformConfig, secret)`,
//! `async fn send(&self, uplink: &Uplink) -> Result<Answer, ClientError>`.

#[derive(Debug, thiserror::Error)]
pub enum ClientError {}

pub struct PlatformClient {}
