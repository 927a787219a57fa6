package registryauth

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Pull secrets come from users' clusters: any bytes may be in them. Parsing
// must return credentials or an error, never panic, and an error must never
// carry a secret (errors are printed).
func FuzzParsePullSecret(f *testing.F) {
	f.Add([]byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnBhc3M="},"registry.example.com/team":{"username":"u","password":"p"}}}`), "registry.example.com/team/api:v3")
	f.Add([]byte(`{"auths":{"*.corp.example":{"identitytoken":"tok"},"127.0.0.1:5001":{"registrytoken":"rt"}}}`), "eu.corp.example/app@sha256:"+strings.Repeat("a", 64))
	f.Add([]byte(`{"r.io":{"auth":"dTpw","email":"x@y"}}`), "r.io/x")
	f.Add([]byte(`{"auths":{"[":{"username":"u"},"":{},"https://":{}," ":{}}}`), "[/x")
	f.Add([]byte(`{"auths":{"r.io":{"auth":"!!"}}}`), "nginx")
	f.Add([]byte(`{"auths":null}`), "localhost/x:1")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, data []byte, image string) {
		for _, typ := range []string{SecretTypeDockerConfigJSON, SecretTypeDockercfg, "Opaque"} {
			k := &Keyring{}
			err := k.AddSecret(typ, map[string][]byte{".dockerconfigjson": data, ".dockercfg": data})
			if err != nil {
				checkNoSecretIn(t, err.Error(), data)
				continue
			}
			for _, c := range k.Lookup(image) {
				// Printing must not depend on the secrets at all: the same
				// credential with other secrets prints the same. (Looking for
				// the password in the output was wrong twice: a password "C"
				// is in "Credential{redacted}", " " in the spaces between.)
				other := c
				other.Password, other.Auth, other.IdentityToken, other.RegistryToken = c.Password+"x", c.Auth+"x", c.IdentityToken+"x", c.RegistryToken+"x"
				if printed(c) != printed(other) {
					t.Fatalf("how a credential prints depends on its secrets: %q vs %q", printed(c), printed(other))
				}
			}
			if ref, err := name.ParseReference(image, name.WeakValidation); err == nil {
				if _, err := k.Keychain(nil).Resolve(ref.Context()); err != nil {
					t.Fatalf("Resolve(%s): %v", ref.Context(), err)
				}
			}
		}
	})
}

// printed is a credential as %v, %+v and %#v print it.
func printed(c Credential) string { return fmt.Sprintf("%v %+v %#v", c, c, c) }

// checkNoSecretIn fails when an error message holds a password, token or
// auth value of the document (values of 4 bytes or more, as JSON decodes them).
func checkNoSecretIn(t *testing.T, msg string, data []byte) {
	t.Helper()
	var docs []map[string]Credential
	var cfg struct {
		Auths map[string]Credential `json:"auths"`
	}
	if json.Unmarshal(data, &cfg) == nil {
		docs = append(docs, cfg.Auths)
	}
	var legacy map[string]Credential
	if json.Unmarshal(data, &legacy) == nil {
		docs = append(docs, legacy)
	}
	for _, auths := range docs {
		for key := range auths {
			msg = strings.ReplaceAll(msg, key, "") // registry names are no secret
		}
		for _, c := range auths {
			for _, secret := range []string{c.Password, c.Auth, c.IdentityToken, c.RegistryToken} {
				if len(secret) >= 4 && strings.Contains(msg, secret) {
					t.Fatalf("the error %q holds a secret of the document", msg)
				}
			}
		}
	}
}

// referenceGrammar is the image reference grammar of the distribution
// project (what containerd and kubelet accept), written out here:
// [domain/]path-component(/path-component)*[:tag][@digest].
var referenceGrammar = func() *regexp.Regexp {
	const (
		domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		domain          = `(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
		pathComponent   = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
		tag             = `[\w][\w.-]{0,127}`
		digest          = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	)
	return regexp.MustCompile(`^(?:` + domain + `/)?` + pathComponent + `(?:/` + pathComponent + `)*(?::` + tag + `)?(?:@` + digest + `)?$`)
}()

// A credential stored under an image's registry (or its registry and
// repository) is found for that image, as containerd and go-containerregistry
// name the registry; a credential for another registry is not.
func FuzzLookupFindsTheImagesRegistry(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.27", "library/nginx", "docker.io/library/nginx:latest", "index.docker.io/foo/bar:1",
		"registry-1.docker.io/x/y", "localhost/app", "localhost:5000/a/b/c:v1", "127.0.0.1:5001/x:1",
		"[::1]:5000/x:1", "Registry.Example.COM/team/api:v3", "r.io/x:1@sha256:" + strings.Repeat("a", 64),
		"eu.corp.example/app@sha256:" + strings.Repeat("0", 64), "a.b/c.d/e_f/g-h:1.0-rc_1",
	} {
		f.Add(s, "user", "pass")
	}
	f.Fuzz(func(t *testing.T, image, user, pass string) {
		// go-containerregistry's weak validation accepts more than a runtime
		// pulls (e.g. "A://": registry "A:", repository "/"); only references
		// of the distribution grammar name a registry credentials can be for.
		if !referenceGrammar.MatchString(image) {
			return
		}
		ref, err := name.ParseReference(image, name.WeakValidation)
		if err != nil {
			return
		}
		reg, repo := ref.Context().RegistryStr(), ref.Context().RepositoryStr()
		want := Credential{Username: "u-" + user, Password: "p-" + pass}
		for _, key := range []string{reg, reg + "/" + repo, "https://" + reg + "/"} {
			k := &Keyring{}
			if err := k.Add(key, want); err != nil {
				t.Fatalf("Add(%q): %v", key, err)
			}
			got := k.Lookup(image)
			if len(got) != 1 || got[0] != want {
				t.Fatalf("image %q (registry %q, repository %q): a credential under %q was not found (got %d)", image, reg, repo, key, len(got))
			}
			a, err := k.Keychain(nil).Resolve(ref.Context())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := a.Authorization()
			if err != nil || cfg.Username != want.Username || cfg.Password != want.Password {
				t.Fatalf("image %q: the go-containerregistry keychain did not use the credential under %q (%v)", image, key, err)
			}
		}
		// The same credential under another registry, or another port, or a
		// sibling repository, does not apply.
		host, port, hasPort := strings.Cut(reg, ":")
		others := []string{"other-" + reg, reg + "x"}
		if hasPort {
			others = append(others, host+":1"+port)
		} else {
			others = append(others, reg+":443")
		}
		if repo != "" {
			others = append(others, reg+"/"+repo+"-sibling")
		}
		for _, key := range others {
			k := &Keyring{}
			if err := k.Add(key, want); err != nil {
				continue
			}
			if got := k.Lookup(image); len(got) != 0 {
				t.Fatalf("image %q (registry %q): a credential under %q applies to it", image, reg, key)
			}
			if a, _ := k.Keychain(nil).Resolve(ref.Context()); a != authn.Anonymous {
				t.Fatalf("image %q: the keychain used the credential under %q", image, key)
			}
		}
	})
}
