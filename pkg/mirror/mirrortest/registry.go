// Package mirrortest starts real registries for tests: the CNCF distribution
// registry (Debian's docker-registry) on a free 127.0.0.1 port, optionally
// with htpasswd auth and TLS from a throwaway CA, plus reverse proxies that
// count or disturb requests, and random multi-platform images.
package mirrortest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry executable looked up on PATH.
const Binary = "docker-registry"

// Registry is a running registry.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// Dir holds the registry's storage.
	Dir string
	// CAFile is the PEM CA that signed the TLS certificate (TLS only).
	CAFile string
	// Username and Password are the htpasswd login (auth only).
	Username, Password string
	// TLS says whether the registry speaks https.
	TLS bool
}

type config struct {
	tls                bool
	username, password string
}

// Option configures Start.
type Option func(*config)

// WithTLS serves https with a certificate for 127.0.0.1 signed by a fresh CA
// (Registry.CAFile).
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithHtpasswd requires basic auth with this login.
func WithHtpasswd(user, pass string) Option {
	return func(c *config) { c.username, c.password = user, pass }
}

// RequireBinary skips the test when docker-registry is not installed, except
// in CI (CI=true), where its absence fails the test.
func RequireBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath(Binary)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found on PATH, and CI=true: install it (apt-get install -y docker-registry)", Binary)
	}
	t.Skipf("%s not installed (apt-get install -y docker-registry); skipping the real-registry test", Binary)
	return ""
}

// Start runs a registry until the test ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := RequireBinary(t)
	var c config
	for _, o := range opts {
		o(&c)
	}
	dir := t.TempDir()
	r := &Registry{Dir: filepath.Join(dir, "storage"), TLS: c.tls, Username: c.username, Password: c.password}

	var extra strings.Builder
	if c.username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htp := filepath.Join(dir, "htpasswd")
		writeFile(t, htp, c.username+":"+string(hash)+"\n")
		fmt.Fprintf(&extra, "auth:\n  htpasswd:\n    realm: coral-test\n    path: %s\n", htp)
	}
	var tlsBlock string
	if c.tls {
		certFile, keyFile, caFile := selfSigned(t, dir)
		r.CAFile = caFile
		tlsBlock = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: coral-test-secret
%s%s`, r.Dir, r.Host, tlsBlock, extra.String())
		cfgFile := filepath.Join(dir, "config.yml")
		writeFile(t, cfgFile, cfg)
		logFile, err := os.Create(filepath.Join(dir, fmt.Sprintf("registry-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", cfgFile)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if lastErr = r.waitReady(exited); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				logFile.Close()
			})
			return r
		}
		_ = cmd.Process.Kill()
		logFile.Close()
		log, _ := os.ReadFile(logFile.Name())
		lastErr = fmt.Errorf("%w\n%s", lastErr, log)
	}
	t.Fatalf("registry did not start: %v", lastErr)
	return nil
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.TLS {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Client is an HTTP client that trusts the registry's CA.
func (r *Registry) Client() *http.Client {
	tr := &http.Transport{}
	if r.CAFile != "" {
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(r.CAFile)
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func (r *Registry) waitReady(exited chan error) error {
	client := r.Client()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("registry exited: %v", err)
		default:
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("registry at %s not ready after 15s", r.Host)
}

// DockerConfig writes a docker config.json holding this registry's login
// into a new directory and returns the directory (for DOCKER_CONFIG).
func (r *Registry) DockerConfig(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), string(r.DockerConfigJSON()))
	return dir
}

// DockerConfigJSON is {"auths": {HOST: {auth}}} for this registry's login,
// the data of a kubernetes.io/dockerconfigjson secret.
func (r *Registry) DockerConfigJSON() []byte {
	return []byte(fmt.Sprintf(`{"auths":{%q:{"username":%q,"password":%q}}}`, r.Host, r.Username, r.Password))
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSigned writes a CA and a server certificate for 127.0.0.1/localhost.
func selfSigned(t testing.TB, dir string) (certFile, keyFile, caFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "coral test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	writeFile(t, certFile, pemString("CERTIFICATE", der))
	writeFile(t, keyFile, pemString("EC PRIVATE KEY", keyDER))
	writeFile(t, caFile, pemString("CERTIFICATE", caDER))
	return certFile, keyFile, caFile
}

func pemString(typ string, der []byte) string {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.String()
}
