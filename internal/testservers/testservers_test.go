package testservers

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// The version the tests look for is the one the install script installs.
func TestVersionMatchesInstallScript(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "hack", "install-test-servers.sh")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSITYGW_VERSION=(\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s sets no VERSITYGW_VERSION", script)
	}
	if string(m[1]) != VersitygwVersion {
		t.Fatalf("install-test-servers.sh installs versitygw %s, the tests look for %s", m[1], VersitygwVersion)
	}
}

// recorder is a testing.TB that records how a test ended.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, a ...any) {
	r.skipped = format
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, a ...any) {
	r.failed = format
	runtime.Goexit()
}

func end(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	return r
}

func TestMissingFailsUnlessAskedToSkip(t *testing.T) {
	t.Setenv("CORAL_VERSITYGW", "")
	t.Setenv("CORAL_CACHE", t.TempDir())
	t.Setenv("PATH", t.TempDir())
	t.Setenv(SkipS3Env, "")
	r := end(t, func(tb testing.TB) { Versitygw(tb) })
	if r.failed == "" || r.skipped != "" {
		t.Fatalf("without versitygw and without %s=1 the test must fail, got skipped=%q failed=%q", SkipS3Env, r.skipped, r.failed)
	}
	t.Setenv(SkipS3Env, "1")
	r = end(t, func(tb testing.TB) { Versitygw(tb) })
	if r.skipped == "" || r.failed != "" || !strings.Contains(r.skipped, "skipped because") {
		t.Fatalf("with %s=1 the test must skip and say why, got skipped=%q failed=%q", SkipS3Env, r.skipped, r.failed)
	}
}

func TestFindVersitygwOrder(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("CORAL_CACHE", cache)
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CORAL_VERSITYGW", "")
	if p := FindVersitygw(); p != "" {
		t.Fatalf("found %q in an empty cache", p)
	}
	cached := filepath.Join(cache, "tools", "versitygw-"+VersitygwVersion, "versitygw")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p := FindVersitygw(); p != cached {
		t.Fatalf("FindVersitygw() = %q, want the cached %q", p, cached)
	}
	explicit := filepath.Join(t.TempDir(), "vgw")
	if err := os.WriteFile(explicit, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CORAL_VERSITYGW", explicit)
	if p := FindVersitygw(); p != explicit {
		t.Fatalf("FindVersitygw() = %q, want $CORAL_VERSITYGW %q", p, explicit)
	}
}
