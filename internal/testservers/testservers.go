// Package testservers finds the real servers Coral's tests start on loopback
// (hack/install-test-servers.sh installs them; `make test` runs it first).
//
// A test of a real component never skips silently: when the component is
// missing the test fails and says how to install it, unless the user asked to
// skip it with an explicit environment variable (CORAL_SKIP_S3=1 for the S3
// tests), in which case the skip message names that variable.
package testservers

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// VersitygwVersion is the versitygw that hack/install-test-servers.sh
// installs (a test checks that both say the same).
const VersitygwVersion = "v1.8.0"

// SkipS3Env, set to 1, skips the tests that need versitygw.
const SkipS3Env = "CORAL_SKIP_S3"

// CacheDir is where hack/install-test-servers.sh caches the servers:
// $CORAL_CACHE/tools, /var/cache/coral/tools by default.
func CacheDir() string {
	root := os.Getenv("CORAL_CACHE")
	if root == "" {
		root = "/var/cache/coral"
	}
	return filepath.Join(root, "tools")
}

// FindVersitygw returns the path of the versitygw binary: $CORAL_VERSITYGW,
// then the install script's cache, then $PATH; "" when there is none.
func FindVersitygw() string {
	for _, p := range []string{os.Getenv("CORAL_VERSITYGW"), filepath.Join(CacheDir(), "versitygw-"+VersitygwVersion, "versitygw")} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

// Versitygw returns the versitygw binary for a test. Without one it fails the
// test with how to install it, or skips it when CORAL_SKIP_S3=1.
func Versitygw(t testing.TB) string {
	t.Helper()
	if p := FindVersitygw(); p != "" {
		return p
	}
	Missing(t, SkipS3Env, "versitygw (the S3 server the S3 tests run against) is not installed",
		"run `bash hack/install-test-servers.sh` (make test does)")
	return ""
}

// Missing ends a test whose real component is unavailable: it skips when
// skipEnv is set to 1 (the user asked for it) and fails otherwise, saying how
// to fix it and how to skip on purpose.
func Missing(t testing.TB, skipEnv, what, fix string) {
	t.Helper()
	if os.Getenv(skipEnv) == "1" {
		t.Skipf("skipped because %s=1: %s", skipEnv, what)
	}
	t.Fatalf("%s: %s, or set %s=1 to skip this test on purpose", what, fix, skipEnv)
}
