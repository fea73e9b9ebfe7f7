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
        // Every name resolves to the proxy on loopback, so api.example.com and its subdomains work.
        OkHttpClient client = new OkHttpClient.Builder()
            .sslSocketFactory(ctx.getSocketFactory(), tm)
            .certificatePinner(pinner)
            .dns(host -> java.util.Collections.singletonList(java.net.InetAddress.getLoopbackAddress()))
            .build();
        for (int i = 1; i < args.length; i++) {
            try (Response r = client.newCall(new Request.Builder().url(args[i]).build()).execute()) {
                System.out.println(args[i] + " STATUS " + r.code());
            } catch (SSLPeerUnverifiedException e) {
                System.out.println(args[i] + " PINNING FAILED");
            }
        }
        // OkHttp's pool threads would keep the JVM alive for another minute.
        System.exit(0);
    }
}
"#;

/// The OkHttp export, as Java (`new CertificatePinner.Builder()`).
fn export_okhttp(dir: &TestDir, set: &str) -> String {
    export_okhttp_for(dir, set, "localhost", false)
}

fn export_okhttp_for(dir: &TestDir, set: &str, domain: &str, subdomains: bool) -> String {
    let mut args = vec![
        "export",
        "--pin-set",
        set,
        "--format",
        "okhttp",
        "--domain",
        domain,
    ];
    if subdomains {
        args.push("--include-subdomains");
    }
    let out = bin::with_config(dir, &args);
    assert!(out.code == 0, "export: {}", out.stderr);
    let kotlin = out.stdout;
    assert!(
        kotlin.contains(&format!(".add(\"{domain}\", \"sha256/")),
        "{kotlin}"
    );
    java_pinner(&kotlin)
}

/// Kotlin `CertificatePinner.Builder()…` as a Java expression, comments dropped.
fn java_pinner(kotlin: &str) -> String {
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

/// Compiles the program with `pinner` in a fresh directory under `build` and runs it against
/// `urls`, trusting `ca`: one line per url on stdout.
async fn run_okhttp(
    build: &std::path::Path,
    name: &str,
    pinner: &str,
    ca: &std::path::Path,
    urls: &[String],
) -> String {
    let classpath = JARS.join(":");
    let dir = build.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("Pinned.java"),
        PROGRAM.replace("PINNER", pinner.trim()),
    )
    .expect("write java");
    let (ca, args) = (ca.to_path_buf(), urls.to_vec());
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
            .args(&args)
            .output()
            .expect("java")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Every line is "<url> STATUS n" or "<url> PINNING FAILED"; anything else is a crash.
    let answered = stdout
        .lines()
        .filter(|l| l.contains(" STATUS ") || l.ends_with(" PINNING FAILED"))
        .count();
    assert_eq!(
        answered,
        urls.len(),
        "{name}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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
    let s = TestProxy::new(&route_to(up.addr));
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
    let build = tempfile::tempdir().expect("tmp");
    for (name, set) in [("good", "app"), ("stale", "stale")] {
        let pinner = export_okhttp(&s.dir, set);
        let stdout = run_okhttp(build.path(), name, &pinner, &ca, std::slice::from_ref(&url)).await;
        let want = if name == "good" {
            "STATUS 200"
        } else {
            "PINNING FAILED"
        };
        assert!(stdout.contains(want), "{name}: {stdout}");
    }
    assert_eq!(up.hits(), 1, "only the correctly pinned client got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okhttp_export_with_subdomains_pins_the_apex_and_a_subdomain_on_okhttp_3() {
    if !okhttp_available() {
        return;
    }
    let up = TestUpstream::plain(UpstreamMode::Echo).await;
    let dir = TestDir::new();
    let pki = Pki::new("okhttp-apex");
    let leaf = pki.leaf(&["api.example.com", "*.api.example.com"]);
    dir.write_pinned("api", &leaf);
    dir.write_pin_set(
        "stale",
        "2099-01-01",
        "enforce",
        &[
            (&backup_pin(7), "gone", "key"),
            (&backup_pin(8), "gone too", "key"),
        ],
    );
    let config = basic_config("api", &["app"], &route_to(up.addr)).replace(
        "server_names = [\"localhost\"]",
        "server_names = [\"api.example.com\", \"*.api.example.com\"]",
    );
    dir.write("config.toml", config);
    let r = start_proxy(&dir.config_path()).await.expect("proxy starts");
    let ca = dir.write("certs/root.pem", pki.root_pem());
    let port = r.listener("mobile").expect("listener").port();
    let apex = format!("https://api.example.com:{port}/apex");
    let sub = format!("https://v2.api.example.com:{port}/sub");
    let urls = [apex.clone(), sub.clone()];
    let build = tempfile::tempdir().expect("tmp");

    let good = export_okhttp_for(&dir, "app", "api.example.com", true);
    let out = run_okhttp(build.path(), "good", &good, &ca, &urls).await;
    assert!(out.contains(&format!("{apex} STATUS 200")), "{out}");
    assert!(out.contains(&format!("{sub} STATUS 200")), "{out}");

    // A set of wrong pins only: with the export, both the apex and the subdomain are pinned.
    let wrong = export_okhttp_for(&dir, "stale", "api.example.com", true);
    let out = run_okhttp(build.path(), "stale", &wrong, &ca, &urls).await;
    assert!(out.contains(&format!("{apex} PINNING FAILED")), "{out}");
    assert!(out.contains(&format!("{sub} PINNING FAILED")), "{out}");

    // Why: the `**.` pattern the export used to emit alone pins nothing on OkHttp 3.13.1.
    let double_star_only = format!(
        "new CertificatePinner.Builder().add(\"**.api.example.com\", \"sha256/{}\").build()",
        backup_pin(7)
    );
    let out = run_okhttp(build.path(), "double-star", &double_star_only, &ca, &urls).await;
    assert!(
        out.contains(&format!("{apex} STATUS 200")),
        "OkHttp 3.x ignores `**.` (if this fails, the installed OkHttp is 4+): {out}"
    );
    assert_eq!(
        up.hits(),
        4,
        "2 good requests and the 2 let through by `**.` alone"
    );
}
