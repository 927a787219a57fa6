package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// manifest is the part of a krew plugin manifest the release relies on.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		ShortDescription string `json:"shortDescription"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			Sha256 string `json:"sha256"`
			Bin    string `json:"bin"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

// fakeDist writes one archive per platform and returns their sha256 by name.
func fakeDist(t *testing.T, tag string) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	sums := map[string]string{}
	for _, p := range []string{"linux_amd64.tar.gz", "linux_arm64.tar.gz", "darwin_amd64.tar.gz", "darwin_arm64.tar.gz", "windows_amd64.zip", "windows_arm64.zip"} {
		name := "coral_" + tag + "_" + p
		body := []byte("archive " + name)
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(body)
		sums[name] = hex.EncodeToString(s[:])
	}
	return dir, sums
}

func TestRenderTheRepositoryTemplate(t *testing.T) {
	const tag = "v0.1.0"
	dist, sums := fakeDist(t, tag)
	text, err := os.ReadFile("../../../krew/.krew.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := render(".krew.yaml", string(text), tag, dist)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatalf("rendered manifest is not YAML: %v\n%s", err, out)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "coral" || m.Spec.Version != tag || m.Spec.ShortDescription == "" {
		t.Errorf("header: kind %q, name %q, version %q, shortDescription %q", m.Kind, m.Metadata.Name, m.Spec.Version, m.Spec.ShortDescription)
	}
	if len(m.Spec.Platforms) != len(sums) {
		t.Fatalf("%d platforms, want %d", len(m.Spec.Platforms), len(sums))
	}
	lowerHex := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		osName, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		ext, exe, completion := ".tar.gz", "", "kubectl_complete-coral"
		if osName == "windows" {
			ext, exe, completion = ".zip", ".exe", "kubectl_complete-coral.cmd"
		}
		archive := "coral_" + tag + "_" + osName + "_" + arch + ext
		t.Run(osName+"/"+arch, func(t *testing.T) {
			seen[archive] = true
			if want := "https://github.com/coral-dev/coral/releases/download/" + tag + "/" + archive; p.URI != want {
				t.Errorf("uri = %q, want %q", p.URI, want)
			}
			if !lowerHex.MatchString(p.Sha256) || p.Sha256 != sums[archive] {
				t.Errorf("sha256 = %q, want %q", p.Sha256, sums[archive])
			}
			if p.Bin != "kubectl-coral"+exe {
				t.Errorf("bin = %q", p.Bin)
			}
			var from []string
			for _, f := range p.Files {
				from = append(from, f.From)
				if f.To != "." {
					t.Errorf("file %s goes to %q, want .", f.From, f.To)
				}
			}
			if got, want := strings.Join(from, " "), "kubectl-coral"+exe+" "+completion+" LICENSE"; got != want {
				t.Errorf("files = %s, want %s", got, want)
			}
		})
	}
	if len(seen) != len(sums) {
		t.Errorf("platforms name %d distinct archives, want %d", len(seen), len(sums))
	}
}

// TestRenderLikeTheBot checks the template functions against what
// krew-release-bot makes of the same template lines.
func TestRenderLikeTheBot(t *testing.T) {
	const tag = "v1.2.3"
	dist, sums := fakeDist(t, tag)
	sum := sums["coral_v1.2.3_linux_amd64.tar.gz"]
	uri := "https://example.com/" + tag + "/coral_" + tag + "_linux_amd64.tar.gz"
	tests := []struct {
		name, text, want string
	}{
		{"4-space indent", "    {{ addURIAndSha \"https://example.com/{{ .TagName }}/coral_{{ .TagName }}_linux_amd64.tar.gz\" .TagName }}\n",
			"    uri: " + uri + "\n    sha256: " + sum + "\n"},
		{"piped through indent 6", "      {{addURIAndSha \"https://example.com/{{ .TagName }}/coral_{{ .TagName }}_linux_amd64.tar.gz\" .TagName | indent 6 }}\n",
			"      uri: " + uri + "\n      sha256: " + sum + "\n"},
		{".Version in the URL", "{{ addURIAndSha \"https://example.com/v{{ .Version }}/coral_v{{ .Version }}_linux_amd64.tar.gz\" .TagName }}",
			"uri: " + uri + "\n    sha256: " + sum},
		{"plain values", "version: {{ .TagName }} ({{ .Version }})", "version: v1.2.3 (1.2.3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render("t", tt.text, tag, dist)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRenderFailsWithoutTheArchive(t *testing.T) {
	_, err := render("t", `{{ addURIAndSha "https://example.com/{{ .TagName }}/coral_{{ .TagName }}_plan9_386.tar.gz" .TagName }}`, "v1.0.0", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "coral_v1.0.0_plan9_386.tar.gz") {
		t.Fatalf("error = %v, want it to name the missing archive", err)
	}
}
