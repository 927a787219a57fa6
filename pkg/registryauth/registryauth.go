// Package registryauth turns docker config files and the data of
// kubernetes.io/dockerconfigjson and kubernetes.io/dockercfg secrets into
// credentials, and finds the ones that apply to an image the way kubelet does:
// keys may name a host, a host and port, a host with a path prefix, or use
// globs per host label ("*.example.com"); the most specific key wins and every
// matching credential is offered, most specific first.
package registryauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Credential is one registry login.
type Credential struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// String never prints secrets.
func (c Credential) String() string { return "Credential{redacted}" }

// GoString never prints secrets.
func (c Credential) GoString() string { return c.String() }

// decode fills Username/Password from Auth when only Auth is set.
func (c Credential) decode() (Credential, error) {
	if c.Auth == "" || c.Username != "" {
		return c, nil
	}
	raw, err := base64.StdEncoding.DecodeString(c.Auth)
	if err != nil {
		return c, errors.New("the auth field is not base64")
	}
	u, p, ok := strings.Cut(string(raw), ":")
	if !ok {
		return c, errors.New("the auth field is not user:password")
	}
	c.Username, c.Password = u, p
	return c, nil
}

type entry struct {
	key  string
	host string // may hold globs, includes :port when given
	path string
	cred Credential
}

// Keyring holds credentials by registry key.
type Keyring struct {
	entries []entry
}

// Add adds a credential for a key as found in a docker config
// ("registry.example.com", "https://index.docker.io/v1/", "*.example.com/team").
func (k *Keyring) Add(key string, c Credential) error {
	c, err := c.decode()
	if err != nil {
		return fmt.Errorf("credential for %q: %w", key, err)
	}
	host, p := splitKey(key)
	if host == "" {
		return fmt.Errorf("credential key %q names no registry", key)
	}
	k.entries = append(k.entries, entry{key: key, host: host, path: p, cred: c})
	// Most specific first: longer keys (host+path) before shorter ones, as kubelet does.
	sort.SliceStable(k.entries, func(i, j int) bool {
		return len(k.entries[i].host+k.entries[i].path) > len(k.entries[j].host+k.entries[j].path)
	})
	return nil
}

// Len is the number of credentials held.
func (k *Keyring) Len() int { return len(k.entries) }

// Lookup returns the credentials that apply to image, most specific first.
// A nil Keyring holds none.
func (k *Keyring) Lookup(image string) []Credential {
	if k == nil {
		return nil
	}
	host, p := splitImage(image)
	return k.lookup(host, p)
}

func (k *Keyring) lookup(host, p string) []Credential {
	var out []Credential
	for _, e := range k.entries {
		if hostMatches(e.host, host) && pathMatches(e.path, p) {
			out = append(out, e.cred)
		}
	}
	return out
}

// splitKey normalises a config key into host[:port] and path.
func splitKey(key string) (string, string) {
	key = strings.TrimSpace(key)
	if strings.Contains(key, "://") {
		if u, err := url.Parse(key); err == nil {
			key = u.Host + u.Path
		}
	}
	key = strings.TrimSuffix(key, "/")
	host, p, _ := strings.Cut(key, "/")
	host = normaliseHost(strings.ToLower(host))
	if host == "docker.io" && (p == "v1" || p == "v2") {
		p = "" // "https://index.docker.io/v1/" means all of Docker Hub
	}
	if p != "" {
		p = normaliseRepo(host, p) // as images are looked up (splitImage)
	}
	return host, p
}

// splitImage returns an image's registry host and repository path, applying
// Docker Hub's defaults ("nginx" → docker.io, library/nginx).
func splitImage(image string) (string, string) {
	ref := image
	if i := strings.IndexAny(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	first, rest, found := strings.Cut(ref, "/")
	var host, repo string
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		host, repo = "docker.io", ref
		if !found {
			repo = "library/" + ref
		}
	} else {
		host, repo = strings.ToLower(first), rest
	}
	// drop the tag
	if i := strings.LastIndex(repo, ":"); i >= 0 && !strings.Contains(repo[i:], "/") {
		repo = repo[:i]
	}
	host = normaliseHost(host)
	return host, normaliseRepo(host, repo)
}

