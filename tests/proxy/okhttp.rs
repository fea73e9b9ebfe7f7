//! OkHttp's `CertificatePinner`, built from `pinproxy export --format okhttp`, against a running
//! proxy: the real client that most Android apps pin with (Debian's libokhttp-java).

use super::*;

const JARS: [&str; 3] = [
    "/usr/share/java/okhttp.jar",
    "/usr/share/java/okio.jar",
    "/usr/share/java/bcprov.jar",
];

const PROGRAM: &str = r#"
import java.io.FileInputStream;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;
import okhttp3.*;

public class Pinned {
    public static void main(String[] args) throws Exception {
        X509Certificate ca = (X509Certificate) CertificateFactory.getInstance("X.509")
            .generateCertificate(new FileInputStream(args[0]));
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        ks.setCertificateEntry("ca", ca);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        X509TrustManager tm = (X509TrustManager) tmf.getTrustManagers()[0];
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, new TrustManager[] { tm }, null);
        CertificatePinner pinner = PINNER;
        OkHttpClient client = new OkHttpClient.Builder()
            .sslSocketFactory(ctx.getSocketFactory(), tm)
            .certificatePinner(pinner)
            .build();
        try (Response r = client.newCall(new Request.Builder().url(args[1]).build()).execute()) {
            System.out.println("STATUS " + r.code());
        } catch (SSLPeerUnverifiedException e) {
            System.out.println("PINNING FAILED");
        }
        // OkHttp's pool threads would keep the JVM alive for another minute.
        System.exit(0);
    }
}
"#;

/// The OkHttp export, as Java (`new CertificatePinner.Builder()`).
fn export_okhttp(dir: &TestDir, set: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pinproxy"))
        .args([
            "export",
            "--pin-set",
            set,
            "--format",
            "okhttp",
            "--domain",
            "localhost",
            "-c",
        ])
        .arg(dir.config_path())
        .output()
        .expect("export runs");
    assert!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kotlin = String::from_utf8(out.stdout).expect("utf-8");
    assert!(kotlin.contains(".add(\"localhost\", \"sha256/"), "{kotlin}");
    let code: Vec<&str> = kotlin
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    code.join("\n").replacen(
        "CertificatePinner.Builder()",
        "new CertificatePinner.Builder()",
        1,
    )
}

fn okhttp_available() -> bool {
    if !have_tool("javac") {
        return false;
    }
    let missing: Vec<&str> = JARS
        .iter()
        .copied()
        .filter(|j| !std::path::Path::new(j).exists())
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "libokhttp-java is required under CI: missing {missing:?}"
        );
        eprintln!("skipping: libokhttp-java not installed");
        return false;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okhttp_certificate_pinner_from_the_export_accepts_the_proxy_and_refuses_a_wrong_pin() {
    if !okhttp_available() {
        return;
    }
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let s = Setup::new(&route_to(up.addr));
    // A second pin set that pins only keys the proxy does not serve (as an old app would).
    s.dir.write_pin_set(
        "stale",
        "2099-01-01",
        "enforce",
        &[
            (&backup_pin(7), "gone", "key"),
            (&backup_pin(8), "gone too", "key"),
        ],
    );
    let r = s.start().await;
    let ca = s.dir.write("certs/root.pem", s.pki.root_pem());
    let url = format!(
        "https://localhost:{}/okhttp",
        r.listener("mobile").expect("listener").port()
    );
    let classpath = JARS.join(":");
    let build = tempfile::tempdir().expect("tmp");
    for (name, set) in [("good", "app"), ("stale", "stale")] {
        let dir = build.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let pinner = export_okhttp(&s.dir, set);
        std::fs::write(
            dir.join("Pinned.java"),
            PROGRAM.replace("PINNER", pinner.trim()),
        )
        .expect("write java");
        let (ca, url, classpath) = (ca.clone(), url.clone(), classpath.clone());
        let out = tokio::task::spawn_blocking(move || {
            let javac = std::process::Command::new("javac")
                .args(["-cp", &classpath, "-d"])
                .arg(&dir)
                .arg(dir.join("Pinned.java"))
                .output()
                .expect("javac");
            assert!(
                javac.status.success(),
                "javac: {}",
                String::from_utf8_lossy(&javac.stderr)
            );
            std::process::Command::new("java")
                .arg("-cp")
                .arg(format!("{}:{classpath}", dir.display()))
                .arg("Pinned")
                .arg(&ca)
                .arg(&url)
                .output()
                .expect("java")
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let want = if name == "good" {
            "STATUS 200"
        } else {
            "PINNING FAILED"
        };
        assert!(
            stdout.contains(want),
            "{name}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(up.hits(), 1, "only the correctly pinned client got through");
}
