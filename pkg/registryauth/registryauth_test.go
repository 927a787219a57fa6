package registryauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestLookupMatchesLikeKubelet(t *testing.T) {
	k := &Keyring{}
	cfg := fmt.Sprintf(`{"auths":{
		"https://index.docker.io/v1/": {"auth": %q},
		"registry.example.com": {"username": "plain", "password": "p1"},
		"registry.example.com/team": {"username": "team", "password": "p2"},
		"*.corp.example": {"username": "glob", "password": "p3"},
		"127.0.0.1:5001": {"username": "local", "password": "p4"}
	}}`, b64("hub:hubpass"))
	if err := k.ParseDockerConfigJSON([]byte(cfg)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image string
		want  []string // usernames, in order
	}{
		{"nginx:1.27", []string{"hub"}},
		{"docker.io/library/nginx", []string{"hub"}},
		{"index.docker.io/foo/bar:1", []string{"hub"}},
		{"registry.example.com/team/api:v3", []string{"team", "plain"}},
		{"registry.example.com/teamx/api:v3", []string{"plain"}},
		{"registry.example.com/other@sha256:" + strings.Repeat("a", 64), []string{"plain"}},
		{"eu.corp.example/app:1", []string{"glob"}},
		{"a.b.corp.example/app:1", nil}, // a glob matches one label, not many
		{"127.0.0.1:5001/x:1", []string{"local"}},
		{"127.0.0.1:5002/x:1", nil}, // ports must match
		{"quay.io/x/y", nil},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			var got []string
			for _, c := range k.Lookup(tt.image) {
				got = append(got, c.Username)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("Lookup(%q) = %v, want %v", tt.image, got, tt.want)
			}
		})
	}
	if c := k.Lookup("nginx")[0]; c.Password != "hubpass" {
		t.Fatal("auth field not decoded")
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	c := Credential{Username: "u", Password: "s3cret"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", c, c, c), fmt.Sprint([]Credential{c})} {
		if strings.Contains(s, "s3cret") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}

func TestParseErrors(t *testing.T) {
	k := &Keyring{}
	if err := k.ParseDockerConfigJSON([]byte(`{"x":1}`)); err == nil || !strings.Contains(err.Error(), "auths") {
		t.Errorf("missing auths: %v", err)
	}
	if err := k.ParseDockerConfigJSON([]byte(`{"auths":{"r.io":{"auth":"!!"}}}`)); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Errorf("bad auth: %v", err)
	}
	if err := k.ParseDockercfg([]byte(`not json`)); err == nil {
		t.Error("bad dockercfg accepted")
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "00-a.json"), []byte(`{"auths":{"r.io":{"username":"a","password":"x"}}}`), 0o400)
	os.WriteFile(filepath.Join(dir, "01-b.dockercfg"), []byte(`{"r.io":{"username":"b","password":"y"}}`), 0o400)
	os.Mkdir(filepath.Join(dir, "..data"), 0o755)
	k, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := k.Lookup("r.io/app:1")
	if len(got) != 2 || got[0].Username != "a" || got[1].Username != "b" {
		t.Fatalf("got %v", len(got))
	}
	if _, err := LoadDir(filepath.Join(dir, "nope")); err == nil {
		t.Error("missing dir accepted")
	}
}

func TestKeychain(t *testing.T) {
	k := &Keyring{}
	k.Add("127.0.0.1:5001/team", Credential{Username: "u", Password: "p"})
	kc := k.Keychain(nil)
	repo, _ := name.NewRepository("127.0.0.1:5001/team/app")
	a, err := kc.Resolve(repo)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := a.Authorization()
	if cfg.Username != "u" {
		t.Fatalf("got %q", cfg.Username)
	}
	other, _ := name.NewRepository("127.0.0.1:5001/elsewhere")
	if a, _ := kc.Resolve(other); a != authn.Anonymous {
		t.Fatal("want anonymous outside the key's path")
	}
}

func TestAddSecret(t *testing.T) {
	k := &Keyring{}
	if err := k.AddSecret(SecretTypeDockerConfigJSON, map[string][]byte{".dockerconfigjson": []byte(`{"auths":{"r.io":{"username":"a","password":"x"}}}`)}); err != nil {
		t.Fatal(err)
	}
	if err := k.AddSecret(SecretTypeDockercfg, map[string][]byte{".dockercfg": []byte(`{"q.io":{"username":"b","password":"y"}}`)}); err != nil {
		t.Fatal(err)
	}
	if len(k.Lookup("r.io/a")) != 1 || len(k.Lookup("q.io/b")) != 1 {
		t.Fatal("credentials of both secret types must be found")
	}
	err := k.AddSecret("Opaque", map[string][]byte{"x": nil})
	if !errors.Is(err, ErrSecretType) || !strings.Contains(err.Error(), `secret type is "Opaque"`) || !strings.Contains(err.Error(), SecretTypeDockerConfigJSON) {
		t.Fatalf("err = %v", err)
	}
}

// Found by fuzzing: Docker Hub's "library/" applies with an explicit
// docker.io too, and an IPv6 registry's host is no glob.
func TestLookupHubLibraryAndIPv6(t *testing.T) {
	k := &Keyring{}
	for key, user := range map[string]string{"docker.io/library/nginx": "lib", "[::1]:5000": "v6"} {
		if err := k.Add(key, Credential{Username: user, Password: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	for image, want := range map[string]string{"docker.io/nginx:1": "lib", "index.docker.io/nginx": "lib", "nginx": "lib", "[::1]:5000/x:1": "v6"} {
		if got := k.Lookup(image); len(got) != 1 || got[0].Username != want {
			t.Errorf("Lookup(%q) = %v, want the credential of %s", image, got, want)
		}
	}
	if got := k.Lookup("[::1]:5001/x:1"); len(got) != 0 {
		t.Errorf("a credential for [::1]:5000 applies to [::1]:5001")
	}
}
