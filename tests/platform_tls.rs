//! TLS with verification always on: a platform whose certificate comes from a private
//! CA is refused (with the TLS hint) until that CA is configured as `ca_file`.
//! Certificates are made with the `openssl` command (scripts/test-all.sh installs it);
//! without it the test fails rather than passing silently.

mod process_common;

use parking_bridge::config::PlatformConfig;
use parking_bridge::platform::{ClientError, PlatformClient, Secret, Uplink, Verdict};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn openssl(dir: &Path, args: &[&str]) -> bool {
    let out = process_common::output_within(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// A CA and a leaf for 127.0.0.1 signed by it (the test fails when openssl fails).
fn make_certs(dir: &Path) -> bool {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=test city CA",
            ],
        ]
        .concat(),
    ) && openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    ) && openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    )
}

/// A TLS server answering every request with an accepted platform answer.
async fn serve_tls(dir: &Path) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tls.read(&mut buf).await;
                let body = r#"{"success":true,"result_code":"success","result_msg":"success"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn client(port: u16, ca_file: Option<&Path>) -> PlatformClient {
    let mut cfg: PlatformConfig = toml::from_str(&format!(
        "base_url = \"https://127.0.0.1:{port}\"\napp_id = \"ae145d83e56cb332\"\nconnect_timeout_secs = 2\nrequest_timeout_secs = 3\n"
    ))
    .unwrap();
    cfg.ca_file = ca_file.map(Path::to_path_buf);
    PlatformClient::new(&cfg, Secret::new("bb0873ce314c42f7").unwrap()).unwrap()
}

#[tokio::test]
async fn private_ca_is_refused_until_configured_as_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(make_certs(dir.path()), "openssl made the certificates");
    let port = serve_tls(dir.path()).await;
    let hb = Uplink::heartbeat("P001", true).unwrap();

    let err = tokio::time::timeout(Duration::from_secs(10), client(port, None).send(&hb))
        .await
        .expect("bounded")
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert!(err.hint().starts_with("TLS"), "{}", err.hint());

    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client(port, Some(&dir.path().join("ca.pem"))).send(&hb),
    )
    .await
    .expect("bounded")
    .expect("trusted through ca_file");
    assert_eq!(answer.verdict, Verdict::Done);
}
