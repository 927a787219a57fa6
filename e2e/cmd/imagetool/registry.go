package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registryFlags are the flags every subcommand shares.
type registryFlags struct {
	username, password string
	insecure           bool
}

func (r *registryFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&r.username, "username", "", "registry user name (basic auth)")
	fl.StringVar(&r.password, "password", "", "registry password (basic auth)")
	fl.BoolVar(&r.insecure, "insecure", false, "use plain http (implied for 127.0.0.1, ::1 and localhost)")
}

// parseRef parses ref, allowing plain http when asked to or when the registry
// is on a loopback address.
func (r *registryFlags) parseRef(ref string) (name.Reference, error) {
	var opts []name.Option
	if r.insecure || isLoopback(ref) {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, usageError{fmt.Sprintf("parsing reference %q: %v", ref, err)}
	}
	return parsed, nil
}

func (r *registryFlags) remoteOptions(ctx context.Context) []remote.Option {
	auth := authn.Anonymous
	if r.username != "" || r.password != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: r.username, Password: r.password})
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
}

func isLoopback(ref string) bool {
	host := ref
	if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// parseFlags parses args into fl and requires exactly wantArgs positional
// arguments (-1: any number).
func parseFlags(fl *flag.FlagSet, args []string, stderr io.Writer, wantArgs int) error {
	fl.SetOutput(stderr)
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return usageError{"help requested"}
		}
		return usageError{err.Error()}
	}
	if wantArgs >= 0 && fl.NArg() != wantArgs {
		return usageError{fmt.Sprintf("%s: want %d argument(s), got %d (%s)", fl.Name(), wantArgs, fl.NArg(), strings.Join(fl.Args(), " "))}
	}
	return nil
}

// parsePlatform parses "os/arch[/variant]".
func parsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, usageError{fmt.Sprintf("invalid platform %q (want os/arch[/variant])", s)}
	}
	return *p, nil
}
