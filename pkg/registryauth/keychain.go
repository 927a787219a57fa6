package registryauth

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Keychain adapts a Keyring to go-containerregistry, falling back to next
// (e.g. authn.DefaultKeychain) when the keyring has nothing for a registry.
func (k *Keyring) Keychain(next authn.Keychain) authn.Keychain {
	return &keychain{k: k, next: next}
}

type keychain struct {
	k    *Keyring
	next authn.Keychain
}

func (kc *keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	host := normaliseHost(strings.ToLower(r.RegistryStr()))
	var repo string
	if rr, ok := r.(name.Repository); ok {
		repo = normaliseRepo(host, rr.RepositoryStr())
	}
	if creds := kc.k.lookup(host, repo); len(creds) > 0 {
		c := creds[0]
		return authn.FromConfig(authn.AuthConfig{
			Username:      c.Username,
			Password:      c.Password,
			IdentityToken: c.IdentityToken,
			RegistryToken: c.RegistryToken,
		}), nil
	}
	if kc.next != nil {
		return kc.next.Resolve(r)
	}
	return authn.Anonymous, nil
}
