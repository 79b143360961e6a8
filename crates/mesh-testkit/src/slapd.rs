//! An OpenLDAP slapd per test.
//!
//! The server runs Debian's slapd (`apt-get install slapd`, as `scripts/dev-setup` does) with a
//! generated `slapd.conf` in a temporary directory: one mdb database for [`Slapd::SUFFIX`], the
//! core, cosine and inetOrgPerson schemas from `/etc/ldap/schema`, a root DN and password, and
//! the ppolicy overlay with a default policy that enforces lockouts (`pwdLockout: TRUE`), so
//! that a test can see a locked account refused at bind. The suffix, `ou=people` and the
//! policy entry are loaded with slapadd before the server starts, so the directory is ready as
//! soon as it listens. The server is killed when the handle is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running slapd, owned by one test. Killed when dropped.
#[derive(Debug)]
pub struct Slapd {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Slapd {
    /// The directory's suffix.
    pub const SUFFIX: &'static str = "dc=corp,dc=example,dc=com";
    /// The root DN, which may write anything.
    pub const ROOT_DN: &'static str = "cn=admin,dc=corp,dc=example,dc=com";
    /// The root DN's password.
    pub const ROOT_PASSWORD: &'static str = "mesh-test-secret";
    /// The OU created empty for people.
    pub const PEOPLE: &'static str = "ou=people,dc=corp,dc=example,dc=com";

    /// Starts slapd on a free loopback port with a new directory and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let slapd = find_binary("slapd", "MESHTEST_SLAPD")?;
        let slapadd = find_binary("slapadd", "MESHTEST_SLAPADD")?;
        let dir = tempfile::Builder::new().prefix("mesh-slapd-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        let config = dir.path().join("slapd.conf");
        std::fs::write(&config, config_text(dir.path(), &data))?;
        let ldif = dir.path().join("base.ldif");
        std::fs::write(&ldif, BASE_LDIF)?;
        let loaded = Command::new(&slapadd)
            .arg("-f")
            .arg(&config)
            .arg("-l")
            .arg(&ldif)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", slapadd.display()))?;
        if !loaded.status.success() {
            bail!(
                "slapadd failed with {}:\n{}",
                loaded.status,
                String::from_utf8_lossy(&loaded.stderr)
            );
        }
        let port = crate::free_port()?;
        let log = std::fs::File::create(dir.path().join("slapd.log"))?;
        // `-d 0` keeps slapd in the foreground (so the handle owns it) without debug output.
        let child = Command::new(&slapd)
            .arg("-f")
            .arg(&config)
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", slapd.display()))?;
        let mut server = Self {
            port,
            dir,
            child: Some(child),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Returns the URL, `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Returns the port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default();
                bail!("slapd exited with {status} during start:\n{log}");
            }
            // slapd opens its listener only once the database is open.
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("slapd on port {} not ready after 20 s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

const BASE_LDIF: &str = "\
dn: dc=corp,dc=example,dc=com
objectClass: dcObject
objectClass: organization
dc: corp
o: Identity Mesh tests

dn: ou=people,dc=corp,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: cn=default-policy,dc=corp,dc=example,dc=com
objectClass: device
objectClass: pwdPolicy
cn: default-policy
pwdAttribute: userPassword
pwdLockout: TRUE
";

fn config_text(dir: &std::path::Path, data: &std::path::Path) -> String {
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {pid}
database mdb
maxsize 104857600
suffix \"{suffix}\"
rootdn \"{root}\"
rootpw {password}
directory {data}
index objectClass eq
index uid eq
overlay ppolicy
ppolicy_default \"cn=default-policy,{suffix}\"
",
        pid = dir.join("slapd.pid").display(),
        suffix = Slapd::SUFFIX,
        root = Slapd::ROOT_DN,
        password = Slapd::ROOT_PASSWORD,
        data = data.display(),
    )
}

fn find_binary(name: &str, variable: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        let path = PathBuf::from(dir).join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("no {name} found; run scripts/dev-setup (it installs slapd) or set {variable}")
}
