package mirror

import (
	"strings"
	"testing"
)

func TestReportNamesAreDigestPinned(t *testing.T) {
	r := &Report{Results: []Result{
		{Destination: "reg.local/app:1", Digest: "sha256:aa", Status: StatusCopied},
		{Destination: "reg.local/db:2", Digest: "sha256:bb", Status: StatusPresent},
		{Destination: "reg.local/bad:3", Status: StatusFailed},
		{Destination: "reg.local/pin@sha256:cc", Digest: "sha256:cc", Status: StatusCopied},
	}}
	got := strings.Join(r.Names(), "\n")
	want := "reg.local/app:1@sha256:aa\nreg.local/db:2@sha256:bb\nreg.local/pin@sha256:cc"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
