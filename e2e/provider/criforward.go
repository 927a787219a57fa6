package provider

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
)

// StartFunc runs one bridge process to completion: it reads what the
// client sends from stdin and writes what the runtime answers to stdout
// (both are pipes, *os.File, to hand to a process as they are). For
// kind it is `docker exec -i NODE /coral-e2e/sockpipe /run/containerd/containerd.sock`.
type StartFunc func(ctx context.Context, stdin io.Reader, stdout io.Writer) error

// CRIForwarder serves a unix socket on this machine and carries every
// connection to a node's CRI socket through a bridge process. The tests dial
// it exactly as they dial a local node's containerd (unix://…), so
// CORAL_CRI_<NODE>, crictl and every gRPC check work unchanged: in kind the
// node's socket lives in the node container's filesystem, out of reach of
// the Docker host's processes unless something carries the bytes.
type CRIForwarder struct {
	Path   string
	ln     net.Listener
	start  StartFunc
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ForwardCRI listens on the unix socket path and serves it until Close.
func ForwardCRI(path string, start StartFunc) (*CRIForwarder, error) {
	os.Remove(path) // a socket left by an earlier run
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("serving the CRI forward socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &CRIForwarder{Path: path, ln: ln, start: start, ctx: ctx, cancel: cancel}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Endpoint is the forwarder as a CRI endpoint: unix://PATH.
func (f *CRIForwarder) Endpoint() string { return "unix://" + f.Path }

func (f *CRIForwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.carry(c)
		}()
	}
}

// carry runs one bridge process for one client connection and copies both
// ways until either side is done. The bridge gets real pipes (*os.File), not
// Go readers: a process runner then hands it the descriptors and does not
// wait for a copy of its stdin (os/exec would wait for a stdin copy that
// only ends when the client goes, after the bridge exited).
func (f *CRIForwarder) carry(c net.Conn) {
	defer c.Close()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	go func() {
		f.start(ctx, stdinR, stdoutW)
		// The bridge is gone: with our copies of its ends closed, the
		// copy back below sees EOF.
		stdinR.Close()
		stdoutW.Close()
	}()
	go func() {
		io.Copy(stdinW, c) // the client's bytes into the bridge
		stdinW.Close()     // the client is done: the bridge sees EOF
	}()
	io.Copy(c, stdoutR) // the runtime's answers; ends when the bridge exits
	stdoutR.Close()
}

// Close stops serving and ends every bridge process.
func (f *CRIForwarder) Close() error {
	err := f.ln.Close()
	f.cancel()
	f.wg.Wait()
	os.Remove(f.Path)
	return err
}
