//! An Azure Blob Storage emulator for tests: Azurite (npm `azurite`,
//! installed by `scripts/setup.d/45-azurite.sh`), in memory on a free
//! loopback port, telemetry off; killed when dropped. It knows one account,
//! `devstoreaccount1`, with a well-known key; containers are created here
//! with a request signed with that key (Shared Key).

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::server::{Server, tool};

/// Azurite's account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known account key (public, in Microsoft's documentation).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The content type of the signed request (part of what is signed).
const CONTENT_TYPE: &str = "application/octet-stream";

/// The `azurite-blob` command: `$FLINKW_AZURITE_BLOB`, else where the setup
/// script puts it.
pub fn server_binary() -> PathBuf {
    tool("FLINKW_AZURITE_BLOB", ".cache/flinkw/azurite/node_modules/.bin/azurite-blob")
}

/// A running Azurite blob service; killed on drop.
pub struct AzuriteServer {
    server: Server,
}

impl AzuriteServer {
    /// Starts Azurite's blob service.
    pub fn start() -> AzuriteServer {
        let server = Server::start(
            "Azurite blob service",
            &server_binary(),
            "45-azurite.sh",
            |port| {
                [
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    &port.to_string(),
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                ]
                .map(String::from)
                .to_vec()
            },
            &[],
            &format!("/{ACCOUNT}?comp=list"),
        );
        AzuriteServer { server }
    }

    /// `http://127.0.0.1:PORT` (the account is the first path segment).
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Creates a container (a Shared Key signed request).
    pub fn create_container(&self, name: &str) {
        let date = http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let path = format!("/{ACCOUNT}/{name}");
        let to_sign = format!(
            "PUT\n\n\n\n\n{CONTENT_TYPE}\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}{path}\nrestype:container"
        );
        let key = base64_decode(ACCOUNT_KEY);
        let signature = base64_encode(&hmac_sha256(&key, to_sign.as_bytes()));
        let headers = [
            ("Content-Type", CONTENT_TYPE.to_owned()),
            ("x-ms-date", date),
            ("x-ms-version", version.to_owned()),
            ("Authorization", format!("SharedKey {ACCOUNT}:{signature}")),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        self.server.expect("PUT", &format!("{path}?restype=container"), &headers, b"", &[201]);
    }

    /// The environment that points flinkw's Azure client here, object_store's
    /// emulator switch: `AZURE_STORAGE_USE_EMULATOR` and `AZURITE_BLOB_STORAGE_URL`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            ("AZURITE_BLOB_STORAGE_URL".into(), self.endpoint()),
        ]
    }

    /// Connector options for the same, as for a real account: the account
    /// URL as endpoint, the account name and its key.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("az.endpoint", format!("{}/{ACCOUNT}", self.endpoint())),
            ("az.account", ACCOUNT.to_owned()),
            ("az.access-key", ACCOUNT_KEY.to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().to_vec()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// An RFC 7231 date (`Mon, 23 Nov 2026 20:00:00 GMT`).
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let months =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{weekday}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT", months[(month - 1) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_base64_and_dates_match_known_values() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(base64_decode("Zm9vYmE="), b"fooba");
        assert_eq!(base64_decode(&base64_encode(&mac)), mac);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_464_000);
        assert_eq!(http_date(t), "Mon, 23 Nov 2026 20:00:00 GMT");
    }
}