// normaliseRepo applies Docker Hub's implicit namespace: "docker.io/nginx"
// (however the host was spelt) is docker.io/library/nginx. host must be
// normalised already.
func normaliseRepo(host, repo string) string {
	if host == "docker.io" && !strings.Contains(repo, "/") {
		return "library/" + repo
	}
	return repo
}

func normaliseHost(h string) string {
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// hostMatches compares host[:port] with globs per dot-separated label; ports
// must be equal.
func hostMatches(pattern, host string) bool {
	ph, pport, _ := strings.Cut(pattern, ":")
	hh, hport, _ := strings.Cut(host, ":")
	if pport != hport {
		return false
	}
	pl, hl := strings.Split(ph, "."), strings.Split(hh, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if pl[i] == hl[i] {
			continue // also for labels that are no valid glob, such as "[::1]"
		}
		if ok, err := filepath.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func pathMatches(prefix, p string) bool {
	if prefix == "" {
		return true
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// ParseDockerConfigJSON adds the credentials of a config.json document
// ({"auths": {...}}), the data of a kubernetes.io/dockerconfigjson secret.
func (k *Keyring) ParseDockerConfigJSON(data []byte) error {
	var cfg struct {
		Auths map[string]Credential `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("not a docker config.json: %w", err)
	}
	if cfg.Auths == nil {
		return errors.New(`not a docker config.json: no "auths"`)
	}
	return k.addAll(cfg.Auths)
}

// ParseDockercfg adds the credentials of a legacy .dockercfg document (a map
// of registry → credential), the data of a kubernetes.io/dockercfg secret.
func (k *Keyring) ParseDockercfg(data []byte) error {
	var auths map[string]Credential
	if err := json.Unmarshal(data, &auths); err != nil {
		return fmt.Errorf("not a .dockercfg document: %w", err)
	}
	return k.addAll(auths)
}

func (k *Keyring) addAll(auths map[string]Credential) error {
	keys := make([]string, 0, len(auths))
	for key := range auths {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if err := k.Add(key, auths[key]); err != nil {
			return err
		}
	}
	return nil
}

// Secret types whose data Keyring understands (the values of corev1.SecretType).
const (
	SecretTypeDockerConfigJSON = "kubernetes.io/dockerconfigjson"
	SecretTypeDockercfg        = "kubernetes.io/dockercfg"
)

// ErrSecretType is returned (wrapped, naming the type) for a secret of a
// type that holds no registry credentials.
var ErrSecretType = errors.New("secret type is")

// AddSecret adds the credentials of a pull secret's data, by its type.
func (k *Keyring) AddSecret(secretType string, data map[string][]byte) error {
	switch secretType {
	case SecretTypeDockerConfigJSON:
		return k.ParseDockerConfigJSON(data[".dockerconfigjson"])
	case SecretTypeDockercfg:
		return k.ParseDockercfg(data[".dockercfg"])
	}
	return fmt.Errorf("%w %q; want %s or %s", ErrSecretType, secretType, SecretTypeDockerConfigJSON, SecretTypeDockercfg)
}

// LoadDir reads every mounted pull secret in dir: *.json files are
// config.json documents, *.dockercfg files legacy ones. Files are read in name
// order, so the order of --pull-secret flags is kept.
func LoadDir(dir string) (*Keyring, error) {
	k := &Keyring{}
	if dir == "" {
		return k, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading pull secrets: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // kubelet's ..data symlinks and timestamped dirs
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading pull secret %s: %w", e.Name(), err)
		}
		switch {
		case strings.HasSuffix(e.Name(), ".json"):
			err = k.ParseDockerConfigJSON(data)
		case strings.HasSuffix(e.Name(), ".dockercfg"):
			err = k.ParseDockercfg(data)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pull secret %s: %w", e.Name(), err)
		}
	}
	return k, nil
}
