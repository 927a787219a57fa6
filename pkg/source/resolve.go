package source

import (
	"context"
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ResolveDigest asks the registry which digest ref's tag points to now (a
// HEAD of the manifest); a digest reference is its own answer. Shared by
// the CLI (once per run) and the controller (every refresh interval).
func ResolveDigest(ctx context.Context, ref string, kc authn.Keychain) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if d, ok := r.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	desc, err := remote.Head(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

// IsManifestUnknown says whether a resolution error is the registry's
// definitive answer that the image (its tag or repository) does not exist
// — not "cannot reach" or "not authorised".
func IsManifestUnknown(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode {
			return true
		}
	}
	// HEAD answers carry no body: a bare 404 from the manifests endpoint.
	return te.StatusCode == http.StatusNotFound && len(te.Errors) == 0
}
